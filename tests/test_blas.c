/* The BLAS loader: GEMM results in every transpose combination, and the
 * repair of a mis-detecting OpenBLAS (simulated by loading the system copy
 * with the generic "Prescott" kernels, as Debian 12's does on new Xeons). */
#include "diat-train.h"
#include "testutil.h"

#include <string.h>
#include <unistd.h>

static void check_sgemm(void)
{
    enum { M = 37, N = 29, K = 23 };
    static float a[M * K], b[K * N], c[M * N];
    unsigned long long s = 1;
    for (int i = 0; i < M * K; i++) a[i] = test_rand(&s);
    for (int i = 0; i < K * N; i++) b[i] = test_rand(&s);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            for (int i = 0; i < M * N; i++) c[i] = 1.0f;
            /* op(A) is M x K: stored K x M when transposed; same for B. */
            diat_sgemm(ta, tb, M, N, K, 0.5f, a, ta ? M : K, b, tb ? K : N, 2.0f, c, N);
            double worst = 0.0;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double ref = 2.0;
                    for (int p = 0; p < K; p++)
                        ref += 0.5 * (ta ? a[p * M + i] : a[i * K + p]) *
                               (tb ? b[j * K + p] : b[p * N + j]);
                    worst = fmax(worst, fabs(ref - c[i * N + j]));
                }
            CHECK_MSG(worst < 1e-4, "trans %d/%d: max error %g", ta, tb, worst);
        }
}

static void test_gemm_and_description(void)
{
    const char *d = diat_blas_description();
    printf("BLAS: %s\n", d);
    CHECK(d && strlen(d) > 0);
    check_sgemm();
}

static void test_misdetected_blas_is_reloaded(const char *self)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        printf("(no AVX2 on this CPU: nothing to repair)\n");
        return;
    }
    char command[1024];
    snprintf(command, sizeof command,
             "env -u OPENBLAS_CORETYPE DIAT_BLAS_SIMULATE_SYSTEM_CORE=Prescott '%s' --child", self);
    FILE *child = popen(command, "r");
    CHECK(child != NULL);
    if (!child) return;
    char line[512] = "";
    int ok = fgets(line, sizeof line, child) != NULL;
    int status = pclose(child);
    CHECK(ok);
    printf("simulated: %s", line);
    CHECK_MSG(strstr(line, "reloaded") != NULL, "description: %s", line);
    CHECK_MSG(strstr(line, "OpenBLAS Prescott") == NULL, "still generic: %s", line);
    CHECK(status == 0); /* the child's GEMM checks passed with the reloaded copy */
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--child") == 0) {
        printf("%s\n", diat_blas_description());
        fflush(stdout);
        check_sgemm();
        return test_failures ? 1 : 0;
    }
    RUN_TEST(test_gemm_and_description);
    test_misdetected_blas_is_reloaded(argv[0]);
    return TEST_SUMMARY();
}
