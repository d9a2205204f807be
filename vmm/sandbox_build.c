/* sandbox_build: a kind's allow-list (sandbox_list.c) compiled to a BPF
 * program with libseccomp.  dvmm does not call it: the build runs it for
 * every kind and mode (tools/sandbox_gen.c) and dvmm loads those programs
 * (sandbox_bpf.c).  It stays a library function for the generator and for
 * test_sandbox, which checks that the compiled-in programs are still the
 * ones it builds.  In its own file so that dvmm's link, which references
 * nothing here, pulls in no libseccomp. */
#include "vmm/sandbox_list.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static int sbx_add_rule(scmp_filter_ctx ctx, const struct sbx_list *l,
                        const struct sbx_rule *r)
{
    int rc = 0;

    switch (r->arg) {
    case A_ANY:
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, r->nr, 0);
        break;
    case A_NOEXEC:
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, r->nr, 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
        break;
    case A_IOCTL:
        /* The kernel takes the request as an unsigned int: compare the low
         * 32 bits only, as it does. */
        for (unsigned i = 0; i < l->nioctls && !rc; i++)
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, r->nr, 1,
                                  SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL,
                                          (scmp_datum_t)(uint32_t)l->ioctls[i]));
        break;
    case A_MADV_FREE:
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, r->nr, 1,
                              SCMP_A2(SCMP_CMP_EQ, MADV_DONTNEED));
        break;
    case A_MADV_POPULATE:
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, r->nr, 1,
                              SCMP_A2(SCMP_CMP_EQ, MADV_POPULATE_WRITE));
        break;
    case A_OPEN_RDONLY:
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, r->nr, 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, O_ACCMODE | O_CREAT | O_TRUNC,
                                      O_RDONLY));
        break;
    }
    /* An unconditional rule next to a conditional one for the same call
     * (the spawner's union) is redundant, not wrong. */
    return rc == -EEXIST ? 0 : rc;
}

static int sbx_add_list(scmp_filter_ctx ctx, const struct sbx_list *l)
{
    for (unsigned i = 0; i < l->nrules; i++) {
        int rc = sbx_add_rule(ctx, l, &l->rules[i]);

        if (rc)
            return rc;
    }
    return 0;
}

/* libseccomp 2.5 exports to a file descriptor only: a memfd, read back
 * with one pread whose length is the program's. */
int sandbox_build(enum sandbox_kind kind, enum sandbox_mode mode,
                  struct sock_filter **insns, unsigned short *ninsns)
{
    /* One instruction more than the kernel takes, to notice a longer one. */
    const size_t max = (BPF_MAXINSNS + 1) * sizeof(struct sock_filter);
    const struct sbx_list *parts[SBX_MAX_PARTS];
    unsigned nparts = sandbox_list_parts(kind, parts);
    scmp_filter_ctx ctx;
    struct sock_filter *buf = NULL, *fit;
    ssize_t n;
    int fd = -1, rc;

    if (!nparts || (mode != SANDBOX_LOG && mode != SANDBOX_ENFORCE))
        return -EINVAL;
    ctx = seccomp_init(mode == SANDBOX_LOG ? SCMP_ACT_LOG : SCMP_ACT_TRAP);
    if (!ctx)
        return -ENOMEM;
    /* sandbox_enter sets no_new_privs itself; the program is loaded with
     * one seccomp(2) call, no libseccomp on the thread's side. */
    rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
    for (unsigned i = 0; !rc && i < nparts; i++)
        rc = sbx_add_list(ctx, parts[i]);
    if (rc)
        goto out;
    fd = memfd_create("dvmm-seccomp", MFD_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    if ((rc = seccomp_export_bpf(ctx, fd)))
        goto out;
    buf = malloc(max);
    if (!buf) {
        rc = -ENOMEM;
        goto out;
    }
    n = pread(fd, buf, max, 0);
    if (n < 0) {
        rc = -errno;
        goto out;
    }
    if (n == 0 || (size_t)n % sizeof(struct sock_filter) || (size_t)n == max) {
        rc = -E2BIG;
        goto out;
    }
    /* Keep only the program's bytes (the buffer has room for the largest). */
    fit = realloc(buf, (size_t)n);
    *insns = fit ? fit : buf;
    *ninsns = (unsigned short)((size_t)n / sizeof(struct sock_filter));
    buf = NULL;
out:
    free(buf);
    if (fd >= 0)
        close(fd);
    seccomp_release(ctx);
    return rc;
}
