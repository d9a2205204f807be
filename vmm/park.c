#include "vmm/park.h"

#include <errno.h>

int park_init(struct park *p, void (*kick_all)(void *ctx), void *ctx)
{
    int ret;

    *p = (struct park){ .kick_all = kick_all, .ctx = ctx };
    ret = pthread_mutex_init(&p->lock, NULL);
    if (ret)
        return -ret;
    ret = pthread_cond_init(&p->cond, NULL);
    if (ret) {
        pthread_mutex_destroy(&p->lock);
        return -ret;
    }
    return 0;
}

void park_destroy(struct park *p)
{
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
}

void park_set_nvcpus(struct park *p, unsigned nvcpus)
{
    pthread_mutex_lock(&p->lock);
    p->nvcpus = nvcpus;
    pthread_mutex_unlock(&p->lock);
}

bool park_checkpoint(struct park *p, void (*before_park)(void *arg, unsigned reasons),
                     void *arg)
{
    bool go;

    pthread_mutex_lock(&p->lock);
    if (p->reasons && !p->stopping && before_park)
        before_park(arg, p->reasons);
    while (p->reasons && !p->stopping) {
        p->parked++;
        /* park_all may be waiting for this one to be the last. */
        pthread_cond_broadcast(&p->cond);
        pthread_cond_wait(&p->cond, &p->lock);
        p->parked--;
    }
    go = !p->stopping;
    pthread_mutex_unlock(&p->lock);
    return go;
}

void park_request(struct park *p, unsigned reason)
{
    pthread_mutex_lock(&p->lock);
    p->reasons |= reason;
    pthread_mutex_unlock(&p->lock);
}

bool park_all(struct park *p, unsigned reason)
{
    bool parked;

    park_request(p, reason);
    /* Outside the lock: a kick is a signal, and a vCPU that takes it
     * comes straight to park_checkpoint for the lock. */
    if (p->kick_all)
        p->kick_all(p->ctx);
    pthread_mutex_lock(&p->lock);
    while (p->parked < p->nvcpus && !p->stopping)
        pthread_cond_wait(&p->cond, &p->lock);
    parked = !p->stopping;
    pthread_mutex_unlock(&p->lock);
    return parked;
}

void park_release(struct park *p, unsigned reason)
{
    pthread_mutex_lock(&p->lock);
    p->reasons &= ~reason;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

bool park_is(struct park *p, unsigned reason)
{
    bool set;

    pthread_mutex_lock(&p->lock);
    set = (p->reasons & reason) != 0;
    pthread_mutex_unlock(&p->lock);
    return set;
}

void park_stop(struct park *p)
{
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

bool park_stopping(struct park *p)
{
    bool stop;

    pthread_mutex_lock(&p->lock);
    stop = p->stopping;
    pthread_mutex_unlock(&p->lock);
    return stop;
}
