/* Machine-check encoding and the memory-failure event log.
 *
 * Pure functions: what a host memory failure becomes for the guest (the
 * de-facto encodings QEMU uses, by the guest CPU's vendor, so guest
 * kernels recognise them), which MCG_CAP to hand KVM_X86_SETUP_MCE, which
 * guest range a SIGBUS poisons, whether a vCPU's state lets a machine check
 * land in user mode, and the one-line JSON record of every event.  The
 * SIGBUS handling and the KVM ioctls live with the vCPU code; nothing here
 * touches a fd except mce_log_write. */
#ifndef DVMM_MCE_H
#define DVMM_MCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <linux/kvm.h>

enum mce_kind {
    MCE_AR,     /* action required: the vCPU consumed the poison */
    MCE_AO,     /* action optional: found by a scrubber, not yet consumed */
};

/* How a failure is told to the guest, chosen by the vendor its CPUID shows
 * (DESIGN.md "Memory-failure routing"; ../shared/research/amd-guest-mce.md):
 *   MCE_ENC_INTEL  SDM software-error-recovery encoding (QEMU for every
 *                  vendor up to 9.0): AR and AO are both #MC;
 *   MCE_ENC_AMD    QEMU >= 9.1 for AMD and Hygon guests: AR is an
 *                  uncorrected #MC with POISON, AO a deferred-error record
 *                  written to the bank with no #MC, which the guest finds
 *                  when it polls its banks. */
enum mce_encoding {
    MCE_ENC_INTEL,
    MCE_ENC_AMD,
};

/* The uapi headers do not export these (they live in the kernel's
 * arch/x86/include/asm/mce.h), so they are spelled out from the SDM. */
#define MCE_MCG_CAP_COUNT_MASK 0xffULL
#define MCE_MCG_CTL_P          (1ULL << 8)
#define MCE_MCG_SER_P          (1ULL << 24)
/* What SVM keeps of MCG_CAP: svm_setup_mce() masks bits 63:9 as reserved,
 * so SER_P (and CMCI_P, LMCE_P...) never reach an AMD host's guests. */
#define MCE_MCG_CAP_SVM_MASK   0x1ffULL
#define MCE_MSR_MCG_CAP        0x179
#define MCE_MSR_MCG_STATUS     0x17a
/* Bank `bank`'s MSRs: reg 0 CTL, 1 STATUS, 2 ADDR, 3 MISC. */
#define MCE_MSR_MCI(bank, reg) (0x400u + 4u * (bank) + (reg))
/* CR4.MCE: a #MC with it clear shuts the (guest) CPU down. */
#define MCE_CR4_MCE            (1ULL << 6)

#define MCE_MCG_STATUS_RIPV    (1ULL << 0)
#define MCE_MCG_STATUS_EIPV    (1ULL << 1)
#define MCE_MCG_STATUS_MCIP    (1ULL << 2)

#define MCE_MCI_STATUS_VAL     (1ULL << 63)
#define MCE_MCI_STATUS_OVER    (1ULL << 62)
#define MCE_MCI_STATUS_UC      (1ULL << 61)
#define MCE_MCI_STATUS_EN      (1ULL << 60)
#define MCE_MCI_STATUS_MISCV   (1ULL << 59)
#define MCE_MCI_STATUS_ADDRV   (1ULL << 58)
#define MCE_MCI_STATUS_S       (1ULL << 56)
#define MCE_MCI_STATUS_AR      (1ULL << 55)   /* TCC on AMD */
/* AMD only (APM vol. 2, MCA_STATUS): */
#define MCE_MCI_STATUS_DEFERRED (1ULL << 44)
#define MCE_MCI_STATUS_POISON  (1ULL << 43)

#define MCE_BANK       9
#define MCE_NR_BANKS   10        /* as QEMU: the smallest count with bank 9 */
/* MISC: address mode 2 (physical), LSB 12 -- a 4 KiB page was lost. */
#define MCE_MCI_MISC   0x8cULL
#define MCE_MCACOD_AR  0x134ULL  /* data load, memory hierarchy */
#define MCE_MCACOD_AO  0x0c0ULL  /* memory scrubbing */
/* The four MCi_STATUS values, as the tests and the README quote them;
 * mce_encode builds them from the bits above and the unit test checks that
 * both spellings agree. */
#define MCE_STATUS_AR      0xBD80000000000134ULL  /* Intel: VAL|UC|EN|MISCV|ADDRV|S|AR|0x134 */
#define MCE_STATUS_AO      0xBD000000000000C0ULL  /* Intel: VAL|UC|EN|MISCV|ADDRV|S|0xc0 */
#define MCE_STATUS_AMD_AR  0xBC00080000000000ULL  /* AMD: VAL|UC|EN|MISCV|ADDRV|POISON */
#define MCE_STATUS_AMD_AO  0x9C00180000000000ULL  /* AMD: VAL|EN|MISCV|ADDRV|DEFERRED|POISON */

/* "intel" / "amd": the log's and the control socket's "encoding". */
const char *mce_encoding_name(enum mce_encoding enc);

/* Fill *out (zeroing the padding) for a failure of kind at gpa in the
 * guest's encoding.  MCi_ADDR is gpa as given; callers pass the 4 KiB page
 * address they report.  -EINVAL for an unknown kind or encoding. */
int mce_encode(enum mce_encoding enc, enum mce_kind kind, uint64_t gpa,
               struct kvm_x86_mce *out);

/* Whether *m raises a #MC (MCi_STATUS.UC): false for the AMD deferred
 * error, which KVM only writes to the bank. */
static inline bool mce_raises_mc(const struct kvm_x86_mce *m)
{
    return (m->status & MCE_MCI_STATUS_UC) != 0;
}

/* The mcg_cap for KVM_X86_SETUP_MCE given KVM_X86_GET_MCE_CAP_SUPPORTED:
 * MCE_NR_BANKS banks, plus MCG_SER_P and MCG_CTL_P where KVM offers them.
 * Returns 0 -- never a usable mcg_cap -- when KVM has fewer than
 * MCE_NR_BANKS banks, since bank 9 would not exist. */
uint64_t mce_mcg_cap(uint64_t supported);

/* Why a machine check injected now would not land in guest user mode, or
 * NULL when it would: the vCPU must be at CPL 3 (SS.DPL, which KVM reports
 * as the CPL on both VMX and SVM; CS.RPL must agree) and have no exception,
 * interrupt or NMI half-delivered, which KVM would finish first, moving the
 * #MC into that handler at CPL 0.  A queued (not yet delivered) NMI or
 * interrupt is fine: a pending exception goes before them. */
const char *mce_user_mode_blocker(const struct kvm_sregs *sregs,
                                  const struct kvm_vcpu_events *ev);

/* What one SIGBUS poisons.  The failure unit is the larger of the backend's
 * page and 2^addr_lsb, aligned down around addr (siginfo's si_addr and
 * si_addr_lsb): dmemfs reports the dpage start with lsb 12, yet the whole
 * dpage is gone, and hugetlbfs reports the huge page's lsb.  The MCE
 * reports the 4 KiB page holding addr, which for dmemfs is the dpage's
 * first page. */
struct mce_poison_range {
    uint64_t start;     /* HVA of the first lost byte */
    uint64_t len;       /* bytes lost */
    uint64_t report;    /* 4 KiB-aligned HVA for MCi_ADDR (after HVA->GPA) */
};

/* -EINVAL when page_size is not a power of two >= 4 KiB or addr_lsb is
 * over 63.  An lsb below 12 is treated as 12: guests lose whole pages. */
int mce_poison_range(uint64_t addr, unsigned addr_lsb, uint64_t page_size,
                     struct mce_poison_range *out);

/* One memory-failure event as the log records it. */
struct mce_event {
    struct timespec time;   /* CLOCK_REALTIME when it arrived */
    enum mce_kind kind;
    enum mce_encoding encoding; /* the guest's, injected or not */
    bool hva_known;         /* false: logged as null (control-socket injection) */
    uint64_t hva;
    bool gpa_known;         /* false: HVA outside guest RAM, logged as null */
    uint64_t gpa;
    uint64_t page_size;     /* bytes lost (the dpage or huge page) */
    int vcpu;               /* < 0: null (not yet routed) */
    bool injected;
    const char *reason;     /* short why; NULL logs "" */
    /* CLOCK_MONOTONIC ns, for latency measurements; 0 leaves the field out:
     * sent_ns just before the synthetic SIGBUS was sent, done_ns just after
     * KVM_X86_SET_MCE returned. */
    uint64_t sent_ns;
    uint64_t done_ns;
};

const char *mce_kind_name(enum mce_kind kind);   /* "AR" / "AO" */

/* One JSON object and a trailing '\n' in buf: time (ISO-8601 UTC with
 * microseconds), kind, encoding, hva and gpa (hex strings or null),
 * page_size, vcpu (int or null), injected, reason, and sent_ns / done_ns
 * when non-zero.
 * Returns the length without the NUL,
 * -ENOSPC if buf is too small (buf then holds ""), -ENOMEM. */
int mce_log_line(char *buf, size_t len, const struct mce_event *ev);

/* Format and write the line with one write(2), so O_APPEND logs shared by
 * threads never interleave.  0 or -errno. */
int mce_log_write(int fd, const struct mce_event *ev);

/* Call once on the main thread before any other thread starts.  json-c
 * draws its key-hash seed from getrandom(2) the first time any thread adds
 * a key; with no control-socket traffic yet, that would be vCPU 0 writing
 * the first log line, and a vCPU's seccomp list has no getrandom. */
void mce_log_prepare(void);

#endif
