#!/usr/bin/env bash
# Build (or find in the cache) the boot artifacts of one test-bed flavour and print their
# directory on the last line of stdout:
#   xen          the hypervisor as a multiboot ELF (QEMU's -kernel cannot take xen.gz)
#   vmlinuz, initrd.img   the dom0 kernel; the same vmlinuz boots the PV guests
#   dom0.img     raw ext4 root filesystem, packed with mkfs.ext4 -d (no loop mount needed)
#   id_ed25519   key that logs in as root@dom0
#   manifest     versions and build timings
# The directory name carries a hash of every input, so a changed input builds a new image and an
# unchanged one is reused. Building needs root (debootstrap, chroot); reusing does not.
#
#   build-image.sh FLAVOUR            FLAVOUR = bookworm (Xen 4.17) | trixie (Xen 4.20)
# Env: XEN_SUSPEND_CACHE (default ~/.cache/xen-suspend), XEN_SUSPEND_MIRROR (default: this
#      machine's own Debian mirror, read from its apt sources)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
guest_dir=$(cd "$here/../guest" && pwd)
flavour=${1:?usage: build-image.sh bookworm|trixie}
# shellcheck source=flavours.sh
. "$here/flavours.sh"

cache=${XEN_SUSPEND_CACHE:-${HOME:-/root}/.cache/xen-suspend}
key=$(cd "$here/.." && cat image/*.sh image/dom0-init guest/* | sha256sum | cut -c1-16)
out=$cache/images/$flavour-$key
if [ -s "$out/manifest" ]; then
  echo "$out"
  exit 0
fi

log() { printf '[build-image %s %(%H:%M:%S)T] %s\n' "$flavour" -1 "$*" >&2; }
[ "$(id -u)" = 0 ] || { echo "building the $flavour image needs root (debootstrap, chroot)" >&2; exit 3; }
for tool in debootstrap mkfs.ext4 busybox cpio gcc zstd xz; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run 'make deps' as root" >&2; exit 3; }
done

mirror=${XEN_SUSPEND_MIRROR:-}
if [ -z "$mirror" ]; then
  # The first non-security Debian archive this machine's apt already uses.
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -v '^ *#' | grep -Eo 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -1 | tr -d ' ') || true
fi
[ -n "$mirror" ] || { echo "no Debian mirror found in apt sources; set XEN_SUSPEND_MIRROR" >&2; exit 3; }

t0=$(date +%s)
work=$(mktemp -d "${cache}/tmp-$flavour.XXXXXX" 2>/dev/null || { mkdir -p "$cache"; mktemp -d "${cache}/tmp-$flavour.XXXXXX"; })
root=$work/rootfs
debs=$cache/debs/$suite
mkdir -p "$debs"
cleanup() {
  for m in var/cache/apt/archives dev/pts dev sys proc; do
    mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m"
  done
  rm -rf "$work"
}
trap cleanup EXIT

log "debootstrap $suite from $mirror"
debootstrap --variant=minbase --components=main --cache-dir="$debs" "$suite" "$root" "$mirror" \
  >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
t1=$(date +%s)

mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
mount --bind "$debs" "$root/var/cache/apt/archives"
# Package scripts must not start daemons on the build host.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
echo "deb $mirror $suite main" >"$root/etc/apt/sources.list"
# Only what mounts an ext4 root on virtio-blk: a smaller initramfs unpacks faster under TCG.
mkdir -p "$root/etc/initramfs-tools/conf.d"
printf 'MODULES=list\nCOMPRESS=zstd\n' >"$root/etc/initramfs-tools/conf.d/xen-suspend-testbed"
printf 'virtio_pci\nvirtio_blk\next4\n' >>"$root/etc/initramfs-tools/modules"
log "apt-get install $(echo $dom0_packages)"
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 \
  sh -c "apt-get update -q && apt-get install -y -q --no-install-recommends $(echo $dom0_packages)" \
  >"$work/apt.log" 2>&1 || { tail -40 "$work/apt.log" >&2; exit 1; }
umount "$root/var/cache/apt/archives"
rm -f "$root/usr/sbin/policy-rc.d"
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
t2=$(date +%s)

kver=$(ls "$root/lib/modules" | sort -V | tail -1)
xen_gz=$(ls "$root"/boot/xen-*.gz | sort -V | tail -1)
pkgver() { chroot "$root" dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo none; }

log "configuring dom0 (kernel $kver, $(basename "$xen_gz"))"
echo xen-suspend-dom0 >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 xen-suspend-dom0\n' >"$root/etc/hosts"
printf '/dev/vda / ext4 rw,relatime 0 1\n' >"$root/etc/fstab"
install -m 755 "$here/dom0-init" "$root/sbin/xen-suspend-init"
# No systemd, so no reboot/poweroff/halt: the init answers to those names (see dom0-init).
for verb in reboot poweroff halt; do
  [ -e "$root/sbin/$verb" ] || ln -s xen-suspend-init "$root/sbin/$verb"
done
ssh-keygen -q -t ed25519 -N '' -C xen-suspend-testbed -f "$work/id_ed25519"
install -d -m 700 "$root/root/.ssh"
install -m 600 "$work/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
printf 'PermitRootLogin prohibit-password\nUseDNS no\nMaxStartups 50\nMaxSessions 50\n' \
  >"$root/etc/ssh/sshd_config.d/xen-suspend-testbed.conf"
[ -e "$root/etc/ssh/ssh_host_ed25519_key" ] || chroot "$root" ssh-keygen -A >/dev/null
# Every guest console goes to /var/log/xen/console/guest-NAME.log, for diagnostics.
if [ -e "$root/etc/default/xen" ]; then
  sed -i '/^XENCONSOLED_ARGS=/d' "$root/etc/default/xen"
fi
echo 'XENCONSOLED_ARGS="--log=guest"' >>"$root/etc/default/xen"

log "building the guest initramfs"
mkdir -p "$root/srv/testbed"
evtchn_ko=$(find "$root/lib/modules/$kver" -name 'xen-evtchn.ko*' | head -1)
"$guest_dir/mk-guest-initrd.sh" "$root/srv/testbed/guest-initrd.cpio.gz" "$evtchn_ko" "$work"
cp "$root/boot/vmlinuz-$kver" "$root/srv/testbed/vmlinuz"

cp "$root/boot/vmlinuz-$kver" "$work/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$work/initrd.img"
zcat "$xen_gz" >"$work/xen"
t3=$(date +%s)

for m in dev/pts dev sys proc; do umount -l "$root/$m"; done
used_mb=$(du -sm "$root" | cut -f1)
# Room for the save/restore tests' images (guest memory saved to dom0's disk, several at once)
size_mb=$((used_mb * 13 / 10 + 1664))
log "packing ${used_mb} MiB into a ${size_mb} MiB ext4 image"
truncate -s "${size_mb}M" "$work/dom0.img"
mkfs.ext4 -q -F -L xen-suspend-dom0 -d "$root" "$work/dom0.img"
t4=$(date +%s)

cat >"$work/manifest" <<MANIFEST
flavour=$flavour
suite=$suite
xen_minor=$xen_minor
xen_hypervisor_version=$(pkgver "xen-hypervisor-${xen_minor}-amd64")
linux_kernel=$kver
pyxs_version=$(pkgver python3-pyxs)
cffi_version=$(pkgver python3-cffi)
build_seconds_debootstrap=$((t1 - t0))
build_seconds_packages=$((t2 - t1))
build_seconds_configure=$((t3 - t2))
build_seconds_pack=$((t4 - t3))
build_seconds_total=$((t4 - t0))
MANIFEST
rm -rf "$root" "$work/guest-initrd"
mkdir -p "$(dirname "$out")"
# Older images of this flavour were built from inputs that no longer exist.
rm -rf "$cache/images/$flavour"-*
mv "$work" "$out"
trap - EXIT
log "built in $((t4 - t0)) s: $out"
echo "$out"
