/* The sandbox's seccomp programs, compiled at build time: the rows come
 * from $(BUILD)/gen/sandbox_bpf.h, which tools/sandbox_gen writes with
 * libseccomp from the lists in sandbox_list.c (see SANDBOX_BPF_H in the
 * Makefile).  The filters depend only on the kind and the mode, so dvmm
 * need not build them at every start (issue 16: building them was ~33 ms
 * of a ~290 ms start in the nested host); tests/unit/test_sandbox.c checks
 * that these programs are byte for byte what sandbox_build makes now. */
#include "vmm/sandbox.h"

#include <errno.h>
#include <linux/filter.h>

struct sbx_bpf {
    const struct sock_filter *insns;
    unsigned short len;
};

#include "sandbox_bpf.h"

_Static_assert(SANDBOX_BPF_NKINDS == SBX_NKINDS,
               "sandbox_bpf.h is stale: its kinds are not enum sandbox_kind's");
_Static_assert(SANDBOX_ENFORCE == SANDBOX_LOG + 1, "sbx_bpf's modes: LOG, then ENFORCE");

int sandbox_prebuilt(enum sandbox_kind kind, enum sandbox_mode mode,
                     const struct sock_filter **insns, unsigned short *ninsns)
{
    if ((unsigned)kind >= SBX_NKINDS || (mode != SANDBOX_LOG && mode != SANDBOX_ENFORCE))
        return -EINVAL;
    *insns = sbx_bpf[kind][mode - SANDBOX_LOG].insns;
    *ninsns = sbx_bpf[kind][mode - SANDBOX_LOG].len;
    return 0;
}
