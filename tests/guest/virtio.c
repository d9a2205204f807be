#include "virtio.h"

#include <linux/virtio_config.h>

#include "fmt.h"
#include "io.h"
#include "lib.h"

#define PCI_COMMAND		0x04
#define MSIX_CTRL		2
#define MSIX_TABLE		4
#define MSIX_CTRL_ENABLE	0x8000
#define MSIX_CTRL_MASKALL	0x4000
#define MSIX_CTRL_SIZE		0x07ff
#define MSIX_ENTRY_SIZE		16
#define MSI_ADDR_BASE		0xfee00000U
#define RESET_WAIT_CYCLES	20000000000ULL	/* seconds, even on a slow TSC */

#define barrier() __asm__ volatile("" ::: "memory")

struct vio_cap {
	uint8_t bar;
	uint32_t off, len;
	uint8_t at;	/* config offset, 0 when not found */
};

static bool vio_find_caps(struct pci_fn f, struct vio_cap caps[VIRTIO_PCI_CAP_PCI_CFG + 1])
{
	uint8_t p = 0;

	for (unsigned n = 0; n < 48; n++) {
		uint8_t type;

		p = pci_find_cap(f, PCI_CAP_ID_VNDR, p);
		if (!p)
			break;
		type = pci_read8(f, p + VIRTIO_PCI_CAP_CFG_TYPE);
		/* The spec lets a device list a type more than once, best
		 * first: the driver takes the first it can use. */
		if (type > VIRTIO_PCI_CAP_PCI_CFG || caps[type].at)
			continue;
		caps[type].bar = pci_read8(f, p + VIRTIO_PCI_CAP_BAR);
		caps[type].off = pci_read32(f, p + VIRTIO_PCI_CAP_OFFSET);
		caps[type].len = pci_read32(f, p + VIRTIO_PCI_CAP_LENGTH);
		if (caps[type].bar > 5)
			continue;
		caps[type].at = p;
	}
	return caps[VIRTIO_PCI_CAP_COMMON_CFG].at && caps[VIRTIO_PCI_CAP_NOTIFY_CFG].at &&
	       caps[VIRTIO_PCI_CAP_ISR_CFG].at;
}

/* Address of [off, off+len) in BAR `bar`, mapped; 0 on error (why set). */
static uint64_t vio_bar_range(struct vio_dev *d, uint8_t bar, uint64_t off, uint64_t len,
			      uint64_t mapped_top, char *why, unsigned whylen)
{
	uint64_t addr, size;

	if (!pci_bar(d->pci, bar, &addr, &size)) {
		fmt_snprintf(why, whylen, "BAR %u is not a memory BAR", bar);
		return 0;
	}
	if (!addr || off > size || len > size - off) {
		fmt_snprintf(why, whylen, "range 0x%lx+0x%lx outside BAR %u (0x%lx, size 0x%lx)",
			     off, len, bar, addr, size);
		return 0;
	}
	if (!pci_map_mmio(addr, size, mapped_top)) {
		fmt_snprintf(why, whylen, "cannot map BAR %u at 0x%lx", bar, addr);
		return 0;
	}
	d->bar_addr[bar] = addr;
	return addr + off;
}

bool vio_probe(struct vio_dev *d, struct pci_fn f, uint64_t mapped_top, char *why, unsigned whylen)
{
	struct vio_cap caps[VIRTIO_PCI_CAP_PCI_CFG + 1];
	uint64_t a;
	uint32_t tbl;

	memset(d, 0, sizeof(*d));
	memset(caps, 0, sizeof(caps));
	d->pci = f;
	if (!vio_find_caps(f, caps)) {
		fmt_snprintf(why, whylen, "common, notify or ISR capability missing");
		return false;
	}
	if (caps[VIRTIO_PCI_CAP_COMMON_CFG].len < sizeof(struct virtio_pci_common_cfg)) {
		fmt_snprintf(why, whylen, "common config is %u bytes",
			     caps[VIRTIO_PCI_CAP_COMMON_CFG].len);
		return false;
	}
#define RANGE(t) vio_bar_range(d, caps[t].bar, caps[t].off, caps[t].len, mapped_top, why, whylen)
	if (!(a = RANGE(VIRTIO_PCI_CAP_COMMON_CFG)))
		return false;
	d->common = (volatile struct virtio_pci_common_cfg *)(uintptr_t)a;
	if (!(a = RANGE(VIRTIO_PCI_CAP_ISR_CFG)))
		return false;
	d->isr = (volatile uint8_t *)(uintptr_t)a;
	if (!(a = RANGE(VIRTIO_PCI_CAP_NOTIFY_CFG)))
		return false;
	d->notify_base = a;
	d->notify_len = caps[VIRTIO_PCI_CAP_NOTIFY_CFG].len;
	d->notify_mult = pci_read32(f, caps[VIRTIO_PCI_CAP_NOTIFY_CFG].at + VIRTIO_PCI_NOTIFY_CAP_MULT);
	if (caps[VIRTIO_PCI_CAP_DEVICE_CFG].at) {
		if (!(a = RANGE(VIRTIO_PCI_CAP_DEVICE_CFG)))
			return false;
		d->devcfg = (volatile uint8_t *)(uintptr_t)a;
		d->devcfg_len = caps[VIRTIO_PCI_CAP_DEVICE_CFG].len;
	}
#undef RANGE
	d->msix_cap = pci_find_cap(f, PCI_CAP_ID_MSIX, 0);
	if (d->msix_cap) {
		d->msix_entries = (uint16_t)((pci_read16(f, d->msix_cap + MSIX_CTRL) & MSIX_CTRL_SIZE) + 1);
		tbl = pci_read32(f, d->msix_cap + MSIX_TABLE);
		if (!(a = vio_bar_range(d, tbl & 7, tbl & ~7U, (uint64_t)d->msix_entries * MSIX_ENTRY_SIZE,
					mapped_top, why, whylen)))
			return false;
		d->msix_table = a;
	}
	pci_write16(f, PCI_COMMAND, pci_read16(f, PCI_COMMAND) | PCI_CMD_MEMORY | PCI_CMD_MASTER);
	d->common->device_feature_select = 0;
	d->features = d->common->device_feature;
	d->common->device_feature_select = 1;
	d->features |= (uint64_t)d->common->device_feature << 32;
	d->num_queues = d->common->num_queues;
	return true;
}

uint8_t vio_status(const struct vio_dev *d)
{
	return d->common->device_status;
}

void vio_set_status(struct vio_dev *d, uint8_t bits)
{
	d->common->device_status = (uint8_t)(d->common->device_status | bits);
}

bool vio_reset(struct vio_dev *d)
{
	uint64_t start = rdtsc();

	d->common->device_status = 0;
	/* The spec: the reset is done when status reads back 0. */
	while (d->common->device_status != 0) {
		if (rdtsc() - start > RESET_WAIT_CYCLES)
			return false;
		cpu_relax();
	}
	return true;
}

bool vio_negotiate(struct vio_dev *d, uint64_t want, uint64_t *got)
{
	uint64_t f = want & d->features;

	d->common->guest_feature_select = 0;
	d->common->guest_feature = (uint32_t)f;
	d->common->guest_feature_select = 1;
	d->common->guest_feature = (uint32_t)(f >> 32);
	*got = f;
	vio_set_status(d, VIRTIO_CONFIG_S_FEATURES_OK);
	return (vio_status(d) & VIRTIO_CONFIG_S_FEATURES_OK) != 0;
}

bool vio_msix_enable(struct vio_dev *d)
{
	uint16_t ctrl;

	if (!d->msix_cap)
		return false;
	ctrl = pci_read16(d->pci, d->msix_cap + MSIX_CTRL);
	ctrl = (uint16_t)((ctrl | MSIX_CTRL_ENABLE) & ~MSIX_CTRL_MASKALL);
	pci_write16(d->pci, d->msix_cap + MSIX_CTRL, ctrl);
	return (pci_read16(d->pci, d->msix_cap + MSIX_CTRL) & (MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL)) ==
	       MSIX_CTRL_ENABLE;
}

bool vio_msix_route(struct vio_dev *d, uint16_t entry, uint8_t apic_id, uint8_t vector)
{
	uint64_t e = d->msix_table + (uint64_t)entry * MSIX_ENTRY_SIZE;

	if (!d->msix_table || entry >= d->msix_entries)
		return false;
	mmio_write32(e + 12, 1);	/* masked while it changes */
	mmio_write32(e + 0, MSI_ADDR_BASE | (uint32_t)apic_id << 12);
	mmio_write32(e + 4, 0);
	mmio_write32(e + 8, vector);
	mmio_write32(e + 12, 0);
	return mmio_read32(e + 0) == (MSI_ADDR_BASE | (uint32_t)apic_id << 12) &&
	       mmio_read32(e + 8) == vector && mmio_read32(e + 12) == 0;
}

int vio_queue_setup(struct vio_dev *d, uint16_t idx, void *mem, uint16_t vector)
{
	volatile struct virtio_pci_common_cfg *cc = d->common;
	struct vio_queue *q = &d->q[idx];
	uint64_t desc = (uintptr_t)mem, avail = desc + 4096, used = desc + 8192, n;
	uint16_t max;

	if (idx >= VIO_MAX_DEV_QUEUES || idx >= d->num_queues)
		return -1;
	cc->queue_select = idx;
	max = cc->queue_size;
	if (!max)
		return -1;
	memset(mem, 0, 3 * 4096);
	memset(q, 0, sizeof(*q));
	q->idx = idx;
	q->size = max < VIO_QSIZE ? max : VIO_QSIZE;
	q->desc = (struct vring_desc *)(uintptr_t)desc;
	q->avail = (struct vring_avail *)(uintptr_t)avail;
	q->used = (volatile struct vring_used *)(uintptr_t)used;
	for (uint16_t i = 0; i < q->size; i++)
		q->desc[i].next = (uint16_t)(i + 1);
	q->nfree = q->size;
	q->free_head = 0;
	cc->queue_size = q->size;
	cc->queue_desc_lo = (uint32_t)desc;
	cc->queue_desc_hi = (uint32_t)(desc >> 32);
	cc->queue_avail_lo = (uint32_t)avail;
	cc->queue_avail_hi = (uint32_t)(avail >> 32);
	cc->queue_used_lo = (uint32_t)used;
	cc->queue_used_hi = (uint32_t)(used >> 32);
	cc->queue_msix_vector = vector;
	q->vector = cc->queue_msix_vector;
	if (q->vector != vector)
		return -2;
	n = (uint64_t)cc->queue_notify_off * d->notify_mult;
	if (n + 2 > d->notify_len)
		return -1;
	q->notify = (volatile uint16_t *)(uintptr_t)(d->notify_base + n);
	cc->queue_enable = 1;
	return 0;
}

int vio_add(struct vio_queue *q, const struct vio_buf *bufs, unsigned n)
{
	uint16_t head = q->free_head, i = head;

	if (n == 0 || n > q->nfree)
		return -1;
	for (unsigned k = 0; k < n; k++) {
		struct vring_desc *dsc = &q->desc[i];

		dsc->addr = bufs[k].addr;
		dsc->len = bufs[k].len;
		dsc->flags = (uint16_t)((bufs[k].write ? VRING_DESC_F_WRITE : 0) |
					(k + 1 < n ? VRING_DESC_F_NEXT : 0));
		i = dsc->next;
	}
	q->free_head = i;
	q->nfree = (uint16_t)(q->nfree - n);
	q->avail->ring[q->avail_idx & (q->size - 1)] = head;
	q->avail_idx++;
	return head;
}

void vio_publish(struct vio_queue *q)
{
	/* x86 keeps stores in order; the compiler must too. */
	barrier();
	*(volatile uint16_t *)&q->avail->idx = q->avail_idx;
	barrier();
}

void vio_notify(struct vio_queue *q)
{
	*q->notify = q->idx;
}

int vio_get_used(struct vio_queue *q, uint32_t *len)
{
	uint16_t id, i, n = 1;

	if (q->last_used == q->used->idx)
		return -1;
	barrier();
	id = (uint16_t)q->used->ring[q->last_used & (q->size - 1)].id;
	if (len)
		*len = q->used->ring[q->last_used & (q->size - 1)].len;
	q->last_used++;
	if (id >= q->size)
		return -1;
	for (i = id; q->desc[i].flags & VRING_DESC_F_NEXT && n < q->size; n++)
		i = q->desc[i].next;
	q->desc[i].next = q->free_head;
	q->free_head = id;
	q->nfree = (uint16_t)(q->nfree + n);
	return id;
}
