#include "vmm/mce.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "vmm/utc.h"

#define MCE_SMALL_PAGE 4096ULL

const char *mce_encoding_name(enum mce_encoding enc)
{
    return enc == MCE_ENC_AMD ? "amd" : enc == MCE_ENC_INTEL ? "intel" : "?";
}

int mce_encode(enum mce_encoding enc, enum mce_kind kind, uint64_t gpa,
               struct kvm_x86_mce *out)
{
    /* What every encoding has, as QEMU's kvm_mce_inject() starts. */
    const uint64_t base = MCE_MCI_STATUS_VAL | MCE_MCI_STATUS_EN |
                          MCE_MCI_STATUS_MISCV | MCE_MCI_STATUS_ADDRV;

    memset(out, 0, sizeof(*out));
    if ((kind != MCE_AR && kind != MCE_AO) ||
        (enc != MCE_ENC_INTEL && enc != MCE_ENC_AMD))
        return -EINVAL;
    /* RIPV: the interrupted RIP is valid to return to, which Linux needs to
     * kill a task rather than itself.  For AR, EIPV too: that RIP is the
     * access that consumed the poison.  MCIP only matters where a #MC is
     * raised (KVM writes MCG_STATUS only then), yet QEMU passes it always. */
    out->mcg_status = MCE_MCG_STATUS_MCIP | MCE_MCG_STATUS_RIPV;
    if (kind == MCE_AR)
        out->mcg_status |= MCE_MCG_STATUS_EIPV;
    if (enc == MCE_ENC_INTEL) {
        out->status = base | MCE_MCI_STATUS_UC | MCE_MCI_STATUS_S;
        out->status |= kind == MCE_AR ? MCE_MCI_STATUS_AR | MCE_MCACOD_AR : MCE_MCACOD_AO;
    } else if (kind == MCE_AR) {
        /* Linux grades AMD errors by SUCCOR and the CPL, not by S/AR (bit
         * 55 is TCC there); POISON says the data was consumed. */
        out->status = base | MCE_MCI_STATUS_UC | MCE_MCI_STATUS_POISON;
    } else {
        /* No UC: KVM (and QEMU's TCG) only write the bank, and the guest's
         * periodic poll grades it MCE_DEFERRED_SEVERITY and hands the page
         * to memory_failure().  An uncorrected #MC here would be graded as
         * an AR wherever it lands, fatal in kernel mode. */
        out->status = base | MCE_MCI_STATUS_DEFERRED | MCE_MCI_STATUS_POISON;
    }
    out->addr = gpa;
    out->misc = MCE_MCI_MISC;
    out->bank = MCE_BANK;
    return 0;
}

const char *mce_user_mode_blocker(const struct kvm_sregs *sregs,
                                  const struct kvm_vcpu_events *ev)
{
    if (sregs->ss.dpl != 3)
        return "not at CPL 3";
    if ((sregs->cs.selector & 3) != 3)
        return "CS.RPL is not 3";
    if (ev->exception.injected)
        return "an exception is being delivered";
    if (ev->interrupt.injected)
        return "an interrupt is being delivered";
    if (ev->nmi.injected)
        return "an NMI is being delivered";
    return NULL;
}

uint64_t mce_mcg_cap(uint64_t supported)
{
    if ((supported & MCE_MCG_CAP_COUNT_MASK) < MCE_NR_BANKS)
        return 0;
    /* Without SER_P a guest treats every UC error as fatal, which defeats
     * the point; still, pass through only what KVM accepts. */
    return MCE_NR_BANKS | (supported & (MCE_MCG_SER_P | MCE_MCG_CTL_P));
}

int mce_poison_range(uint64_t addr, unsigned addr_lsb, uint64_t page_size,
                     struct mce_poison_range *out)
{
    uint64_t unit;

    if (page_size < MCE_SMALL_PAGE || (page_size & (page_size - 1)) ||
        addr_lsb > 63)
        return -EINVAL;
    if (addr_lsb < 12)
        addr_lsb = 12;
    unit = 1ULL << addr_lsb;
    if (unit < page_size)
        unit = page_size;
    out->start = addr & ~(unit - 1);
    out->len = unit;
    out->report = addr & ~(MCE_SMALL_PAGE - 1);
    return 0;
}

const char *mce_kind_name(enum mce_kind kind)
{
    return kind == MCE_AR ? "AR" : kind == MCE_AO ? "AO" : "?";
}

static json_object *mce_hex_or_null(bool known, uint64_t v)
{
    char s[24];

    if (!known)
        return NULL;
    snprintf(s, sizeof(s), "0x%" PRIx64, v);
    return json_object_new_string(s);
}

int mce_log_line(char *buf, size_t len, const struct mce_event *ev)
{
    char ts[96];   /* room for any year, as -Wformat-truncation asks */
    struct utc u;
    json_object *o;
    const char *s;
    size_t n;
    int ret;

    if (len)
        buf[0] = '\0';
    utc_from_secs(ev->time.tv_sec, &u);
    snprintf(ts, sizeof(ts), "%04lld-%02u-%02uT%02u:%02u:%02u.%06ldZ", (long long)u.year,
             u.mon, u.day, u.hour, u.min, u.sec, ev->time.tv_nsec / 1000);

    o = json_object_new_object();
    if (!o)
        return -ENOMEM;
    json_object_object_add(o, "time", json_object_new_string(ts));
    json_object_object_add(o, "kind", json_object_new_string(mce_kind_name(ev->kind)));
    json_object_object_add(o, "encoding",
                           json_object_new_string(mce_encoding_name(ev->encoding)));
    json_object_object_add(o, "hva", mce_hex_or_null(ev->hva_known, ev->hva));
    json_object_object_add(o, "gpa", mce_hex_or_null(ev->gpa_known, ev->gpa));
    json_object_object_add(o, "page_size", json_object_new_int64((int64_t)ev->page_size));
    json_object_object_add(o, "vcpu", ev->vcpu >= 0 ? json_object_new_int(ev->vcpu) : NULL);
    json_object_object_add(o, "injected", json_object_new_boolean(ev->injected));
    json_object_object_add(o, "reason", json_object_new_string(ev->reason ? ev->reason : ""));
    if (ev->sent_ns)
        json_object_object_add(o, "sent_ns", json_object_new_int64((int64_t)ev->sent_ns));
    if (ev->done_ns)
        json_object_object_add(o, "done_ns", json_object_new_int64((int64_t)ev->done_ns));

    s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    n = s ? strlen(s) : 0;
    if (!s) {
        ret = -ENOMEM;
    } else if (n + 2 > len) {
        ret = -ENOSPC;
    } else {
        memcpy(buf, s, n);
        buf[n] = '\n';
        buf[n + 1] = '\0';
        ret = (int)(n + 1);
    }
    json_object_put(o);
    return ret;
}

void mce_log_prepare(void)
{
    json_object *o = json_object_new_object();

    if (o) {
        json_object_object_add(o, "seed", json_object_new_boolean(0));
        json_object_put(o);
    }
}

int mce_log_write(int fd, const struct mce_event *ev)
{
    char line[1024];
    int n = mce_log_line(line, sizeof(line), ev);
    ssize_t w;

    if (n < 0)
        return n;
    do {
        w = write(fd, line, (size_t)n);
    } while (w < 0 && errno == EINTR);
    if (w < 0)
        return -errno;
    return w == n ? 0 : -EIO;
}
