/* What virtio-blk takes from a [disk.N] section: the device owns the type
 * and the config module fills one per disk, as guest-mem owns gm_config
 * for [memory].  Syntax and limits are checked by the config module; what
 * depends on the image and the host (size, O_DIRECT, io_uring) by
 * blk_init.  Kept apart from blk.h so that the config module needs no
 * device internals (liburing, the transport). */
#ifndef DVMM_BLK_CONFIG_H
#define DVMM_BLK_CONFIG_H

#include <limits.h>
#include <stdbool.h>

#define BLK_SERIAL_MAX 20          /* the GET_ID string, VIRTIO_BLK_ID_BYTES */

enum blk_cache { BLK_CACHE_WRITEBACK, BLK_CACHE_NONE };
enum blk_engine { BLK_ENGINE_DEFAULT, BLK_ENGINE_IO_URING, BLK_ENGINE_THREADS };

struct blk_config {
    unsigned index;                /* N of [disk.N] */
    char path[PATH_MAX];
    bool readonly;
    unsigned queues;               /* after the clamp: 1..vcpus */
    unsigned queues_requested;     /* as written (0 when defaulted) */
    unsigned queue_size;           /* power of two, 2..256; default 256 */
    char serial[BLK_SERIAL_MAX + 1];
    enum blk_cache cache;
    enum blk_engine engine;
};

#endif
