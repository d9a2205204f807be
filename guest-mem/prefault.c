/* Prefaulting and zeroing guest RAM.  One thread faulting a large guest
 * runs at a fraction of memory bandwidth (the per-page fault and the page
 * clearing are CPU-bound), so disjoint chunks are handed to one thread per
 * host CPU. */
#include "guest-mem/gm.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include "vmm/log.h"
#include "vmm/sandbox.h"

/* Small enough to balance 2..16 threads over a few GiB, large enough that
 * the shared counter is never contended. */
#define PREFAULT_CHUNK (64 * GM_MiB)

struct prefault_chunk {
    uint8_t *addr;
    uint64_t len;
};

struct prefault_job {
    struct prefault_chunk *chunks;
    unsigned nchunks;
    atomic_uint next;
    atomic_int err;        /* first -errno seen */
    bool zero;
    uint64_t page;
};

/* Write fault every page without changing its contents. */
static void prefault_touch(uint8_t *p, uint64_t len, uint64_t step)
{
    for (uint64_t off = 0; off < len; off += step) {
        volatile uint8_t *b = p + off;
        *b = *b;
    }
}

static int prefault_chunk_run(const struct prefault_job *job,
                              const struct prefault_chunk *c)
{
    if (job->zero) {
        /* dmemfs hands out pages with old contents: the VMM must clear
         * them itself, and the clearing is the prefault. */
        memset(c->addr, 0, c->len);
        return 0;
    }
    /* MADV_POPULATE_WRITE reports a shortage of huge pages as an error
     * instead of a SIGBUS, and skips the per-page trap. */
    if (madvise(c->addr, c->len, MADV_POPULATE_WRITE) == 0)
        return 0;
    if (errno != EINVAL)
        return -errno;
    prefault_touch(c->addr, c->len, job->page < GM_PAGE_SIZE ? GM_PAGE_SIZE : job->page);
    return 0;
}

static void *prefault_worker(void *arg)
{
    struct prefault_job *job = arg;

    for (;;) {
        unsigned i = atomic_fetch_add(&job->next, 1);
        int ret;

        if (i >= job->nchunks || atomic_load(&job->err))
            break;
        ret = prefault_chunk_run(job, &job->chunks[i]);
        if (ret) {
            int zero = 0;

            atomic_compare_exchange_strong(&job->err, &zero, ret);
            log_err("guest-mem: prefault of HVA %p+0x%" PRIx64 " failed: %s",
                    (void *)job->chunks[i].addr, job->chunks[i].len, strerror(-ret));
        }
    }
    return NULL;
}

static unsigned prefault_nthreads(unsigned max_threads, unsigned nchunks)
{
    cpu_set_t set;
    unsigned n = 1;

    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = (unsigned)CPU_COUNT(&set);
    if (!max_threads || max_threads > GM_PREFAULT_MAX_THREADS)
        max_threads = GM_PREFAULT_MAX_THREADS;
    if (n > max_threads)
        n = max_threads;
    if (n > nchunks)
        n = nchunks;
    return n ? n : 1;
}

int gm_prefault(struct guest_mem *gm, bool zero, unsigned max_threads)
{
    const struct gm_layout *l = &gm->layout;
    uint64_t chunk = PREFAULT_CHUNK > gm->page_size ? PREFAULT_CHUNK : gm->page_size;
    pthread_t tid[GM_PREFAULT_MAX_THREADS];
    struct prefault_job job = { .zero = zero, .page = gm->page_size };
    sigset_t all, old;
    unsigned n = 0, nthreads, started = 0;

    for (unsigned i = 0; i < l->nr; i++)
        n += (unsigned)((l->r[i].size + chunk - 1) / chunk);
    job.chunks = calloc(n, sizeof(*job.chunks));
    if (!job.chunks)
        return -ENOMEM;
    for (unsigned i = 0, k = 0; i < l->nr; i++) {
        for (uint64_t off = 0; off < l->r[i].size; off += chunk, k++) {
            uint64_t left = l->r[i].size - off;

            if (!l->r[i].hva) {
                free(job.chunks);
                return -EINVAL;
            }
            job.chunks[k].addr = l->r[i].hva + off;
            job.chunks[k].len = left < chunk ? left : chunk;
        }
    }
    job.nchunks = n;
    atomic_init(&job.next, 0);
    atomic_init(&job.err, 0);

    /* Helpers inherit a full signal mask: SIGBUS and friends stay with the
     * threads that handle them. */
    nthreads = prefault_nthreads(max_threads, n);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (unsigned i = 0; i + 1 < nthreads; i++) {
        char tname[32];

        snprintf(tname, sizeof(tname), "prefault%u", i);
        if (sandbox_thread_create(&tid[i], SBX_PREFAULT, tname, prefault_worker, &job))
            break;          /* fewer helpers is slower, not wrong */
        started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    prefault_worker(&job);
    for (unsigned i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    free(job.chunks);
    log_debug("guest-mem: %s %" PRIu64 " MiB with %u threads",
              zero ? "zeroed" : "prefaulted", (uint64_t)(l->ram_size / GM_MiB), started + 1);
    return atomic_load(&job.err);
}
