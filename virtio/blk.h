/* virtio-blk: one image file or block device per [disk.N], multi-queue with
 * one worker thread per queue.  A worker pops its queue's requests, runs
 * them on its own io_uring (engine io_uring) or with blocking preadv/pwritev
 * (engine threads: the worker thread is the I/O thread), and completes them
 * on its own queue's interrupt vector only.
 *
 * Backend errors become VIRTIO_BLK_S_IOERR for that request; the VM and the
 * other queues go on.  A chain that cannot be trusted sets NEEDS_RESET.
 *
 * FLUSH is fdatasync on the image (IORING_OP_FSYNC with DATASYNC on
 * io_uring), in every cache mode: O_DIRECT bypasses the page cache but not
 * the disk's write cache nor the filesystem's metadata.  Its completion is
 * written only after the sync returned, so it covers every write completed
 * before the FLUSH was made available (what the virtio spec calls a stable
 * write); writes still in flight are not ordered against it, as the spec
 * allows.  Once a sync has failed, every later FLUSH fails too (as QEMU
 * does): Linux marks the pages whose writeback failed clean, so a later
 * fdatasync would succeed without them.
 *
 * cache=none opens the image O_DIRECT, unless guest RAM cannot take O_DIRECT
 * (dmemfs: gm_backend_allows_odirect) or the filesystem refuses it; then the
 * disk uses buffered I/O and says so once.  A request O_DIRECT refuses
 * (EINVAL: misaligned guest buffer) is retried buffered.
 *
 * Reset (status 0) stops every worker after its in-flight requests have
 * finished; the completions of those are dropped (the driver is reclaiming
 * every buffer anyway), so nothing is written to the old rings and no
 * interrupt fires once the reset write returns.
 *
 * Memory failures: a worker whose own load or store of guest memory hits a
 * failed page (SIGBUS BUS_MCEERR_AR, caught by its mce_guard), or whose
 * read/write got EFAULT from one (found by probing the buffers), fails the
 * request with IOERR and reports the page through vmif->memory_failure; a
 * failure in the rings or a status byte sets NEEDS_RESET instead.  dvmm
 * goes on either way.
 *
 * Worker threads block every signal but SIGBUS: SIGINT/SIGTERM belong to
 * main's signalfd; SIGBUS must stay deliverable, or the kernel's forced
 * SIGBUS would reset the handler and kill dvmm (mce_route.h, guards). */
#ifndef DVMM_BLK_H
#define DVMM_BLK_H

#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "guest-mem/gm.h"
#include "virtio/blk_config.h"
#include "virtio/blk_req.h"
#include "virtio/virtio_pci.h"

struct blk;

struct blk_queue {
    struct blk *blk;
    unsigned idx;
    pthread_t thread;
    bool running;
    int stop_fd;                 /* eventfd: wakes the worker to stop */
    struct io_uring ring;
    bool ring_ok;
    struct blk_req *reqs;        /* queue_size slots */
    uint16_t *free;              /* free slot stack */
    unsigned nfree;
    unsigned inflight;           /* submitted to io_uring, not completed */
    bool stopping;
    bool backlog;                /* stopped popping for lack of slots */
    uint64_t ncompleted;         /* for tests and stats */
    uint64_t nerrors;            /* backend errors turned into IOERR */
    uint64_t npoisoned;          /* failed guest pages met (atomic) */
    bool rings_lost;             /* a memory failure hit the rings or a status
                                  * byte: nothing more is written there */
    struct blk_req *cur;         /* being parsed: what a failure cuts short */
};

struct blk {
    struct virtio_pci vp;
    struct blk_config cfg;
    char name[32];               /* "virtio-blk.N" */
    const struct guest_mem *gm;
    int fd;                      /* the image (O_DIRECT for cache=none) */
    int fd_buffered;             /* retry path for O_DIRECT EINVAL, or fd */
    bool direct;
    bool use_uring;
    bool flush_failed;           /* a sync failed: every FLUSH fails (atomic) */
    struct blk_limits lim;
    struct virtio_blk_config vcfg;
    unsigned nq;
    struct blk_queue q[VP_MAX_QUEUES];
};

/* Open disk->path, probe it, and put the device on the PCI bus (its slot is
 * then b->vp.pdev.slot).  Returns 0, or -errno with a one-line message
 * naming disk.N.<key> in err. */
int blk_init(struct blk *b, const struct blk_config *disk, struct pci *pci,
             struct vmif *vmif, const struct guest_mem *gm, char *err,
             size_t errlen);
/* VM reboot: back to power-on state (waits for in-flight I/O). */
void blk_reset(struct blk *b);
/* Stop workers (waiting for in-flight I/O), leave the bus, sync and close
 * the image.  Call before pci_destroy and gm_close. */
void blk_destroy(struct blk *b);

#endif
