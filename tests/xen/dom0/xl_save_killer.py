"""Runs IN a test-bed dom0 (python3 - UUID DOMID MIN_BYTES TIMEOUT < this file): wait for the
`xl save` of one guest (started by whatever is under test), and SIGKILL that xl process once
the image it writes holds MIN_BYTES: a save killed in the middle, as an OOM kill or an
operator's kill -9 would. Prints one JSON object: killed_pid, image, bytes_at_kill, argv,
seconds_waited; or error.

The xl process is found by its command line (xl ... save ... naming the guest by domid, name
or an image path with its UUID), the image through its open file descriptors.
"""
import json
import os
import signal
import sys
import time

uuid, domid, min_bytes, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])


def xl_saves():
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        # xl itself, or Debian's wrapper script running it (sh /usr/sbin/xl save ...)
        if any(os.path.basename(a) == "xl" for a in argv[:2]) and "save" in argv[1:4]:
            yield int(pid), argv


def written_image(pid):
    """The regular file the xl process has open for writing its image, or None."""
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            if target.startswith("/") and (uuid in target or ".xlsave" in target or ".part" in target):
                return target
    except OSError:
        pass
    return None


started = time.monotonic()
out = {"killed_pid": None, "seen": []}
while time.monotonic() - started < timeout and out["killed_pid"] is None:
    for pid, argv in xl_saves():
        if argv not in out["seen"]:
            out["seen"].append(argv)
        if not (domid in argv or any(uuid in a for a in argv) or written_image(pid)):
            continue
        image = written_image(pid)
        if image is None:
            continue
        try:
            size = os.stat(image.replace(" (deleted)", "")).st_size
        except OSError:
            continue
        if size >= min_bytes:
            os.kill(pid, signal.SIGKILL)
            out.update(killed_pid=pid, image=image, bytes_at_kill=size, argv=argv)
            break
    time.sleep(0.05)
out["seconds_waited"] = round(time.monotonic() - started, 2)
if out["killed_pid"] is None:
    out["error"] = "no xl save of %s (domid %s) reached %d bytes within %d s" % (uuid, domid, min_bytes, timeout)
print(json.dumps(out))
