"""Boot a test-bed image in QEMU and reach its dom0 over SSH.

QEMU runs as our child with PR_SET_PDEATHSIG, so even a SIGKILLed harness leaves no QEMU
behind; SIGINT and SIGTERM go through stop(), which quits QEMU over QMP and kills it by pid
if it does not go. Every wait has a deadline.
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
        # More vCPUs than host cores makes TCG several times slower; fewer than 2 too.
        self.smp = smp or min(2, os.cpu_count() or 1)
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="xenbed-%s-" % image.flavour))
        self.log = log or (lambda msg: None)
        self.proc = None
        self.accel = None
        self.ssh_port = None
        self.boot_seconds = None
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
        xen_cmdline = ("console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all smap=0 "
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
            "-display", "none", "-no-reboot", "-serial", "file:%s" % self.serial_log,
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

    def wait_ready(self, deadline):
        while READY_MARKER not in self._serial_text():
            self._check_alive("booting")
            if time.monotonic() > deadline:
                raise TestbedError("dom0 not ready before the deadline\n" + self.serial_tail())
            time.sleep(0.25)
        while True:
            result = self.ssh("true", timeout=15, check=False)
            if result.rc == 0:
                return
            self._check_alive("waiting for sshd")
            if time.monotonic() > deadline:
                raise TestbedError("dom0 sshd not reachable: %s\n%s" % (result.stderr, self.serial_tail()))
            time.sleep(0.5)

    def stop(self):
        if self.proc is None:
            return
        if self.ssh_port:
            subprocess.run(self._ssh_base() + ["-O", "exit", "root@127.0.0.1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10, check=False)
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
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(3)
                s.connect(str(self.qmp_socket))
                s.recv(4096)
                for command in ("qmp_capabilities", "quit"):
                    s.sendall(json.dumps({"execute": command}).encode() + b"\n")
                    s.recv(4096)
        except OSError:
            pass

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def _check_alive(self, what):
        if self.proc is None or self.proc.poll() is not None:
            raise TestbedError("QEMU exited while %s\n%s" % (what, self.serial_tail()))

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
