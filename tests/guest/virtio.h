/* A virtio 1.x driver core for the test guest: the modern PCI transport
 * (vendor capabilities, MSI-X) and split virtqueues, written from the spec
 * so that QEMU's devices and dvmm's are held to the same driver. */
#ifndef GUEST_VIRTIO_H
#define GUEST_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>

#include <linux/virtio_pci.h>
#include <linux/virtio_ring.h>

#include "pci.h"

#define VIO_MAX_QUEUES	8	/* queues a check drives at most (blk) */
#define VIO_MAX_DEV_QUEUES 64	/* queue indices vio_dev knows (net's control queue sits high) */
#define VIO_QSIZE	64	/* our ring size, at most the device's */
#define VIO_NO_VECTOR	0xffff

struct vio_queue {
	uint16_t idx;
	uint16_t size;
	uint16_t vector;		/* MSI-X table entry, VIO_NO_VECTOR if none */
	volatile uint16_t *notify;
	struct vring_desc *desc;
	struct vring_avail *avail;
	volatile struct vring_used *used;
	uint16_t avail_idx;		/* next avail->idx we publish */
	uint16_t last_used;		/* used entries consumed so far */
	uint16_t nfree;
	uint16_t free_head;
};

struct vio_dev {
	struct pci_fn pci;
	uint64_t bar_addr[6];
	volatile struct virtio_pci_common_cfg *common;
	volatile uint8_t *isr;
	volatile uint8_t *devcfg;
	uint32_t devcfg_len;
	uint64_t notify_base;
	uint32_t notify_len;
	uint32_t notify_mult;
	uint8_t msix_cap;		/* config offset, 0 when absent */
	uint16_t msix_entries;
	uint64_t msix_table;		/* address of entry 0 */
	uint64_t features;		/* what the device offers */
	uint16_t num_queues;		/* common cfg num_queues */
	struct vio_queue q[VIO_MAX_DEV_QUEUES];
};

/* Finds the capabilities, maps the BARs they use and turns on memory
 * decoding and bus mastering.  On error writes a reason and returns false. */
bool vio_probe(struct vio_dev *d, struct pci_fn f, uint64_t mapped_top, char *why, unsigned whylen);

/* Status 0, then wait (bounded) until it reads back 0; false on timeout. */
bool vio_reset(struct vio_dev *d);
uint8_t vio_status(const struct vio_dev *d);
void vio_set_status(struct vio_dev *d, uint8_t bits);	/* ORs bits in */

/* After ACKNOWLEDGE|DRIVER: writes `want & offered`, sets FEATURES_OK and
 * returns true when it sticks.  *got receives what was written. */
bool vio_negotiate(struct vio_dev *d, uint64_t want, uint64_t *got);

/* Turns MSI-X on (function unmasked) and aims table entry `entry` at
 * `apic_id` with `vector`, unmasked.  False if the entry does not exist. */
bool vio_msix_enable(struct vio_dev *d);
bool vio_msix_route(struct vio_dev *d, uint16_t entry, uint8_t apic_id, uint8_t vector);

/* Sets up queue `idx` with ring memory `mem` (3 pages: desc, avail, used;
 * zeroed here) and MSI-X entry `vector`.  Returns 0, or -1 when the queue
 * does not exist, -2 when the device rejects the vector (reads back
 * VIO_NO_VECTOR or another value). */
int vio_queue_setup(struct vio_dev *d, uint16_t idx, void *mem, uint16_t vector);

/* Queues one descriptor chain of n buffers (addr, len, device-writable)
 * and returns its head, or -1 when the ring is short of descriptors.
 * Nothing is visible to the device until vio_publish (avail->idx), and
 * it only looks once vio_notify writes the queue's notify address. */
struct vio_buf {
	uint64_t addr;
	uint32_t len;
	bool write;	/* device writes it */
};
int vio_add(struct vio_queue *q, const struct vio_buf *bufs, unsigned n);
void vio_publish(struct vio_queue *q);
void vio_notify(struct vio_queue *q);

/* Takes one used entry: returns its head (and length) and frees its chain,
 * or -1 when the device has not returned anything new. */
int vio_get_used(struct vio_queue *q, uint32_t *len);

static inline uint16_t vio_used_idx(const struct vio_queue *q)
{
	return q->used->idx;
}

#endif
