/* blk: drive the first virtio-blk device (1af4:1042) the way a multi-queue
 * kernel driver does, and check what the device promises:
 *   - features negotiate (VERSION_1 required) and FEATURES_OK sticks;
 *   - num_queues matches blk_queues= (the VMM clamps it to the vCPUs);
 *   - every queue has its own MSI-X vector aimed at its own vCPU, is driven
 *     from that vCPU, and its completions interrupt that vCPU only;
 *   - per-queue patterns on per-queue sectors are written, flushed, read
 *     back and verified (or fail with IOERR on a read-only disk, or with
 *     blk_expect_enospc=1, where the host filesystem is full);
 *   - out-of-range requests fail with IOERR; GET_ID equals blk_serial=;
 *   - blk_sig=HEX: sector 0 holds "dvmm-blk-sig=HEX\n" (written here, or
 *     checked on a read-only disk) so the host can look at the image;
 *   - a reset with requests in flight reads back 0, after which the used
 *     ring and the status bytes never change (blk_reset=0 leaves it out);
 *     the device then comes up again and reads the data back.
 * The pattern for word i of sector s written through queue q is
 * ((s & 0xffff) << 16 | q << 8 | i) ^ 0xa5a5a5a5 (host tests recompute it). */
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

#define MSR_APIC_BASE		0x1b
#define APIC_ID			0x020
#define APIC_EOI		0x0b0
#define APIC_SVR		0x0f0
#define APIC_ICR_LO		0x300
#define APIC_ICR_HI		0x310
#define APIC_LVT_TIMER		0x320
#define APIC_TIMER_INIT		0x380
#define APIC_TIMER_DIV		0x3e0
#define APIC_SVR_ENABLE		0x100
#define APIC_TIMER_PERIODIC	(1U << 17)
#define ICR_BUSY		(1U << 12)

#define PIC1_DATA		0x21
#define PIC2_DATA		0xa1

#define VEC_QUEUE0		0x40	/* queue q completes on 0x40 + q */
#define VEC_WAKE		0xee	/* BSP -> AP: a job is waiting */
#define VEC_TIMER		0xef	/* bounds every hlt */
#define VEC_SPURIOUS		0xff
/* ~16 ms at the 1 GHz LAPIC clock KVM and QEMU model: hlt never sleeps
 * longer than that, so waits stay bounded without busy spinning. */
#define TIMER_COUNT		0x100000
#define TIMER_DIV16		0x3

#define SECTOR			512
#define REQ_SECTORS		8
#define NREQ			4	/* writes per queue, all in flight at once */
#define AREA_START		64	/* queue q owns sectors from 64 + 64q */
#define AREA_SECTORS		64
#define DATA_BYTES		(64 * 1024)
#define RESET_REQS		20
#define RESET_REQ_BYTES		(16 * 1024)
#define SIG_MAX			32

/* Bounds in TSC cycles, generous: nested virtualisation is slow. */
#define REQ_WAIT_CYCLES		200000000000ULL
#define JOB_WAIT_CYCLES		2000000000000ULL
/* An AP that reported in takes its job at once: tens of seconds is
 * generous, and shorter than the harness's timeout, so a missing AP is a
 * failure that says so rather than a killed VM. */
#define AP_JOIN_CYCLES		60000000000ULL
#define RESET_SETTLE_TICKS	8
#define DRAIN_TICKS		64

#define MAX_APIC		256

/* One page-aligned block per queue: rings, request headers, status
 * bytes and data. */
struct blk_qmem {
	uint8_t ring[3 * 4096];
	struct virtio_blk_outhdr hdr[VIO_QSIZE];
	uint8_t status[VIO_QSIZE];
	uint8_t id[VIRTIO_BLK_ID_BYTES + 12];
	uint8_t data[DATA_BYTES] __attribute__((aligned(4096)));
} __attribute__((aligned(4096)));

struct blk_job {
	volatile uint32_t apic_id;
	volatile uint32_t queues;	/* bitmask, set by the BSP */
	volatile uint32_t state;	/* JOB_IDLE -> JOB_GO -> JOB_DONE */
	char why[160];			/* empty when every queue passed */
};

enum { JOB_IDLE, JOB_GO, JOB_DONE };

struct blk_opts {
	char serial[VIRTIO_BLK_ID_BYTES + 1];
	bool have_serial;
	bool ro;
	bool enospc;
	bool reset;
	bool poison;			/* blk_poison=1: blk_poison_run only */
	uint64_t poison_gpa;		/* blk_poison_gpa=: its page (0: its own) */
	uint64_t queues;		/* 0 = not given */
	char sig[SIG_MAX + 1];
};

/* Interrupt hooks and APs have no context argument: what they share
 * lives here. */
struct blk_state {
	struct vio_dev dev;
	struct blk_opts opt;
	uint64_t negotiated;
	uint64_t capacity;
	unsigned nq;
	uint64_t apic;			/* LAPIC MMIO base */
	uint32_t bsp_apic;
	volatile uint32_t naps;
	struct blk_job jobs[MAX_CPUS];
	uint32_t owner[VIO_MAX_QUEUES];	/* APIC ID that drives queue q */
	uint32_t nreqs[VIO_MAX_QUEUES];	/* requests completed per queue */
	volatile uint32_t irqs[MAX_APIC][VIO_MAX_QUEUES];
	volatile uint32_t ticks[MAX_APIC];
};

static struct blk_state blk;
static struct blk_qmem blk_mem[VIO_MAX_QUEUES] DEVMEM;

static uint32_t blk_pattern(unsigned q, uint64_t sector, unsigned i)
{
	return ((uint32_t)(sector & 0xffff) << 16 | q << 8 | (i & 0xff)) ^ 0xa5a5a5a5U;
}

static uint32_t apic_read(uint32_t reg)
{
	return mmio_read32(blk.apic + reg);
}

static void apic_write(uint32_t reg, uint32_t v)
{
	mmio_write32(blk.apic + reg, v);
}

static uint32_t this_apic_id(void)
{
	return apic_read(APIC_ID) >> 24;
}

static bool blk_irq(struct exc_frame *f)
{
	uint32_t id = this_apic_id() % MAX_APIC;
	uint64_t v = f->vector;

	if (v == VEC_SPURIOUS)
		return true;	/* no EOI for a spurious interrupt */
	if (v >= VEC_QUEUE0 && v < VEC_QUEUE0 + VIO_MAX_QUEUES)
		blk.irqs[id][v - VEC_QUEUE0]++;
	else if (v == VEC_TIMER)
		blk.ticks[id]++;
	apic_write(APIC_EOI, 0);
	return true;
}

/* LAPIC on, periodic timer as the hlt bound; interrupts stay off until a
 * wait enables them around hlt. */
static void blk_cpu_setup(void)
{
	__asm__ volatile("cli");
	apic_write(APIC_SVR, APIC_SVR_ENABLE | VEC_SPURIOUS);
	apic_write(APIC_TIMER_DIV, TIMER_DIV16);
	apic_write(APIC_LVT_TIMER, APIC_TIMER_PERIODIC | VEC_TIMER);
	apic_write(APIC_TIMER_INIT, TIMER_COUNT);
}

/* Sleeps until an interrupt (at most a timer period). */
static void blk_wait_irq(void)
{
	__asm__ volatile("sti; hlt; cli" ::: "memory");
}

static void blk_send_wake(uint32_t apic_id)
{
	uint64_t start = rdtsc();

	apic_write(APIC_ICR_HI, apic_id << 24);
	apic_write(APIC_ICR_LO, VEC_WAKE);
	while ((apic_read(APIC_ICR_LO) & ICR_BUSY) && rdtsc() - start < 100000000ULL)
		cpu_relax();
}

/* A completion can be found by polling before its interrupt is taken (or
 * even raised): interrupts are only open in blk_wait_irq.  Give queue q's
 * interrupt time to reach this CPU before anyone counts. */
static void blk_drain_irqs(unsigned q)
{
	uint32_t me = this_apic_id() % MAX_APIC, t0 = blk.ticks[me];

	__asm__ volatile("sti; nop; cli" ::: "memory");
	for (uint64_t i = 0; i < (1ULL << 20) && !blk.irqs[me][q] && blk.ticks[me] - t0 < DRAIN_TICKS; i++)
		blk_wait_irq();
}

/* ---- requests ---------------------------------------------------------- */

/* Queues one request on q (header, optional data, status); returns the
 * head or -1.  Status starts at 0xff so a missing write shows. */
static int blk_submit(unsigned q, uint32_t type, uint64_t sector, void *buf, uint32_t len)
{
	struct vio_queue *vq = &blk.dev.q[q];
	struct blk_qmem *m = &blk_mem[q];
	struct vio_buf b[3];
	unsigned n = 0;
	uint16_t slot = vq->free_head;	/* the head vio_add will take */

	if (slot >= VIO_QSIZE)
		return -1;
	m->hdr[slot].type = type;
	m->hdr[slot].ioprio = 0;
	m->hdr[slot].sector = sector;
	m->status[slot] = 0xff;
	b[n++] = (struct vio_buf){ (uintptr_t)&m->hdr[slot], sizeof(m->hdr[slot]), false };
	if (len)
		b[n++] = (struct vio_buf){ (uintptr_t)buf, len, type != VIRTIO_BLK_T_OUT };
	b[n++] = (struct vio_buf){ (uintptr_t)&m->status[slot], 1, true };
	return vio_add(vq, b, n);
}

/* Waits for `count` completions on q; statuses[k] gets the status byte of
 * the k-th submitted head heads[k].  Returns false on timeout. */
static bool blk_complete(unsigned q, const int *heads, uint8_t *statuses, unsigned count)
{
	struct vio_queue *vq = &blk.dev.q[q];
	unsigned done = 0;
	uint64_t start = rdtsc();

	while (done < count) {
		int id = vio_get_used(vq, NULL);

		if (id < 0) {
			if (rdtsc() - start > REQ_WAIT_CYCLES)
				return false;
			blk_wait_irq();
			continue;
		}
		for (unsigned k = 0; k < count; k++)
			if (heads[k] == id)
				statuses[k] = blk_mem[q].status[id];
		done++;
		blk.nreqs[q]++;
	}
	return true;
}

/* One request, waited for: its status, or -1 on timeout/ring full. */
static int blk_io(unsigned q, uint32_t type, uint64_t sector, void *buf, uint32_t len)
{
	int head = blk_submit(q, type, sector, buf, len);
	uint8_t st = 0xff;

	if (head < 0)
		return -1;
	vio_publish(&blk.dev.q[q]);
	vio_notify(&blk.dev.q[q]);
	if (!blk_complete(q, &head, &st, 1))
		return -1;
	return st;
}

static const char *blk_status_name(int st)
{
	switch (st) {
	case VIRTIO_BLK_S_OK: return "OK";
	case VIRTIO_BLK_S_IOERR: return "IOERR";
	case VIRTIO_BLK_S_UNSUPP: return "UNSUPP";
	case -1: return "no completion";
	default: return "bad status";
	}
}

/* ---- per-queue work ---------------------------------------------------- */

static void blk_fill(unsigned q, uint64_t sector, uint32_t *w, unsigned nsec)
{
	for (unsigned s = 0; s < nsec; s++)
		for (unsigned i = 0; i < SECTOR / 4; i++)
			w[s * (SECTOR / 4) + i] = blk_pattern(q, sector + s, i);
}

static bool blk_sig_sector(uint8_t *buf)
{
	int n;

	memset(buf, 0, SECTOR);
	n = fmt_snprintf((char *)buf, SECTOR, "dvmm-blk-sig=%s\n", blk.opt.sig);
	return n > 0;
}

/* Runs on the vCPU that owns q.  Returns false with why set on failure. */
static bool blk_queue_work(unsigned q, char *why, size_t whylen)
{
	struct blk_qmem *m = &blk_mem[q];
	uint64_t base = AREA_START + (uint64_t)q * AREA_SECTORS;
	bool writes_fail = blk.opt.ro || blk.opt.enospc;
	int heads[NREQ];
	uint8_t st[NREQ];
	uint32_t me = this_apic_id();
	int r;

	if (me != blk.owner[q]) {
		fmt_snprintf(why, whylen, "queue %u driven from APIC %u, owner is %u", q, me, blk.owner[q]);
		return false;
	}
	if (base + AREA_SECTORS > blk.capacity) {
		fmt_snprintf(why, whylen, "disk of %lu sectors too small for queue %u", blk.capacity, q);
		return false;
	}

	/* All writes in flight together, then one notify. */
	blk_fill(q, base, (uint32_t *)m->data, NREQ * REQ_SECTORS);
	for (unsigned k = 0; k < NREQ; k++) {
		heads[k] = blk_submit(q, VIRTIO_BLK_T_OUT, base + k * REQ_SECTORS,
				      m->data + k * REQ_SECTORS * SECTOR, REQ_SECTORS * SECTOR);
		st[k] = 0xff;
	}
	vio_publish(&blk.dev.q[q]);
	vio_notify(&blk.dev.q[q]);
	if (!blk_complete(q, heads, st, NREQ)) {
		fmt_snprintf(why, whylen, "queue %u: writes never completed", q);
		return false;
	}
	for (unsigned k = 0; k < NREQ; k++) {
		int want = writes_fail ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;

		if (st[k] != want) {
			fmt_snprintf(why, whylen, "queue %u: write at sector %lu: %s, expected %s%s", q,
				     base + k * REQ_SECTORS, blk_status_name(st[k]), blk_status_name(want),
				     blk.opt.ro ? " (read-only disk)" :
				     blk.opt.enospc ? " (host filesystem full)" : "");
			return false;
		}
	}

	if (blk.negotiated & (1ULL << VIRTIO_BLK_F_FLUSH)) {
		r = blk_io(q, VIRTIO_BLK_T_FLUSH, 0, NULL, 0);
		if (r != VIRTIO_BLK_S_OK) {
			fmt_snprintf(why, whylen, "queue %u: flush: %s", q, blk_status_name(r));
			return false;
		}
	}

	memset(m->data, 0xee, NREQ * REQ_SECTORS * SECTOR);
	for (unsigned k = 0; k < NREQ; k++) {
		heads[k] = blk_submit(q, VIRTIO_BLK_T_IN, base + k * REQ_SECTORS,
				      m->data + k * REQ_SECTORS * SECTOR, REQ_SECTORS * SECTOR);
		st[k] = 0xff;
	}
	vio_publish(&blk.dev.q[q]);
	vio_notify(&blk.dev.q[q]);
	if (!blk_complete(q, heads, st, NREQ)) {
		fmt_snprintf(why, whylen, "queue %u: reads never completed", q);
		return false;
	}
	for (unsigned k = 0; k < NREQ; k++) {
		if (st[k] != VIRTIO_BLK_S_OK) {
			fmt_snprintf(why, whylen, "queue %u: read at sector %lu: %s", q,
				     base + k * REQ_SECTORS, blk_status_name(st[k]));
			return false;
		}
	}
	if (!writes_fail) {
		const uint32_t *w = (const uint32_t *)m->data;

		for (unsigned s = 0; s < NREQ * REQ_SECTORS; s++)
			for (unsigned i = 0; i < SECTOR / 4; i++)
				if (w[s * (SECTOR / 4) + i] != blk_pattern(q, base + s, i)) {
					fmt_snprintf(why, whylen,
						     "queue %u: sector %lu word %u reads 0x%x, wrote 0x%x",
						     q, base + s, i, w[s * (SECTOR / 4) + i],
						     blk_pattern(q, base + s, i));
					return false;
				}
	}

	/* Past the end, and straddling it. */
	r = blk_io(q, VIRTIO_BLK_T_IN, blk.capacity, m->data, SECTOR);
	if (r != VIRTIO_BLK_S_IOERR) {
		fmt_snprintf(why, whylen, "queue %u: read at sector %lu (the capacity): %s, expected IOERR",
			     q, blk.capacity, blk_status_name(r));
		return false;
	}
	r = blk_io(q, VIRTIO_BLK_T_IN, blk.capacity - 1, m->data, 2 * SECTOR);
	if (r != VIRTIO_BLK_S_IOERR) {
		fmt_snprintf(why, whylen, "queue %u: 2-sector read at sector %lu: %s, expected IOERR",
			     q, blk.capacity - 1, blk_status_name(r));
		return false;
	}
	if (!blk.opt.ro) {
		r = blk_io(q, VIRTIO_BLK_T_OUT, blk.capacity, m->data, SECTOR);
		if (r != VIRTIO_BLK_S_IOERR) {
			fmt_snprintf(why, whylen, "queue %u: write at sector %lu: %s, expected IOERR",
				     q, blk.capacity, blk_status_name(r));
			return false;
		}
	}
	blk_drain_irqs(q);
	return true;
}

/* Queue 0's extras, on the BSP: GET_ID and the signature sector. */
static bool blk_queue0_extras(char *why, size_t whylen)
{
	struct blk_qmem *m = &blk_mem[0];
	char id[VIRTIO_BLK_ID_BYTES + 1];
	int r;

	/* GET_ID has no feature bit: every device must answer it (OK or
	 * UNSUPP); with blk_serial= it must answer with that serial. */
	memset(m->id, 0xee, sizeof(m->id));
	r = blk_io(0, VIRTIO_BLK_T_GET_ID, 0, m->id, VIRTIO_BLK_ID_BYTES);
	if (r == VIRTIO_BLK_S_UNSUPP && !blk.opt.have_serial) {
		console_puts("# blk: GET_ID unsupported\n");
	} else if (r != VIRTIO_BLK_S_OK) {
		fmt_snprintf(why, whylen, "GET_ID: %s", blk_status_name(r));
		return false;
	} else {
		if (m->id[VIRTIO_BLK_ID_BYTES] != 0xee) {
			fmt_snprintf(why, whylen, "GET_ID wrote past its 20-byte buffer");
			return false;
		}
		/* Shorter than 20 bytes: NUL-terminated; 20 bytes: not. */
		memcpy(id, m->id, VIRTIO_BLK_ID_BYTES);
		id[VIRTIO_BLK_ID_BYTES] = '\0';
		console_printf("# blk: GET_ID \"%s\"\n", id);
		if (blk.opt.have_serial && strcmp(id, blk.opt.serial)) {
			fmt_snprintf(why, whylen, "GET_ID \"%s\", expected \"%s\"", id, blk.opt.serial);
			return false;
		}
	}

	if (!blk.opt.sig[0])
		return true;
	if (!blk.opt.ro && !blk.opt.enospc) {
		blk_sig_sector(m->data);
		r = blk_io(0, VIRTIO_BLK_T_OUT, 0, m->data, SECTOR);
		if (r == VIRTIO_BLK_S_OK && (blk.negotiated & (1ULL << VIRTIO_BLK_F_FLUSH)))
			r = blk_io(0, VIRTIO_BLK_T_FLUSH, 0, NULL, 0);
		if (r != VIRTIO_BLK_S_OK) {
			fmt_snprintf(why, whylen, "signature write/flush: %s", blk_status_name(r));
			return false;
		}
		console_printf("# blk: signature %s written at sector 0\n", blk.opt.sig);
		return true;
	}
	memset(m->data, 0xee, SECTOR);
	r = blk_io(0, VIRTIO_BLK_T_IN, 0, m->data, SECTOR);
	blk_sig_sector(m->data + SECTOR);
	if (r != VIRTIO_BLK_S_OK || memcmp(m->data, m->data + SECTOR, SECTOR)) {
		fmt_snprintf(why, whylen, "sector 0 does not hold signature %s (%s)", blk.opt.sig,
			     blk_status_name(r));
		return false;
	}
	console_printf("# blk: signature %s found at sector 0\n", blk.opt.sig);
	return true;
}

/* ---- APs --------------------------------------------------------------- */

static void blk_run_job(struct blk_job *j)
{
	j->why[0] = '\0';
	for (unsigned q = 0; q < blk.nq; q++)
		if ((j->queues & (1U << q)) && !blk_queue_work(q, j->why, sizeof(j->why)))
			break;
}

static void blk_ap_main(void)
{
	uint32_t one = 1, slot;
	struct blk_job *j;

	blk_cpu_setup();
	__asm__ volatile("lock xaddl %0, %1" : "+r"(one), "+m"(blk.naps) : : "memory");
	slot = one;
	if (slot >= MAX_CPUS)
		cpu_halt_forever();
	j = &blk.jobs[slot];
	j->apic_id = this_apic_id();
	for (;;) {
		if (j->state == JOB_GO) {
			blk_run_job(j);
			__asm__ volatile("" ::: "memory");
			j->state = JOB_DONE;
		}
		blk_wait_irq();
	}
}

/* ---- device bring-up --------------------------------------------------- */

static uint32_t devcfg_read32(unsigned off)
{
	return *(volatile uint32_t *)(blk.dev.devcfg + off);
}

static uint16_t devcfg_read16(unsigned off)
{
	return *(volatile uint16_t *)(blk.dev.devcfg + off);
}

/* Reset, features, config, queues 0..nq-1 with vectors, DRIVER_OK. */
static bool blk_bring_up(struct check_ctx *c, unsigned want_queues)
{
	struct vio_dev *d = &blk.dev;
	uint64_t want = 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_BLK_F_FLUSH |
			1ULL << VIRTIO_BLK_F_BLK_SIZE | 1ULL << VIRTIO_BLK_F_SEG_MAX |
			1ULL << VIRTIO_BLK_F_MQ | 1ULL << VIRTIO_BLK_F_RO;
	uint8_t gen;
	unsigned devq = 1;

	if (!vio_reset(d)) {
		check_fail(c, "device status never read back 0 after reset");
		return false;
	}
	vio_set_status(d, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	vio_set_status(d, VIRTIO_CONFIG_S_DRIVER);
	if (!(d->features & (1ULL << VIRTIO_F_VERSION_1))) {
		check_fail(c, "device does not offer VIRTIO_F_VERSION_1 (features 0x%lx)", d->features);
		return false;
	}
	if (!vio_negotiate(d, want, &blk.negotiated)) {
		check_fail(c, "FEATURES_OK did not stick (wrote features 0x%lx)", blk.negotiated);
		return false;
	}
	if (!d->devcfg || d->devcfg_len < offsetof(struct virtio_blk_config, num_queues) + 2) {
		check_fail(c, "device config missing or %u bytes", d->devcfg_len);
		return false;
	}
	do {
		gen = d->common->config_generation;
		blk.capacity = devcfg_read32(offsetof(struct virtio_blk_config, capacity)) |
			       (uint64_t)devcfg_read32(offsetof(struct virtio_blk_config, capacity) + 4) << 32;
		if (blk.negotiated & (1ULL << VIRTIO_BLK_F_MQ))
			devq = devcfg_read16(offsetof(struct virtio_blk_config, num_queues));
	} while (gen != d->common->config_generation);

	blk.nq = want_queues ? want_queues : devq;
	if (blk.nq > VIO_MAX_QUEUES)
		blk.nq = VIO_MAX_QUEUES;
	if (blk.nq > d->common->num_queues)
		blk.nq = d->common->num_queues;
	d->common->msix_config = VIO_NO_VECTOR;
	for (unsigned q = 0; q < blk.nq; q++) {
		int r;

		if (!vio_msix_route(d, (uint16_t)q, (uint8_t)blk.owner[q], (uint8_t)(VEC_QUEUE0 + q))) {
			check_fail(c, "MSI-X table entry %u did not take (table has %u)", q, d->msix_entries);
			return false;
		}
		r = vio_queue_setup(d, (uint16_t)q, blk_mem[q].ring, (uint16_t)q);
		if (r == -2) {
			check_fail(c, "queue %u: MSI-X vector %u rejected (reads back 0x%x)", q, q, d->q[q].vector);
			return false;
		}
		if (r < 0) {
			check_fail(c, "queue %u cannot be set up", q);
			return false;
		}
	}
	vio_set_status(d, VIRTIO_CONFIG_S_DRIVER_OK);
	if (vio_status(d) & (VIRTIO_CONFIG_S_NEEDS_RESET | VIRTIO_CONFIG_S_FAILED)) {
		check_fail(c, "device status 0x%x after DRIVER_OK", vio_status(d));
		return false;
	}
	return true;
}

/* ---- reset with requests in flight ------------------------------------- */

static void blk_reset_in_flight(struct check_ctx *c)
{
	struct vio_queue *vq = &blk.dev.q[0];
	struct blk_qmem *m = &blk_mem[0];
	struct vring_used_elem ring_before[VIO_QSIZE];
	uint8_t status_before[VIO_QSIZE];
	uint16_t used_before, posted = 0;
	uint32_t ticks, irq_before;

	for (unsigned k = 0; k < RESET_REQS; k++) {
		uint64_t sector = AREA_START + (k % 4) * (RESET_REQ_BYTES / SECTOR);

		if (blk_submit(0, VIRTIO_BLK_T_IN, sector, m->data, RESET_REQ_BYTES) < 0)
			break;
		posted++;
	}
	vio_publish(vq);
	vio_notify(vq);
	if (!vio_reset(&blk.dev)) {
		check_fail(c, "reset with %u requests in flight: status never read back 0", posted);
		return;
	}
	used_before = vio_used_idx(vq);
	for (unsigned i = 0; i < VIO_QSIZE; i++) {
		ring_before[i].id = vq->used->ring[i].id;
		ring_before[i].len = vq->used->ring[i].len;
	}
	memcpy(status_before, m->status, sizeof(status_before));
	irq_before = blk.irqs[blk.bsp_apic % MAX_APIC][0];
	/* Give a device that ignored the reset time to show it. */
	ticks = blk.ticks[blk.bsp_apic % MAX_APIC];
	for (uint64_t i = 0; i < (1ULL << 20) && blk.ticks[blk.bsp_apic % MAX_APIC] - ticks < RESET_SETTLE_TICKS; i++)
		blk_wait_irq();
	console_printf("# blk: reset with %u requests posted: %u completed before it, %u interrupts on queue 0 after it\n",
		       posted, (uint16_t)(used_before - vq->last_used),
		       blk.irqs[blk.bsp_apic % MAX_APIC][0] - irq_before);
	if (vio_used_idx(vq) != used_before) {
		check_fail(c, "used ring index moved from %u to %u after the reset was acknowledged",
			   used_before, vio_used_idx(vq));
		return;
	}
	for (unsigned i = 0; i < VIO_QSIZE; i++)
		if (vq->used->ring[i].id != ring_before[i].id || vq->used->ring[i].len != ring_before[i].len) {
			check_fail(c, "used ring entry %u changed after the reset was acknowledged", i);
			return;
		}
	if (memcmp(status_before, m->status, sizeof(status_before))) {
		check_fail(c, "a request status byte changed after the reset was acknowledged");
		return;
	}
	if (vio_status(&blk.dev) != 0) {
		check_fail(c, "device status 0x%x after the reset settled", vio_status(&blk.dev));
		return;
	}

	/* The device must come back: one queue, read queue 0's data again. */
	if (!blk_bring_up(c, 1))
		return;
	if (blk.opt.ro || blk.opt.enospc)
		return;
	memset(m->data, 0xee, REQ_SECTORS * SECTOR);
	if (blk_io(0, VIRTIO_BLK_T_IN, AREA_START, m->data, REQ_SECTORS * SECTOR) != VIRTIO_BLK_S_OK) {
		check_fail(c, "read after the reset failed");
		return;
	}
	for (unsigned i = 0; i < REQ_SECTORS * SECTOR / 4; i++)
		if (((uint32_t *)m->data)[i] != blk_pattern(0, AREA_START + i / (SECTOR / 4), i % (SECTOR / 4))) {
			check_fail(c, "data read after the reset differs at word %u", i);
			return;
		}
	console_puts("# blk: device re-initialised after the reset, data intact\n");
}

/* ---- a failed page under a request (blk_poison=1) ---------------------- */

#define POISON_SECTOR	64

/* A read whose 16-byte header is `hdr` (not blk_mem's): the device's own
 * load of the header is what meets a failed page then. */
static int blk_io_hdr(unsigned q, struct virtio_blk_outhdr *hdr, void *buf, uint32_t len)
{
	struct vio_queue *vq = &blk.dev.q[q];
	struct blk_qmem *m = &blk_mem[q];
	uint16_t slot = vq->free_head;
	struct vio_buf b[3];
	uint8_t st = 0xff;
	int head;

	if (slot >= VIO_QSIZE)
		return -1;
	m->status[slot] = 0xff;
	b[0] = (struct vio_buf){ (uintptr_t)hdr, sizeof(*hdr), false };
	b[1] = (struct vio_buf){ (uintptr_t)buf, len, true };
	b[2] = (struct vio_buf){ (uintptr_t)&m->status[slot], 1, true };
	head = vio_add(vq, b, 3);
	if (head < 0)
		return -1;
	vio_publish(vq);
	vio_notify(vq);
	if (!blk_complete(q, &head, &st, 1))
		return -1;
	return st;
}

/* The harness poisons the host page behind the first page of queue 0's data
 * area when the guest names it on the console; the kernel's early-kill
 * report reaches us first (mce_guest_take_ao).  Then the page is the data
 * buffer of a write and of a read (the host's syscalls get EFAULT), and
 * holds the header of a third request (the host worker's own load faults):
 * each must fail with IOERR, with no second machine check (the page was
 * reported once), and a request on another page must still work. */
static void blk_poison_run(struct check_ctx *c)
{
	/* blk_poison_gpa= puts the page elsewhere: on dmemfs the whole 1 GiB
	 * dpage goes, so it must not be the one this program runs from. */
	uint8_t *bad = blk.opt.poison_gpa ? (uint8_t *)(uintptr_t)blk.opt.poison_gpa
					  : blk_mem[0].data;
	uint32_t *good = (uint32_t *)(blk_mem[0].data + 4 * 4096);
	uint32_t *back = (uint32_t *)(blk_mem[0].data + 8 * 4096);
	uint64_t gpa = (uint64_t)(uintptr_t)bad;	/* identity-mapped */
	unsigned n = 0;
	int st, st2;

	struct virtio_blk_outhdr *bad_hdr = (struct virtio_blk_outhdr *)(bad + 2048);

	if (blk.opt.poison_gpa && blk.opt.poison_gpa + 4096 > c->mapped_top) {
		check_fail(c, "blk_poison_gpa=0x%lx lies outside the identity map", blk.opt.poison_gpa);
		return;
	}
	if (!mce_guest_enable(c))
		return;
	/* Written now: once the page has failed the guest must not touch it. */
	bad_hdr->type = VIRTIO_BLK_T_IN;
	bad_hdr->ioprio = 0;
	bad_hdr->sector = POISON_SECTOR;
	console_printf("# blkpoison: buffer gpa 0x%lx\n", gpa);
	if (!mce_guest_take_ao(c, gpa, &n))
		return;
	st = blk_io(0, VIRTIO_BLK_T_OUT, POISON_SECTOR, bad, 4096);
	console_printf("%s %u - blkpoison write from the failed page: %s\n",
		       st == VIRTIO_BLK_S_IOERR ? "ok" : "not ok", ++n, blk_status_name(st));
	if (st != VIRTIO_BLK_S_IOERR)
		check_fail(c, "write from the failed page: %s, want IOERR", blk_status_name(st));
	st = blk_io(0, VIRTIO_BLK_T_IN, POISON_SECTOR, bad, 4096);
	console_printf("%s %u - blkpoison read into the failed page: %s\n",
		       st == VIRTIO_BLK_S_IOERR ? "ok" : "not ok", ++n, blk_status_name(st));
	if (st != VIRTIO_BLK_S_IOERR)
		check_fail(c, "read into the failed page: %s, want IOERR", blk_status_name(st));
	st = blk_io_hdr(0, bad_hdr, back, 4096);
	console_printf("%s %u - blkpoison request header on the failed page: %s\n",
		       st == VIRTIO_BLK_S_IOERR ? "ok" : "not ok", ++n, blk_status_name(st));
	if (st != VIRTIO_BLK_S_IOERR)
		check_fail(c, "request with its header on the failed page: %s, want IOERR",
			   blk_status_name(st));
	if (mce_guest_quiet(1000)) {
		console_printf("ok %u - blkpoison no second machine check for the page\n", ++n);
	} else {
		console_printf("not ok %u - blkpoison no second machine check for the page\n", ++n);
		check_fail(c, "a second machine check arrived for a page already reported");
	}
	blk_fill(0, POISON_SECTOR + 8, good, 8);
	st = blk_io(0, VIRTIO_BLK_T_OUT, POISON_SECTOR + 8, good, 4096);
	memset(back, 0, 4096);
	st2 = blk_io(0, VIRTIO_BLK_T_IN, POISON_SECTOR + 8, back, 4096);
	if (st == VIRTIO_BLK_S_OK && st2 == VIRTIO_BLK_S_OK && !memcmp(good, back, 4096)) {
		console_printf("ok %u - blkpoison another page after the failure: write OK, read OK, "
			       "data intact\n", ++n);
	} else {
		console_printf("not ok %u - blkpoison another page after the failure: write %s, "
			       "read %s%s\n", ++n, blk_status_name(st), blk_status_name(st2),
			       st == VIRTIO_BLK_S_OK && st2 == VIRTIO_BLK_S_OK ? ", data differs" : "");
		check_fail(c, "a request on a good page failed after the memory failure");
		return;
	}
	console_printf("# blkpoison: survived; device status 0x%x\n", vio_status(&blk.dev));
}

/* ---- the check --------------------------------------------------------- */

static bool blk_parse_opts(struct check_ctx *c, struct blk_opts *o)
{
	const char *cl = c->bi->cmdline, *v;
	size_t len;
	uint64_t n;
	int rc;

	memset(o, 0, sizeof(*o));
	o->reset = true;
	if ((v = cmdline_find(cl, "blk_serial", &len))) {
		if (len > VIRTIO_BLK_ID_BYTES) {
			check_fail(c, "blk_serial= longer than %d bytes", VIRTIO_BLK_ID_BYTES);
			return false;
		}
		memcpy(o->serial, v, len);
		o->have_serial = true;
	}
	if ((v = cmdline_find(cl, "blk_sig", &len))) {
		if (!len || len > SIG_MAX) {
			check_fail(c, "blk_sig= must be 1..%d hex digits", SIG_MAX);
			return false;
		}
		for (size_t i = 0; i < len; i++)
			if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f') ||
			      (v[i] >= 'A' && v[i] <= 'F'))) {
				check_fail(c, "blk_sig= must be hex digits");
				return false;
			}
		memcpy(o->sig, v, len);
	}
#define FLAG(key, field)							\
	do {									\
		rc = cmdline_get_u64(cl, key, false, &n);			\
		if (rc < 0) {							\
			check_fail(c, "malformed " key "=");			\
			return false;						\
		}								\
		if (rc > 0)							\
			field = n != 0;						\
	} while (0)
	FLAG("blk_ro", o->ro);
	FLAG("blk_expect_enospc", o->enospc);
	FLAG("blk_reset", o->reset);
	FLAG("blk_poison", o->poison);
	if (cmdline_get_u64(cl, "blk_poison_gpa", false, &o->poison_gpa) < 0 ||
	    (o->poison_gpa & 4095)) {
		check_fail(c, "blk_poison_gpa= must be a page address");
		return false;
	}
#undef FLAG
	rc = cmdline_get_u64(cl, "blk_queues", false, &o->queues);
	if (rc < 0) {
		check_fail(c, "malformed blk_queues=");
		return false;
	}
	return true;
}

/* The CPUs that will own queues: the BSP first, then the APs that came up. */
static unsigned blk_start_cpus(struct check_ctx *c, uint32_t *cpus)
{
	struct smp_stats st;
	unsigned n = 1;

	cpus[0] = blk.bsp_apic;
	smp_set_ap_work(blk_ap_main);
	smp_run(c, &st);
	smp_set_ap_work(NULL);
	if (c->status == CHECK_SKIP) {
		/* No MP table: one CPU still drives every queue. */
		console_printf("# blk: %s; the BSP drives every queue\n", c->reason);
		c->status = CHECK_PASS;
		c->reason[0] = '\0';
		return 1;
	}
	/* Each AP registers after smp_run saw it report in. */
	for (uint64_t start = rdtsc(); blk.naps + 1 < st.up && rdtsc() - start < AP_JOIN_CYCLES;)
		cpu_relax();
	if (blk.naps + 1 < st.up)
		check_fail(c, "%u AP(s) came up but only %u took a blk job", st.up - 1, blk.naps);
	for (unsigned i = 0; i < blk.naps && n < MAX_CPUS; i++)
		cpus[n++] = blk.jobs[i].apic_id;
	return n;
}

void check_blk(struct check_ctx *c)
{
	struct pci_fn f;
	uint32_t cpus[MAX_CPUS];
	unsigned ncpus, devq;
	char why[160] = "";
	bool ok = true;

	memset(&blk, 0, sizeof(blk));
	memset(blk_mem, 0, sizeof(blk_mem));
	if (!blk_parse_opts(c, &blk.opt))
		return;
	/* 1042: modern-only; 1001: transitional (QEMU's default on pc), which
	 * has the same modern capabilities. */
	if (!pci_find(0x1af4, 0x1042, 0, &f) && !pci_find(0x1af4, 0x1001, 0, &f)) {
		check_fail(c, "no virtio-blk (1af4:1042 or 1af4:1001) on PCI bus 0");
		return;
	}
	console_printf("# blk: virtio-blk %04x at 00:%02x.%u\n", pci_read16(f, 2), f.dev, f.fn);
	if (!vio_probe(&blk.dev, f, c->mapped_top, why, sizeof(why))) {
		check_fail(c, "virtio-pci probe: %s", why);
		return;
	}
	for (unsigned b = 0; b < 6; b++)
		if (blk.dev.bar_addr[b])
			console_printf("# blk: BAR %u at 0x%lx\n", b, blk.dev.bar_addr[b]);
	console_printf("# blk: features 0x%lx, %u queues, notify multiplier %u, %u MSI-X entries\n",
		       blk.dev.features, blk.dev.num_queues, blk.dev.notify_mult, blk.dev.msix_entries);
	if (!blk.dev.msix_cap) {
		check_fail(c, "no MSI-X capability");
		return;
	}
	if (rdmsr(MSR_APIC_BASE) & (1ULL << 10)) {
		check_skip(c, "LAPIC in x2APIC mode");
		return;
	}
	blk.apic = rdmsr(MSR_APIC_BASE) & 0xffffff000ULL;
	for (unsigned v = VEC_QUEUE0; v < VEC_QUEUE0 + VIO_MAX_QUEUES; v++)
		idt_set_hook((uint8_t)v, blk_irq);
	idt_set_hook(VEC_WAKE, blk_irq);
	idt_set_hook(VEC_TIMER, blk_irq);
	idt_set_hook(VEC_SPURIOUS, blk_irq);
	/* Firmware leaves the 8259s delivering the PIT on vector 8, which
	 * would look like #DF once we sti: mask them, we use only the LAPIC. */
	outb(PIC1_DATA, 0xff);
	outb(PIC2_DATA, 0xff);
	blk_cpu_setup();
	blk.bsp_apic = this_apic_id();

	ncpus = blk_start_cpus(c, cpus);
	if (c->status == CHECK_FAIL)
		goto out;
	for (unsigned q = 0; q < VIO_MAX_QUEUES; q++)
		blk.owner[q] = cpus[q % ncpus];

	if (!vio_msix_enable(&blk.dev)) {
		check_fail(c, "MSI-X enable bit did not stick");
		goto out;
	}
	if (!blk_bring_up(c, 0))
		goto out;
	devq = blk.negotiated & (1ULL << VIRTIO_BLK_F_MQ) ?
		devcfg_read16(offsetof(struct virtio_blk_config, num_queues)) : 1;
	console_printf("# blk: negotiated 0x%lx, capacity %lu sectors, num_queues %u, %u cpus, driving %u queues\n",
		       blk.negotiated, blk.capacity, devq, ncpus, blk.nq);
	if (blk.opt.queues && devq != blk.opt.queues) {
		check_fail(c, "num_queues %u, expected %lu", devq, blk.opt.queues);
		goto out;
	}
	if (!!(blk.negotiated & (1ULL << VIRTIO_BLK_F_RO)) != blk.opt.ro) {
		check_fail(c, "device %s VIRTIO_BLK_F_RO but blk_ro=%d",
			   blk.opt.ro ? "does not offer" : "offers", blk.opt.ro);
		goto out;
	}

	if (blk.opt.poison) {
		blk_poison_run(c);
		goto out;
	}

	/* Hand the APs their queues, then drive ours. */
	for (unsigned i = 0; i < blk.naps; i++) {
		struct blk_job *j = &blk.jobs[i];

		j->queues = 0;
		for (unsigned q = 0; q < blk.nq; q++)
			if (blk.owner[q] == j->apic_id)
				j->queues |= 1U << q;
		if (!j->queues)
			continue;
		j->state = JOB_GO;
		blk_send_wake(j->apic_id);
	}
	for (unsigned q = 0; q < blk.nq && ok; q++)
		if (blk.owner[q] == blk.bsp_apic && !blk_queue_work(q, why, sizeof(why))) {
			check_fail(c, "%s", why);
			ok = false;
		}
	for (unsigned i = 0; i < blk.naps; i++) {
		struct blk_job *j = &blk.jobs[i];
		uint64_t start = rdtsc();

		if (!j->queues)
			continue;
		while (j->state != JOB_DONE && rdtsc() - start < JOB_WAIT_CYCLES)
			blk_wait_irq();
		if (j->state != JOB_DONE) {
			check_fail(c, "APIC %u never finished its queues (mask 0x%x)", j->apic_id, j->queues);
			ok = false;
		} else if (j->why[0]) {
			check_fail(c, "APIC %u: %s", j->apic_id, j->why);
			ok = false;
		}
	}
	if (!ok)
		goto out;
	if (!blk_queue0_extras(why, sizeof(why))) {
		check_fail(c, "%s", why);
		goto out;
	}

	/* Each queue's interrupts arrived on its owner, and only there. */
	for (unsigned q = 0; q < blk.nq; q++) {
		uint32_t own = blk.irqs[blk.owner[q] % MAX_APIC][q];

		console_printf("# blk: queue %u on APIC %u: %u requests, %u interrupts on vector 0x%x\n",
			       q, blk.owner[q], blk.nreqs[q], own, VEC_QUEUE0 + q);
		if (!own) {
			if (blk.owner[q] == blk.bsp_apic)
				console_printf("# blk: BSP LAPIC: PPR 0x%x TPR 0x%x ISR[0x40..] 0x%x IRR[0x40..] 0x%x ISR[0xe0..] 0x%x IRR[0xe0..] 0x%x, %u timer ticks\n",
					       apic_read(0xa0), apic_read(0x80), apic_read(0x120), apic_read(0x220),
					       apic_read(0x170), apic_read(0x270), blk.ticks[blk.bsp_apic % MAX_APIC]);
			check_fail(c, "queue %u: no interrupt reached its owner APIC %u", q, blk.owner[q]);
		}
		for (unsigned a = 0; a < MAX_APIC; a++)
			if (a != blk.owner[q] && blk.irqs[a][q]) {
				console_printf("# blk: queue %u: %u interrupts on APIC %u\n", q, blk.irqs[a][q], a);
				check_fail(c, "queue %u: %u interrupts on APIC %u, owner is APIC %u", q,
					   blk.irqs[a][q], a, blk.owner[q]);
			}
	}
	if (c->status == CHECK_FAIL)
		goto out;
	if (blk.opt.reset)
		blk_reset_in_flight(c);
out:
	/* Quiet the device and this CPU for whatever check runs next. */
	vio_reset(&blk.dev);
	apic_write(APIC_LVT_TIMER, 1U << 16);	/* masked */
	__asm__ volatile("cli");
}
