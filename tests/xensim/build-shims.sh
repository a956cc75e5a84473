#!/bin/sh
# Build the xensim shim libraries (libxenctrl.so.4.17, libxenguest.so.4.17,
# libxenevtchn.so.1) with the system C compiler.
#
#   tests/xensim/build-shims.sh [OUTDIR]      (default: tests/xensim/build/lib)
#
# Point LD_LIBRARY_PATH at OUTDIR.  The build is atomic (a new directory is
# swapped in) and serialised with flock(1) when available.  OUTDIR/.stamp
# holds a hash of the sources so callers can tell whether it is stale.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src="$here/csrc"
out=${1:-"$here/build/lib"}
cc=${CC:-cc}
parent=$(dirname "$out")
mkdir -p "$parent"

if command -v flock >/dev/null 2>&1; then
    exec 9>"$parent/.build-shims.lock"
    flock 9
fi

stamp=$(cat "$src"/*.c "$src"/*.h "$src"/*.map "$here/build-shims.sh" | sha256sum | cut -d' ' -f1)
if [ "${XENSIM_FORCE_BUILD:-0}" != 1 ] && [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$stamp" ]; then
    exit 0
fi

tmp=$(mktemp -d "$parent/.lib.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# The RPC helpers are hidden (XENSIM_HIDDEN); the version scripts export the
# public entry points under Xen's symbol versions (VERS_4.17.0, VERS_1.x).
cflags="-std=gnu11 -O2 -g -fPIC -Wall -Wextra -pthread -I$src ${CFLAGS:-}"

$cc $cflags -shared -o "$tmp/libxenevtchn.so.1.2" \
    -Wl,-soname,libxenevtchn.so.1 -Wl,--version-script="$src/libxenevtchn.map" \
    "$src/xenevtchn_shim.c" "$src/xensim_rpc.c"
ln -s libxenevtchn.so.1.2 "$tmp/libxenevtchn.so.1"

$cc $cflags -shared -o "$tmp/libxenctrl.so.4.17.0" \
    -Wl,-soname,libxenctrl.so.4.17 -Wl,--version-script="$src/libxenctrl.map" \
    "$src/xenctrl_shim.c" "$src/xensim_rpc.c"
ln -s libxenctrl.so.4.17.0 "$tmp/libxenctrl.so.4.17"

$cc $cflags -shared -o "$tmp/libxenguest.so.4.17.0" \
    -Wl,-soname,libxenguest.so.4.17 -Wl,--version-script="$src/libxenguest.map" \
    "$src/xenguest_shim.c" -L"$tmp" -Wl,--no-as-needed \
    -l:libxenctrl.so.4.17 -l:libxenevtchn.so.1
ln -s libxenguest.so.4.17.0 "$tmp/libxenguest.so.4.17"

echo "$stamp" > "$tmp/.stamp"
chmod 755 "$tmp"
rm -rf "$out.old"
if [ -e "$out" ]; then mv "$out" "$out.old"; fi
mv "$tmp" "$out"
trap - EXIT
rm -rf "$out.old"
