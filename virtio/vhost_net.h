/* vhost-net for virtio-net (net.N.vhost = yes|auto): each queue pair's two
 * rings are handed to the kernel (/dev/vhost-net, one fd per pair), which
 * moves frames between them and the pair's TAP queue itself.
 *
 *  - memory table: one vhost region per guest RAM region of the layout
 *    (GPA, size, HVA);
 *  - rings: the addresses vq_init mapped, base index 0 (a fresh start);
 *  - kick: the queue's kick eventfd, the one KVM's ioeventfd writes;
 *  - call: with MSI-X enabled, the queue vector's own irqfd eventfd, so an
 *    interrupt goes from vhost to KVM with no hop through dvmm
 *    (msix_set_direct unbinds it while the vector is masked, so masking
 *    stays exact); without MSI-X (INTx) an eventfd of ours that the pair's
 *    worker relays;
 *  - features: vhost's VHOST_GET_FEATURES bounds the ring features offered
 *    (EVENT_IDX, INDIRECT_DESC, MRG_RXBUF); the negotiated ones go back with
 *    VHOST_SET_FEATURES; offloads are the TAP's (TUNSETOFFLOAD) as without
 *    vhost.
 * A pair is on (VHOST_NET_SET_BACKEND = its TAP fd) while it is active and
 * the link is up; off (-1) otherwise.  Stop turns every backend off, which
 * returns only once the kernel is done with the rings, then unbinds kick
 * and call.
 *
 * The control queue stays in user space (the pair-0 worker).  Packet and
 * byte counters are the kernel's then (ip -s link show TAP). */
#ifndef DVMM_VHOST_NET_H
#define DVMM_VHOST_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct net;
struct vhost_net;

#define VHOST_NET_DEV "/dev/vhost-net"

/* Open one vhost-net fd per pair of n (n->npairs, n->tap set), take
 * ownership, read its features, make the call eventfds.  -errno with the
 * reason in err (naming /dev/vhost-net). */
int vhost_net_open(struct vhost_net **out, struct net *n, char *err, size_t errlen);
void vhost_net_close(struct vhost_net *v);

/* The device's offer with the ring features vhost lacks taken out. */
uint64_t vhost_net_features(const struct vhost_net *v, uint64_t offered);

/* DRIVER_OK: program every pair whose queues are enabled.  -errno (the
 * device then needs a reset). */
int vhost_net_start(struct vhost_net *v, uint64_t features);
/* Reset: backends off (the kernel stops touching the rings), kick and
 * call unbound. */
void vhost_net_stop(struct vhost_net *v);

/* Whether vhost signals ring (0 RX, 1 TX) of pair straight into KVM (the
 * worker then never sees those interrupts to count them). */
bool vhost_net_direct_irq(struct vhost_net *v, unsigned pair, unsigned ring);

/* Pairs in use, and the link: backends follow both. */
void vhost_net_set_active(struct vhost_net *v, unsigned pairs);
void vhost_net_set_link(struct vhost_net *v, bool up);

#endif
