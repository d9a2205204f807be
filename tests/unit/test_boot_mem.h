/* Shared by the boot unit tests: a struct guest_mem laid out by
 * gm_layout_compute over anonymous NORESERVE mappings, so multi-GiB guests
 * cost nothing until touched, plus synthetic bzImage and ELF64 images. */
#ifndef DVMM_TEST_BOOT_MEM_H
#define DVMM_TEST_BOOT_MEM_H

#include <elf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <asm/bootparam.h>

#include "guest-mem/gm.h"

static inline struct guest_mem *tmem_new(uint64_t ram)
{
    struct guest_mem *gm = calloc(1, sizeof(*gm));

    if (!gm || gm_layout_compute(ram, &gm->layout) < 0)
        abort();
    for (unsigned i = 0; i < gm->layout.nr; i++) {
        void *p = mmap(NULL, gm->layout.r[i].size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
            abort();
        gm->layout.r[i].hva = p;
    }
    gm->backend = GM_ANON;
    gm->page_size = 4096;
    gm->fd = -1;
    pthread_mutex_init(&gm->poison_lock, NULL);
    return gm;
}

static inline void tmem_free(struct guest_mem *gm)
{
    for (unsigned i = 0; i < gm->layout.nr; i++)
        munmap(gm->layout.r[i].hva, gm->layout.r[i].size);
    free(gm->poison);
    pthread_mutex_destroy(&gm->poison_lock);
    free(gm);
}

static inline uint8_t *tmem_hva(struct guest_mem *gm, uint64_t gpa)
{
    uint8_t *p = gm_gpa_to_hva(gm, gpa, 1);
    if (!p)
        abort();
    return p;
}

#define TBZ_SETUP_SECTS 4
#define TBZ_SETUP_SIZE ((TBZ_SETUP_SECTS + 1) * 512)

/* A minimal bzImage: real-mode part is zeros plus the setup header; the
 * protected-mode part is `payload` bytes of a recognisable pattern. */
static inline uint8_t *tbz_build(size_t payload, size_t *len)
{
    size_t n = TBZ_SETUP_SIZE + payload;
    uint8_t *b = calloc(1, n);
    struct setup_header h = {0};

    h.setup_sects = TBZ_SETUP_SECTS;
    h.syssize = (uint32_t)(payload / 16);
    h.boot_flag = 0xaa55;
    /* jump at 0x200: short jmp whose offset byte (0x201) says where the
     * header ends: 0x202 + that byte. */
    h.jump = 0xeb | ((0x1f1 + sizeof(h) - 0x202) << 8);
    h.header = 0x53726448;
    h.version = 0x020f;
    h.loadflags = LOADED_HIGH;
    h.initrd_addr_max = 0x7fffffff;
    h.kernel_alignment = 0x200000;
    h.relocatable_kernel = 1;
    h.xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G;
    h.cmdline_size = 2047;
    h.pref_address = 0x1000000;
    h.init_size = 0x400000;
    memcpy(b + 0x1f1, &h, sizeof(h));
    for (size_t i = 0; i < payload; i++)
        b[TBZ_SETUP_SIZE + i] = (uint8_t)(i * 7 + 3);
    *len = n;
    return b;
}

static inline struct setup_header *tbz_hdr(uint8_t *b)
{
    return (struct setup_header *)(b + 0x1f1);
}

/* An ELF64 executable with two PT_LOAD segments: text (filesz 0x1000 at
 * paddr) and data+bss (filesz 0x100, memsz 0x3000 at paddr + 0x2000). */
struct telf {
    Elf64_Ehdr eh;
    Elf64_Phdr ph[3];
    uint8_t text[0x1000];
    uint8_t data[0x100];
} __attribute__((packed));

static inline struct telf *telf_build(uint64_t paddr, uint64_t vaddr)
{
    struct telf *e = calloc(1, sizeof(*e));

    memcpy(e->eh.e_ident, ELFMAG, SELFMAG);
    e->eh.e_ident[EI_CLASS] = ELFCLASS64;
    e->eh.e_ident[EI_DATA] = ELFDATA2LSB;
    e->eh.e_ident[EI_VERSION] = EV_CURRENT;
    e->eh.e_type = ET_EXEC;
    e->eh.e_machine = EM_X86_64;
    e->eh.e_version = EV_CURRENT;
    e->eh.e_entry = paddr + 0x10;
    e->eh.e_phoff = offsetof(struct telf, ph);
    e->eh.e_ehsize = sizeof(Elf64_Ehdr);
    e->eh.e_phentsize = sizeof(Elf64_Phdr);
    e->eh.e_phnum = 3;
    e->ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_flags = PF_R | PF_X,
        .p_offset = offsetof(struct telf, text), .p_vaddr = vaddr, .p_paddr = paddr,
        .p_filesz = 0x1000, .p_memsz = 0x1000, .p_align = 0x1000 };
    e->ph[1] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_flags = PF_R | PF_W,
        .p_offset = offsetof(struct telf, data), .p_vaddr = vaddr + 0x2000,
        .p_paddr = paddr + 0x2000, .p_filesz = 0x100, .p_memsz = 0x3000, .p_align = 0x1000 };
    e->ph[2] = (Elf64_Phdr){ .p_type = PT_NOTE, .p_offset = 0, .p_filesz = 4 };
    for (size_t i = 0; i < sizeof(e->text); i++)
        e->text[i] = (uint8_t)(i ^ 0x5a);
    memset(e->data, 0xd5, sizeof(e->data));
    return e;
}

/* Write buf to a fresh temporary file; the caller unlinks path. */
static inline void tfile_write(char *path, size_t pathlen, const void *buf, size_t len)
{
    snprintf(path, pathlen, "/tmp/dvmm-boot-test-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0 || (len && write(fd, buf, len) != (ssize_t)len))
        abort();
    close(fd);
}

#endif
