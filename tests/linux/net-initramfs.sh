#!/bin/bash
# Builds (once) the Linux-guest network test's initramfs: static busybox,
# tests/linux/net-init as /init, virtio_net and virtio_pci with their
# dependencies from Debian's kernel package, and the static nettool (also
# left at $DVMM_BUILD/linux/nettool for the host side).  Prints its path.
# Cached in $DVMM_BUILD/linux/.
. "$(dirname "$(readlink -f "$0")")/../lib/linux-kernel.sh"
here=$(dirname "$(readlink -f "$0")")
set -o pipefail
linux_kernel_fetch >&2 || exit 1
build=$(dvmm_build_dir) || exit 1
mkdir -p "$build/linux" || exit 1
tool=$build/linux/nettool
if [ ! -x "$tool" ] || [ "$here/nettool.c" -nt "$tool" ]; then
    ${CC:-gcc} -std=gnu11 -Wall -Wextra -Werror -O2 -static -o "$tool" "$here/nettool.c" || exit 1
fi
mods=$(linux_module_closure virtio_net virtio_pci) || exit 1
key=$( { cat "$here/net-init"; sha256sum "$tool" /bin/busybox; echo "$LINUX_KVER $mods"; } |
       sha256sum | cut -c1-12)
out=$build/linux/net-initramfs-$LINUX_KVER-$key.cpio.gz
if [ ! -f "$out" ]; then
    stage=$(mktemp -d "$build/linux/.net-stage.XXXXXX") || exit 1
    trap 'rm -rf "$stage" "$stage.cpio.gz"' EXIT
    mkdir -p "$stage/bin" "$stage/modules" &&
        cp /bin/busybox "$tool" "$stage/bin/" &&
        install -m 755 "$here/net-init" "$stage/init" || exit 1
    for m in $mods; do
        cp "$m" "$stage/modules/" && basename "$m" >>"$stage/modules/order" || exit 1
    done
    (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 | gzip -1) \
        >"$stage.cpio.gz" && mv "$stage.cpio.gz" "$out" || exit 1
fi
echo "$out"
