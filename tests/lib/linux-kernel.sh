#!/bin/bash
# Debian's stock x86-64 kernel, unpacked (never installed) for two users: the
# nested KVM host (tests/lib/nested.sh) and dvmm's Linux smoke test.
#
# Sourced:   . tests/lib/linux-kernel.sh; linux_kernel_fetch || ...
#            sets LINUX_KVER (e.g. 6.1.0-56-amd64), LINUX_ROOT (the unpacked
#            package), LINUX_VMLINUZ, LINUX_MODDIR (lib/modules/$LINUX_KVER).
# Executed:  tests/lib/linux-kernel.sh  prints those four as KEY=VALUE lines.
#
# The package comes from Debian's apt and nowhere else.  The result is cached
# in $DVMM_BUILD/linux/<kver>/ (DVMM_BUILD defaults to "build", relative to
# the repo root), so only the first call touches the network.
# DVMM_LINUX_VERSION=<kver> pins a version instead of following
# linux-image-amd64.  Messages go to stderr: stdout of a test is TAP.

# Absolute build directory: $DVMM_BUILD, relative paths taken from the repo root.
dvmm_build_dir() {
    local root b=${DVMM_BUILD:-build}
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd) || return 1
    case $b in
        /*) ;;
        *) b=$root/$b ;;
    esac
    mkdir -p "$b" || return 1
    (cd "$b" && pwd)
}

# The kernel release linux-image-amd64 currently depends on, from apt's lists.
_linux_kernel_lookup() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: linux-image-\([0-9][^ ]*-amd64\)$/\1/p' | head -n 1
}

# Newest already-unpacked kernel, for hosts that cannot reach apt right now.
_linux_kernel_cached() {
    local dir=$1 d
    for d in "$dir"/[0-9]*-amd64; do
        [ -d "$d" ] && basename "$d"
    done | sort -V | tail -n 1
}

linux_kernel_fetch() {
    local build cache kver tmp deb
    build=$(dvmm_build_dir) || return 1
    cache=$build/linux

    kver=${DVMM_LINUX_VERSION:-}
    if [ -z "$kver" ]; then
        kver=$(_linux_kernel_lookup)
        if [ -z "$kver" ] && [ -z "$(_linux_kernel_cached "$cache")" ]; then
            # Lists may simply never have been fetched on this machine.
            echo "linux-kernel: linux-image-amd64 unknown to apt; running apt-get update" >&2
            apt-get update -qq >&2 || true
            kver=$(_linux_kernel_lookup)
        fi
        [ -n "$kver" ] || kver=$(_linux_kernel_cached "$cache")
    fi
    if [ -z "$kver" ]; then
        echo "linux-kernel: cannot resolve linux-image-amd64 with apt-cache and nothing cached in $cache" >&2
        return 1
    fi

    LINUX_KVER=$kver
    LINUX_ROOT=$cache/$kver
    LINUX_VMLINUZ=$LINUX_ROOT/boot/vmlinuz-$kver
    LINUX_MODDIR=$LINUX_ROOT/lib/modules/$kver
    if [ -f "$LINUX_VMLINUZ" ] && [ -d "$LINUX_MODDIR" ]; then
        return 0
    fi

    mkdir -p "$cache" || return 1
    tmp=$(mktemp -d "$cache/.fetch-$kver.XXXXXX") || return 1
    echo "linux-kernel: downloading linux-image-$kver with apt-get download" >&2
    # apt drops privileges to _apt, which cannot write into a root-owned build
    # tree; the download is a plain file we verify through apt anyway.
    if ! (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root \
              "linux-image-$kver" >&2); then
        echo "linux-kernel: apt-get download linux-image-$kver failed" >&2
        rm -rf "$tmp"
        return 1
    fi
    # shellcheck disable=SC2012 # apt-get download's file names are plain
    deb=$(ls "$tmp"/linux-image-"$kver"_*.deb 2>/dev/null | head -n 1)
    if [ -z "$deb" ] || ! dpkg-deb -x "$deb" "$tmp/root"; then
        echo "linux-kernel: unpacking $deb failed" >&2
        rm -rf "$tmp"
        return 1
    fi
    # Publish atomically so a concurrent or interrupted fetch never leaves a
    # half-unpacked tree that looks cached.
    if ! mv -T "$tmp/root" "$LINUX_ROOT" 2>/dev/null; then
        [ -f "$LINUX_VMLINUZ" ] || { rm -rf "$tmp"; return 1; }
    fi
    rm -rf "$tmp"
    [ -f "$LINUX_VMLINUZ" ] && [ -d "$LINUX_MODDIR" ]
}

# Path of module NAME (dashes and underscores are the same to the kernel).
linux_module_path() {
    local name=$1 alt
    alt=$(printf '%s' "$name" | tr '_-' '-_')
    find "$LINUX_MODDIR/kernel" \( -name "$name.ko" -o -name "$alt.ko" \) -print -quit
}

# NAME and all its dependencies, one path per line, dependencies first.
# Reads the "depends=" field of .modinfo: the package ships no modules.dep
# (depmod runs at install time, and we never install).
linux_module_closure() {
    local -A seen=()
    _linux_module_visit() {
        local name=$1 path deps dep
        name=${name//-/_}
        [ -n "${seen[$name]:-}" ] && return 0
        seen[$name]=1
        path=$(linux_module_path "$name")
        # Not a module file: built into this kernel (modules.builtin), fine.
        if [ -z "$path" ]; then
            grep -q "/${name//_/[-_]}\.ko\$" "$LINUX_MODDIR/modules.builtin" 2>/dev/null && return 0
            echo "linux-kernel: module $name neither in $LINUX_MODDIR nor built in" >&2
            return 1
        fi
        deps=$(tr '\0' '\n' <"$path" | sed -n 's/^depends=//p' | head -n 1)
        for dep in ${deps//,/ }; do
            _linux_module_visit "$dep" || return 1
        done
        echo "$path"
    }
    local m
    for m in "$@"; do
        _linux_module_visit "$m" || return 1
    done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    linux_kernel_fetch || exit 1
    echo "LINUX_KVER=$LINUX_KVER"
    echo "LINUX_ROOT=$LINUX_ROOT"
    echo "LINUX_VMLINUZ=$LINUX_VMLINUZ"
    echo "LINUX_MODDIR=$LINUX_MODDIR"
fi
