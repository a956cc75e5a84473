# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

import json
import multiprocessing
import os
import stat

import pytest

from ansible_collections.xen.suspend.plugins.module_utils import _ledger
from ansible_collections.xen.suspend.plugins.module_utils._errors import LedgerError
from ansible_collections.xen.suspend.plugins.module_utils._ledger import Ledger, make_entry

UUID_A = "11111111-2222-3333-4444-555555555555"
UUID_B = "66666666-7777-8888-9999-000000000000"


def add(uuid, domid=3, name="web1", state="intent"):
    def mutate(entries):
        entries[uuid] = make_entry(uuid, domid, name, "xenstore", state)
    return mutate


def test_missing_ledger_reads_empty_and_is_created_private(tmp_path):
    ledger = Ledger(str(tmp_path / "state" / "ledger.json"))
    assert ledger.read() == {}
    assert not (tmp_path / "state").exists()  # reading never creates anything
    ledger.update(add(UUID_A))
    assert stat.S_IMODE(os.stat(str(tmp_path / "state")).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(ledger.path).st_mode) == 0o600
    document = json.loads((tmp_path / "state" / "ledger.json").read_text())
    assert document["format"] == "xen.suspend.ledger" and document["version"] == 1
    assert document["entries"][UUID_A]["state"] == "intent"
    assert ledger.writes == 1


def test_file_mode_does_not_depend_on_umask(tmp_path):
    old = os.umask(0)
    try:
        ledger = Ledger(str(tmp_path / "l.json"))
        ledger.update(add(UUID_A))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(ledger.path).st_mode) == 0o600


def test_entries_round_trip_and_removal(tmp_path):
    ledger = Ledger(str(tmp_path / "l.json"))
    ledger.update(add(UUID_A))
    ledger.update(add(UUID_B, domid=4, name="db1", state="suspended"))
    entries = ledger.read()
    assert set(entries) == {UUID_A, UUID_B}
    assert entries[UUID_B]["suspended_at"] is not None and entries[UUID_A]["suspended_at"] is None
    ledger.update(lambda e: e.pop(UUID_A))
    assert set(ledger.read()) == {UUID_B}


def test_no_write_when_nothing_changes(tmp_path):
    ledger = Ledger(str(tmp_path / "l.json"))
    ledger.update(add(UUID_A))
    before = os.stat(ledger.path).st_ino
    ledger.update(lambda entries: None)
    assert ledger.writes == 1
    assert os.stat(ledger.path).st_ino == before


@pytest.mark.parametrize("ordered,durable,expected", [
    (False, True, [False, True]),   # the file, then its directory
    (False, False, [False]),        # the file only: whatever name survives a crash is complete
    (True, True, [True]),           # ext4 commits the replacing rename after the data: one flush
    (True, False, []),
], ids=["fsync-file-and-dir", "fsync-file-lazy", "ordered-one-flush", "ordered-lazy"])
def test_update_replaces_atomically_with_fsync(tmp_path, monkeypatch, ordered, durable, expected):
    ledger = Ledger(str(tmp_path / "l.json"))
    ledger.update(add(UUID_A))
    monkeypatch.setattr(_ledger, "ordered_replace", lambda directory: ordered)
    synced = []
    real_fsync = os.fsync
    renamed = []
    real_rename = os.rename

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            assert not renamed, "the file is flushed before its rename"
        return real_fsync(fd)

    def rename(src, dst):
        if dst == ledger.path + ".bak":  # the previous ledger kept as a backup
            assert json.load(open(src))["entries"].keys() == {UUID_A}
            return real_rename(src, dst)
        renamed.append((os.path.dirname(src), dst))
        # the complete new document is already under the temporary name
        assert json.load(open(src))["entries"][UUID_B]["name"] == "db1"
        assert json.load(open(dst))["entries"].keys() == {UUID_A}
        return real_rename(src, dst)

    monkeypatch.setattr(_ledger.os, "fsync", fsync)
    monkeypatch.setattr(_ledger.os, "rename", rename)
    ledger.update(add(UUID_B, name="db1"), durable=durable)
    assert synced == expected
    assert renamed == [(str(tmp_path), ledger.path)]
    backup = json.load(open(ledger.path + ".bak"))["entries"]
    assert backup.keys() == {UUID_A}  # the ledger before this write


def test_the_first_ledger_is_flushed_file_then_directory_even_on_ext4(tmp_path, monkeypatch):
    """Nothing is replaced, so ext4's ordering of a replacing rename does not apply."""
    monkeypatch.setattr(_ledger, "ordered_replace", lambda directory: True)
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        return real_fsync(fd)

    monkeypatch.setattr(_ledger.os, "fsync", fsync)
    Ledger(str(tmp_path / "l.json")).update(add(UUID_A))
    assert synced == [False, True]


def test_a_directory_flush_that_fails_is_an_error(tmp_path, monkeypatch):
    """The intent's request must not follow a write nobody knows reached the disk."""
    ledger = Ledger(str(tmp_path / "l.json"))
    ledger.update(add(UUID_A))
    monkeypatch.setattr(_ledger, "ordered_replace", lambda directory: True)
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(5, "Input/output error")
        return real_fsync(fd)

    monkeypatch.setattr(_ledger.os, "fsync", fsync)
    with pytest.raises(LedgerError) as caught:
        ledger.update(add(UUID_B))
    assert "Input/output error" in str(caught.value)
    ledger.update(add(UUID_A, name="lazy"), durable=False)  # a lazy write does not flush


MOUNTINFO = """\
22 27 0:20 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 27 254:16 / /var/lib rw,relatime shared:1 - ext4 /dev/vdb rw,data=writeback
32 27 254:32 / /srv rw,relatime - xfs /dev/vdc rw,attr2
33 27 254:48 / /opt rw,relatime - ext4 /dev/vdd rw,noauto_da_alloc
"""


@pytest.mark.parametrize("device,expected", [
    ((254, 0), True), ((254, 16), False), ((254, 32), False), ((254, 48), False), ((9, 9), False),
], ids=["ext4", "ext4-data-writeback", "xfs", "ext4-noauto_da_alloc", "unknown"])
def test_ordered_replace_only_on_ext4_with_its_defaults(tmp_path, monkeypatch, device, expected):
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)

    class Stat(object):
        st_dev = os.makedev(*device)

    monkeypatch.setattr(_ledger, "_ordered_replace_cache", {})
    monkeypatch.setattr(_ledger.os, "stat", lambda path: Stat())
    assert _ledger.ordered_replace("/anywhere", mountinfo=str(info)) is expected


def test_only_confirmations_and_removals_are_lazy(tmp_path, monkeypatch):
    from ansible_collections.xen.suspend.plugins.module_utils import _ledger_transitions as t
    ledger = Ledger(str(tmp_path / "l.json"))
    seen = []
    real_update = ledger.update

    def update(mutate, durable=True):
        seen.append(durable)
        return real_update(mutate, durable)

    monkeypatch.setattr(ledger, "update", update)
    entry = make_entry(UUID_A, 3, "web1", "xenstore", intent_id="i1")
    t.apply_transitions(ledger, [t.RecordIntent(entry)])
    t.apply_transitions(ledger, [t.ConfirmSuspended(UUID_A, "i1", {"domid": 3, "cpu_time_ns": 1})])
    t.apply_transitions(ledger, [t.MarkResuming(UUID_A, "i1")])
    t.apply_transitions(ledger, [t.Settle(UUID_A, "i1", t.RESUMED)])
    t.apply_transitions(ledger, [t.RecordIntent(entry), t.Settle(UUID_B, None, t.GONE)])
    t.apply_transitions(ledger, [t.KeepPending(UUID_A, "i1", 0, "answered")])
    t.apply_transitions(ledger, [t.ChangeMethod(UUID_A, "i1", "xenstore", True, 0)])
    assert seen == [True, False, True, False, True, True, True]


def test_failed_write_keeps_old_ledger_and_leaves_no_temp(tmp_path, monkeypatch):
    ledger = Ledger(str(tmp_path / "l.json"))
    ledger.update(add(UUID_A))
    original = open(ledger.path, "rb").read()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_ledger, "ordered_replace", lambda directory: False)
    monkeypatch.setattr(_ledger.os, "fsync", broken_fsync)
    with pytest.raises(LedgerError) as caught:
        ledger.update(add(UUID_B))
    assert "No space left" in str(caught.value)
    assert open(ledger.path, "rb").read() == original
    assert sorted(os.listdir(str(tmp_path))) == ["l.json", "l.json.lock"]


@pytest.mark.parametrize("content,message", [
    (b"", "empty"),
    (b'{"format": "xen.suspend.ledger", "version": 1, "entr', "corrupt or truncated"),
    (b"\xff\xfe garbage", "corrupt"),
    (b'["not", "a", "ledger"]', "not a xen.suspend ledger"),
    (b'{"format": "xen.suspend.ledger", "version": 99, "entries": {}}', "unsupported version"),
    (b'{"format": "xen.suspend.ledger", "version": 1, "entries": {"x": {"uuid": "y"}}}', "malformed"),
])
def test_damaged_ledger_is_an_error_and_never_replaced(tmp_path, content, message):
    path = tmp_path / "l.json"
    path.write_bytes(content)
    ledger = Ledger(str(path))
    with pytest.raises(LedgerError) as caught:
        ledger.read()
    assert message in str(caught.value)
    with pytest.raises(LedgerError):
        ledger.update(add(UUID_A))
    assert path.read_bytes() == content


def _writer(path, uuid, count):
    ledger = Ledger(path)
    for index in range(count):
        ledger.update(add("%s%04d" % (uuid[:-4], index), domid=index))


def test_concurrent_writers_do_not_lose_entries(tmp_path):
    path = str(tmp_path / "l.json")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_writer, args=(path, uuid, 15)) for uuid in (UUID_A, UUID_B)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    assert len(Ledger(path).read()) == 30
