/* Minimal test helpers shared by the C tests: each test binary runs its
 * cases, prints one line per failure and returns non-zero if any failed. */
#ifndef DIAT_TESTUTIL_H
#define DIAT_TESTUTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static int test_failures;
static int test_checks;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        test_checks++;                                                                             \
        if (!(cond)) {                                                                             \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        test_checks++;                                                                             \
        if (!(cond)) {                                                                             \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
    CHECK_MSG(fabs((double)(a) - (double)(b)) <= (tol), "%g vs %g (tol %g)", (double)(a),          \
              (double)(b), (double)(tol))

#define RUN_TEST(fn)                                                                               \
    do {                                                                                           \
        int before_ = test_failures;                                                               \
        fn();                                                                                      \
        printf("%s %s\n", test_failures == before_ ? "ok  " : "FAIL", #fn);                        \
    } while (0)

#define TEST_SUMMARY()                                                                             \
    (printf("%d checks, %d failed\n", test_checks, test_failures), test_failures ? 1 : 0)

/* A test's input path: argv[index] when given, else `relative` under
 * $DIAT_SOURCE_ROOT (meson's test environment; "." without it). */
static inline void test_source_path(char *out, size_t size, int argc, char **argv, int index,
                                    const char *relative)
{
    const char *root = getenv("DIAT_SOURCE_ROOT");
    if (argc > index)
        snprintf(out, size, "%s", argv[index]);
    else
        snprintf(out, size, "%s/%s", root ? root : ".", relative);
}

/* `bytes` of zeros that are not the process's own memory, for images too
 * big to allocate: a private mapping of a sparse, unlinked file in /tmp,
 * with every page read once, so that all it holds is file cache, resident
 * before a measurement starts (AddressSanitizer's shadow of it too). An
 * untouched anonymous mapping is free to read only where the kernel maps
 * its shared zero page; the AMD machine's (6.18) gives every page read a
 * page of its own. NULL if it cannot be had; free with munmap. */
static inline void *test_map_zeros(size_t bytes)
{
    char path[] = "/tmp/diat-test-zeros-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    unlink(path);
    void *map = MAP_FAILED;
    if (ftruncate(fd, (off_t)bytes) == 0)
        map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return NULL;
    const long page = sysconf(_SC_PAGESIZE);
    volatile const unsigned char *bytes_in = map;
    unsigned sum = 0;
    for (size_t i = 0; i < bytes; i += (size_t)page) sum += bytes_in[i];
    return sum == 0 ? map : NULL;
}

/* Deterministic pseudo-random floats in [-1, 1) (splitmix64). */
static inline float test_rand(unsigned long long *state)
{
    unsigned long long z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

#ifdef DIAT_TRAIN_H /* for tests that include diat-train.h first */
/* A network under test: run its forward on x and return the scalar loss. */
typedef double (*test_loss_fn)(void *net, const diat_tensor *x);

/* Relative error of analytic gradients (already computed into `analytic`)
 * against central differences on `samples` random entries of `values`. */
static inline double test_fd_relative_error(test_loss_fn loss, void *net, const diat_tensor *x,
                                            float *values, const float *analytic, size_t count,
                                            int samples, float eps, unsigned long long *seed)
{
    double diff2 = 0.0, ref2 = 0.0;
    for (int s = 0; s < samples; s++) {
        size_t j = (size_t)((test_rand(seed) + 1.0f) * 0.5f * (float)count) % count;
        float saved = values[j];
        values[j] = saved + eps;
        double up = loss(net, x);
        values[j] = saved - eps;
        double down = loss(net, x);
        values[j] = saved;
        double numeric = (up - down) / (2.0 * eps);
        diff2 += (numeric - analytic[j]) * (numeric - analytic[j]);
        ref2 += numeric * numeric;
    }
    return ref2 > 0 ? sqrt(diff2 / ref2) : sqrt(diff2);
}
#endif

#endif
