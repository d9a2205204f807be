/* net: drive the first virtio-net device (1af4:1041, or the transitional
 * 1af4:1000) the way a multi-queue kernel driver does, and talk to the host
 * end of its TAP:
 *   - features negotiate (VERSION_1, MAC, STATUS, MQ, CTRL_VQ, MRG_RXBUF,
 *     MTU) and FEATURES_OK sticks (a device without MQ gets one pair); the
 *     number of queues is read again after FEATURES_OK (QEMU adds the MQ
 *     queues then); the link is up; MAC equals net_mac= when given;
 *     max_virtqueue_pairs equals net_pairs= when given;
 *   - one queue pair per CPU (at most 8), each with its own MSI-X vectors
 *     aimed at its own CPU; VQ_PAIRS_SET on the control queue is acked;
 *   - CPU by CPU, each CPU sends from its own pair, with its own address
 *     net_ip + i, an ARP request for net_host and an ICMP echo to it, and
 *     must get the ARP reply and the echo reply back on the same pair; both
 *     queues' interrupts reach that CPU and no other.  A multi-queue TAP
 *     steers a reply to the queue that last sent a frame of the same flow
 *     (every ARP frame hashes alike), but it learns that only after the
 *     request has been answered: a reply landing on another pair's queue
 *     is seen there and the request sent again, once;
 *   - net_link=1: waits for the host to take the link down and up again
 *     (`dvmm ctl SOCK link net.0 down|up`), each seen as a config interrupt
 *     with the STATUS field changed;
 *   - net_reset=1 (default): a reset with RX buffers posted and frames in
 *     flight reads back 0, after which no used ring changes; the device then
 *     comes back with one pair and answers ARP again.
 * Frames that are none of ours (IPv6 chatter, the host's own ARP probes)
 * are skipped; an ARP request for one of our addresses is answered. */
#include <stdbool.h>
#include <stddef.h>

#include <linux/virtio_config.h>
#include <linux/virtio_net.h>

#include "asm.h"
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

#define NET_MAXP		8
#define VEC_QUEUE0		0x40	/* queue q interrupts on 0x40 + q */
#define VEC_CTRL		(VEC_QUEUE0 + 2 * NET_MAXP)
#define VEC_CONFIG		(VEC_CTRL + 1)
#define VEC_WAKE		0xee
#define VEC_TIMER		0xef
#define VEC_SPURIOUS		0xff
#define TIMER_COUNT		0x100000
#define TIMER_DIV16		0x3
#define MAX_APIC		256
#define NET_BAD_RX		1024	/* net_poison=1: RX buffer offset in the page */

#define NRX			16	/* RX buffers per queue */
#define BUF			2048
#define HDR			12

#define REPLY_WAIT_CYCLES	20000000000ULL	/* per try; nested virt is slow */
#define TRIES			3
#define JOB_WAIT_CYCLES		2000000000000ULL
#define LINK_WAIT_CYCLES	600000000000ULL
#define DRAIN_TICKS		64
#define RESET_SETTLE_TICKS	8

struct net_qmem {
	uint8_t rxring[3 * 4096];
	uint8_t txring[3 * 4096];
	uint8_t rx[NRX][BUF] __attribute__((aligned(64)));
	uint8_t tx[VIO_QSIZE][BUF] __attribute__((aligned(64)));
	int8_t slot_of[VIO_QSIZE];	/* rx head -> buffer */
} __attribute__((aligned(4096)));

struct net_job {
	volatile uint32_t apic_id;
	volatile uint32_t pair;		/* set by the BSP */
	volatile uint32_t state;
	char why[160];
};

enum { JOB_IDLE, JOB_GO, JOB_DONE };

struct net_opts {
	uint32_t host_ip, ip;
	bool have_mac;
	uint8_t mac[6];
	uint64_t pairs;			/* 0 = not given */
	bool link, reset;
	bool poison;			/* net_poison=1: net_poison_run only */
};

struct net_state {
	struct vio_dev dev;
	struct net_opts opt;
	uint64_t negotiated;
	uint8_t mac[6];
	uint8_t host_mac[6];
	volatile bool host_mac_known;
	unsigned max_pairs, np, ctrlq;
	uint64_t apic;
	uint32_t bsp_apic;
	volatile uint32_t naps;
	struct net_job jobs[MAX_CPUS];
	uint32_t owner[NET_MAXP];
	uint32_t arp_rx[NET_MAXP], icmp_rx[NET_MAXP], other_rx[NET_MAXP];
	/* Where the last ARP / echo reply for pair p arrived: queue pair + 1. */
	uint32_t arp_at[NET_MAXP], echo_at[NET_MAXP];
	volatile uint32_t irqs[MAX_APIC][2 * NET_MAXP + 2];
	volatile uint32_t ticks[MAX_APIC];
	volatile uint32_t config_irqs;
	/* net_poison=1: the RX chain on the failed page, and what came of it */
	int poison_rx_head;		/* -1: none */
	bool poison_rx_back;
	uint32_t poison_rx_len;
	uint32_t rx_empty;		/* chains given back empty */
};

static struct net_state net;
static struct net_qmem net_mem[NET_MAXP] DEVMEM;
/* net_poison=1: the page the harness poisons once the guest names it.  Two
 * ARP requests are written there first (the guest must not touch it after)
 * and pair 0's first RX buffer lies there from NET_BAD_RX on. */
static uint8_t net_bad_page[4096] __attribute__((aligned(4096))) DEVMEM;
static uint8_t ctrl_ring[3 * 4096] __attribute__((aligned(4096)));
static uint8_t ctrl_buf[64] __attribute__((aligned(64)));

/* ---- LAPIC, interrupts ---------------------------------------------------- */

static uint32_t apic_read(uint32_t reg) { return mmio_read32(net.apic + reg); }
static void apic_write(uint32_t reg, uint32_t v) { mmio_write32(net.apic + reg, v); }
static uint32_t this_apic_id(void) { return apic_read(APIC_ID) >> 24; }

static bool net_irq(struct exc_frame *f)
{
	uint32_t id = this_apic_id() % MAX_APIC;
	uint64_t v = f->vector;

	if (v == VEC_SPURIOUS)
		return true;
	if (v >= VEC_QUEUE0 && v <= VEC_CTRL)
		net.irqs[id][v - VEC_QUEUE0]++;
	else if (v == VEC_CONFIG)
		net.config_irqs++;
	else if (v == VEC_TIMER)
		net.ticks[id]++;
	apic_write(APIC_EOI, 0);
	return true;
}

static void net_cpu_setup(void)
{
	__asm__ volatile("cli");
	apic_write(APIC_SVR, APIC_SVR_ENABLE | VEC_SPURIOUS);
	apic_write(APIC_TIMER_DIV, TIMER_DIV16);
	apic_write(APIC_LVT_TIMER, APIC_TIMER_PERIODIC | VEC_TIMER);
	apic_write(APIC_TIMER_INIT, TIMER_COUNT);
}

static void net_wait_irq(void)
{
	__asm__ volatile("sti; hlt; cli" ::: "memory");
}

static void net_send_wake(uint32_t apic_id)
{
	uint64_t start = rdtsc();

	apic_write(APIC_ICR_HI, apic_id << 24);
	apic_write(APIC_ICR_LO, VEC_WAKE);
	while ((apic_read(APIC_ICR_LO) & ICR_BUSY) && rdtsc() - start < 100000000ULL)
		cpu_relax();
}

/* Let queue q's interrupt reach this CPU before anyone counts. */
static void net_drain_irqs(unsigned q)
{
	uint32_t me = this_apic_id() % MAX_APIC, t0 = net.ticks[me];

	__asm__ volatile("sti; nop; cli" ::: "memory");
	for (uint64_t i = 0; i < (1ULL << 20) && !net.irqs[me][q] && net.ticks[me] - t0 < DRAIN_TICKS; i++)
		net_wait_irq();
}

/* ---- frames --------------------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)(v >> 16)); put16(p + 2, (uint16_t)v); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) << 16 | get16(p + 2); }

static uint16_t csum(const uint8_t *p, size_t len)
{
	uint32_t s = 0;

	for (size_t i = 0; i + 1 < len; i += 2)
		s += get16(p + i);
	if (len & 1)
		s += (uint32_t)p[len - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static uint32_t pair_ip(unsigned p) { return net.opt.ip + p; }

static size_t arp_frame(uint8_t *f, uint16_t op, const uint8_t *dst_mac, uint32_t sip,
			const uint8_t *tha, uint32_t tip)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t zero[6] = { 0 };

	memcpy(f, dst_mac ? dst_mac : bcast, 6);
	memcpy(f + 6, net.mac, 6);
	put16(f + 12, 0x0806);
	put16(f + 14, 1);
	put16(f + 16, 0x0800);
	f[18] = 6;
	f[19] = 4;
	put16(f + 20, op);
	memcpy(f + 22, net.mac, 6);
	put32(f + 28, sip);
	memcpy(f + 32, tha ? tha : zero, 6);
	put32(f + 38, tip);
	return 42;	/* no padding: a NIC's job, and virtio-net has none */
}

#define ICMP_PAYLOAD 32

static size_t icmp_echo(uint8_t *f, unsigned p)
{
	uint8_t *ip = f + 14, *ic = ip + 20;

	memcpy(f, net.host_mac, 6);
	memcpy(f + 6, net.mac, 6);
	put16(f + 12, 0x0800);
	memset(ip, 0, 20);
	ip[0] = 0x45;
	put16(ip + 2, 20 + 8 + ICMP_PAYLOAD);
	put16(ip + 4, (uint16_t)(0x100 + p));
	ip[8] = 64;
	ip[9] = 1;
	put32(ip + 12, pair_ip(p));
	put32(ip + 16, net.opt.host_ip);
	put16(ip + 10, csum(ip, 20));
	ic[0] = 8;
	ic[1] = 0;
	put16(ic + 2, 0);
	put16(ic + 4, (uint16_t)(0xd000 + p));
	put16(ic + 6, 1);
	for (unsigned i = 0; i < ICMP_PAYLOAD; i++)
		ic[8 + i] = (uint8_t)(p * 16 + i);
	put16(ic + 2, csum(ic, 8 + ICMP_PAYLOAD));
	return 14 + 20 + 8 + ICMP_PAYLOAD;
}

/* ---- queues --------------------------------------------------------------- */

static bool rx_post(unsigned p, unsigned slot)
{
	struct vio_queue *q = &net.dev.q[2 * p];
	struct vio_buf b = { (uintptr_t)net_mem[p].rx[slot], BUF, true };
	int head = vio_add(q, &b, 1);

	if (head < 0)
		return false;
	net_mem[p].slot_of[head] = (int8_t)slot;
	return true;
}

/* Reclaim finished TX chains, then queue one frame (header of zeros). */
static bool tx_send(unsigned p, const uint8_t *frame, size_t len)
{
	struct vio_queue *q = &net.dev.q[2 * p + 1];
	uint16_t slot = q->free_head;
	int head;

	while (vio_get_used(q, NULL) >= 0)
		;
	if (slot >= VIO_QSIZE)
		return false;
	memset(net_mem[p].tx[slot], 0, HDR);
	memcpy(net_mem[p].tx[slot] + HDR, frame, len);
	struct vio_buf b = { (uintptr_t)net_mem[p].tx[slot], (uint32_t)(HDR + len), false };
	head = vio_add(q, &b, 1);
	if (head < 0)
		return false;
	vio_publish(q);
	vio_notify(q);
	return true;
}

enum rx_kind { RX_NONE, RX_ARP_REPLY, RX_ECHO_REPLY, RX_OTHER };

/* The pair whose address ip is, or NET_MAXP. */
static unsigned ip_pair(uint32_t ip)
{
	return ip >= net.opt.ip && ip - net.opt.ip < net.np ? ip - net.opt.ip : NET_MAXP;
}

/* Looks at one frame received on pair q's queue: which reply it is, and
 * for which pair (*p).  ARP requests for our addresses are answered. */
static enum rx_kind rx_classify(unsigned q, const uint8_t *f, size_t len, unsigned *p)
{
	*p = NET_MAXP;
	if (len >= 42 && get16(f + 12) == 0x0806 && get16(f + 14) == 1 && get16(f + 16) == 0x0800) {
		uint16_t op = get16(f + 20);
		uint32_t spa = get32(f + 28), tpa = get32(f + 38);

		*p = ip_pair(tpa);
		if (op == 2 && spa == net.opt.host_ip && *p < NET_MAXP &&
		    !memcmp(f + 32, net.mac, 6) && !memcmp(f, net.mac, 6)) {
			memcpy(net.host_mac, f + 22, 6);
			net.host_mac_known = true;
			return RX_ARP_REPLY;
		}
		if (op == 1 && tpa >= net.opt.ip && tpa < net.opt.ip + NET_MAXP) {
			uint8_t r[64];
			size_t n = arp_frame(r, 2, f + 22, tpa, f + 22, spa);
			tx_send(q, r, n);
		}
		return RX_OTHER;
	}
	if (len >= 14 + 20 + 8 + ICMP_PAYLOAD && get16(f + 12) == 0x0800) {
		const uint8_t *ip = f + 14, *ic = ip + (ip[0] & 0xf) * 4;

		*p = ip_pair(get32(ip + 16));
		if (ip[9] == 1 && get32(ip + 12) == net.opt.host_ip && *p < NET_MAXP &&
		    ic[0] == 0 && get16(ic + 4) == 0xd000 + *p && get16(ic + 6) == 1 &&
		    ic + 8 + ICMP_PAYLOAD <= f + len) {
			for (unsigned i = 0; i < ICMP_PAYLOAD; i++)
				if (ic[8 + i] != (uint8_t)(*p * 16 + i))
					return RX_OTHER;
			if (csum(ic, (size_t)(f + len - ic)) != 0 || csum(ip, 20) != 0)
				return RX_OTHER;
			return RX_ECHO_REPLY;
		}
	}
	return RX_OTHER;
}

/* Processes what pair q's RX queue holds, recording where replies land.
 * False (why set) when a used entry is malformed. */
static bool rx_poll(unsigned q, char *why, size_t whylen)
{
	struct vio_queue *vq = &net.dev.q[2 * q];
	bool posted = false;
	uint32_t len;
	int head;

	while ((head = vio_get_used(vq, &len)) >= 0) {
		/* net_poison=1: a frame that met the failed page is dropped by the
		 * device, which gives its chains back empty; the failed page's
		 * own chain is not posted again. */
		if (net.opt.poison && q == 0 && head == net.poison_rx_head) {
			net.poison_rx_back = true;
			net.poison_rx_len = len;
			net.rx_empty += len == 0;
			continue;
		}
		if (net.opt.poison && len == 0 && net_mem[q].slot_of[head] >= 0) {
			net.rx_empty++;
			posted |= rx_post(q, (unsigned)net_mem[q].slot_of[head]);
			continue;
		}
		int slot = net_mem[q].slot_of[head];
		const uint8_t *b = slot >= 0 ? net_mem[q].rx[slot] : NULL;
		const struct virtio_net_hdr_v1 *h = (const void *)b;
		unsigned p;

		if (!b || len < HDR + 14 || len > BUF || h->num_buffers != 1) {
			fmt_snprintf(why, whylen, "pair %u: used entry head %d len %u num_buffers %u", q,
				     head, len, b ? h->num_buffers : 0);
			return false;
		}
		enum rx_kind k = rx_classify(q, b + HDR, len - HDR, &p);
		if (k == RX_ARP_REPLY) {
			net.arp_rx[q]++;
			net.arp_at[p] = q + 1;
		} else if (k == RX_ECHO_REPLY) {
			net.icmp_rx[q]++;
			net.echo_at[p] = q + 1;
		} else {
			net.other_rx[q]++;
		}
		posted |= rx_post(q, (unsigned)slot);
	}
	if (posted) {
		vio_publish(vq);
		vio_notify(vq);
	}
	return true;
}

/* Send the request on pair p until its reply comes back on p.  Only one
 * CPU runs an exchange at a time, so it may look at every pair's queue. */
static bool exchange(unsigned p, const char *what, bool arp, char *why, size_t whylen)
{
	uint32_t *at = arp ? &net.arp_at[p] : &net.echo_at[p];
	uint8_t f[128];
	unsigned elsewhere = 0;

	for (unsigned t = 0; t < TRIES + 1; t++) {
		size_t n = arp ? arp_frame(f, 1, NULL, pair_ip(p), NULL, net.opt.host_ip) : icmp_echo(f, p);
		*at = 0;
		if (!tx_send(p, f, n)) {
			fmt_snprintf(why, whylen, "pair %u: TX ring full", p);
			return false;
		}
		for (uint64_t start = rdtsc(); !*at && rdtsc() - start < REPLY_WAIT_CYCLES;) {
			for (unsigned q = 0; q < net.np; q++)
				if (!rx_poll(q, why, whylen))
					return false;
			if (!*at)
				net_wait_irq();
		}
		if (*at == p + 1)
			return true;
		if (!*at) {
			console_printf("# net: pair %u: no %s reply yet (try %u)\n", p, what, t + 1);
			continue;
		}
		console_printf("# net: pair %u: %s reply came on pair %u's queue (the TAP learns the flow from this request); sending again\n",
			       p, what, *at - 1);
		if (++elsewhere > 1) {
			fmt_snprintf(why, whylen, "pair %u: %s reply came twice on pair %u's queue, not its own",
				     p, what, *at - 1);
			return false;
		}
	}
	fmt_snprintf(why, whylen, "pair %u: no %s reply from the host (%u other frames on its queue)",
		     p, what, net.other_rx[p]);
	return false;
}

/* ---- per-CPU work --------------------------------------------------------- */

static bool pair_work(unsigned p, char *why, size_t whylen)
{
	uint32_t me = this_apic_id();

	if (me != net.owner[p]) {
		fmt_snprintf(why, whylen, "pair %u driven from APIC %u, owner is %u", p, me, net.owner[p]);
		return false;
	}
	if (!exchange(p, "ARP", true, why, whylen))
		return false;
	if (!exchange(p, "ICMP echo", false, why, whylen))
		return false;
	net_drain_irqs(2 * p);
	net_drain_irqs(2 * p + 1);
	return true;
}

static void net_ap_main(void)
{
	uint32_t one = 1, slot;
	struct net_job *j;

	net_cpu_setup();
	__asm__ volatile("lock xaddl %0, %1" : "+r"(one), "+m"(net.naps) : : "memory");
	slot = one;
	if (slot >= MAX_CPUS)
		cpu_halt_forever();
	j = &net.jobs[slot];
	j->apic_id = this_apic_id();
	for (;;) {
		if (j->state == JOB_GO) {
			j->why[0] = '\0';
			pair_work(j->pair, j->why, sizeof(j->why));
			__asm__ volatile("" ::: "memory");
			j->state = JOB_DONE;
		}
		net_wait_irq();
	}
}

/* ---- bring-up, control queue ---------------------------------------------- */

static uint8_t devcfg8(unsigned off) { return net.dev.devcfg[off]; }
static uint16_t devcfg16(unsigned off) { return *(volatile uint16_t *)(net.dev.devcfg + off); }

static int ctrl_pairs_set(unsigned n)
{
	struct vio_queue *q = &net.dev.q[net.ctrlq];
	struct vio_buf b[3] = {
		{ (uintptr_t)ctrl_buf, 2, false },
		{ (uintptr_t)ctrl_buf + 8, 2, false },
		{ (uintptr_t)ctrl_buf + 16, 1, true },
	};

	ctrl_buf[0] = VIRTIO_NET_CTRL_MQ;
	ctrl_buf[1] = VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET;
	ctrl_buf[8] = (uint8_t)n;
	ctrl_buf[9] = (uint8_t)(n >> 8);
	ctrl_buf[16] = 0xee;
	if (vio_add(q, b, 3) < 0)
		return -1;
	vio_publish(q);
	vio_notify(q);
	for (uint64_t start = rdtsc(); rdtsc() - start < REPLY_WAIT_CYCLES;) {
		if (vio_get_used(q, NULL) >= 0)
			return ctrl_buf[16];
		net_wait_irq();
	}
	return -1;
}

/* Reset, features, queues for `np` pairs (+ control), DRIVER_OK, RX
 * buffers, VQ_PAIRS_SET. */
static bool net_bring_up(struct check_ctx *c, unsigned np)
{
	struct vio_dev *d = &net.dev;
	uint64_t want = 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_NET_F_MAC |
			1ULL << VIRTIO_NET_F_STATUS | 1ULL << VIRTIO_NET_F_MQ |
			1ULL << VIRTIO_NET_F_CTRL_VQ | 1ULL << VIRTIO_NET_F_MRG_RXBUF |
			1ULL << VIRTIO_NET_F_MTU;

	if (!vio_reset(d)) {
		check_fail(c, "device status never read back 0 after reset");
		return false;
	}
	vio_set_status(d, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	vio_set_status(d, VIRTIO_CONFIG_S_DRIVER);
	if (!vio_negotiate(d, want, &net.negotiated)) {
		check_fail(c, "FEATURES_OK did not stick (wrote features 0x%lx)", net.negotiated);
		return false;
	}
	bool mq = net.negotiated & (1ULL << VIRTIO_NET_F_MQ);
	/* QEMU adds the queues MQ brings only once FEATURES_OK is set. */
	d->num_queues = d->common->num_queues;
	if (!d->devcfg || d->devcfg_len < 10) {
		check_fail(c, "device config missing or %u bytes", d->devcfg_len);
		return false;
	}
	for (unsigned i = 0; i < 6; i++)
		net.mac[i] = devcfg8(i);
	/* Without MQ: one pair, and the control queue (if any) is queue 2. */
	net.max_pairs = mq ? devcfg16(offsetof(struct virtio_net_config, max_virtqueue_pairs)) : 1;
	net.ctrlq = net.negotiated & (1ULL << VIRTIO_NET_F_CTRL_VQ) ? 2 * net.max_pairs : 0;
	if (!net.max_pairs || 2 * net.max_pairs + !!net.ctrlq > d->num_queues ||
	    2 * net.max_pairs >= VIO_MAX_DEV_QUEUES) {
		check_fail(c, "max_virtqueue_pairs %u with %u queues", net.max_pairs, d->num_queues);
		return false;
	}
	net.np = np ? np : net.max_pairs;
	if (net.np > net.max_pairs)
		net.np = net.max_pairs;
	if (net.np > NET_MAXP)
		net.np = NET_MAXP;

	/* MSI-X entries: queue q uses entry q, the control queue 2*np, config
	 * changes 2*np + 1 (devices have 2 * pairs + 2 entries or more). */
	if (!vio_msix_route(d, (uint16_t)(2 * net.np + 1), (uint8_t)net.bsp_apic, VEC_CONFIG)) {
		check_fail(c, "MSI-X table entry %u did not take (table has %u)", 2 * net.np + 1,
			   d->msix_entries);
		return false;
	}
	d->common->msix_config = (uint16_t)(2 * net.np + 1);
	if (d->common->msix_config != 2 * net.np + 1) {
		check_fail(c, "config vector %u rejected", 2 * net.np + 1);
		return false;
	}
	for (unsigned p = 0; p < net.np; p++) {
		for (unsigned k = 0; k < 2; k++) {
			unsigned qi = 2 * p + k;
			if (!vio_msix_route(d, (uint16_t)qi, (uint8_t)net.owner[p], (uint8_t)(VEC_QUEUE0 + qi))) {
				check_fail(c, "MSI-X table entry %u did not take (table has %u)", qi, d->msix_entries);
				return false;
			}
			int r = vio_queue_setup(d, (uint16_t)qi, k ? net_mem[p].txring : net_mem[p].rxring,
						(uint16_t)qi);
			if (r < 0) {
				check_fail(c, "queue %u cannot be set up (%d)", qi, r);
				return false;
			}
		}
	}
	if (net.ctrlq && (!vio_msix_route(d, (uint16_t)(2 * net.np), (uint8_t)net.bsp_apic, VEC_CTRL) ||
			  vio_queue_setup(d, (uint16_t)net.ctrlq, ctrl_ring, (uint16_t)(2 * net.np)) < 0)) {
		check_fail(c, "control queue %u cannot be set up", net.ctrlq);
		return false;
	}
	vio_set_status(d, VIRTIO_CONFIG_S_DRIVER_OK);
	if (vio_status(d) & (VIRTIO_CONFIG_S_NEEDS_RESET | VIRTIO_CONFIG_S_FAILED)) {
		check_fail(c, "device status 0x%x after DRIVER_OK", vio_status(d));
		return false;
	}
	for (unsigned p = 0; p < net.np; p++) {
		for (unsigned i = 0; i < VIO_QSIZE; i++)
			net_mem[p].slot_of[i] = -1;
		/* net_poison=1: pair 0's first RX chain lies on the page that
		 * will fail, so the first frame received meets it. */
		if (net.opt.poison && p == 0) {
			struct vio_buf b = { (uintptr_t)net_bad_page + NET_BAD_RX, 4096 - NET_BAD_RX, true };

			net.poison_rx_head = vio_add(&d->q[0], &b, 1);
			if (net.poison_rx_head < 0) {
				check_fail(c, "pair 0: cannot post the RX buffer on the poison page");
				return false;
			}
		}
		for (unsigned s = 0; s < NRX; s++)
			if (!rx_post(p, s)) {
				check_fail(c, "pair %u: cannot post RX buffer %u", p, s);
				return false;
			}
		vio_publish(&d->q[2 * p]);
		vio_notify(&d->q[2 * p]);
	}
	if (!mq)
		return true;
	if (!net.ctrlq) {
		check_fail(c, "MQ without a control queue");
		return false;
	}
	int ack = ctrl_pairs_set(net.np);
	if (ack != VIRTIO_NET_OK) {
		check_fail(c, "VQ_PAIRS_SET %u: %s", net.np, ack < 0 ? "no answer" : "refused");
		return false;
	}
	return true;
}

/* ---- link, reset ---------------------------------------------------------- */

static bool wait_link(struct check_ctx *c, bool up)
{
	uint32_t before = net.config_irqs;
	uint16_t st;

	console_printf("# net: waiting for the host to take the link %s\n", up ? "up" : "down");
	for (uint64_t start = rdtsc(); rdtsc() - start < LINK_WAIT_CYCLES;) {
		st = devcfg16(offsetof(struct virtio_net_config, status));
		if (!!(st & VIRTIO_NET_S_LINK_UP) == up && net.config_irqs != before) {
			console_printf("# net: link %s seen: status 0x%x, %u config interrupt(s)\n",
				       up ? "up" : "down", st, net.config_irqs - before);
			return true;
		}
		net_wait_irq();
	}
	check_fail(c, "link never went %s (status 0x%x, %u config interrupts)", up ? "up" : "down",
		   devcfg16(offsetof(struct virtio_net_config, status)), net.config_irqs - before);
	return false;
}

static void net_reset_in_flight(struct check_ctx *c)
{
	struct vio_queue *rx = &net.dev.q[0];
	struct vring_used_elem ring[VIO_QSIZE];
	uint16_t used_before, txused_before;
	uint8_t f[128];
	uint32_t ticks;
	char why[160];

	for (unsigned i = 0; i < 8; i++)
		tx_send(0, f, arp_frame(f, 1, NULL, pair_ip(0), NULL, net.opt.host_ip));
	if (!vio_reset(&net.dev)) {
		check_fail(c, "reset with frames in flight: status never read back 0");
		return;
	}
	used_before = vio_used_idx(rx);
	txused_before = vio_used_idx(&net.dev.q[1]);
	for (unsigned i = 0; i < VIO_QSIZE; i++) {
		ring[i].id = rx->used->ring[i].id;
		ring[i].len = rx->used->ring[i].len;
	}
	ticks = net.ticks[net.bsp_apic % MAX_APIC];
	for (uint64_t i = 0; i < (1ULL << 20) && net.ticks[net.bsp_apic % MAX_APIC] - ticks < RESET_SETTLE_TICKS; i++)
		net_wait_irq();
	if (vio_used_idx(rx) != used_before || vio_used_idx(&net.dev.q[1]) != txused_before) {
		check_fail(c, "a used ring index moved after the reset was acknowledged");
		return;
	}
	for (unsigned i = 0; i < VIO_QSIZE; i++)
		if (rx->used->ring[i].id != ring[i].id || rx->used->ring[i].len != ring[i].len) {
			check_fail(c, "RX used entry %u changed after the reset was acknowledged", i);
			return;
		}
	if (vio_status(&net.dev) != 0) {
		check_fail(c, "device status 0x%x after the reset settled", vio_status(&net.dev));
		return;
	}
	/* Back with one pair, on the BSP: ARP again. */
	net.owner[0] = net.bsp_apic;
	if (!net_bring_up(c, 1))
		return;
	net.host_mac_known = false;
	if (!exchange(0, "ARP after reset", true, why, sizeof(why))) {
		check_fail(c, "%s", why);
		return;
	}
	console_puts("# net: device re-initialised after a reset with frames in flight, ARP answered\n");
}

/* ---- the check ------------------------------------------------------------ */

static bool parse_ip(const char *v, size_t len, uint32_t *out)
{
	uint32_t ip = 0;
	unsigned parts = 0;
	size_t i = 0;

	while (i < len && parts < 4) {
		uint64_t n;
		size_t j = i;
		while (j < len && v[j] != '.')
			j++;
		if (!parse_u64(v + i, j - i, false, &n) || n > 255)
			return false;
		ip = ip << 8 | (uint32_t)n;
		parts++;
		i = j + 1;
	}
	*out = ip;
	return parts == 4 && i >= len;
}

static bool parse_mac(const char *v, size_t len, uint8_t *mac)
{
	if (len != 17)
		return false;
	for (unsigned i = 0; i < 6; i++) {
		uint64_t n;
		if ((i < 5 && v[3 * i + 2] != ':') || !parse_u64((const char[]){ '0', 'x', v[3 * i], v[3 * i + 1] }, 4, false, &n))
			return false;
		mac[i] = (uint8_t)n;
	}
	return true;
}

static bool net_parse_opts(struct check_ctx *c, struct net_opts *o)
{
	const char *cl = c->bi->cmdline, *v;
	size_t len;
	uint64_t n;
	int rc;

	memset(o, 0, sizeof(*o));
	o->reset = true;
	if (!(v = cmdline_find(cl, "net_host", &len)) || !parse_ip(v, len, &o->host_ip)) {
		check_fail(c, "net_host=A.B.C.D (the TAP's address) missing or malformed");
		return false;
	}
	if (!(v = cmdline_find(cl, "net_ip", &len)) || !parse_ip(v, len, &o->ip)) {
		check_fail(c, "net_ip=A.B.C.D (CPU i uses it + i) missing or malformed");
		return false;
	}
	if ((v = cmdline_find(cl, "net_mac", &len))) {
		if (!parse_mac(v, len, o->mac)) {
			check_fail(c, "malformed net_mac=");
			return false;
		}
		o->have_mac = true;
	}
	rc = cmdline_get_u64(cl, "net_pairs", false, &o->pairs);
	if (rc < 0) {
		check_fail(c, "malformed net_pairs=");
		return false;
	}
	if ((rc = cmdline_get_u64(cl, "net_link", false, &n)) < 0) {
		check_fail(c, "malformed net_link=");
		return false;
	}
	o->link = rc > 0 && n;
	if ((rc = cmdline_get_u64(cl, "net_reset", false, &n)) < 0) {
		check_fail(c, "malformed net_reset=");
		return false;
	}
	if (rc > 0)
		o->reset = n != 0;
	if ((rc = cmdline_get_u64(cl, "net_poison", false, &n)) < 0) {
		check_fail(c, "malformed net_poison=");
		return false;
	}
	o->poison = rc > 0 && n;
	return true;
}

/* ---- frames on a failed page (net_poison=1) -------------------------------- */

static uint8_t net_good_hdr[64] __attribute__((aligned(64)));

/* Queue a TX chain of n buffers on pair 0 and wait until the device gives
 * it back.  True when it did. */
static bool net_poison_tx(const struct vio_buf *b, unsigned n)
{
	struct vio_queue *q = &net.dev.q[1];
	int head, got = -1;

	while (vio_get_used(q, NULL) >= 0)
		;
	head = vio_add(q, b, n);
	if (head < 0)
		return false;
	vio_publish(q);
	vio_notify(q);
	for (uint64_t start = rdtsc(); rdtsc() - start < REPLY_WAIT_CYCLES;) {
		while ((got = vio_get_used(q, NULL)) >= 0)
			if (got == head)
				return true;
		net_wait_irq();
	}
	return false;
}

/* The kernel's early-kill report of the page comes first
 * (mce_guest_take_ao).  Then a frame whose header lies on the page (the
 * host worker's own load faults) and one whose header is elsewhere but
 * whose Ethernet frame lies on it (the TAP writev gets EFAULT): each chain
 * must come back (the frame dropped), with no second machine check, and
 * ARP and ICMP echo on the same pair must still work. */
static void net_poison_run(struct check_ctx *c)
{
	uint8_t *bad = net_bad_page;
	uint64_t gpa = (uint64_t)(uintptr_t)bad;	/* identity-mapped */
	char why[160] = "";
	unsigned n = 0;
	size_t len;
	bool ok;

	if (!mce_guest_enable(c))
		return;
	memset(bad, 0, HDR);
	len = arp_frame(bad + HDR, 1, NULL, pair_ip(0), NULL, net.opt.host_ip);
	memset(net_good_hdr, 0, HDR);
	arp_frame(bad + 512, 1, NULL, pair_ip(0), NULL, net.opt.host_ip);
	console_printf("# netpoison: frame gpa 0x%lx\n", gpa);
	if (!mce_guest_take_ao(c, gpa, &n))
		return;

	struct vio_buf one = { gpa, (uint32_t)(HDR + len), false };
	ok = net_poison_tx(&one, 1);
	console_printf("%s %u - netpoison TX frame with its header on the failed page: chain given back\n",
		       ok ? "ok" : "not ok", ++n);
	if (!ok)
		check_fail(c, "the TX chain with its header on the failed page never came back");
	struct vio_buf two[2] = {
		{ (uintptr_t)net_good_hdr, HDR, false },
		{ gpa + 512, (uint32_t)len, false },
	};
	ok = net_poison_tx(two, 2);
	console_printf("%s %u - netpoison TX frame body on the failed page: chain given back\n",
		       ok ? "ok" : "not ok", ++n);
	if (!ok)
		check_fail(c, "the TX chain with its frame on the failed page never came back");
	if (mce_guest_quiet(1000)) {
		console_printf("ok %u - netpoison no second machine check for the page\n", ++n);
	} else {
		console_printf("not ok %u - netpoison no second machine check for the page\n", ++n);
		check_fail(c, "a second machine check arrived for a page already reported");
	}
	/* The first reply lands on the failed RX buffer and is dropped;
	 * exchange() sends again. */
	if (exchange(0, "ARP", true, why, sizeof(why)) &&
	    exchange(0, "ICMP echo", false, why, sizeof(why))) {
		console_printf("ok %u - netpoison ARP and ICMP echo on pair 0 after the failure\n", ++n);
	} else {
		console_printf("not ok %u - netpoison ARP and ICMP echo on pair 0 after the failure # %s\n",
			       ++n, why);
		check_fail(c, "%s", why);
		return;
	}
	if (net.poison_rx_back && net.poison_rx_len == 0) {
		console_printf("ok %u - netpoison RX frame into the failed page: dropped, chain given back "
			       "empty (%u empty chains)\n", ++n, net.rx_empty);
	} else {
		console_printf("not ok %u - netpoison RX frame into the failed page: dropped, chain given back "
			       "empty # %s, used len %u\n", ++n,
			       net.poison_rx_back ? "given back" : "never given back", net.poison_rx_len);
		check_fail(c, "the RX chain on the failed page was %s",
			   net.poison_rx_back ? "filled" : "never given back");
	}
	console_printf("# netpoison: survived; device status 0x%x\n", vio_status(&net.dev));
}

static unsigned net_start_cpus(struct check_ctx *c, uint32_t *cpus)
{
	struct smp_stats st;
	unsigned n = 1;

	cpus[0] = net.bsp_apic;
	smp_set_ap_work(net_ap_main);
	smp_run(c, &st);
	smp_set_ap_work(NULL);
	if (c->status == CHECK_SKIP) {
		console_printf("# net: %s; the BSP drives every pair\n", c->reason);
		c->status = CHECK_PASS;
		c->reason[0] = '\0';
		return 1;
	}
	for (uint64_t start = rdtsc(); net.naps + 1 < st.up && rdtsc() - start < JOB_WAIT_CYCLES;)
		cpu_relax();
	for (unsigned i = 0; i < net.naps && n < MAX_CPUS; i++)
		cpus[n++] = net.jobs[i].apic_id;
	return n;
}

static struct net_job *job_of(uint32_t apic)
{
	for (unsigned i = 0; i < net.naps; i++)
		if (net.jobs[i].apic_id == apic)
			return &net.jobs[i];
	return NULL;
}

void check_net(struct check_ctx *c)
{
	struct pci_fn f;
	uint32_t cpus[MAX_CPUS];
	unsigned ncpus;
	char why[160] = "";

	memset(&net, 0, sizeof(net));
	memset(net_mem, 0, sizeof(net_mem));
	net.poison_rx_head = -1;
	if (!net_parse_opts(c, &net.opt))
		return;
	if (!pci_find(0x1af4, 0x1041, 0, &f) && !pci_find(0x1af4, 0x1000, 0, &f)) {
		check_fail(c, "no virtio-net (1af4:1041 or 1af4:1000) on PCI bus 0");
		return;
	}
	console_printf("# net: virtio-net %04x at 00:%02x.%u\n", pci_read16(f, 2), f.dev, f.fn);
	if (!vio_probe(&net.dev, f, c->mapped_top, why, sizeof(why))) {
		check_fail(c, "virtio-pci probe: %s", why);
		return;
	}
	console_printf("# net: features 0x%lx, %u queues, %u MSI-X entries\n", net.dev.features,
		       net.dev.num_queues, net.dev.msix_entries);
	if (!net.dev.msix_cap) {
		check_fail(c, "no MSI-X capability");
		return;
	}
	if (rdmsr(MSR_APIC_BASE) & (1ULL << 10)) {
		check_skip(c, "LAPIC in x2APIC mode");
		return;
	}
	net.apic = rdmsr(MSR_APIC_BASE) & 0xffffff000ULL;
	for (unsigned v = VEC_QUEUE0; v <= VEC_CONFIG; v++)
		idt_set_hook((uint8_t)v, net_irq);
	idt_set_hook(VEC_WAKE, net_irq);
	idt_set_hook(VEC_TIMER, net_irq);
	idt_set_hook(VEC_SPURIOUS, net_irq);
	outb(PIC1_DATA, 0xff);
	outb(PIC2_DATA, 0xff);
	net_cpu_setup();
	net.bsp_apic = this_apic_id();

	ncpus = net_start_cpus(c, cpus);
	if (c->status == CHECK_FAIL)
		goto out;
	for (unsigned p = 0; p < NET_MAXP; p++)
		net.owner[p] = cpus[p % ncpus];
	if (!vio_msix_enable(&net.dev)) {
		check_fail(c, "MSI-X enable bit did not stick");
		goto out;
	}
	if (!net_bring_up(c, ncpus))
		goto out;
	uint16_t st = devcfg16(offsetof(struct virtio_net_config, status));
	console_printf("# net: negotiated 0x%lx, mac %02x:%02x:%02x:%02x:%02x:%02x, status 0x%x, "
		       "max_virtqueue_pairs %u, mtu %u, %u cpus, driving %u pairs\n",
		       net.negotiated, net.mac[0], net.mac[1], net.mac[2], net.mac[3], net.mac[4], net.mac[5],
		       st, net.max_pairs,
		       net.negotiated & (1ULL << VIRTIO_NET_F_MTU) ? devcfg16(offsetof(struct virtio_net_config, mtu)) : 0,
		       ncpus, net.np);
	if (!(st & VIRTIO_NET_S_LINK_UP)) {
		check_fail(c, "link is down (status 0x%x)", st);
		goto out;
	}
	if (net.opt.have_mac && memcmp(net.mac, net.opt.mac, 6)) {
		check_fail(c, "MAC %02x:%02x:%02x:%02x:%02x:%02x, expected net_mac=", net.mac[0], net.mac[1],
			   net.mac[2], net.mac[3], net.mac[4], net.mac[5]);
		goto out;
	}
	if (net.opt.pairs && net.max_pairs != net.opt.pairs) {
		check_fail(c, "max_virtqueue_pairs %u, expected %lu", net.max_pairs, net.opt.pairs);
		goto out;
	}

	if (net.opt.poison) {
		net_poison_run(c);
		goto out;
	}

	/* One CPU at a time: ARP replies all hash alike in the host's TAP,
	 * which sends each to the queue that last sent an ARP frame. */
	for (unsigned p = 0; p < net.np; p++) {
		if (net.owner[p] == net.bsp_apic) {
			if (!pair_work(p, why, sizeof(why))) {
				check_fail(c, "%s", why);
				goto out;
			}
			continue;
		}
		struct net_job *j = job_of(net.owner[p]);
		if (!j) {
			check_fail(c, "no AP with APIC %u", net.owner[p]);
			goto out;
		}
		j->pair = p;
		j->state = JOB_GO;
		net_send_wake(j->apic_id);
		for (uint64_t start = rdtsc(); j->state != JOB_DONE && rdtsc() - start < JOB_WAIT_CYCLES;)
			net_wait_irq();
		if (j->state != JOB_DONE) {
			check_fail(c, "APIC %u never finished pair %u", j->apic_id, p);
			goto out;
		}
		j->state = JOB_IDLE;
		if (j->why[0]) {
			check_fail(c, "APIC %u: %s", j->apic_id, j->why);
			goto out;
		}
	}

	/* Each queue's interrupts on its owner, and only there. */
	for (unsigned p = 0; p < net.np; p++) {
		uint32_t rx = net.irqs[net.owner[p] % MAX_APIC][2 * p], tx = net.irqs[net.owner[p] % MAX_APIC][2 * p + 1];

		console_printf("# net: pair %u on APIC %u: ARP and echo replies on its own queue (%u ARP, %u echo, %u other frames there), %u RX and %u TX interrupts\n",
			       p, net.owner[p], net.arp_rx[p], net.icmp_rx[p], net.other_rx[p], rx, tx);
		if (!rx || !tx)
			check_fail(c, "pair %u: %s interrupt reached its owner APIC %u", p, !rx ? "no RX" : "no TX",
				   net.owner[p]);
		for (unsigned a = 0; a < MAX_APIC; a++)
			for (unsigned k = 0; k < 2; k++)
				if (a != net.owner[p] && net.irqs[a][2 * p + k]) {
					console_printf("# net: queue %u: %u interrupts on APIC %u\n", 2 * p + k,
						       net.irqs[a][2 * p + k], a);
					check_fail(c, "queue %u: interrupts on APIC %u, owner is APIC %u", 2 * p + k, a,
						   net.owner[p]);
				}
	}
	if (c->status == CHECK_FAIL)
		goto out;
	if (net.opt.link && (!wait_link(c, false) || !wait_link(c, true)))
		goto out;
	if (net.opt.reset)
		net_reset_in_flight(c);
out:
	vio_reset(&net.dev);
	apic_write(APIC_LVT_TIMER, 1U << 16);
	__asm__ volatile("cli");
}
