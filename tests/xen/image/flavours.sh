# shellcheck shell=bash
# One Debian release per Xen generation: bookworm = Xen 4.17 (before the 4.18 libxenctrl ABI
# change), trixie = Xen 4.20 (after it). Sourced by build-image.sh with $flavour set.
case "$flavour" in
  bookworm) suite=bookworm; xen_minor=4.17 ;;
  trixie)   suite=trixie;   xen_minor=4.20 ;;
  *) echo "unknown flavour '$flavour' (bookworm|trixie)" >&2; exit 2 ;;
esac
dom0_packages="linux-image-amd64 initramfs-tools zstd kmod udev
  xen-hypervisor-${xen_minor}-amd64 xen-utils-${xen_minor} xenstore-utils
  python3 python3-cffi python3-pyxs
  openssh-server iproute2 procps psmisc"
