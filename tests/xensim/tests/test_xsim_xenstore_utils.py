"""Debian's own xenstore-utils (libxenstore 4.17) against the simulated
xenstored, reached only through XENSTORED_PATH.

Install them with ``apt-get install -y xenstore-utils`` (Debian bookworm)."""

import shutil
import subprocess
import time

import pytest

from xensim_testlib import RawXs

FLEET = {"heartbeat_ms": 0, "guests": {"linux-pv": 1, "xenlinux": 1}}

pytestmark = pytest.mark.skipif(shutil.which("xenstore-read") is None,
                                reason="xenstore-utils not installed (apt-get install -y xenstore-utils)")


def run(sim, *args, check=True, **kw):
    r = subprocess.run(list(args), env=sim.subprocess_env(), capture_output=True, text=True,
                       timeout=10, **kw)
    if check and r.returncode:
        raise AssertionError("%s failed (%d): %s" % (args, r.returncode, r.stderr))
    return r


def test_write_read_exists_rm(module_sim):
    run(module_sim, "xenstore-write", "/utils/a", "hello", "/utils/b/c", "")
    assert run(module_sim, "xenstore-read", "/utils/a").stdout == "hello\n"
    assert run(module_sim, "xenstore-read", "/utils/b/c").stdout == "\n"
    assert run(module_sim, "xenstore-exists", "/utils/b").returncode == 0
    assert run(module_sim, "xenstore-exists", "/utils/nope", check=False).returncode != 0
    r = run(module_sim, "xenstore-read", "/utils/nope", check=False)
    assert r.returncode != 0
    assert run(module_sim, "xenstore-list", "/utils").stdout.split() == ["a", "b"]
    run(module_sim, "xenstore-rm", "/utils/b")
    assert run(module_sim, "xenstore-list", "/utils").stdout.split() == ["a"]


def test_ls_with_permissions(module_sim):
    out = run(module_sim, "xenstore-ls", "-p", "/local/domain/1/control").stdout
    lines = {l.split("=")[0].strip(): l for l in out.splitlines()}
    assert lines["shutdown"].rstrip().endswith("(n1)")
    assert lines["platform-feature-xs_reset_watches"].rstrip().endswith("(n0,r1)")
    full = run(module_sim, "xenstore-ls", "-f", "/local/domain/2").stdout
    assert '/local/domain/2/name = "xenlinux-1"' in full
    port = run(module_sim, "xenstore-read", "/local/domain/2/device/suspend/event-channel").stdout
    assert port.strip().isdigit()


def test_chmod(module_sim):
    run(module_sim, "xenstore-write", "/utils/perm", "x")
    run(module_sim, "xenstore-chmod", "/utils/perm", "n0", "r5")
    c = RawXs(module_sim.xs_path)
    try:
        assert c.ok(3, b"/utils/perm\0") == b"n0\0r5\0"
    finally:
        c.close()


def test_ls_large_directory_uses_directory_part(module_sim):
    c = RawXs(module_sim.xs_path)
    names = ["entry-with-quite-a-long-name-%04d" % i for i in range(200)]
    for n in names:
        c.write(b"/utils/big/" + n.encode(), b"v")
    c.close()
    out = run(module_sim, "xenstore-list", "/utils/big").stdout.split()
    assert out == names


def test_watch(module_sim):
    p = subprocess.Popen(["xenstore-watch", "-n", "3", "/utils/w"], env=module_sim.subprocess_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # first event is the registration one; then two changes
        first = p.stdout.readline().strip()
        assert first == "/utils/w"
        run(module_sim, "xenstore-write", "/utils/w/x", "1")
        time.sleep(0.05)
        run(module_sim, "xenstore-write", "/utils/w", "2")
        rest = [p.stdout.readline().strip(), p.stdout.readline().strip()]
        assert rest == ["/utils/w/x", "/utils/w"]
        assert p.wait(timeout=5) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_watch_release_domain(module_sim):
    p = subprocess.Popen(["xenstore-watch", "-n", "2", "@releaseDomain"], env=module_sim.subprocess_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "@releaseDomain"
        run(module_sim, "xenstore-write", "/local/domain/1/control/shutdown", "suspend")
        assert p.stdout.readline().strip() == "@releaseDomain"   # the guest suspended
        assert p.wait(timeout=5) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
