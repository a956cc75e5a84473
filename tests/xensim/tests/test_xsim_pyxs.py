"""pyxs 0.4.1 (PyPI), unmodified, against the simulated xenstored."""

import errno
import queue

import pytest

pyxs = pytest.importorskip("pyxs")
from pyxs._internal import Op  # noqa: E402

FLEET = {"quiesce_ms": 50, "jitter_ms": 0, "heartbeat_ms": 0, "guests": {"linux-pv": 2}}


@pytest.fixture
def client(module_sim):
    with pyxs.Client(unix_socket_path=module_sim.xs_path) as c:
        yield c


def test_read_write_list_delete(client):
    client.write(b"/pyxs/a", b"1")
    client[b"/pyxs/b/c"] = b"2"
    assert client.read(b"/pyxs/a") == b"1"
    assert client[b"/pyxs/b/c"] == b"2"
    assert sorted(client.list(b"/pyxs")) == [b"a", b"b"]
    assert client.list(b"/pyxs/a") == []
    assert client.exists(b"/pyxs/b") and not client.exists(b"/pyxs/zz")
    assert client.read(b"/pyxs/zz", b"dflt") == b"dflt"
    with pytest.raises(pyxs.PyXSError) as ei:
        client.read(b"/pyxs/zz")
    assert ei.value.args[0] == errno.ENOENT
    client.mkdir(b"/pyxs/m")
    assert client.read(b"/pyxs/m") == b""
    del client[b"/pyxs/b"]
    assert not client.exists(b"/pyxs/b/c")
    assert client.get_domain_path(1) == b"/local/domain/1"
    assert client.is_domain_introduced(1) and not client.is_domain_introduced(77)


def test_perms(client):
    client.write(b"/pyxs/p", b"x")
    client.set_perms(b"/pyxs/p", [b"n0", b"r3"])
    assert client.get_perms(b"/pyxs/p") == [b"n0", b"r3"]
    assert client.get_perms(b"/local/domain/1/control/shutdown") == [b"n1"]


def test_empty_write_workaround(client):
    # pyxs 0.4.1 refuses write(path, b""); the documented workaround sends the
    # identical wire payload through ack().
    with pytest.raises(ValueError):
        client.write(b"/pyxs/e", b"")
    client.ack(Op.WRITE, b"/pyxs/e\x00")
    assert client.read(b"/pyxs/e") == b""


def test_transactions(module_sim, client):
    client.write(b"/pyxs/t", b"0")
    client.transaction()
    assert client.read(b"/pyxs/t") == b"0"
    client.write(b"/pyxs/t", b"1")
    assert client.commit() is True
    assert client.read(b"/pyxs/t") == b"1"
    # conflict: commit() returns False on EAGAIN
    with pyxs.Client(unix_socket_path=module_sim.xs_path) as other:
        client.transaction()
        client.read(b"/pyxs/t")
        client.write(b"/pyxs/t", b"mine")
        other.write(b"/pyxs/t", b"theirs")
        assert client.commit() is False
    assert client.read(b"/pyxs/t") == b"theirs"
    client.transaction()
    client.write(b"/pyxs/t", b"gone")
    client.rollback()
    assert client.read(b"/pyxs/t") == b"theirs"


def test_monitor_watch(module_sim, client):
    with client.monitor() as m:
        m.watch(b"/pyxs/w", b"tok")
        ev = m.events.get(timeout=2)
        assert (ev.path, ev.token) == (b"/pyxs/w", b"tok")     # initial event
        with pyxs.Client(unix_socket_path=module_sim.xs_path) as other:
            other.write(b"/pyxs/w/x", b"1")
        ev = m.events.get(timeout=2)
        assert (ev.path, ev.token) == (b"/pyxs/w/x", b"tok")
        m.unwatch(b"/pyxs/w", b"tok")
        with pytest.raises(queue.Empty):
            client.write(b"/pyxs/w/y", b"1")
            m.events.get(timeout=0.2)


def test_suspend_via_pyxs_and_release_domain(module_sim, client):
    dom = 2
    with client.monitor() as m:
        m.watch(b"@releaseDomain", b"rel")
        m.watch(b"/local/domain/%d/control/shutdown" % dom, b"ctl")
        seen = {m.events.get(timeout=2).token, m.events.get(timeout=2).token}
        assert seen == {b"rel", b"ctl"}
        client.write(b"/local/domain/%d/control/shutdown" % dom, b"suspend")
        # our own write, then the guest's "" acknowledgement, then the suspend
        tokens = []
        while b"rel" not in tokens:
            tokens.append(m.events.get(timeout=3).token)
        assert client.read(b"/local/domain/%d/control/shutdown" % dom) == b""
        assert tokens.count(b"ctl") >= 2
    # Client.SU is False without /proc/xen: RESUME through ack() instead.
    with pytest.raises(pyxs.PyXSError):
        client.resume_domain(dom)
    client.ack(Op.RESUME, b"%d\x00" % dom)
