/* Backend parity (tests/cuda/): the same inputs on a reference CPU context
 * and on the device under test (a CUDA context), outputs compared per
 * tensor by the normalized error
 *
 *     err = max|dut - ref| / max(max|ref|, 1e-30)
 *
 * against PARITY_TOL (FP32) unless a check documents a looser bound and
 * why. Each check prints one line "ok   name err=..." or "FAIL name err=...".
 *
 * test_cuda_parity.c holds main, these helpers and every op of the backend
 * table; test_cuda_parity_nets.c the whole networks and one training step. */
#ifndef DIAT_TEST_PARITY_H
#define DIAT_TEST_PARITY_H

#include "diat-train.h"

#include <stddef.h>

#define PARITY_TOL 1e-5
/* A bilinear resize to a size that is not a multiple (128 -> 150, phi's
 * input) computes source coordinates up to ~150 in float, as PyTorch does:
 * one rounding there (an FMA contracted or not, 1/ratio or in/out) moves an
 * interpolation weight by ~1e-5, and the output by as much. So the resize,
 * and what phi computes from it, get 1e-4. */
#define RESIZE_TOL 1e-4

enum { REF = 0, DUT = 1 }; /* sides: index of ctx[], be[] and twin.t[] */

typedef struct parity_state {
    diat_context *ctx[2]; /* where the checks download from (see parity_use) */
    const diat_backend *be[2];
    diat_context *own[2];    /* the two contexts main made */
    const char *dut_backend; /* what the trainer is asked for: "cuda" (self-test: "cpu") */
    int self_test;           /* DIAT_PARITY_SELF_TEST=1: the DUT is a second CPU context */
    double jitter;           /* DIAT_PARITY_JITTER (self-test only), see jitter_net */
    const char *source_root; /* DIAT_SOURCE_ROOT, else "." */
    const char *shared_data; /* DIAT_SHARED_DATA, else <source root>/../shared/data */
} parity_state;

extern parity_state parity;

/* A tensor of the same shape on both sides. */
typedef struct twin {
    diat_tensor t[2];
} twin;

/* ---- memory (a failed allocation ends the test: nothing is left to check) */
diat_tensor tensor_alloc(int side, int n, int c, int h, int w);
twin twin_alloc(int n, int c, int h, int w);
/* The same values in [lo, hi) on both sides. */
twin twin_random(int n, int c, int h, int w, float lo, float hi);
void twin_upload(twin *t, const float *host);
void twin_randomize(twin *t, float lo, float hi);
void twin_release(twin *t);
/* Host copy (malloc'd) of a tensor of one side. */
float *download(int side, const diat_tensor *t);
/* Deterministic values in [lo, hi) (splitmix64; the same sequence each run).
 * Each case and network reseeds, so its inputs do not depend on the others. */
void random_seed(unsigned long long seed);
void random_fill(float *p, size_t count, float lo, float hi);
float *random_host(size_t count, float lo, float hi);
/* dst (side `to`) = src (side `from`): gives both sides one forward state, so
 * that a backward is compared on identical inputs (see the nets file). */
void copy_across(int from, const diat_tensor *src, int to, diat_tensor *dst);
/* Self-test calibration: multiply the DUT copy of every parameter by
 * (1 + jitter u), u uniform in [-1, 1] (nothing when jitter is 0). */
void jitter_net(diat_net *net);
void jitter_tensor(diat_tensor *t);
/* Let the checks download through other contexts (the trainers' own); NULL
 * restores the two made by main. */
void parity_use(diat_context *ref, diat_context *dut);

/* ---- checks: each prints its line and counts; returns 1 when it passed */
const char *name_of(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
double normalized_error(const float *ref, const float *dut, size_t count, size_t *worst);
int check_values(const char *name, const float *ref, const float *dut, size_t count, double tol);
int check_tensors(const char *name, const diat_tensor *ref, const diat_tensor *dut, double tol);
int check_twin(const char *name, const twin *t, double tol);
int check_scalar(const char *name, double ref, double dut, double tol);
/* A check of an error measured by the caller (passes when err <= tol);
 * `detail` (may be NULL) is printed after it. */
int check_with(const char *name, double err, double tol, const char *detail);
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* test_cuda_parity_nets.c */
void parity_nets(void);
void parity_training_step(void);

#endif
