#!/bin/bash
# Builds (once) the Linux smoke test's initramfs: static busybox and
# tests/linux/smoke-init.  Prints its path.  Cached in $DVMM_BUILD/linux/.
. "$(dirname "$(readlink -f "$0")")/../lib/linux-kernel.sh"
here=$(dirname "$(readlink -f "$0")")
build=$(dvmm_build_dir) || exit 1
key=$( { cat "$here/smoke-init"; sha256sum /bin/busybox; } | sha256sum | cut -c1-12)
out=$build/linux/smoke-initramfs-$key.cpio.gz
if [ ! -f "$out" ]; then
    mkdir -p "$build/linux" || exit 1
    stage=$(mktemp -d "$build/linux/.smoke-stage.XXXXXX") || exit 1
    trap 'rm -rf "$stage" "$stage.cpio.gz"' EXIT
    mkdir -p "$stage/bin" &&
        cp /bin/busybox "$stage/bin/busybox" &&
        install -m 755 "$here/smoke-init" "$stage/init" &&
        (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
             cpio --quiet -o -H newc -R 0:0 | gzip -1) >"$stage.cpio.gz" &&
        mv "$stage.cpio.gz" "$out" || exit 1
fi
echo "$out"
