/* bzImage and ELF64 kernel loaders and the initrd loader (see loader.h).
 * Every image field used as an offset or size is checked before use; the
 * image is validated fully before the first byte is written to the guest,
 * so a rejected image leaves guest memory as it was. */
#include "vmm/loader.h"
#include "vmm/log.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BZ_HDR_OFF   0x1f1
#define BZ_MAGIC_OFF 0x202
#define BZ_MAGIC     0x53726448U     /* "HdrS" */
#define BZ_BOOT_FLAG 0xaa55
#define BZ_SECTOR    512

/* The highest poisoned page overlapping [gpa, gpa+len), or UINT64_MAX. */
static uint64_t loader_poison_in(const struct loader_target *t, uint64_t gpa, uint64_t len)
{
    uint64_t hit = UINT64_MAX;

    for (unsigned i = 0; i < t->npoison; i++) {
        uint64_t p = t->poison[i] & ~(GM_PAGE_SIZE - 1);
        if (p < gpa + len && p + GM_PAGE_SIZE > gpa)
            hit = p;
    }
    return hit;
}

int loader_range_ok(const struct loader_target *t, uint64_t gpa, uint64_t len)
{
    if (len == 0)
        len = 1;
    if (gpa + len < gpa)
        return 0;
    if (!gm_gpa_to_hva(t->gm, gpa, len))
        return 0;
    return loader_poison_in(t, gpa, len) == UINT64_MAX;
}

/* Why [gpa, gpa+len) cannot be written, as an errno and a message tail. */
static int loader_range_check(const struct loader_target *t, const char *what,
                              const char *part, uint64_t gpa, uint64_t len,
                              char *err, size_t errlen)
{
    uint64_t p;

    if (gpa < t->floor)
        return log_fail(err, errlen, -EINVAL,
                           "%s: %s at GPA 0x%llx overlaps dvmm's boot structures below 0x%llx",
                           what, part, (unsigned long long)gpa,
                           (unsigned long long)t->floor);
    if (gpa + len < gpa || !gm_gpa_to_hva(t->gm, gpa, len ? len : 1))
        return log_fail(err, errlen, -ENOSPC,
                           "%s: %s [0x%llx, +%llu bytes) is outside guest RAM (%llu bytes; "
                           "low RAM ends at 0x%llx)",
                           what, part, (unsigned long long)gpa, (unsigned long long)len,
                           (unsigned long long)t->gm->layout.ram_size,
                           (unsigned long long)(t->gm->layout.r[0].gpa + t->gm->layout.r[0].size));
    p = loader_poison_in(t, gpa, len);
    if (p != UINT64_MAX)
        return log_fail(err, errlen, -EFAULT,
                           "%s: %s [0x%llx, +%llu bytes) covers poisoned page 0x%llx",
                           what, part, (unsigned long long)gpa, (unsigned long long)len,
                           (unsigned long long)p);
    return 0;
}

/* An image: its first head_len bytes in memory (all of it for
 * loader_kernel_buf), the rest read from fd only where the loader copies
 * it into guest RAM.  A kernel file's loadable bytes so go straight into
 * guest RAM, one read each, and its other bytes (symbols, debug info, the
 * bzImage's real-mode setup) are never read. */
struct loader_img {
    const uint8_t *head;
    size_t head_len;
    size_t len;                 /* the whole image */
    int fd;                     /* -1: head is the whole image */
    const char *path;
};

static int loader_pread_all(int fd, void *dst, uint64_t off, uint64_t len,
                            const char *key, const char *path, char *err, size_t errlen);

/* Copy image bytes [off, off+n), which the caller checked against im->len,
 * to dst.  A file that shrinks or fails mid-way leaves guest RAM partly
 * written: the image itself was valid, the host's file went wrong. */
static int loader_img_copy(const struct loader_img *im, void *dst, uint64_t off, uint64_t n,
                           char *err, size_t errlen)
{
    uint64_t from_head = 0;

    if (off < im->head_len) {
        from_head = im->head_len - off < n ? im->head_len - off : n;
        memcpy(dst, im->head + off, from_head);
    }
    if (from_head == n)
        return 0;
    return loader_pread_all(im->fd, (uint8_t *)dst + from_head, off + from_head,
                            n - from_head, "vm.kernel", im->path, err, errlen);
}

static int loader_bzimage(const struct loader_target *t, const struct loader_img *im,
                          const char *what, struct loader_kernel *out,
                          char *err, size_t errlen)
{
    const uint8_t *img = im->head;
    size_t len = im->len;
    struct setup_header *h = &out->hdr;
    size_t hdr_end = BZ_MAGIC_OFF + img[BZ_MAGIC_OFF - 1];
    size_t setup_size, payload;
    uint64_t load, need;
    int rc;

    memset(h, 0, sizeof(*h));
    if (hdr_end > BZ_HDR_OFF + sizeof(*h))
        hdr_end = BZ_HDR_OFF + sizeof(*h);
    /* The head holds at least LOADER_HEAD bytes (> hdr_end) or the whole image. */
    if (hdr_end > im->head_len)
        return log_fail(err, errlen, -EINVAL,
                           "%s: truncated bzImage (%zu bytes, setup header ends at 0x%zx)",
                           what, len, hdr_end);
    memcpy(h, img + BZ_HDR_OFF, hdr_end - BZ_HDR_OFF);
    out->hdr_len = hdr_end - BZ_HDR_OFF;

    if (h->boot_flag != BZ_BOOT_FLAG)
        return log_fail(err, errlen, -EINVAL, "%s: bzImage boot_flag is 0x%04x, not 0xaa55",
                           what, h->boot_flag);
    if (h->version < LOADER_BZ_MIN_VERSION)
        return log_fail(err, errlen, -EINVAL,
                           "%s: boot protocol %u.%02u is older than 2.06", what,
                           h->version >> 8, h->version & 0xff);
    /* xloadflags exists from 2.12; without it there is no 64-bit entry. */
    if (h->version < 0x020c || !(h->xloadflags & XLF_KERNEL_64))
        return log_fail(err, errlen, -EINVAL,
                           "%s: not a 64-bit kernel (no XLF_KERNEL_64 in xloadflags, protocol %u.%02u)",
                           what, h->version >> 8, h->version & 0xff);
    if (!(h->loadflags & LOADED_HIGH))
        return log_fail(err, errlen, -EINVAL,
                           "%s: zImage (LOADED_HIGH not set) cannot be loaded", what);

    setup_size = ((size_t)(h->setup_sects ? h->setup_sects : 4) + 1) * BZ_SECTOR;
    if (setup_size >= len)
        return log_fail(err, errlen, -EINVAL,
                           "%s: truncated bzImage (%zu bytes, setup code is %zu)",
                           what, len, setup_size);
    payload = len - setup_size;
    if ((uint64_t)h->syssize * 16 > payload)
        return log_fail(err, errlen, -EINVAL,
                           "%s: truncated bzImage (protected-mode kernel is %zu bytes, header says %llu)",
                           what, payload, (unsigned long long)h->syssize * 16);

    if (payload <= LOADER_BZ_ENTRY64_OFF)
        return log_fail(err, errlen, -EINVAL,
                           "%s: truncated bzImage (protected-mode kernel of %zu bytes ends before "
                           "the 64-bit entry at +0x%x)", what, payload, LOADER_BZ_ENTRY64_OFF);

    load = LOADER_BZ_DEFAULT_ADDR;
    if (h->relocatable_kernel && h->version >= 0x020a && h->pref_address)
        load = h->pref_address;
    need = payload;
    if (h->version >= 0x020a && h->init_size > need)
        need = h->init_size;
    rc = loader_range_check(t, what, "kernel", load, need, err, errlen);
    if (rc < 0)
        return rc;

    rc = loader_img_copy(im, gm_gpa_to_hva(t->gm, load, payload), setup_size, payload,
                         err, errlen);
    if (rc < 0)
        return rc;
    out->kind = LOADER_BZIMAGE;
    out->start = load;
    out->end = load + need;
    out->entry = load + LOADER_BZ_ENTRY64_OFF;
    return 0;
}

/* Whether [a, a+alen) meets a PT_LOAD segment before segment `upto` (the
 * ones already written). */
static bool loader_elf_overlaps(const uint8_t *phdrs, unsigned upto, uint64_t a, uint64_t alen)
{
    for (unsigned i = 0; i < upto; i++) {
        Elf64_Phdr ph;

        memcpy(&ph, phdrs + (uint64_t)i * sizeof(ph), sizeof(ph));
        if (ph.p_type == PT_LOAD && ph.p_memsz && ph.p_paddr < a + alen &&
            a < ph.p_paddr + ph.p_memsz)
            return true;
    }
    return false;
}

static int loader_elf64(const struct loader_target *t, const struct loader_img *im,
                        const char *what, struct loader_kernel *out,
                        char *err, size_t errlen)
{
    const uint8_t *img = im->head;
    size_t len = im->len;
    Elf64_Ehdr eh;
    uint64_t start = UINT64_MAX, end = 0, entry = 0;
    bool entry_found = false;
    unsigned nload = 0;
    int rc;

    if (len < sizeof(eh))
        return log_fail(err, errlen, -EINVAL, "%s: truncated ELF header (%zu bytes)", what, len);
    memcpy(&eh, img, sizeof(eh));
    if (eh.e_ident[EI_CLASS] != ELFCLASS64)
        return log_fail(err, errlen, -EINVAL, "%s: not an ELF64 file (class %u)",
                           what, eh.e_ident[EI_CLASS]);
    if (eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_machine != EM_X86_64)
        return log_fail(err, errlen, -EINVAL, "%s: not a little-endian x86-64 ELF (machine %u)",
                           what, eh.e_machine);
    if (eh.e_type != ET_EXEC)
        return log_fail(err, errlen, -EINVAL, "%s: ELF type %u is not ET_EXEC", what, eh.e_type);
    /* loader_kernel_file puts the program headers in the head. */
    if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 ||
        eh.e_phoff > im->head_len || (im->head_len - eh.e_phoff) / sizeof(Elf64_Phdr) < eh.e_phnum)
        return log_fail(err, errlen, -EINVAL,
                           "%s: bad ELF program headers (phoff 0x%llx, %u x %u bytes, file %zu bytes)",
                           what, (unsigned long long)eh.e_phoff, eh.e_phnum, eh.e_phentsize, len);

    /* Pass 1 validates every segment; pass 2 writes. */
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < eh.e_phnum; i++) {
            Elf64_Phdr ph;
            char part[48];

            memcpy(&ph, img + eh.e_phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
            if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
                continue;
            if (pass == 1) {
                uint8_t *dst = gm_gpa_to_hva(t->gm, ph.p_paddr, ph.p_memsz);
                uint64_t bss = ph.p_paddr + ph.p_filesz, bss_len = ph.p_memsz - ph.p_filesz;

                rc = loader_img_copy(im, dst, ph.p_offset, ph.p_filesz, err, errlen);
                if (rc < 0)
                    return rc;
                /* Untouched guest RAM reads as zero: clearing it would only
                 * fault in pages the guest may never use (the test guest's
                 * bss is 3 MiB). */
                if (!t->gm->pristine ||
                    loader_elf_overlaps(img + eh.e_phoff, i, bss, bss_len))
                    memset(dst + ph.p_filesz, 0, bss_len);
                continue;
            }
            snprintf(part, sizeof(part), "segment %u", i);
            if (ph.p_filesz > ph.p_memsz || ph.p_offset > len || len - ph.p_offset < ph.p_filesz)
                return log_fail(err, errlen, -EINVAL,
                                   "%s: ELF %s (offset 0x%llx, filesz %llu, memsz %llu) lies beyond "
                                   "the file (%zu bytes)", what, part,
                                   (unsigned long long)ph.p_offset, (unsigned long long)ph.p_filesz,
                                   (unsigned long long)ph.p_memsz, len);
            rc = loader_range_check(t, what, part, ph.p_paddr, ph.p_memsz, err, errlen);
            if (rc < 0)
                return rc;
            nload++;
            if (ph.p_paddr < start)
                start = ph.p_paddr;
            if (ph.p_paddr + ph.p_memsz > end)
                end = ph.p_paddr + ph.p_memsz;
            /* vmlinux's e_entry is physical; other linkers give a virtual
             * one, which the segment's vaddr->paddr offset translates. */
            if (!entry_found && eh.e_entry >= ph.p_paddr && eh.e_entry - ph.p_paddr < ph.p_memsz) {
                entry = eh.e_entry;
                entry_found = true;
            } else if (!entry_found && eh.e_entry >= ph.p_vaddr &&
                       eh.e_entry - ph.p_vaddr < ph.p_memsz) {
                entry = ph.p_paddr + (eh.e_entry - ph.p_vaddr);
                entry_found = true;
            }
        }
        if (pass == 0 && nload == 0)
            return log_fail(err, errlen, -EINVAL, "%s: ELF has no PT_LOAD segment", what);
        if (pass == 0 && !entry_found)
            return log_fail(err, errlen, -EINVAL,
                               "%s: ELF entry 0x%llx is outside every loaded segment",
                               what, (unsigned long long)eh.e_entry);
    }

    memset(&out->hdr, 0, sizeof(out->hdr));
    out->hdr_len = 0;
    out->kind = LOADER_ELF64;
    out->start = start;
    out->end = end;
    out->entry = entry;
    return 0;
}

static int loader_kernel_img(const struct loader_target *t, const struct loader_img *im,
                             const char *what, struct loader_kernel *out,
                             char *err, size_t errlen)
{
    const uint8_t *b = im->head;
    uint32_t magic;
    int rc;

    if (im->head_len >= BZ_MAGIC_OFF + 4) {
        memcpy(&magic, b + BZ_MAGIC_OFF, 4);
        if (magic == BZ_MAGIC) {
            rc = loader_bzimage(t, im, what, out, err, errlen);
            t->gm->pristine = false;
            return rc;
        }
    }
    if (im->head_len >= SELFMAG && memcmp(b, ELFMAG, SELFMAG) == 0) {
        rc = loader_elf64(t, im, what, out, err, errlen);
        t->gm->pristine = false;
        return rc;
    }
    return log_fail(err, errlen, -ENOEXEC,
                       "%s: neither a bzImage (no \"HdrS\" at 0x202) nor an ELF64 file (%zu bytes)",
                       what, im->len);
}

int loader_kernel_buf(const struct loader_target *t, const void *img, size_t len,
                      const char *what, struct loader_kernel *out,
                      char *err, size_t errlen)
{
    struct loader_img im = { .head = img, .head_len = len, .len = len, .fd = -1 };

    return loader_kernel_img(t, &im, what, out, err, errlen);
}

/* Open a regular file for reading; *size is its length. */
static int loader_open(const char *path, const char *key, uint64_t *size,
                       char *err, size_t errlen)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return log_fail(err, errlen, -errno, "%s=%s: %s", key, path, strerror(errno));
    if (fstat(fd, &st) < 0) {
        int rc = -errno;
        close(fd);
        return log_fail(err, errlen, rc, "%s=%s: %s", key, path, strerror(-rc));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return log_fail(err, errlen, -EINVAL, "%s=%s: not a regular file", key, path);
    }
    *size = (uint64_t)st.st_size;
    return fd;
}

/* Bounce size for loader_pread_all's fallback. */
#define LOADER_BOUNCE (1U << 20)

/* Read exactly len bytes at off; a file that shrank is an error.
 * dst is usually guest RAM.  Some file systems (9p without a page cache,
 * FUSE direct I/O) pin the destination pages with get_user_pages, which a
 * PFN-mapped backend such as dmemfs has none of: the read fails with
 * EFAULT, so the rest goes through an ordinary heap buffer instead. */
static int loader_pread_all(int fd, void *dst, uint64_t off, uint64_t len,
                            const char *key, const char *path, char *err, size_t errlen)
{
    uint64_t done = 0;
    uint8_t *bounce = NULL;

    while (done < len) {
        size_t chunk = len - done > (1U << 30) ? (1U << 30) : (size_t)(len - done);
        uint8_t *to = (uint8_t *)dst + done;
        ssize_t n;

        if (bounce && chunk > LOADER_BOUNCE)
            chunk = LOADER_BOUNCE;
        n = pread(fd, bounce ? bounce : to, chunk, (off_t)(off + done));
        if (n < 0 && errno == EFAULT && !bounce) {
            bounce = malloc(LOADER_BOUNCE);
            if (!bounce)
                return log_fail(err, errlen, -ENOMEM, "%s=%s: read: %s", key, path,
                                strerror(ENOMEM));
            continue;
        }
        if (n > 0 && bounce)
            memcpy(to, bounce, (size_t)n);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;

            free(bounce);
            return log_fail(err, errlen, -e, "%s=%s: read: %s", key, path, strerror(e));
        }
        if (n == 0) {
            free(bounce);
            return log_fail(err, errlen, -EIO, "%s=%s: file shrank to %llu bytes while reading",
                            key, path, (unsigned long long)(off + done));
        }
        done += (uint64_t)n;
    }
    free(bounce);
    return 0;
}

/* The first read of a kernel file: enough for the bzImage setup header
 * and the program headers of any ordinary ELF (vmlinux has a handful). */
#define LOADER_HEAD (64U << 10)

int loader_kernel_file(const struct loader_target *t, const char *path,
                       struct loader_kernel *out, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

    if (fd < 0)
        return log_fail(err, errlen, -errno, "vm.kernel=%s: %s", path, strerror(errno));
    rc = loader_kernel_fd(t, fd, path, out, err, errlen);
    close(fd);
    return rc;
}

int loader_kernel_fd(const struct loader_target *t, int fd, const char *path,
                     struct loader_kernel *out, char *err, size_t errlen)
{
    char what[PATH_MAX + 16];
    struct loader_img im = { .fd = -1, .path = path };
    struct stat st;
    uint64_t size;
    uint8_t *buf;
    int rc;

    /* Type and size from the open file itself, whoever opened it. */
    if (fstat(fd, &st) < 0)
        return log_fail(err, errlen, -errno, "vm.kernel=%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return log_fail(err, errlen, -EINVAL, "vm.kernel=%s: not a regular file", path);
    size = (uint64_t)st.st_size;
    if (size > t->gm->layout.ram_size) {
        return log_fail(err, errlen, -ENOSPC,
                           "vm.kernel=%s: %llu bytes is larger than guest RAM (%llu bytes)", path,
                           (unsigned long long)size, (unsigned long long)t->gm->layout.ram_size);
    }
    im.len = (size_t)size;
    im.head_len = size < LOADER_HEAD ? (size_t)size : LOADER_HEAD;
    buf = malloc(im.head_len ? im.head_len : 1);
    if (!buf) {
        return log_fail(err, errlen, -ENOMEM, "vm.kernel=%s: out of memory", path);
    }
    rc = loader_pread_all(fd, buf, 0, im.head_len, "vm.kernel", path, err, errlen);
    if (rc == 0 && im.head_len < im.len && im.head_len >= sizeof(Elf64_Ehdr) &&
        memcmp(buf, ELFMAG, SELFMAG) == 0) {
        Elf64_Ehdr eh;

        /* Program headers past the head (an odd but valid ELF): read it all. */
        memcpy(&eh, buf, sizeof(eh));
        if (eh.e_phoff > im.head_len ||
            (im.head_len - eh.e_phoff) / sizeof(Elf64_Phdr) < eh.e_phnum) {
            uint8_t *all = realloc(buf, im.len);

            if (!all) {
                rc = log_fail(err, errlen, -ENOMEM, "vm.kernel=%s: out of memory", path);
            } else {
                buf = all;
                im.head_len = im.len;
                rc = loader_pread_all(fd, buf, 0, im.len, "vm.kernel", path, err, errlen);
            }
        }
    }
    if (rc == 0) {
        im.head = buf;
        im.fd = fd;
        snprintf(what, sizeof(what), "vm.kernel=%s", path);
        rc = loader_kernel_img(t, &im, what, out, err, errlen);
    }
    free(buf);
    return rc;
}

int loader_initrd_file(const struct loader_target *t, const char *path,
                       uint64_t lo, uint64_t hi, uint64_t *gpa, uint64_t *size,
                       char *err, size_t errlen)
{
    /* len = 0: loader_open, now inlined here alone, sets it only on
     * success, which GCC cannot tell from log_fail's return. */
    uint64_t len = 0, at;
    int fd, rc;

    fd = loader_open(path, "vm.initrd", &len, err, errlen);
    if (fd < 0)
        return fd;
    lo = gm_align_up(lo < t->floor ? t->floor : lo, GM_PAGE_SIZE);
    if (len == 0 || len > hi || hi - len < lo) {
        close(fd);
        return log_fail(err, errlen, len ? -ENOSPC : -EINVAL,
                           "vm.initrd=%s: %llu bytes %s [0x%llx, 0x%llx) (%llu bytes free after the kernel)",
                           path, (unsigned long long)len, len ? "do not fit in" : "(empty) for",
                           (unsigned long long)lo, (unsigned long long)hi,
                           (unsigned long long)(hi > lo ? hi - lo : 0));
    }
    /* Highest page-aligned start, stepping below any poisoned page. */
    at = gm_align_down(hi - len, GM_PAGE_SIZE);
    for (;;) {
        uint64_t p = loader_poison_in(t, at, len);
        if (p == UINT64_MAX && gm_gpa_to_hva(t->gm, at, len))
            break;
        if (p == UINT64_MAX || p < lo + len) {
            close(fd);
            return log_fail(err, errlen, -ENOSPC,
                               "vm.initrd=%s: %llu bytes do not fit in guest RAM [0x%llx, 0x%llx)%s",
                               path, (unsigned long long)len, (unsigned long long)lo,
                               (unsigned long long)hi,
                               p == UINT64_MAX ? "" : " around the poisoned pages");
        }
        at = gm_align_down(p - len, GM_PAGE_SIZE);
    }
    rc = loader_pread_all(fd, gm_gpa_to_hva(t->gm, at, len), 0, len, "vm.initrd", path,
                          err, errlen);
    t->gm->pristine = false;
    close(fd);
    if (rc < 0)
        return rc;
    *gpa = at;
    *size = len;
    return 0;
}
