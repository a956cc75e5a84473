#!/usr/bin/env bash
# Pack the PV guests' initramfs: busybox, the testbed guest agent (static) and xen-evtchn.ko.
#   mk-guest-initrd.sh OUT.cpio.gz XEN_EVTCHN_KO WORKDIR
# The guest kernel command line picks the behaviour:
#   testbed.evtchn=1   also speak the event-channel suspend protocol (see testbed-guest-agent.c)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1 evtchn_ko=$2 work=$3
tree=$work/guest-initrd
rm -rf "$tree"
mkdir -p "$tree"/{bin,sbin,proc,sys,dev,tmp,lib}
cp "$(command -v busybox)" "$tree/bin/busybox"
for applet in $("$tree/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$tree/bin/$applet"
done
gcc -static -O2 -Wall -Werror -o "$tree/bin/testbed-guest-agent" "$here/testbed-guest-agent.c"
# busybox insmod cannot read compressed modules
case "$evtchn_ko" in
  *.ko.xz)  xz -dc "$evtchn_ko" >"$tree/lib/xen-evtchn.ko" ;;
  *.ko.zst) zstd -qdc "$evtchn_ko" >"$tree/lib/xen-evtchn.ko" ;;
  *.ko)     cp "$evtchn_ko" "$tree/lib/xen-evtchn.ko" ;;
  *) echo "xen-evtchn module not found ($evtchn_ko)" >&2; exit 1 ;;
esac
install -m 755 "$here/guest-init" "$tree/init"
(cd "$tree" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -9 >"$out"
