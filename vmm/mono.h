/* The one clock dvmm times itself with: CLOCK_MONOTONIC in nanoseconds
 * (start-up stages, machine-check latencies, mode=user deadlines). */
#ifndef DVMM_MONO_H
#define DVMM_MONO_H

#include <stdint.h>
#include <time.h>

static inline uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

#endif
