"""The xenstored wire protocol, spoken byte by byte over the Unix socket."""

import threading

import pytest

from xensim_testlib import RawXs
from xensim import xswire as w

FLEET = {"quiesce_ms": 50, "jitter_ms": 0, "heartbeat_ms": 0,
         "guests": [{"behaviour": "linux-pv", "count": 2}, {"behaviour": "hvm-nopv"}]}


@pytest.fixture
def xs(module_sim):
    c = RawXs(module_sim.xs_path)
    yield c
    c.close()


def test_basic_ops_and_error_payloads(xs):
    assert xs.write(b"/test/a/b", b"hello") == b"OK\0"
    assert xs.read(b"/test/a/b") == b"hello"
    assert xs.read(b"/test/a") == b""                      # parents created empty
    xs.write(b"/test/a/empty", b"")                         # empty value is legal
    assert xs.read(b"/test/a/empty") == b""
    xs.write(b"/test/a/bin", b"\x01\xff\0x")                 # any bytes in a value
    assert xs.read(b"/test/a/bin") == b"\x01\xff\0x"
    assert xs.ok(w.XS_DIRECTORY, b"/test/a\0") == b"b\0empty\0bin\0"
    assert xs.ok(w.XS_DIRECTORY, b"/test/a/b\0") == b""
    assert xs.ok(w.XS_MKDIR, b"/test/m/n\0") == b"OK\0"
    assert xs.ok(w.XS_MKDIR, b"/test/a\0") == b"OK\0"       # existing: fine
    assert xs.read(b"/test/a") == b""
    # error replies carry the errno name, NUL terminated, echoing req/tx ids
    assert xs.err(w.XS_READ, b"/test/nope\0") == "ENOENT"
    assert xs.err(w.XS_DIRECTORY, b"/test/nope\0") == "ENOENT"
    assert xs.ok(w.XS_RM, b"/test/a/nope\0") == b"OK\0"     # absent, parent exists
    assert xs.err(w.XS_RM, b"/test/nope/x\0") == "ENOENT"
    assert xs.ok(w.XS_RM, b"/test/a\0") == b"OK\0"
    assert xs.err(w.XS_READ, b"/test/a/b\0") == "ENOENT"


@pytest.mark.parametrize("path", [b"/a//b", b"/a/", b"/a b", b"/a/\xc3\xa9", b"", b"@foo", b"/x@y"])
def test_invalid_paths(xs, path):
    assert xs.err(w.XS_READ, path + b"\0") == "EINVAL"


def test_payload_must_be_nul_terminated(xs):
    assert xs.err(w.XS_READ, b"/local") == "EINVAL"
    assert xs.err(w.XS_WRITE, b"/local") == "EINVAL"


def test_relative_paths_are_dom0s(xs):
    xs.write(b"rel/x", b"1")
    assert xs.read(b"/local/domain/0/rel/x") == b"1"


def test_perms_ops(xs):
    xs.write(b"/test/p", b"")
    assert xs.ok(w.XS_GET_PERMS, b"/test/p\0") == b"n0\0"
    assert xs.ok(w.XS_SET_PERMS, b"/test/p\0n0\0r5\0b7\0") == b"OK\0"
    assert xs.ok(w.XS_GET_PERMS, b"/test/p\0") == b"n0\0r5\0b7\0"
    assert xs.err(w.XS_SET_PERMS, b"/test/p\0x5\0") == "EINVAL"
    assert xs.err(w.XS_SET_PERMS, b"/test/p\0") == "EINVAL"
    assert xs.ok(w.XS_GET_PERMS, b"@releaseDomain\0") == b"n0\0"
    # libxl's layout of a guest's area
    assert xs.ok(w.XS_GET_PERMS, b"/local/domain/1\0") == b"n0\0r1\0"
    assert xs.ok(w.XS_GET_PERMS, b"/local/domain/1/control\0") == b"n0\0r1\0"
    assert xs.ok(w.XS_GET_PERMS, b"/local/domain/1/control/shutdown\0") == b"n1\0"
    assert xs.ok(w.XS_GET_PERMS, b"/local/domain/1/device/suspend/event-channel\0") == b"n1\0"
    assert xs.ok(w.XS_GET_PERMS, b"/local/domain/1/data\0") == b"n1\0"
    assert xs.read(b"/local/domain/1/control/platform-feature-xs_reset_watches") == b"1"
    assert xs.read(b"/local/domain/1/control/platform-feature-multiprocessor-suspend") == b"1"
    assert xs.read(b"/libxl/1/type") == b"pv"
    assert xs.read(b"/libxl/3/type") == b"hvm"
    assert xs.ok(w.XS_DIRECTORY, b"/local/domain/3/control\0").count(b"feature-s3\0") == 1


def test_guest_identity_permissions(module_sim):
    g = RawXs(module_sim.xs_path)
    try:
        assert g.ok(w.XS_CONTROL, b"xensim-impersonate\x002\0") == b"OK\0"
        assert g.read(b"control/shutdown") == b""            # relative to its own ~
        assert g.err(w.XS_READ, b"/local/domain/1/name\0") == "EACCES"
        assert g.err(w.XS_WRITE, b"/local/domain/2/name\0x") == "EACCES"   # ~ read-only
        assert g.err(w.XS_WRITE, b"control/newnode\0x") == "EACCES"       # control read-only
        g.write(b"data/mine", b"1")
        assert g.ok(w.XS_GET_PERMS, b"data/mine\0") == b"n2\0"
        assert g.err(w.XS_SET_PERMS, b"data/mine\0n0\0") == "EPERM"     # no chown
        # special watches register, but events need permission on the node
        g.watch(b"@releaseDomain", b"t")
        assert g.wait_event() == (b"@releaseDomain", b"t")      # the initial one
        d0 = RawXs(module_sim.xs_path)
        d0.watch(b"@releaseDomain", b"d0")
        d0.drain()
        dom = module_sim.admin("spawn", behaviour="linux-pv")["domids"][0]
        module_sim.fault("destroy", dom)
        assert d0.wait_event() == (b"@releaseDomain", b"d0")
        assert g.wait_event(0.3) is None
        d0.close()
        assert g.err(w.XS_RESUME, b"2\0") == "EACCES"
        assert g.err(w.XS_INTRODUCE, b"2\x001\x001\0") == "EACCES"
    finally:
        g.close()


def test_watch_fires_on_registration_and_changes(xs, module_sim):
    xs.watch(b"/test/w", b"tok")
    assert xs.wait_event() == (b"/test/w", b"tok")          # fired once up front
    xs.write(b"/test/w/child/deep", b"1")
    assert xs.wait_event() == (b"/test/w/child/deep", b"tok")
    xs.write(b"/test/other", b"1")
    assert xs.wait_event(0.2) is None
    assert xs.err(w.XS_WATCH, b"/test/w\0tok\0") == "EEXIST"
    xs.watch(b"/test/w", b"tok2")                             # same path, new token
    assert xs.wait_event() == (b"/test/w", b"tok2")
    xs.ok(w.XS_RM, b"/test/w\0")
    evs = {xs.wait_event(), xs.wait_event()}
    assert evs == {(b"/test/w", b"tok"), (b"/test/w", b"tok2")}
    assert xs.ok(w.XS_UNWATCH, b"/test/w\0tok\0") == b"OK\0"
    assert xs.err(w.XS_UNWATCH, b"/test/w\0tok\0") == "ENOENT"
    xs.write(b"/test/w", b"x")
    assert xs.wait_event() == (b"/test/w", b"tok2")
    assert xs.wait_event(0.2) is None


def test_watch_other_connection_and_relative(module_sim, xs):
    other = RawXs(module_sim.xs_path)
    try:
        other.watch(b"relw", b"r")
        assert other.wait_event() == (b"relw", b"r")
        xs.write(b"/local/domain/0/relw/x", b"1")
        assert other.wait_event() == (b"relw/x", b"r")     # relative watch, relative path
    finally:
        other.close()


def test_rm_fires_descendant_watches(xs):
    xs.write(b"/test/rmw/a/b", b"1")
    xs.watch(b"/test/rmw/a/b", b"deep")
    assert xs.wait_event() == (b"/test/rmw/a/b", b"deep")
    xs.ok(w.XS_RM, b"/test/rmw\0")
    assert xs.wait_event() == (b"/test/rmw/a/b", b"deep")


def test_reset_watches(xs):
    xs.watch(b"/test/rw", b"t")
    xs.drain()
    tx = xs.tx_start()
    assert xs.ok(w.XS_RESET_WATCHES, b"\0") == b"OK\0"
    xs.write(b"/test/rw", b"1")
    assert xs.wait_event(0.2) is None
    assert xs.err(w.XS_READ, b"/test/rw\0", tx) == "ENOENT"   # its transactions are gone


def test_transactions_commit_abort_eagain(module_sim, xs):
    xs.write(b"/test/tx/v", b"0")
    xs.watch(b"/test/tx", b"t")
    xs.drain()
    tx = xs.tx_start()
    assert tx != 0
    assert xs.read(b"/test/tx/v", tx) == b"0"
    xs.write(b"/test/tx/v", b"1", tx)
    xs.write(b"/test/tx/new", b"n", tx)
    assert xs.read(b"/test/tx/v", tx) == b"1"
    assert xs.read(b"/test/tx/v") == b"0"                    # isolation
    assert xs.wait_event(0.1) is None                         # no events before commit
    assert xs.tx_end(tx) == (w.XS_TRANSACTION_END, b"OK\0")
    assert xs.read(b"/test/tx/v") == b"1"
    got = {xs.wait_event(), xs.wait_event()}
    assert got == {(b"/test/tx/v", b"t"), (b"/test/tx/new", b"t")}

    # conflict: another client changes a node we read -> EAGAIN
    other = RawXs(module_sim.xs_path)
    tx = xs.tx_start()
    xs.read(b"/test/tx/v", tx)
    xs.write(b"/test/tx/v", b"mine", tx)
    other.write(b"/test/tx/v", b"theirs")
    assert xs.tx_end(tx) == (w.XS_ERROR, b"EAGAIN\0")
    assert xs.read(b"/test/tx/v") == b"theirs"
    other.close()

    # abort
    tx = xs.tx_start()
    xs.write(b"/test/tx/v", b"aborted", tx)
    assert xs.tx_end(tx, commit=False) == (w.XS_TRANSACTION_END, b"OK\0")
    assert xs.read(b"/test/tx/v") == b"theirs"
    # the transaction is gone afterwards; unknown ids -> ENOENT
    assert xs.err(w.XS_READ, b"/test/tx/v\0", tx) == "ENOENT"
    assert xs.err(w.XS_READ, b"/test/tx/v\0", 987654) == "ENOENT"
    # nested start -> EBUSY; bad end argument -> EINVAL
    tx = xs.tx_start()
    assert xs.err(w.XS_TRANSACTION_START, b"\0", tx) == "EBUSY"
    assert xs.err(w.XS_TRANSACTION_END, b"X\0", tx) == "EINVAL"
    xs.tx_end(tx, commit=False)


def test_transaction_ids_are_per_connection(module_sim, xs):
    tx = xs.tx_start()
    other = RawXs(module_sim.xs_path)
    try:
        assert other.err(w.XS_READ, b"/local\0", tx) == "ENOENT"
    finally:
        other.close()
    xs.tx_end(tx, commit=False)


def test_domain_ops(module_sim, xs):
    assert xs.ok(w.XS_GET_DOMAIN_PATH, b"7\0") == b"/local/domain/7\0"
    assert xs.err(w.XS_GET_DOMAIN_PATH, b"x\0") == "EINVAL"
    assert xs.ok(w.XS_IS_DOMAIN_INTRODUCED, b"1\0") == b"T\0"
    assert xs.ok(w.XS_IS_DOMAIN_INTRODUCED, b"0\0") == b"T\0"
    assert xs.ok(w.XS_IS_DOMAIN_INTRODUCED, b"99\0") == b"F\0"
    assert xs.err(w.XS_RESUME, b"99\0") == "ENOENT"
    assert xs.ok(w.XS_RESUME, b"1\0") == b"OK\0"
    assert xs.err(w.XS_INTRODUCE, b"99\x001\x001\0") == "EINVAL"   # no such domain

    xs.watch(b"@releaseDomain", b"rel")
    xs.watch(b"@introduceDomain", b"intro")
    assert {xs.wait_event(), xs.wait_event()} == {(b"@releaseDomain", b"rel"),
                                                  (b"@introduceDomain", b"intro")}
    spawned = module_sim.admin("spawn", behaviour="linux-pv")["domids"][0]
    assert xs.wait_event() == (b"@introduceDomain", b"intro")
    assert xs.ok(w.XS_RELEASE, b"%d\0" % spawned) == b"OK\0"
    assert xs.wait_event() == (b"@releaseDomain", b"rel")
    assert xs.ok(w.XS_IS_DOMAIN_INTRODUCED, b"%d\0" % spawned) == b"F\0"
    assert xs.err(w.XS_RELEASE, b"%d\0" % spawned) == "ENOENT"
    assert xs.ok(w.XS_INTRODUCE, b"%d\x00123\x001\0" % spawned) == b"OK\0"
    assert xs.wait_event() == (b"@introduceDomain", b"intro")
    module_sim.fault("destroy", spawned)
    assert xs.wait_event() == (b"@releaseDomain", b"rel")
    xs.ok(w.XS_UNWATCH, b"@releaseDomain\0rel\0")
    xs.ok(w.XS_UNWATCH, b"@introduceDomain\0intro\0")


def test_unknown_ops_enosys(xs):
    for op in (20, 23, 26, 99, w.XS_WATCH_EVENT, w.XS_ERROR):
        assert xs.err(op, b"\0") == "ENOSYS"


def test_oversized_payload_drops_connection(module_sim):
    c = RawXs(module_sim.xs_path)
    c.send_raw(w.HEADER.pack(w.XS_WRITE, 1, 0, 5000) + b"x" * 5000)
    with pytest.raises((ConnectionError, OSError)):
        c._packet(timeout=2)
    c.close()
    # the daemon is fine
    c = RawXs(module_sim.xs_path)
    assert c.read(b"/local/domain/1/name") == b"linux-pv-1"
    c.close()


def test_directory_e2big_and_directory_part(xs):
    names = [b"child-with-a-long-name-%04d" % i for i in range(300)]   # ~8 KiB
    tx = xs.tx_start()
    for n in names:
        xs.write(b"/test/big/" + n, b"", tx)
    assert xs.tx_end(tx)[0] == w.XS_TRANSACTION_END
    assert xs.err(w.XS_DIRECTORY, b"/test/big\0") == "E2BIG"
    got, off, gen0 = [], 0, None
    while True:
        p = xs.ok(w.XS_DIRECTORY_PART, b"/test/big\0%d\0" % off)
        assert len(p) <= 4096
        gen, rest = p.split(b"\0", 1)
        gen0 = gen0 or gen
        assert gen == gen0
        if rest == b"\0" or rest == b"":
            break
        final = rest.endswith(b"\0\0")
        chunk = rest[:-1] if final else rest
        got += chunk.rstrip(b"\0").split(b"\0")
        off += len(chunk)
        if final:
            break
    assert got == names


def test_many_concurrent_clients(module_sim):
    errors = []

    def worker(i):
        try:
            c = RawXs(module_sim.xs_path)
            for j in range(20):
                c.write(b"/test/conc/%d/%d" % (i, j), b"%d" % j)
                assert c.read(b"/test/conc/%d/%d" % (i, j)) == b"%d" % j
            c.close()
        except Exception as e:  # pragma: no cover
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    c = RawXs(module_sim.xs_path)
    assert len(c.ok(w.XS_DIRECTORY, b"/test/conc\0").split(b"\0")) == 41
    c.close()


def test_release_domain_latch(module_sim, xs):
    """C xenstored: @releaseDomain fires once per shutdown until XS_RESUME."""
    from xensim_testlib import Xc
    xc = Xc(module_sim)
    dom = 3  # hvm-nopv: only the direct path affects it
    xs.watch(b"@releaseDomain", b"L")
    xs.drain()
    xc.shutdown(dom, 2)
    assert xs.wait_event() == (b"@releaseDomain", b"L")
    xc.resume(dom, 1)
    xc.shutdown(dom, 2)                                  # latched: nothing
    assert xs.wait_event(0.3) is None
    xc.resume(dom, 1)
    assert xs.ok(w.XS_RESUME, b"%d\0" % dom) == b"OK\0"   # re-arm
    xc.shutdown(dom, 2)
    assert xs.wait_event() == (b"@releaseDomain", b"L")
    xc.resume(dom, 1)
    xs.ok(w.XS_RESUME, b"%d\0" % dom)
    xs.ok(w.XS_UNWATCH, b"@releaseDomain\0L\0")
    xc.close()


def test_fragmented_and_pipelined_requests(module_sim):
    import time
    c = RawXs(module_sim.xs_path)
    try:
        msg = w.pack(w.XS_WRITE, 41, 0, b"/test/frag\0abc")
        for i in range(0, len(msg), 5):          # dribbled in 5-byte pieces
            c.send_raw(msg[i:i + 5])
            time.sleep(0.002)
        op, rq, tx, p = c._packet()
        assert (op, rq, p) == (w.XS_WRITE, 41, b"OK\0")
        # several requests in one segment; replies matched by req_id
        c.send_raw(b"".join(w.pack(w.XS_READ, 100 + i, 0, b"/test/frag\0") for i in range(10)))
        got = [c._packet() for _ in range(10)]
        assert [g[1] for g in got] == list(range(100, 110))
        assert all(g[3] == b"abc" for g in got)
    finally:
        c.close()
