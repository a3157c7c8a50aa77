/* Loading a correctly tuned OpenBLAS at run time.
 *
 * Why this file exists: Debian 12's OpenBLAS 0.3.21 picks its kernels by
 * CPU model at load time and does not know recent Xeons, so it falls back to
 * the SSE3 "Prescott" kernels (measured here: 46 instead of ~190 GFLOP/s on
 * one core). OpenBLAS honours OPENBLAS_CORETYPE, but only when it is loaded,
 * and by the time libdiat runs the host program may already have loaded it.
 *
 * So libdiat does not link OpenBLAS. On first use it dlopen()s the system
 * library, asks openblas_get_corename(), and if that names a core older than
 * the instructions this CPU has (AVX-512 or AVX2+FMA, read with cpuid), it
 * loads a second, private copy into a fresh link namespace (dlmopen) with
 * OPENBLAS_CORETYPE set for that copy's constructor. The user sets nothing;
 * a user who sets OPENBLAS_CORETYPE themselves is respected. This is the one
 * piece of lazily initialised global state the design allows.
 */
#define _GNU_SOURCE
#include "diat-train.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

typedef void (*sgemm_fn)(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                         const float *a, int lda, const float *b, int ldb, float beta, float *c,
                         int ldc);
typedef char *(*corename_fn)(void);
typedef char *(*config_fn)(void);
typedef void (*set_threads_fn)(int);

static struct {
    pthread_once_t once;
    sgemm_fn sgemm;
    set_threads_fn set_threads;
    char description[256];
} blas = {.once = PTHREAD_ONCE_INIT};

static const char *const kLibraryNames[] = {"libopenblas.so.0", "libopenblas.so",
                                            "libopenblasp.so.0"};

/* Cores whose kernels use no AVX2: a CPU with AVX2/AVX-512 deserves better. */
static int core_is_generic(const char *core)
{
    static const char *const weak[] = {"prescott",  "core2",  "penryn",      "dunnington",
                                       "nehalem",   "atom",   "katmai",      "coppermine",
                                       "northwood", "banias", "sandybridge", "unknown"};
    for (size_t i = 0; i < sizeof weak / sizeof weak[0]; i++)
        if (strcasecmp(core, weak[i]) == 0) return 1;
    return 0;
}

/* The OpenBLAS core type whose single-precision kernels suit this CPU. */
static const char *best_coretype(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}

static void *open_system_blas(void)
{
    for (size_t i = 0; i < sizeof kLibraryNames / sizeof kLibraryNames[0]; i++) {
        void *handle = dlopen(kLibraryNames[i], RTLD_NOW | RTLD_LOCAL);
        if (handle) return handle;
    }
    return NULL;
}

static void *open_private_blas(const char *coretype)
{
    /* The new copy's constructor reads the variable; restore it afterwards. */
    setenv("OPENBLAS_CORETYPE", coretype, 1);
    void *handle = NULL;
    for (size_t i = 0; !handle && i < sizeof kLibraryNames / sizeof kLibraryNames[0]; i++)
        handle = dlmopen(LM_ID_NEWLM, kLibraryNames[i], RTLD_NOW | RTLD_LOCAL);
    unsetenv("OPENBLAS_CORETYPE");
    return handle;
}

static int bind(void *handle)
{
    blas.sgemm = (sgemm_fn)dlsym(handle, "cblas_sgemm");
    blas.set_threads = (set_threads_fn)dlsym(handle, "openblas_set_num_threads");
    return blas.sgemm != NULL;
}

static const char *core_of(void *handle)
{
    corename_fn corename = (corename_fn)dlsym(handle, "openblas_get_corename");
    const char *core = corename ? corename() : NULL;
    return core ? core : "unknown";
}

static void load_blas_with_thread_timeout(void);

/* OpenBLAS's idle threads poll (sched_yield) for 2^28 cycles, ~0.1 s, after
 * every threaded call, on the very cores the engine's own worker pool needs
 * for the element-wise work and AVX-512 convolutions that come next: 3-5% of
 * a two-thread training step (bench_train, 2 cores). 2^4, OpenBLAS's
 * smallest, puts them to sleep at once; its constructor reads the variable,
 * so it is set around the loads only, and a user's own value is kept. */
static void load_blas(void)
{
    int ours = getenv("OPENBLAS_THREAD_TIMEOUT") == NULL;
    if (ours) setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);
    load_blas_with_thread_timeout();
    if (ours) unsetenv("OPENBLAS_THREAD_TIMEOUT");
}

static void load_blas_with_thread_timeout(void)
{
    /* Tests reproduce a mis-detecting OpenBLAS on any machine by making the
     * system copy load with the given (generic) core. */
    const char *simulate = getenv("DIAT_BLAS_SIMULATE_SYSTEM_CORE");
    if (simulate) setenv("OPENBLAS_CORETYPE", simulate, 1);
    void *system = open_system_blas();
    if (simulate) unsetenv("OPENBLAS_CORETYPE");
    if (!system || !bind(system)) {
        snprintf(blas.description, sizeof blas.description,
                 "no OpenBLAS found (libopenblas.so.0): using the engine's portable GEMM");
        blas.sgemm = NULL;
        return;
    }
    const char *system_core = core_of(system);
    const char *wanted = best_coretype();
    int user_chose = !simulate && getenv("OPENBLAS_CORETYPE") != NULL;
    if (!user_chose && wanted && core_is_generic(system_core)) {
        void *tuned = open_private_blas(wanted);
        if (tuned && bind(tuned)) {
            snprintf(blas.description, sizeof blas.description,
                     "OpenBLAS %s (system library picked %s; reloaded privately with tuned "
                     "kernels)",
                     core_of(tuned), system_core);
            return;
        }
        bind(system);
        snprintf(blas.description, sizeof blas.description,
                 "OpenBLAS %s (mis-tuned for this CPU; reloading failed: %s)", system_core,
                 dlerror() ? dlerror() : "unknown reason");
        return;
    }
    snprintf(blas.description, sizeof blas.description, "OpenBLAS %s%s", system_core,
             user_chose ? " (OPENBLAS_CORETYPE set by the user)" : "");
}

const char *diat_blas_description(void)
{
    pthread_once(&blas.once, load_blas);
    return blas.description;
}

void diat_blas_set_threads(int threads)
{
    pthread_once(&blas.once, load_blas);
    if (blas.set_threads) blas.set_threads(threads > 0 ? threads : 1);
}

/* Used only when no OpenBLAS can be loaded: correct, not fast. */
static void portable_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
                           const float *a, int lda, const float *b, int ldb, float beta, float *c,
                           int ldc)
{
    for (int i = 0; i < m; i++) {
        float *crow = c + (size_t)i * ldc;
        for (int j = 0; j < n; j++) crow[j] = beta == 0.0f ? 0.0f : beta * crow[j];
        for (int p = 0; p < k; p++) {
            float av = alpha * (trans_a ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p]);
            if (av == 0.0f) continue;
            if (trans_b)
                for (int j = 0; j < n; j++) crow[j] += av * b[(size_t)j * ldb + p];
            else
                for (int j = 0; j < n; j++) crow[j] += av * b[(size_t)p * ldb + j];
        }
    }
}

void diat_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                const float *b, int ldb, float beta, float *c, int ldc)
{
    pthread_once(&blas.once, load_blas);
    if (m <= 0 || n <= 0) return;
    if (blas.sgemm)
        blas.sgemm(CBLAS_ROW_MAJOR, trans_a ? CBLAS_TRANS : CBLAS_NO_TRANS,
                   trans_b ? CBLAS_TRANS : CBLAS_NO_TRANS, m, n, k, alpha, a, lda, b, ldb, beta, c,
                   ldc);
    else
        portable_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
