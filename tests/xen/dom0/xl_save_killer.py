"""Runs IN a test-bed dom0 (python3 - UUID DOMID MIN_BYTES TIMEOUT [READY] < this file): wait for
the `xl save` of one guest (started by whatever is under test), and SIGKILL that xl process
once the image it writes holds MIN_BYTES: a save killed in the middle, as an OOM kill or an
operator's kill -9 would. Prints one JSON object: killed_pid, image, bytes_at_kill, argv,
seconds_waited; or error. READY, a path, is created once the first look through /proc is done:
the caller starts the save only then (a 96 MiB save takes 3-4 s, about what python3 needs to
start in a dom0 under TCG).

The xl process is found by its command line (xl ... save ... naming the guest by domid, name
or an image path with its UUID), the image by the path on that command line (else through
its open file descriptors).
"""
import json
import os
import signal
import sys
import time

uuid, domid, min_bytes, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
ready = sys.argv[5] if len(sys.argv) > 5 else None


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


def written_image(pid, argv=()):
    """The image the xl process writes: the path on its command line (`xl save -p DOMID PATH`),
    else the regular file it has open for its image, or None. Not any file naming the UUID:
    xl also holds the caller's claim lock (claims/UUID.lock), inherited across the exec."""
    for arg in argv[2:]:
        if arg.startswith("/") and (".xlsave" in arg or arg.endswith(".part")):
            return arg
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            if target.endswith(".lock") or not target.startswith("/"):
                continue
            if uuid in target or ".xlsave" in target or ".part" in target:
                return target
    except OSError:
        pass
    return None


def watch_closely(pid, argv):
    """One xl save of our guest found: look only at it (a look through all of /proc takes a
    good part of a second under TCG, the whole save 3-4 s) until its image holds min_bytes,
    then SIGKILL it. False when it ended first."""
    while os.path.exists("/proc/%d" % pid):
        image = written_image(pid, argv)
        if image is not None:
            out["image_seen"] = image
            try:
                size = os.stat(image.replace(" (deleted)", "")).st_size
            except OSError:
                size = 0
            out["largest_seen"] = max(out.get("largest_seen", 0), size)
            if size >= min_bytes:
                os.kill(pid, signal.SIGKILL)
                out.update(killed_pid=pid, image=image, bytes_at_kill=size, argv=argv)
                return True
        time.sleep(0.002)
    return False


started = time.monotonic()
out = {"killed_pid": None, "seen": []}
while time.monotonic() - started < timeout and out["killed_pid"] is None:
    for pid, argv in xl_saves():
        if argv not in out["seen"]:
            out["seen"].append(argv)
        # xl itself, not Debian's wrapper shell (which never has the image open)
        if os.path.basename(argv[0]) != "xl":
            continue
        if not (domid in argv or any(uuid in a for a in argv) or written_image(pid, argv)):
            continue
        if watch_closely(pid, argv):
            break
    if ready is not None:
        open(ready, "w").close()
        ready = None
    time.sleep(0.02)
out["seconds_waited"] = round(time.monotonic() - started, 2)
if out["killed_pid"] is None:
    out["error"] = "no xl save of %s (domid %s) reached %d bytes within %d s" % (uuid, domid, min_bytes, timeout)
print(json.dumps(out))
