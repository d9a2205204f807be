#!/bin/bash
# Builds (once) the Linux crash-consistency test's initramfs: static
# busybox, tests/linux/blkcrash-init as /init, and virtio_blk, virtio_pci,
# ext4 and crc32c_generic (ext4's checksums) with their dependencies from
# Debian's kernel package.  Prints its path.  Cached in $DVMM_BUILD/linux/.
. "$(dirname "$(readlink -f "$0")")/../lib/linux-kernel.sh"
here=$(dirname "$(readlink -f "$0")")
set -o pipefail
linux_kernel_fetch >&2 || exit 1
build=$(dvmm_build_dir) || exit 1
mkdir -p "$build/linux" || exit 1
mods=$(linux_module_closure virtio_blk virtio_pci ext4 crc32c_generic) || exit 1
key=$( { cat "$here/blkcrash-init"; sha256sum /bin/busybox; echo "$LINUX_KVER $mods"; } |
       sha256sum | cut -c1-12)
out=$build/linux/blkcrash-initramfs-$LINUX_KVER-$key.cpio.gz
if [ ! -f "$out" ]; then
    stage=$(mktemp -d "$build/linux/.blkcrash-stage.XXXXXX") || exit 1
    trap 'rm -rf "$stage" "$stage.cpio.gz"' EXIT
    mkdir -p "$stage/bin" "$stage/modules" &&
        cp /bin/busybox "$stage/bin/" &&
        install -m 755 "$here/blkcrash-init" "$stage/init" || exit 1
    for m in $mods; do
        cp "$m" "$stage/modules/" && basename "$m" >>"$stage/modules/order" || exit 1
    done
    (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 | gzip -1) \
        >"$stage.cpio.gz" && mv "$stage.cpio.gz" "$out" || exit 1
fi
echo "$out"
