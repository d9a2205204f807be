/* blkcrash: the guest side of the crash-consistency test
 * (tests/integration/blk-crash.t).  It writes numbered batches of 4 KiB
 * blocks to the first virtio-blk device, spread over its queues, and after
 * each batch:
 *   1. waits until every write of the batch has completed with OK,
 *   2. sends one FLUSH (on queue batch % queues) and waits for its OK,
 *   3. prints "BLKCRASH ack B" on the console.
 * Batch B+1 starts only after that line is out, so at any moment at most
 * one batch is unacknowledged.  The host kills dvmm with SIGKILL at a
 * random moment and checks the image (tests/lib/blk-crash-check.py): every
 * block of every acknowledged batch must be there.  This is the ordering
 * the virtio spec gives a FLUSH (a write is stable once it has
 * completed and a FLUSH sent after that has completed), i.e. what a
 * filesystem relies on for its journal.
 *
 * Options: blkcrash_nonce=N (makes this run's data unique; the image
 * starts as zeros), blkcrash_batches=N (0: until killed; default 64),
 * blkcrash_batch=K (blocks per batch, 1..32, default 16),
 * blkcrash_queues=Q (at most the device's num_queues; default all, max 8).
 *
 * Batch b, slot i writes block ((b*K + i) mod N) * STRIDE mod N of the N
 * 4 KiB blocks of the disk, so batches wrap around the disk and overwrite
 * older ones.  Every 512-byte sector describes itself: a header ("BLKCRASH",
 * the nonce, then batch, block, sector in block and slot as 32-bit words),
 * 116 words blkcrash_word(nonce, sector, i), and a trailer repeating batch,
 * block, sector and slot (little-endian).  So the checker can tell which
 * write each sector came from, and a torn sector shows.  The body depends
 * only on the nonce and the sector's index in its block: it is computed
 * once and copied with rep movsq, because on the development machines'
 * PVM /dev/kvm the test guest runs in KVM's instruction emulator, at about
 * 10^4 host cycles per instruction.
 *
 * Each queue completes on its own MSI-X vector, aimed at the BSP, which
 * sleeps in hlt between completions (a LAPIC timer bounds every sleep):
 * a busy-polling vCPU would starve dvmm's I/O threads on a small host. */
#include <stdbool.h>
#include <stddef.h>

#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>

#include "checks.h"
#include "cmdline.h"
#include "console.h"
#include "fmt.h"
#include "idt.h"
#include "io.h"
#include "lib.h"
#include "virtio.h"

#define SECTOR		512
#define BLOCK		4096
#define SECTORS_PER_BLOCK (BLOCK / SECTOR)
#define MAX_BATCH	32
#define MAX_QUEUES	8
#define STRIDE		65521U	/* prime: a permutation of the blocks unless N is a multiple */
#define WORDS		((SECTOR - 48) / 4)
#define MSR_APIC_BASE	0x1b
#define APIC_EOI	0x0b0
#define APIC_SVR	0x0f0
#define APIC_LVT_TIMER	0x320
#define APIC_TIMER_INIT	0x380
#define APIC_TIMER_DIV	0x3e0
#define APIC_ID		0x020
#define PIC1_DATA	0x21
#define PIC2_DATA	0xa1
#define VEC_QUEUE0	0x40	/* queue q completes on 0x40 + q */
#define VEC_TIMER	0xef
#define VEC_SPURIOUS	0xff
/* A stalled request is a failure, not a hang; generous for nested KVM. */
#define REQ_WAIT_CYCLES	200000000000ULL

struct crash_qmem {
	uint8_t ring[3 * 4096];
	struct virtio_blk_outhdr hdr[VIO_QSIZE];
	uint8_t status[VIO_QSIZE];
} __attribute__((aligned(4096)));

struct crash_id {
	uint32_t batch, block, sector, slot;
};

struct crash_sector {
	char magic[8];
	uint64_t nonce;
	struct crash_id id;
	uint32_t w[WORDS];
	struct crash_id trailer;
} __attribute__((packed));

_Static_assert(sizeof(struct crash_sector) == SECTOR, "one sector");

static struct crash_qmem crash_mem[MAX_QUEUES];
static uint8_t crash_data[MAX_BATCH][BLOCK] __attribute__((aligned(4096)));
static uint8_t crash_body[BLOCK] __attribute__((aligned(4096)));
static struct vio_dev crash_dev;
static uint64_t crash_apic;

static void crash_apic_write(uint32_t reg, uint32_t v)
{
	mmio_write32(crash_apic + reg, v);
}

/* Queue vectors and the timer only end a hlt: nothing to do but EOI. */
static bool crash_irq(struct exc_frame *f)
{
	if (f->vector != VEC_SPURIOUS)
		crash_apic_write(APIC_EOI, 0);
	return true;
}

/* LAPIC on with a periodic timer (~16 ms at KVM's 1 GHz LAPIC clock, /16)
 * as the bound on every hlt; the 8259s masked (they would deliver the PIT
 * on vector 8). */
static bool crash_irq_setup(struct check_ctx *c)
{
	if (rdmsr(MSR_APIC_BASE) & (1ULL << 10)) {
		check_skip(c, "LAPIC in x2APIC mode");
		return false;
	}
	crash_apic = rdmsr(MSR_APIC_BASE) & 0xffffff000ULL;
	for (unsigned v = VEC_QUEUE0; v < VEC_QUEUE0 + MAX_QUEUES; v++)
		idt_set_hook((uint8_t)v, crash_irq);
	idt_set_hook(VEC_TIMER, crash_irq);
	idt_set_hook(VEC_SPURIOUS, crash_irq);
	outb(PIC1_DATA, 0xff);
	outb(PIC2_DATA, 0xff);
	__asm__ volatile("cli");
	crash_apic_write(APIC_SVR, 0x100 | VEC_SPURIOUS);
	crash_apic_write(APIC_TIMER_DIV, 0x3);
	crash_apic_write(APIC_LVT_TIMER, 1U << 17 | VEC_TIMER);
	crash_apic_write(APIC_TIMER_INIT, 0x100000);
	return true;
}

struct crash_opts {
	uint64_t nonce, batches, batch, queues;
};

/* murmur3's finaliser over the nonce and the word's place in the block. */
static uint32_t blkcrash_word(uint64_t nonce, uint32_t sector, uint32_t i)
{
	uint32_t x = (uint32_t)nonce ^ (uint32_t)(nonce >> 32) * 0x27d4eb2dU;

	x ^= (sector * WORDS + i) * 0x9e3779b1U;
	x ^= x >> 16;
	x *= 0x85ebca6bU;
	x ^= x >> 13;
	x *= 0xc2b2ae35U;
	x ^= x >> 16;
	return x;
}

static void blkcrash_body_init(uint64_t nonce)
{
	for (uint32_t s = 0; s < SECTORS_PER_BLOCK; s++) {
		struct crash_sector *cs = (struct crash_sector *)(crash_body + s * SECTOR);

		memset(cs, 0, SECTOR);
		memcpy(cs->magic, "BLKCRASH", 8);
		cs->nonce = nonce;
		for (uint32_t i = 0; i < WORDS; i++)
			cs->w[i] = blkcrash_word(nonce, s, i);
	}
}

static void blkcrash_fill(uint8_t *buf, uint32_t batch, uint32_t block, uint32_t slot)
{
	uint64_t n = BLOCK / 8;
	void *d = buf;
	const void *src = crash_body;

	__asm__ volatile("rep movsq" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
	for (uint32_t s = 0; s < SECTORS_PER_BLOCK; s++) {
		struct crash_sector *cs = (struct crash_sector *)(buf + s * SECTOR);
		struct crash_id id = { batch, block, s, slot };

		cs->id = id;
		cs->trailer = id;
	}
}

static uint64_t blkcrash_pos(uint64_t batch, unsigned k, unsigned slot, uint64_t nblocks)
{
	uint64_t n = (batch % nblocks * k + slot) % nblocks;

	return n * STRIDE % nblocks;
}

static bool blkcrash_opts(struct check_ctx *c, struct crash_opts *o)
{
	static const struct {
		const char *key;
		uint64_t def, min, max;
	} keys[] = {
		{ "blkcrash_nonce", 0, 0, ~0ULL },
		{ "blkcrash_batches", 64, 0, ~0ULL },
		{ "blkcrash_batch", 16, 1, MAX_BATCH },
		{ "blkcrash_queues", 0, 0, MAX_QUEUES },
	};
	uint64_t *out[] = { &o->nonce, &o->batches, &o->batch, &o->queues };

	for (unsigned i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		int rc = cmdline_get_u64(c->bi->cmdline, keys[i].key, false, out[i]);

		if (rc < 0 || (rc > 0 && (*out[i] < keys[i].min || *out[i] > keys[i].max))) {
			check_fail(c, "%s= must be a number in %lu..%lu", keys[i].key, keys[i].min,
				   keys[i].max);
			return false;
		}
		if (rc == 0)
			*out[i] = keys[i].def;
	}
	return true;
}

/* Reset, features (FLUSH required), queues without interrupts, DRIVER_OK.
 * Returns the number of queues set up (0 on failure). */
static unsigned blkcrash_bring_up(struct check_ctx *c, uint64_t want_queues, uint64_t *capacity)
{
	struct vio_dev *d = &crash_dev;
	uint64_t want = 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_BLK_F_FLUSH |
			1ULL << VIRTIO_BLK_F_MQ, got;
	unsigned nq = 1;
	uint8_t gen;

	if (!vio_reset(d)) {
		check_fail(c, "device status never read back 0 after reset");
		return 0;
	}
	vio_set_status(d, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	vio_set_status(d, VIRTIO_CONFIG_S_DRIVER);
	if (!(d->features & (1ULL << VIRTIO_BLK_F_FLUSH))) {
		check_fail(c, "device does not offer VIRTIO_BLK_F_FLUSH (features 0x%lx)", d->features);
		return 0;
	}
	if (!vio_negotiate(d, want, &got) || !(got & (1ULL << VIRTIO_F_VERSION_1))) {
		check_fail(c, "feature negotiation failed (offered 0x%lx)", d->features);
		return 0;
	}
	if (!d->devcfg || d->devcfg_len < offsetof(struct virtio_blk_config, num_queues) + 2) {
		check_fail(c, "device config missing or %u bytes", d->devcfg_len);
		return 0;
	}
	do {
		gen = d->common->config_generation;
		*capacity = *(volatile uint32_t *)(d->devcfg + offsetof(struct virtio_blk_config, capacity)) |
			    (uint64_t)*(volatile uint32_t *)(d->devcfg +
							     offsetof(struct virtio_blk_config, capacity) + 4) << 32;
		if (got & (1ULL << VIRTIO_BLK_F_MQ))
			nq = *(volatile uint16_t *)(d->devcfg + offsetof(struct virtio_blk_config, num_queues));
	} while (gen != d->common->config_generation);
	if (want_queues && want_queues < nq)
		nq = (unsigned)want_queues;
	if (nq > MAX_QUEUES)
		nq = MAX_QUEUES;
	d->common->msix_config = VIO_NO_VECTOR;
	for (unsigned q = 0; q < nq; q++) {
		uint32_t bsp = mmio_read32(crash_apic + APIC_ID) >> 24;

		if (!vio_msix_route(d, (uint16_t)q, (uint8_t)bsp, (uint8_t)(VEC_QUEUE0 + q)) ||
		    vio_queue_setup(d, (uint16_t)q, crash_mem[q].ring, (uint16_t)q) < 0) {
			check_fail(c, "queue %u (MSI-X entry %u) cannot be set up", q, q);
			return 0;
		}
	}
	vio_set_status(d, VIRTIO_CONFIG_S_DRIVER_OK);
	if (vio_status(d) & (VIRTIO_CONFIG_S_NEEDS_RESET | VIRTIO_CONFIG_S_FAILED)) {
		check_fail(c, "device status 0x%x after DRIVER_OK", vio_status(d));
		return 0;
	}
	return nq;
}

static int blkcrash_submit(unsigned q, uint32_t type, uint64_t sector, void *buf, uint32_t len)
{
	struct vio_queue *vq = &crash_dev.q[q];
	struct crash_qmem *m = &crash_mem[q];
	uint16_t slot = vq->free_head;
	struct vio_buf b[3];
	unsigned n = 0;

	if (slot >= VIO_QSIZE)
		return -1;
	m->hdr[slot] = (struct virtio_blk_outhdr){ .type = type, .sector = sector };
	m->status[slot] = 0xff;
	b[n++] = (struct vio_buf){ (uintptr_t)&m->hdr[slot], sizeof(m->hdr[slot]), false };
	if (len)
		b[n++] = (struct vio_buf){ (uintptr_t)buf, len, false };
	b[n++] = (struct vio_buf){ (uintptr_t)&m->status[slot], 1, true };
	return vio_add(vq, b, n);
}

/* Polls until pending[q] completions have come back on every queue; each
 * status must be OK.  False (with c failed) otherwise. */
static bool blkcrash_wait(struct check_ctx *c, unsigned nq, unsigned *pending, const char *what,
			  uint64_t batch)
{
	uint64_t start = rdtsc();
	unsigned left = 0;

	for (unsigned q = 0; q < nq; q++)
		left += pending[q];
	while (left) {
		bool got = false;

		for (unsigned q = 0; q < nq; q++) {
			int id;

			while (pending[q] && (id = vio_get_used(&crash_dev.q[q], NULL)) >= 0) {
				uint8_t st = crash_mem[q].status[id];

				if (st != VIRTIO_BLK_S_OK) {
					check_fail(c, "batch %lu: %s on queue %u: status %u", batch, what,
						   q, st);
					return false;
				}
				pending[q]--;
				left--;
				got = true;
			}
		}
		if (!got) {
			if (rdtsc() - start > REQ_WAIT_CYCLES) {
				check_fail(c, "batch %lu: %s: %u request(s) never completed", batch, what,
					   left);
				return false;
			}
			/* sti's shadow: an interrupt that is already pending
			 * is taken at the hlt, never lost before it. */
			__asm__ volatile("sti; hlt; cli" ::: "memory");
		}
	}
	return true;
}

void check_blkcrash(struct check_ctx *c)
{
	struct crash_opts o;
	struct pci_fn f;
	char why[160] = "";
	uint64_t capacity, nblocks, b;
	unsigned nq, pending[MAX_QUEUES];

	if (!blkcrash_opts(c, &o))
		return;
	if (!pci_find(0x1af4, 0x1042, 0, &f) && !pci_find(0x1af4, 0x1001, 0, &f)) {
		check_fail(c, "no virtio-blk (1af4:1042 or 1af4:1001) on PCI bus 0");
		return;
	}
	if (!vio_probe(&crash_dev, f, c->mapped_top, why, sizeof(why))) {
		check_fail(c, "virtio-pci probe: %s", why);
		return;
	}
	if (!crash_irq_setup(c))
		goto out;
	if (!crash_dev.msix_cap || !vio_msix_enable(&crash_dev)) {
		check_fail(c, "no MSI-X, or its enable bit did not stick");
		goto out;
	}
	nq = blkcrash_bring_up(c, o.queues, &capacity);
	if (!nq)
		goto out;
	nblocks = capacity / SECTORS_PER_BLOCK;
	if (nblocks < o.batch || nblocks % STRIDE == 0) {
		check_fail(c, "disk of %lu sectors: need at least %lu blocks, not a multiple of %u",
			   capacity, o.batch, STRIDE);
		goto out;
	}
	if ((o.batch + nq - 1) / nq + 1 > VIO_QSIZE / 3) {
		check_fail(c, "batch of %lu over %u queue(s) does not fit %u-entry rings", o.batch, nq,
			   VIO_QSIZE);
		goto out;
	}
	blkcrash_body_init(o.nonce);
	/* The host parses this line to recompute every block's place. */
	console_printf("BLKCRASH geometry nonce=0x%lx blocks=%lu batch=%lu queues=%u stride=%u\n",
		       o.nonce, nblocks, o.batch, nq, STRIDE);

	for (b = 0; !o.batches || b < o.batches; b++) {
		unsigned fq = (unsigned)(b % nq);
		int head;

		memset(pending, 0, sizeof(pending));
		for (unsigned i = 0; i < o.batch; i++) {
			unsigned q = i % nq;
			uint64_t pos = blkcrash_pos(b, (unsigned)o.batch, i, nblocks);

			blkcrash_fill(crash_data[i], (uint32_t)b, (uint32_t)pos, i);
			if (blkcrash_submit(q, VIRTIO_BLK_T_OUT, pos * SECTORS_PER_BLOCK, crash_data[i],
					    BLOCK) < 0) {
				check_fail(c, "batch %lu: queue %u ring full", b, q);
				goto out;
			}
			pending[q]++;
		}
		for (unsigned q = 0; q < nq; q++)
			if (pending[q]) {
				vio_publish(&crash_dev.q[q]);
				vio_notify(&crash_dev.q[q]);
			}
		if (!blkcrash_wait(c, nq, pending, "write", b))
			goto out;
		/* Every write of the batch has completed: now the FLUSH. */
		head = blkcrash_submit(fq, VIRTIO_BLK_T_FLUSH, 0, NULL, 0);
		if (head < 0) {
			check_fail(c, "batch %lu: no room for the flush", b);
			goto out;
		}
		pending[fq] = 1;
		vio_publish(&crash_dev.q[fq]);
		vio_notify(&crash_dev.q[fq]);
		if (!blkcrash_wait(c, nq, pending, "flush", b))
			goto out;
		console_printf("BLKCRASH ack %lu\n", b);
	}
	console_printf("# blkcrash: %lu batches of %lu blocks written and flushed\n", b, o.batch);
out:
	vio_reset(&crash_dev);
	if (crash_apic)
		crash_apic_write(APIC_LVT_TIMER, 1U << 16);	/* masked */
	__asm__ volatile("cli");
}
