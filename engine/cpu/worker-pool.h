/* Private: a process-wide pool of worker threads for the CPU backend's
 * kernels that split their work themselves (conv-avx512.c) and for the
 * element-wise ops (diat_pool_for).
 *
 * Idle workers keep polling for a short while, yielding the core each time
 * (so that the next call of a forward pass, tens of microseconds later,
 * starts at once), and then sleep on a condition variable: they never hold
 * a core for long, which would starve OpenBLAS's own threads in the
 * backward pass or another process. */
#ifndef DIAT_WORKER_POOL_H
#define DIAT_WORKER_POOL_H

#include <stddef.h>

typedef void (*diat_pool_job)(void *arg, int thread);

/* Runs job(arg, t) for every t in [0, threads), t = 0 on the calling
 * thread, and returns when all have finished. The calls must be
 * independent of each other: when the pool is busy with another caller, or
 * a worker cannot be started, some or all of them run one after another on
 * the calling thread instead. */
void diat_worker_pool_run(int threads, diat_pool_job job, void *arg);

typedef void (*diat_pool_range)(void *arg, size_t begin, size_t end);

/* Element-wise work over [0, count) split into up to `threads` contiguous
 * ranges (whole cache lines, at least DIAT_POOL_MIN_RANGE elements each):
 * body(arg, begin, end) for each. Small counts run on the caller alone, so
 * the split costs nothing where it cannot pay. Every element is computed
 * the same way whatever the split, so results do not depend on `threads`. */
#define DIAT_POOL_MIN_RANGE ((size_t)32768)
void diat_pool_for(int threads, size_t count, diat_pool_range body, void *arg);

#endif
