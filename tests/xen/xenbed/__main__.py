"""Command line for the test bed (run from tests/xen: python3 -m xenbed ...).

  build FLAVOUR             build or find the cached image, print its directory
  up FLAVOUR [-- CMD...]    boot it; run CMD in dom0 and stop, or print how to reach dom0
                            and keep it running until Ctrl-C / SIGTERM (or until QEMU exits)
  cross-version FROM TO     save a guest on FROM's Xen, restore the image on TO's, print a
                            JSON report (one bed at a time)
"""
import argparse
import sys
import time

from . import cross_version
from .dom0 import Dom0, stop_all
from .images import FLAVOURS, ensure_image


def log(message):
    print("[xenbed %s] %s" % (time.strftime("%H:%M:%S"), message), file=sys.stderr, flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="xenbed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)
    build = sub.add_parser("build")
    build.add_argument("flavour", choices=FLAVOURS)
    up = sub.add_parser("up")
    up.add_argument("flavour", choices=FLAVOURS)
    up.add_argument("--inventory", help="also write an Ansible inventory for this dom0 here")
    cross = sub.add_parser("cross-version")
    cross.add_argument("source", choices=FLAVOURS)
    cross.add_argument("target", choices=FLAVOURS)
    argv = sys.argv[1:] if argv is None else argv
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)

    if args.verb == "cross-version":
        try:
            return cross_version.main(args.source, args.target, log)
        finally:
            stop_all()
    image = ensure_image(args.flavour)
    if args.verb == "build":
        print(image.path)
        return 0
    try:
        vm = Dom0(image, log=log).boot()
        if args.inventory:
            log("inventory: %s" % vm.ansible_inventory(args.inventory))
        if command:
            result = vm.ssh(" ".join(command), check=False, timeout=3600)
            sys.stdout.write(result.stdout)
            sys.stderr.write(result.stderr)
            return result.rc
        log("ssh -i %s -p %d root@127.0.0.1   (Ctrl-C stops it)" % (vm.key, vm.ssh_port))
        # Watch QEMU rather than sleep: a QEMU that exited (Xen crashed, dom0 powered off) ends
        # this command with QEMU's status instead of leaving a zombie behind a live-looking bed.
        while vm.alive():
            time.sleep(1)
        rc = vm.proc.returncode
        log("QEMU exited (status %s)\n%s" % (rc, vm.serial_tail(20)))
        return 1
    except KeyboardInterrupt:
        log("interrupted: stopping QEMU")
        return 130
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
