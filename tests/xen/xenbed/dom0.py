"""Boot a test-bed image in QEMU and reach its dom0 over SSH.

QEMU runs as our child with PR_SET_PDEATHSIG, so even a SIGKILLed harness leaves no QEMU
behind; SIGINT and SIGTERM go through stop(), which quits QEMU over QMP and kills it by pid
if it does not go. Every wait has a deadline.

A dom0 reboot is survived by the same QEMU process: the machine resets, Xen and dom0 boot again
from the same kernel files, the disk keeps what dom0 wrote (QEMU's snapshot overlay belongs to
the process, not to the boot) and SSH comes back on the same forwarded port. Only a reboot asked
for with reboot_dom0() resets the machine; any other one (Xen panicking, dom0 crashing and
rebooting) makes QEMU exit, as `-no-reboot` did, so a broken bed fails at once instead of
silently booting again under a test.
"""
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

READY_MARKER = "XEN-SUSPEND-TESTBED-READY"
STOPPING_MARKER = "XEN-SUSPEND-TESTBED-STOPPING"
# Xen's first serial line of every boot
XEN_BANNER = re.compile(r"\(XEN\) (\[[^]]*\] )?Xen version")  # with or without console_timestamps
DOM0_KERNEL_BANNER = re.compile(r"\] Linux version ")
# Lines that mean dom0 (or Xen) is broken rather than the test: under TCG a bad CPU model
# corrupts user space at random, and such a run must not pass as a flaky test.
CRASH_PATTERN = re.compile(r"segfault at|general protection|traps:|Kernel panic|BUG: |Oops:|"
                           r"\(XEN\) .*(Panic|FATAL)|domain_crash")
PR_SET_PDEATHSIG = 1
_live = set()


class TestbedError(RuntimeError):
    pass


class CommandFailed(TestbedError):
    def __init__(self, command, result):
        super().__init__("dom0 command failed (rc=%s): %s\n--- stdout\n%s\n--- stderr\n%s" % (
            result.rc, command, result.stdout[-3000:], result.stderr[-3000:]))
        self.result = result


@dataclass
class RebootTiming:
    """Seconds from `reboot` in dom0 to: its init stopping the system, Xen's first line of the
    next boot, dom0's kernel starting, dom0's init ready, SSH answering, and xenstored + `xl
    list` answering (the round trip)."""
    stop_s: float
    xen_up_s: float
    dom0_kernel_s: float
    ready_s: float
    ssh_s: float
    toolstack_s: float
    boot_id_before: str
    boot_id_after: str

    def figures(self):
        return {"reboot_to_xen_s": round(self.xen_up_s, 1), "reboot_to_dom0_kernel_s": round(self.dom0_kernel_s, 1),
                "reboot_to_init_ready_s": round(self.ready_s, 1), "reboot_to_ssh_s": round(self.ssh_s, 1),
                "reboot_round_trip_s": round(self.toolstack_s, 1)}


@dataclass
class CommandResult:
    rc: int
    stdout: str
    stderr: str
    seconds: float


def _die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _free_loopback_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _terminate_on_sigterm():
    """SIGTERM unwinds like Ctrl-C, so finally blocks and fixture teardown stop QEMU."""
    def handler(signum, frame):
        raise KeyboardInterrupt("SIGTERM")
    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, handler)
    except ValueError:
        pass  # not the main thread: PDEATHSIG still covers us


def stop_all():
    for vm in list(_live):
        vm.stop()


class Dom0:
    def __init__(self, image, accel=None, memory_mb=3072, dom0_memory_mb=1024, smp=None,
                 run_dir=None, log=None):
        self.image = image
        self.accel_wanted = accel or os.environ.get("XEN_SUSPEND_ACCEL", "auto")
        if self.accel_wanted not in ("auto", "tcg", "kvm"):
            raise ValueError("XEN_SUSPEND_ACCEL must be auto, tcg or kvm")
        self.memory_mb = memory_mb
        self.dom0_memory_mb = dom0_memory_mb
        # More vCPUs than host cores makes TCG several times slower; fewer than 2 too, for one
        # bed alone (beds side by side get 1 each: tests/xen/conftest.py, bed_vcpus).
        self.smp = smp or min(2, os.cpu_count() or 1)
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="xenbed-%s-" % image.flavour))
        self.log = log or (lambda msg: None)
        self.proc = None
        self.accel = None
        self.ssh_port = None
        self.boot_seconds = None
        self.reboots = []  # one RebootTiming per reboot_dom0()
        self.key = self.run_dir / "id_ed25519"
        self.serial_log = self.run_dir / "serial.log"

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self):
        return self.boot()

    def __exit__(self, *exc):
        self.stop()

    def boot(self, timeout=300):
        started = time.monotonic()
        self.start()
        try:
            self.wait_ready(deadline=started + timeout)
        except BaseException:
            self.stop()
            raise
        self.boot_seconds = time.monotonic() - started
        self.log("%s dom0 ready in %.1f s (accel %s)" % (self.image.flavour, self.boot_seconds, self.accel))
        return self

    def start(self):
        """Start QEMU (KVM when it proves to work, else TCG) and return without waiting."""
        _terminate_on_sigterm()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.image.file("id_ed25519"), self.key)
        os.chmod(self.key, 0o600)
        if self.accel_wanted in ("auto", "kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK):
            self._launch("kvm")
            if self._kvm_works() or self.accel_wanted == "kvm":
                self.log("booting with kvm")
                return
            self.log("KVM does not boot Xen here; falling back to TCG")
            self._kill_qemu()
        self._launch("tcg")
        self.log("booting with tcg")

    def _kvm_works(self, probe_seconds=15):
        deadline = time.monotonic() + probe_seconds
        while time.monotonic() < deadline:
            if "(XEN)" in self._serial_text():
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.25)
        return False

    def _launch(self, accel):
        self.accel = accel
        self.ssh_port = _free_loopback_port()
        if self.serial_log.exists():
            self.serial_log.unlink()
        xen_cmdline = ("console=com1 com1=115200,8n1 console_timestamps=boot loglvl=all guest_loglvl=all smap=0 "
                       "dom0_mem={m}M,max:{m}M dom0_max_vcpus={c}".format(m=self.dom0_memory_mb, c=self.smp))
        linux_cmdline = "root=/dev/vda rw console=hvc0 init=/sbin/xen-suspend-init"
        if accel == "kvm":
            cpu, accel_arg = "host", "kvm"
        else:
            # qemu64, not max: with XSAVE exposed, dom0 user space is randomly corrupted
            # under TCG; qemu64 also lacks SMAP, which Xen 4.17 mishandles there (smap=0 too).
            cpu, accel_arg = "qemu64", "tcg,thread=multi"
        self.qmp_socket = self.run_dir / "qmp.sock"
        cmd = [
            "qemu-system-x86_64", "-name", "xen-suspend-testbed-" + self.image.flavour,
            "-machine", "q35", "-accel", accel_arg, "-cpu", cpu,
            "-smp", str(self.smp), "-m", str(self.memory_mb),
            # a reset exits QEMU (as -no-reboot) unless reboot_dom0() allowed it over QMP
            "-display", "none", "-action", "reboot=shutdown", "-serial", "file:%s" % self.serial_log,
            # multiboot: Xen is the kernel, dom0's kernel and initrd are its modules
            "-kernel", str(self.image.file("xen")), "-append", xen_cmdline,
            "-initrd", "%s %s,%s" % (self.image.file("vmlinuz"), linux_cmdline, self.image.file("initrd.img")),
            # snapshot=on: the cached image stays pristine, every boot starts clean
            "-drive", "file=%s,if=virtio,format=raw,snapshot=on,cache=unsafe" % self.image.file("dom0.img"),
            # restrict=on: dom0 reaches nothing; only the forwarded SSH port comes in
            "-netdev", "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22" % self.ssh_port,
            "-device", "virtio-net-pci,netdev=net0,romfile=",
            "-qmp", "unix:%s,server=on,wait=off" % self.qmp_socket,
        ]
        (self.run_dir / "qemu-cmdline").write_text(" ".join(cmd) + "\n")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=open(self.run_dir / "qemu.out", "wb"),
            stderr=subprocess.STDOUT, preexec_fn=_die_with_parent, close_fds=True)
        (self.run_dir / "qemu.pid").write_text("%d\n" % self.proc.pid)
        _live.add(self)
        self.log("qemu pid %d (%s, %s), ssh on 127.0.0.1:%d, run dir %s"
                 % (self.proc.pid, accel, cpu, self.ssh_port, self.run_dir))

    def wait_ready(self, deadline, serial_offset=0):
        """Wait for dom0's init to report ready (in the serial log after serial_offset: an
        earlier boot's marker does not count), then for sshd."""
        while READY_MARKER not in self._serial_text()[serial_offset:]:
            self._check_alive("booting")
            if time.monotonic() > deadline:
                raise TestbedError("dom0 not ready before the deadline\n" + self.serial_tail())
            time.sleep(0.25)
        while True:
            result = self.ssh("true", timeout=15, check=False)
            if result.rc == 0:
                return
            self.log("ssh not yet: rc=%d after %.1f s: %s" % (result.rc, result.seconds, result.stderr.strip()[-200:]))
            self._check_alive("waiting for sshd")
            if time.monotonic() > deadline:
                raise TestbedError("dom0 sshd not reachable: %s\n%s" % (result.stderr, self.serial_tail()))
            time.sleep(0.5)

    def reboot_dom0(self, timeout=600):
        """Reboot dom0 (and so the Xen host) with its own `reboot`, in the same QEMU process;
        return once SSH, xenstored and `xl list` answer again. The RebootTiming is returned
        and kept in self.reboots."""
        boot_id_before = self.ssh("cat /proc/sys/kernel/random/boot_id").stdout.strip()
        offset = len(self._serial_text())
        self._qmp("set-action", {"reboot": "reset"})
        started = time.monotonic()
        deadline = started + timeout
        try:
            # our ssh session dies with dom0: its exit status means nothing
            self.ssh("reboot", check=False, timeout=30)
            self._close_ssh_master()
            stopped = self._wait_serial(STOPPING_MARKER, offset, deadline, "dom0 stopping")
            xen_up = self._wait_serial(XEN_BANNER, offset, deadline, "Xen booting again")
            dom0_kernel = self._wait_serial(DOM0_KERNEL_BANNER, offset, deadline, "dom0's kernel booting")
            ready = self._wait_serial(READY_MARKER, offset, deadline, "dom0's init ready")
            self.wait_ready(deadline, serial_offset=offset)
            ssh_up = time.monotonic()
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self._qmp("set-action", {"reboot": "shutdown"})
        # dom0 answers SSH as soon as sshd runs; the toolstack must answer too
        while True:
            checked = self.ssh("xenstore-read /local/domain/0/name && xl list >/dev/null"
                               " && cat /proc/sys/kernel/random/boot_id", check=False, timeout=30)
            if checked.rc == 0:
                break
            self._check_alive("waiting for xenstored and xl after the reboot")
            if time.monotonic() > deadline:
                raise TestbedError("xenstored or xl not answering after the reboot: %s" % checked.stderr)
            time.sleep(0.5)
        boot_id_after = checked.stdout.split()[-1]
        if boot_id_after == boot_id_before:
            raise TestbedError("dom0 did not reboot (same boot_id %s)" % boot_id_after)
        done = time.monotonic()
        timing = RebootTiming(stop_s=stopped - started, xen_up_s=xen_up - started,
                              dom0_kernel_s=dom0_kernel - started, ready_s=ready - started,
                              ssh_s=ssh_up - started, toolstack_s=done - started,
                              boot_id_before=boot_id_before, boot_id_after=boot_id_after)
        self.reboots.append(timing)
        self.log("%s dom0 rebooted: SSH back after %.1f s, xl after %.1f s"
                 % (self.image.flavour, timing.ssh_s, timing.toolstack_s))
        return timing

    def _wait_serial(self, pattern, offset, deadline, what):
        """The time at which `pattern` (a string or a regex) appeared in the serial log after
        `offset` (polled, so within ~0.2 s)."""
        while True:
            text = self._serial_text()[offset:]
            if (pattern.search(text) if hasattr(pattern, "search") else pattern in text):
                return time.monotonic()
            self._check_alive(what)
            if time.monotonic() > deadline:
                raise TestbedError("timed out waiting for %s\n%s" % (what, self.serial_tail()))
            time.sleep(0.2)

    def _close_ssh_master(self):
        if self.ssh_port:
            subprocess.run(self._ssh_base() + ["-O", "exit", "root@127.0.0.1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10, check=False)

    def stop(self):
        if self.proc is None:
            return
        self._close_ssh_master()
        self._kill_qemu()
        _live.discard(self)

    def _kill_qemu(self):
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        self._qmp_quit()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def _qmp_quit(self):
        try:
            self._qmp("quit")
        except (OSError, TestbedError):
            pass

    def _qmp(self, command, arguments=None, timeout=5):
        """Run one QMP command on a fresh connection and return its "return" value."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(str(self.qmp_socket))
            replies = s.makefile("rb")
            replies.readline()  # greeting
            for execute, args in (("qmp_capabilities", None), (command, arguments)):
                message = {"execute": execute}
                if args:
                    message["arguments"] = args
                s.sendall(json.dumps(message).encode() + b"\n")
                while True:  # events may come first
                    line = replies.readline()
                    if not line:
                        if execute == "quit":
                            return None
                        raise TestbedError("QMP connection closed during %s" % execute)
                    reply = json.loads(line)
                    if "error" in reply:
                        raise TestbedError("QMP %s failed: %s" % (execute, reply["error"]))
                    if "return" in reply:
                        break
            return reply["return"]

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def _check_alive(self, what):
        if not self.alive():
            raise TestbedError("QEMU exited while %s\n%s" % (what, self.serial_tail()))

    def alive(self):
        """Whether QEMU still runs (a QEMU that exited is reaped here, never left a zombie)."""
        return self.proc is not None and self.proc.poll() is None

    # ---------------------------------------------------------------- diagnostics
    def _serial_text(self):
        try:
            return self.serial_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def serial_tail(self, lines=60):
        text = self._serial_text().splitlines()[-lines:]
        return "--- serial log tail (%s)\n%s" % (self.serial_log, "\n".join(text))

    def crash_lines(self):
        """Crash reports of dom0's kernel or Xen seen so far (serial log and dom0 dmesg)."""
        found = [line for line in self._serial_text().splitlines() if CRASH_PATTERN.search(line)]
        if self.proc is not None:
            dmesg = self.ssh("dmesg", timeout=30, check=False).stdout
            found += [line for line in dmesg.splitlines() if CRASH_PATTERN.search(line)]
        return found

    # ---------------------------------------------------------------- commands in dom0
    def _ssh_base(self):
        return ["ssh", "-i", str(self.key), "-p", str(self.ssh_port),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
                # one TCP connection for all commands: a fresh handshake costs ~1 s under TCG
                "-o", "ControlMaster=auto", "-o", "ControlPath=%s/ssh-%%C" % self.run_dir,
                "-o", "ControlPersist=600"]

    def ssh(self, command, input=None, timeout=120, check=True):
        """Run a shell command in dom0; the remote side is killed by `timeout` too."""
        remote = "timeout -k 5 %d sh -c %s" % (timeout, _shell_quote(command))
        started = time.monotonic()
        try:
            proc = subprocess.run(self._ssh_base() + ["root@127.0.0.1", remote], input=input,
                                  capture_output=True, text=True, timeout=timeout + 15, check=False)
            result = CommandResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
        except subprocess.TimeoutExpired as exc:
            result = CommandResult(124, _text(exc.stdout), _text(exc.stderr) + "\n(timed out)",
                                   time.monotonic() - started)
        if result.rc == 255 and self.proc is not None and not self.alive():
            raise TestbedError("QEMU exited (status %s): cannot run %r\n%s"
                               % (self.proc.returncode, command, self.serial_tail()))
        if check and result.rc != 0:
            raise CommandFailed(command, result)
        return result

    def python(self, script, *args, timeout=120, check=True):
        """Run a Python script (text) with dom0's python3; returns the CommandResult."""
        quoted = " ".join(_shell_quote(str(a)) for a in args)
        return self.ssh("python3 - " + quoted, input=script, timeout=timeout, check=check)

    def ansible_inventory(self, path, host="dom0"):
        """Write an inventory that reaches this dom0 as users reach theirs: SSH, root, python3."""
        path = Path(path)
        path.write_text(
            "[xen_dom0]\n"
            "{host} ansible_host=127.0.0.1 ansible_port={port} ansible_user=root "
            "ansible_ssh_private_key_file={key} ansible_python_interpreter=/usr/bin/python3 "
            "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null' "
            "xen_flavour={flavour} xen_minor={minor}\n".format(
                host=host, port=self.ssh_port, key=self.key, flavour=self.image.flavour,
                minor=self.image.xen_minor))
        return path


def _shell_quote(text):
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _text(data):
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
