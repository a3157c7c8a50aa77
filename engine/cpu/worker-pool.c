/* The CPU backend's worker threads: see worker-pool.h.
 *
 * One job at a time: the caller publishes (job, arg, threads), bumps
 * `generation` and wakes the workers; worker w runs job(arg, w) if
 * w < threads, and every worker then decrements `pending`. Workers are
 * started lazily, never stopped (they sleep when idle), and forgotten in a
 * forked child, which starts its own. */
#include "worker-pool.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>

enum {
    MAX_WORKERS = 63,
    /* How long an idle worker (or the caller waiting for the workers)
     * polls before sleeping: longer than the gaps between the convolutions
     * of a forward pass, far shorter than a scheduler time slice. */
    SPIN_NANOSECONDS = 100 * 1000,
};

static struct {
    pthread_mutex_t busy; /* held by the one caller using the pool */
    pthread_mutex_t lock; /* for the sleeps on the two conditions */
    pthread_cond_t wake, finished;
    atomic_uint generation;
    atomic_int pending;
    int workers;
    unsigned start_generation; /* generation when the newest workers started */
    diat_pool_job job;
    void *arg;
    int threads;
} pool = {
    .busy = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .finished = PTHREAD_COND_INITIALIZER,
};

static pthread_once_t fork_handler_once = PTHREAD_ONCE_INIT;

static void forget_workers_after_fork(void)
{
    pthread_mutex_init(&pool.busy, NULL);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.finished, NULL);
    atomic_store(&pool.pending, 0);
    pool.workers = 0;
}

static void install_fork_handler(void)
{
    pthread_atfork(NULL, NULL, forget_workers_after_fork);
}

static long long monotonic_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Polls with sched_yield, not a pause loop: when the scheduler has put the
 * caller and a worker on the same core (seen on this shared virtual
 * machine while its other core was busy elsewhere), the waiting thread must
 * let the other one run; the call then takes what one thread would, instead
 * of the whole polling time. */
static int poll_until(int (*ready)(unsigned), unsigned value)
{
    long long deadline = monotonic_ns() + SPIN_NANOSECONDS;
    for (;;) {
        if (ready(value)) return 1;
        if (monotonic_ns() > deadline) return 0;
        sched_yield();
    }
}

static int generation_differs(unsigned seen)
{
    return atomic_load(&pool.generation) != seen;
}

static int workers_finished(unsigned unused)
{
    (void)unused;
    return atomic_load(&pool.pending) == 0;
}

static void *worker_main(void *index_as_pointer)
{
    const int index = (int)(long)index_as_pointer;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals are the application's */

    /* Not the current generation: the caller may have published its job
     * before this thread got to run. */
    unsigned seen = pool.start_generation;
    for (;;) {
        if (!poll_until(generation_differs, seen)) {
            pthread_mutex_lock(&pool.lock);
            while (atomic_load(&pool.generation) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
            pthread_mutex_unlock(&pool.lock);
        }
        seen = atomic_load(&pool.generation);
        if (index < pool.threads) pool.job(pool.arg, index);
        if (atomic_fetch_sub(&pool.pending, 1) == 1) {
            pthread_mutex_lock(&pool.lock);
            pthread_cond_signal(&pool.finished);
            pthread_mutex_unlock(&pool.lock);
        }
    }
    return NULL;
}

/* Starts workers until `wanted` run (or one cannot be started). */
static void start_workers(int wanted)
{
    if (wanted > MAX_WORKERS) wanted = MAX_WORKERS;
    pool.start_generation = atomic_load(&pool.generation);
    while (pool.workers < wanted) {
        pthread_t thread;
        pthread_attr_t attr;
        if (pthread_attr_init(&attr) != 0) return;
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed =
            pthread_create(&thread, &attr, worker_main, (void *)(long)(pool.workers + 1)) != 0;
        pthread_attr_destroy(&attr);
        if (failed) return;
        pool.workers++;
    }
}

void diat_worker_pool_run(int threads, diat_pool_job job, void *arg)
{
    int done_here = 0; /* jobs [0, done_here) ran on this thread */
    if (threads > 1) {
        pthread_once(&fork_handler_once, install_fork_handler);
        if (pthread_mutex_trylock(&pool.busy) == 0) {
            start_workers(threads - 1);
            if (pool.workers > 0) {
                int shared = pool.workers + 1 < threads ? pool.workers + 1 : threads;
                pool.job = job;
                pool.arg = arg;
                pool.threads = shared;
                atomic_store(&pool.pending, pool.workers);
                pthread_mutex_lock(&pool.lock);
                atomic_fetch_add(&pool.generation, 1);
                pthread_cond_broadcast(&pool.wake);
                pthread_mutex_unlock(&pool.lock);

                job(arg, 0);
                if (!poll_until(workers_finished, 0)) {
                    pthread_mutex_lock(&pool.lock);
                    while (atomic_load(&pool.pending) != 0)
                        pthread_cond_wait(&pool.finished, &pool.lock);
                    pthread_mutex_unlock(&pool.lock);
                }
                done_here = shared;
            }
            pthread_mutex_unlock(&pool.busy);
        }
    }
    for (int t = done_here; t < threads; t++) job(arg, t);
}

/* ---- element-wise ranges ------------------------------------------------- */

typedef struct pool_for_job {
    diat_pool_range body;
    void *arg;
    size_t count, per_thread;
} pool_for_job;

static void run_range(void *arg, int thread)
{
    const pool_for_job *job = arg;
    size_t begin = (size_t)thread * job->per_thread;
    size_t end = begin + job->per_thread < job->count ? begin + job->per_thread : job->count;
    if (begin < end) job->body(job->arg, begin, end);
}

void diat_pool_for(int threads, size_t count, diat_pool_range body, void *arg)
{
    size_t useful = count / DIAT_POOL_MIN_RANGE;
    if (threads > MAX_WORKERS + 1) threads = MAX_WORKERS + 1;
    if ((size_t)threads > useful) threads = (int)useful;
    if (threads <= 1) {
        if (count) body(arg, 0, count);
        return;
    }
    /* Ranges of whole 64-byte lines, so no two threads write one line. */
    size_t per_thread = (count + (size_t)threads - 1) / (size_t)threads;
    per_thread = (per_thread + 15) & ~(size_t)15;
    pool_for_job job = {body, arg, count, per_thread};
    diat_worker_pool_run(threads, run_range, &job);
}
