# The nested KVM host: Debian's kernel booted in QEMU TCG (which emulates
# AMD SVM with nested paging), with the KVM modules loaded, the host's root
# visible read-only over virtio-9p and the repo (and $DVMM_BUILD) read-write
# at their own paths.  A command run there sees the same files, the same
# tools and the same build outputs as here, plus a working /dev/kvm.
#
# Sourced by tests/lib/kvm-env.sh and tests/lib/nested-run.
#   nested_prepare        fetch the kernel, build the cached initramfs
#   nested_run CMD...     run CMD there; its stdout/stderr come out here,
#                         its exit status is the return value
# Knobs: DVMM_NESTED_MEM (default 8G), DVMM_NESTED_CPUS (2),
#        DVMM_NESTED_TIMEOUT (seconds, default 1200), DVMM_NESTED_STALL
#        (seconds without a heartbeat that count as a stopped nested host,
#        default 240; DVMM_NESTED_BOOT_STALL, default 300, before the
#        job's first heartbeat), DVMM_NESTED_MODULES (extra modules to load),
#        DVMM_NESTED_KEEP=1 (keep the job directory), DVMM_NESTED_DISABLE=1
#        (never use it: KVM tests skip), DVMM_NESTED_DMEM=SIZE (a dmemfs
#        host: SIZE more RAM, reserved with memmap=SIZE$4G, the project's
#        patched kvm.ko/kvm-amd.ko and dmemfs.ko loaded with that region;
#        SIZE in whole GiB, e.g. 4G; see kernel-support/kernel-build),
#        DVMM_NESTED_APPEND (more words for the nested kernel's command line),
#        DVMM_NESTED_TCG_THREAD (multi, the default: one host thread per
#        nested CPU; single: one thread runs them all in turn).
# Every boot gets a QMP socket; when the watchdog finds the host stopped it
# first records QEMU's view of each CPU (info cpus, info registers -a,
# info lapic, three samples 1 s apart, the top of each stack) and the
# kernel's printk ring in the job directory (stall-state.txt,
# log_buf.bin), and says on stderr where each CPU was.  The nested kernel
# runs with nokaslr, and its first boot saves /proc/kallsyms next to the
# initramfs, so those addresses get function names.  One line per boot goes
# to $DVMM_BUILD/nested/boots.log: the stall rate over many boots.
# A nested host that stops (its kernel under TCG has been seen to stall for
# good, idle or in a soft lockup, once in a few dozen boots) is killed and
# the job run once more from the start, saying so on stderr; its output
# is only ever the last attempt's.
# Inside, DVMM_NESTED=1 is set, DVMM_NESTED_DEADLINE (epoch seconds at
# which the host kills the nested host) and DVMM_NESTED_JOB (the job
# directory; heartbeat.pid there is the heartbeat loop).

# shellcheck disable=SC2034 # NESTED_* results are read by the scripts that source this
. "$(dirname "${BASH_SOURCE[0]}")/linux-kernel.sh"

NESTED_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NESTED_REPO=$(cd "$NESTED_LIB/../.." && pwd)
NESTED_BASE_MODULES="kvm_amd 9p 9pnet_virtio virtio_pci"

# Why the nested host cannot be used here, or nothing when it can.
nested_unavailable_reason() {
    if [ -n "${DVMM_NESTED:-}" ]; then
        echo "already inside the nested KVM host"
    elif [ -n "${DVMM_NESTED_DISABLE:-}" ]; then
        echo "the nested KVM host is disabled (DVMM_NESTED_DISABLE is set)"
    elif ! command -v qemu-system-x86_64 >/dev/null; then
        echo "no qemu-system-x86_64 for a nested KVM host"
    elif [ ! -x /bin/busybox ] || ! /bin/busybox --list | grep -qx insmod; then
        echo "no static /bin/busybox (busybox-static) for the nested host's initramfs"
    fi
}

# nested_want_modules MODULE...: the nested host loads MODULEs too (added
# to DVMM_NESTED_MODULES), e.g. tun for a test that makes a TAP.  Before
# need_kvm, which boots the nested host where it runs the test.
nested_want_modules() {
    export DVMM_NESTED_MODULES="${DVMM_NESTED_MODULES:+$DVMM_NESTED_MODULES }$*"
}

# The dmemfs reservation of DVMM_NESTED_DMEM, in bytes, or nothing.  It
# starts at 4 GiB: with 2.75 GiB or more, q35 puts 2 GiB below 4 GiB and the
# rest from 4 GiB up, so the range is RAM in the firmware e820.
nested_dmem_bytes() {
    local s=${DVMM_NESTED_DMEM:-}
    [ -n "$s" ] || return 0
    case $s in
        [1-9]G|[1-9][0-9]G) echo $(( ${s%G} << 30 )) ;;
        *) echo "nested: DVMM_NESTED_DMEM='$s': give whole GiB, e.g. 4G" >&2; return 1 ;;
    esac
}

# QEMU's -m: DVMM_NESTED_MEM of ordinary RAM, plus the dmemfs reservation.
_nested_qemu_mem() {
    local mem=${DVMM_NESTED_MEM:-8G} dmem
    dmem=$(nested_dmem_bytes) || return 1
    [ -n "$dmem" ] || { echo "$mem"; return 0; }
    case $mem in
        *G) echo "$(( ${mem%G} + (dmem >> 30) ))G" ;;
        *M) echo "$(( ${mem%M} + (dmem >> 20) ))M" ;;
        *) echo "nested: DVMM_NESTED_MEM='$mem' with DVMM_NESTED_DMEM: give it in M or G" >&2; return 1 ;;
    esac
}

# Kernel command-line words for the dmemfs reservation (none without one).
# dmemfs.region is read by the nested /init, as modprobe would.
_nested_dmem_append() {
    local dmem
    dmem=$(nested_dmem_bytes) || return 1
    [ -n "$dmem" ] || return 0
    # shellcheck disable=SC2016 # the kernel's memmap=SIZE$ADDR has a literal $
    printf ' memmap=%s$0x100000000 dmemfs.region=%s@0x100000000' "$DVMM_NESTED_DMEM" "$DVMM_NESTED_DMEM"
}

# Kernel words that pin the early dentry and inode hash tables, which the
# kernel sizes by RAM (memblock memory, so a dmemfs reservation halves them
# here): with them on both boots of a struct-page measurement, the drop in
# MemTotal is struct page alone.  Unpinned, a 4 GiB reservation of a 12 GiB
# nested host also shrinks those tables by 12 MiB.
NESTED_PINNED_HASHES="dhash_entries=1048576 ihash_entries=524288"

# nested_memtotal_plain GIB: MemTotal (kB) of a nested host with the -m a
# DVMM_NESTED_DMEM=GIB boot gets, but nothing reserved (the reference for
# the struct page that the reservation does not need).  Uses the caller's
# DVMM_NESTED_APPEND, which should hold NESTED_PINNED_HASHES.
nested_memtotal_plain() {
    local mem=${DVMM_NESTED_MEM:-8G} out
    case $mem in
        *G) mem=$(( ${mem%G} + $1 ))G ;;
        *) echo "nested: DVMM_NESTED_MEM='$mem': give it in G" >&2; return 1 ;;
    esac
    # shellcheck disable=SC2016 # $2 is awk's, in the nested host
    out=$(DVMM_NESTED_MEM=$mem DVMM_NESTED_DMEM='' nested_run \
              awk '/^MemTotal:/ { print $2 }' /proc/meminfo) || return 1
    case $out in
        [1-9]*) echo "$out" ;;
        *) echo "nested: the reference boot (-m $mem) printed '$out'" >&2; return 1 ;;
    esac
}

# Build (once) the initramfs: static busybox, /init, the module closure.
# Sets NESTED_DIR, NESTED_INITRD (and the LINUX_* variables).
nested_prepare() {
    local build stage key mods m kdir="" dmem
    linux_kernel_fetch || return 1
    build=$(dvmm_build_dir) || return 1
    NESTED_DIR=$build/nested
    mkdir -p "$NESTED_DIR/jobs" || return 1

    # shellcheck disable=SC2086 # both are space-separated lists of module names
    mods=$(linux_module_closure $NESTED_BASE_MODULES ${DVMM_NESTED_MODULES:-}) || return 1
    dmem=$(nested_dmem_bytes) || return 1
    if [ -n "$dmem" ]; then
        # Debian's kvm.ko cannot fault 1 GiB pfn mappings: ours replace it.
        kdir=$("$NESTED_REPO/kernel-support/kernel-build") || {
            echo "nested: kernel-support/kernel-build failed: no dmemfs host" >&2
            return 1
        }
        mods=$(for m in $mods; do
                   case ${m##*/} in
                       kvm.ko) echo "$kdir/kvm.ko" ;;
                       kvm-amd.ko) echo "$kdir/kvm-amd.ko" ;;
                       *) echo "$m" ;;
                   esac
               done
               echo "$kdir/dmemfs.ko")
        # Inside, tests find the same modules (dmemfs.t reloads dmemfs).
        export DVMM_NESTED_KDIR=$kdir
    fi
    # The cache key covers everything that goes into the image.
    key=$( { cat "$NESTED_LIB/nested-init" "$NESTED_LIB/kvm-keeper.c"; echo "$LINUX_KVER"; echo "$mods";
             [ -n "$kdir" ] && sha256sum "$kdir"/*.ko
             sha256sum /bin/busybox; } | sha256sum | cut -c1-12)
    NESTED_INITRD=$NESTED_DIR/initramfs-$LINUX_KVER-$key.cpio.gz
    [ -f "$NESTED_INITRD" ] && return 0

    stage=$(mktemp -d "$NESTED_DIR/.stage.XXXXXX") || return 1
    mkdir -p "$stage/bin" "$stage/modules" || return 1
    # shellcheck disable=SC2015 # any step failing, the last one included, cleans up
    cp /bin/busybox "$stage/bin/busybox" &&
        cp "$NESTED_LIB/nested-init" "$stage/init" &&
        chmod 755 "$stage/init" || { rm -rf "$stage"; return 1; }
    # Static: the initramfs has no libc.  Why it exists: kvm-keeper.c.
    if ! ${CC:-gcc} -std=gnu11 -O2 -Wall -Wextra -Werror -static \
            -o "$stage/bin/kvm-keeper" "$NESTED_LIB/kvm-keeper.c" >&2; then
        echo "nested: cannot build tests/lib/kvm-keeper.c (gcc -static needs libc6-dev)" >&2
        rm -rf "$stage"
        return 1
    fi
    for m in $mods; do
        cp "$m" "$stage/modules/" || { rm -rf "$stage"; return 1; }
        basename "$m" >>"$stage/modules/order"
    done
    if ! (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
              cpio --quiet -o -H newc -R 0:0 | gzip -1) >"$stage.cpio.gz"; then
        rm -rf "$stage" "$stage.cpio.gz"
        return 1
    fi
    mv "$stage.cpio.gz" "$NESTED_INITRD"
    rm -rf "$stage"
}

# Directories the job may write, at their host paths: the repo and, when it
# lies elsewhere, the build directory.  Parents come before children.
_nested_rw_paths() {
    local build
    build=$(dvmm_build_dir)
    echo "$NESTED_REPO"
    case $build/ in
        "$NESTED_REPO"/*) ;;
        *) echo "$build" ;;
    esac
}

# The environment a job inherits: the project's knobs and what prove passes.
_nested_env_script() {
    local name
    for name in $(compgen -e); do
        case $name in
            DVMM_*|HARNESS_*|TEST_*|TAP_*|PATH|LANG|LC_*|HOME|USER|LOGNAME|TERM|TZ|CC|CFLAGS|V)
                printf 'export %s=%q\n' "$name" "${!name}" ;;
        esac
    done
    printf 'export DVMM_BUILD=%q\n' "$(dvmm_build_dir)"
    # The same kernel inside, and no apt-cache there: on the read-only root
    # it rebuilds its cache from the lists each time, minutes under TCG.
    printf 'export DVMM_LINUX_VERSION=%q\n' "$LINUX_KVER"
    echo "export DVMM_NESTED=1"
    # When QEMU will be killed (epoch seconds), so a job can budget its own
    # timeouts and still report before the nested host disappears.
    echo "export DVMM_NESTED_DEADLINE=$(( $(date +%s) + ${DVMM_NESTED_TIMEOUT:-1200} ))"
}

# _nested_dump JOB QMP: QEMU's view of a stopped nested host's CPUs, into
# JOB/stall-state.txt, and one line per CPU on stderr.
_nested_dump() {
    local job=$1 qmp=$2 ks=() cmds=('info cpus' 'info registers -a') c lb
    local syms=${NESTED_INITRD%.cpio.gz}.kallsyms
    [ -S "$qmp" ] || return 0
    for ((c = 0; c < ${DVMM_NESTED_CPUS:-2}; c++)); do
        cmds+=("info lapic $c")
    done
    cmds+=('info irq')
    if [ -s "$syms" ]; then
        ks=(--kallsyms "$syms" --stack 48)
        # Under nokaslr the kernel image is at physical (virtual - 2 GiB
        # from the top): the printk text ring, which keeps what quiet
        # kept off the console (soft lockups, RCU stalls, clocksource).
        lb=$(awk '$3 == "__log_buf" { print $1; exit }' "$syms")
        [ -n "$lb" ] && cmds+=("pmemsave $(printf '0x%x' $((0x$lb - 0xffffffff80000000))) 131072 \"$job/log_buf.bin\"")
    fi
    timeout 60 python3 "$NESTED_LIB/qemu-qmp" "$qmp" "${ks[@]}" --samples 3 "${cmds[@]}" \
        >"$job/stall-state.txt" 2>&1
    {
        echo "nested-run: QEMU's view of the stopped host (all of it in $job/stall-state.txt):"
        grep -E '^(#### sample|-- CPU#|CPU#[0-9]+$|RIP=|EIP=|== CPU#|--   )' "$job/stall-state.txt" |
            sed -n '/#### sample 3/,$p' | sed 's/^/  /'
        if [ -s "$job/log_buf.bin" ]; then
            echo "nested-run: the nested kernel's last log lines (printk ring, $job/log_buf.bin):"
            strings -n 8 "$job/log_buf.bin" | tail -n 15 | sed 's/^/  /'
        fi
    } >&2
}

# _nested_log JOB ATTEMPT RESULT SECONDS: one line per boot in boots.log.
_nested_log() {
    printf '%s attempt=%s result=%s seconds=%s job=%s cmd=%s\n' "$(date -u +%FT%TZ)" "$2" "$3" "$4" \
        "${1##*/}" "$(sed -n 's/^exec //p' "$1/cmd" 2>/dev/null | cut -c1-120)" \
        >>"$NESTED_DIR/boots.log" 2>/dev/null
}

# _nested_watch JOB PID [QMP]: wait for PID (the timeout wrapping QEMU)
# while the job's heartbeat advances; kill it and return 1 when the
# heartbeat has not changed for DVMM_NESTED_STALL seconds.  Before the
# first beat (the nested kernel booting, /init mounting the shares) the
# limit is DVMM_NESTED_BOOT_STALL (300 s) if that is longer: a loaded
# machine has taken 45 s to boot the nested host, and a short stall limit
# must not cut a slow boot.
_nested_watch() {
    local job=$1 pid=$2 qmp=${3:-} beat last="" since=$SECONDS limit
    local stall=${DVMM_NESTED_STALL:-240} boot=${DVMM_NESTED_BOOT_STALL:-300}
    while kill -0 "$pid" 2>/dev/null; do
        sleep 2
        beat=$(cat "$job/heartbeat" 2>/dev/null)
        limit=$stall
        [ -z "$beat" ] && [ "$boot" -gt "$stall" ] && limit=$boot
        if [ "$beat" != "$last" ]; then
            last=$beat since=$SECONDS
        elif [ $((SECONDS - since)) -ge "$limit" ] &&
            [ ! -e "$job/status" ]; then
            _nested_dump "$job" "$qmp"
            kill "$pid" 2>/dev/null
            return 1
        fi
    done
    return 0
}

nested_run() {
    local rc attempt
    for attempt in 1 2; do
        _nested_attempt "$attempt" "$@"
        rc=$?
        [ "$attempt" -eq 1 ] || break
        if [ -n "$NESTED_STALLED" ]; then
            echo "nested-run: the nested host stopped (no heartbeat for ${DVMM_NESTED_STALL:-240} s); running the job again from the start" >&2
        elif [ -n "$NESTED_NOSTART" ]; then
            echo "nested-run: the nested host ended before the job started; booting it again" >&2
        else
            break
        fi
    done
    return "$rc"
}

# _nested_attempt N CMD...: one boot of the nested host for CMD; on the
# first attempt a stalled host returns 124 at once, its output dropped.
_nested_attempt() {
    local attempt=$1 job rc cwd rwlist="" tags=() path i=0 qemu_rc status qpid
    local qmem dmem_append qmp syms_append="" t0=$SECONDS
    shift
    NESTED_FAILURE="" NESTED_FAILURE_LOG="" NESTED_OUT_BYTES=0 NESTED_STALLED="" NESTED_NOSTART=""
    if [ -n "$(nested_unavailable_reason)" ]; then
        NESTED_FAILURE=$(nested_unavailable_reason)
        echo "nested-run: $NESTED_FAILURE" >&2
        return 125
    fi
    if ! nested_prepare; then
        NESTED_FAILURE="could not prepare the nested host (kernel fetch or initramfs build failed)"
        echo "nested-run: $NESTED_FAILURE" >&2
        return 125
    fi
    # shellcheck disable=SC2015 # either failing is the same refusal
    qmem=$(_nested_qemu_mem) && dmem_append=$(_nested_dmem_append) || {
        NESTED_FAILURE="bad DVMM_NESTED_MEM/DVMM_NESTED_DMEM"
        return 125
    }
    job=$(mktemp -d "$NESTED_DIR/jobs/job.XXXXXX") || return 125
    case $job in
        *[[:space:],]*) echo "nested-run: job path '$job' has spaces or commas" >&2; return 125 ;;
    esac

    # /tmp inside is a fresh tmpfs, so a cwd there would not exist.
    cwd=$PWD
    case $cwd in
        /tmp|/tmp/*|/run|/run/*) cwd=$NESTED_REPO ;;
    esac
    {
        echo "# nested job written by tests/lib/nested.sh"
        _nested_env_script
        printf 'export DVMM_NESTED_JOB=%q\n' "$job"
        printf 'cd %q || exit 125\n' "$cwd"
        printf 'exec'
        printf ' %q' "$@"
        echo
    } >"$job/cmd"

    while read -r path; do
        tags+=(-virtfs "local,path=$path,mount_tag=rw$i,security_model=none,multidevs=remap")
        rwlist=${rwlist:+$rwlist,}$path
        i=$((i + 1))
    done < <(_nested_rw_paths)

    # QMP on a unix socket for the stall dump (sun_path holds 107 bytes).
    qmp=$job/qmp.sock
    [ "${#qmp}" -le 100 ] || qmp=$(mktemp -u "${TMPDIR:-/tmp}/dvmm-qmp.XXXXXX")
    # nokaslr: a stall dump's addresses match the saved kallsyms.
    syms_append=" nokaslr dvmm.kallsyms=${NESTED_INITRD%.cpio.gz}.kallsyms"

    # la57 off: 4-level paging is what dvmm's users run, and TCG walks it faster.
    # no_timer_check: the kernel's early check that the IO-APIC timer ticks
    # gives up after a few ms; on a loaded machine TCG can miss that window,
    # and the kernel panics ("IO-APIC + timer doesn't work!") before the job.
    timeout --kill-after=10 "${DVMM_NESTED_TIMEOUT:-1200}" \
        qemu-system-x86_64 -nodefaults -no-user-config -no-reboot \
        -M q35 -accel "tcg,thread=${DVMM_NESTED_TCG_THREAD:-multi}" -cpu max,la57=off \
        -smp "${DVMM_NESTED_CPUS:-2}" -m "$qmem" \
        -display none -monitor none -serial "file:$job/console.log" \
        -qmp "unix:$qmp,server=on,wait=off" \
        -kernel "$LINUX_VMLINUZ" -initrd "$NESTED_INITRD" \
        -append "console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off no_timer_check rdinit=/init dvmm.job=$job dvmm.rw=$rwlist$dmem_append$syms_append${DVMM_NESTED_APPEND:+ $DVMM_NESTED_APPEND}" \
        -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
        "${tags[@]}" \
        </dev/null >"$job/qemu.log" 2>&1 &
    qpid=$!
    _nested_watch "$job" "$qpid" "$qmp" || NESTED_STALLED=1
    wait "$qpid"
    qemu_rc=$?
    rm -f "$qmp"
    _nested_log "$job" "$attempt" \
        "$([ -n "$NESTED_STALLED" ] && echo stalled || echo "status:$(cat "$job/status" 2>/dev/null || echo "none,qemu=$qemu_rc")")" \
        $((SECONDS - t0))

    if [ -n "$NESTED_STALLED" ]; then
        NESTED_FAILURE="nested KVM host stopped: no heartbeat for ${DVMM_NESTED_STALL:-240} s"
        # The first attempt's output is dropped: a second follows.
        if [ "$attempt" -eq 1 ]; then
            {
                echo "nested-run: $NESTED_FAILURE; job directory $job"
                tail -n 5 "$job/console.log" 2>/dev/null
            } >&2
            return 124
        fi
    fi
    NESTED_OUT_BYTES=$(stat -c %s "$job/stdout" 2>/dev/null || echo 0)
    [ -f "$job/stdout" ] && cat "$job/stdout"
    [ -f "$job/stderr" ] && cat "$job/stderr" >&2
    status=$(cat "$job/status" 2>/dev/null)
    if [ -n "$NESTED_STALLED" ]; then
        rc=124
    elif [ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ]; then
        NESTED_FAILURE="nested KVM host timed out after ${DVMM_NESTED_TIMEOUT:-1200} s"
        rc=124
    elif [ -z "$status" ]; then
        NESTED_FAILURE="nested KVM host ended without running the job (qemu exit $qemu_rc)"
        rc=125
        # Its kernel or /init gave up before the job's first heartbeat
        # (a boot-time panic): the harness's failure, not the job's, and
        # the job never ran, so a second boot is safe.
        [ -e "$job/heartbeat" ] || NESTED_NOSTART=1
    else
        rc=$status
    fi
    if [ -n "$NESTED_FAILURE" ]; then
        {
            echo "nested-run: $NESTED_FAILURE; job directory $job"
            tail -n 20 "$job/qemu.log" "$job/console.log" 2>/dev/null
        } >&2
        NESTED_FAILURE_LOG=$(tail -n 20 "$job/console.log" 2>/dev/null)
    elif [ -z "${DVMM_NESTED_KEEP:-}" ]; then
        rm -rf "$job"
    fi
    return "$rc"
}
