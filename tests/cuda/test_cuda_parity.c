/* Backend parity, part 1: main, the helpers of parity.h, and every op of
 * the backend table, forward and every backward output.
 *
 * Each op case uploads the same inputs to a CPU context (the reference) and
 * to a CUDA context (the device under test, DUT), runs the op on both and
 * compares every output (parity.h: normalized error, FP32 tolerance 1e-5):
 *  - forward outputs of the DUT start as NaN, so an element its kernel
 *    forgets to write fails;
 *  - gradient outputs start with the same random values on both sides:
 *    backwards accumulate (+=), so a kernel that overwrites fails; each
 *    backward runs with every gradient output, then with each alone (the
 *    others NULL), since any of them may be NULL;
 *  - the ops that take a pointer and a count run at an offset into their
 *    buffers with an odd count, guard values around the range they may
 *    write; and once more, after everything else, one float off 16-byte
 *    alignment (a kernel that assumes alignment faults, ending the process).
 *
 * The order: memory, the op table, the networks and the training step
 * (test_cuda_parity_nets.c), the misaligned pointers; one line per check,
 * then "N passed, N failed" (exit 1 on a failure).
 *
 * No CUDA device (or a libdiat built without the CUDA module): the test
 * prints "skipped: no CUDA device (...)" and exits 77, meson's skip.
 * DIAT_PARITY_SELF_TEST=1 runs everything with a second CPU context as the
 * DUT, to exercise the test itself where there is no GPU (every error is
 * then 0). DIAT_PARITY_JITTER=r (with the self-test) perturbs the DUT's
 * network parameters by a relative r, to see how far rounding-size
 * differences move the whole-network checks (some then fail by design: the
 * parameters after Adam differ by r itself, and every check once r nears
 * its tolerance). The step's tolerances were sized that way. */
#include "parity.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

parity_state parity;
static int passed, failed;
static uint64_t rng_state = 0x9a717e57ULL;

/* ==== helpers (declared in parity.h) ===================================== */

static uint64_t next_random(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void random_seed(unsigned long long seed)
{
    rng_state = seed;
}

void random_fill(float *p, size_t count, float lo, float hi)
{
    for (size_t i = 0; i < count; i++)
        p[i] = lo + (hi - lo) * (float)((double)(next_random() >> 40) * 0x1.0p-24);
}

float *random_host(size_t count, float lo, float hi)
{
    float *p = malloc((count ? count : 1) * sizeof *p);
    if (!p) {
        fprintf(stderr, "out of host memory\n");
        exit(1);
    }
    random_fill(p, count, lo, hi);
    return p;
}

void parity_use(diat_context *ref, diat_context *dut)
{
    parity.ctx[REF] = ref ? ref : parity.own[REF];
    parity.ctx[DUT] = dut ? dut : parity.own[DUT];
    for (int side = 0; side < 2; side++) parity.be[side] = diat_context_backend(parity.ctx[side]);
}

diat_tensor tensor_alloc(int side, int n, int c, int h, int w)
{
    diat_tensor t = {0};
    diat_error err;
    if (diat_tensor_alloc(parity.ctx[side], &t, n, c, h, w, &err) != DIAT_OK) {
        printf("FAIL allocation of %dx%dx%dx%d on the %s side: %s\n", n, c, h, w,
               side == REF ? "reference" : "DUT", err.message);
        exit(1);
    }
    return t;
}

twin twin_alloc(int n, int c, int h, int w)
{
    twin t;
    for (int side = 0; side < 2; side++) t.t[side] = tensor_alloc(side, n, c, h, w);
    return t;
}

void twin_upload(twin *t, const float *host)
{
    for (int side = 0; side < 2; side++) diat_tensor_upload(parity.ctx[side], &t->t[side], host);
}

void twin_randomize(twin *t, float lo, float hi)
{
    float *host = random_host(diat_tensor_count(&t->t[REF]), lo, hi);
    twin_upload(t, host);
    free(host);
}

twin twin_random(int n, int c, int h, int w, float lo, float hi)
{
    twin t = twin_alloc(n, c, h, w);
    twin_randomize(&t, lo, hi);
    return t;
}

void twin_release(twin *t)
{
    for (int side = 0; side < 2; side++) diat_tensor_release(parity.ctx[side], &t->t[side]);
}

float *download(int side, const diat_tensor *t)
{
    float *host = malloc((diat_tensor_count(t) ? diat_tensor_count(t) : 1) * sizeof *host);
    if (!host) {
        fprintf(stderr, "out of host memory\n");
        exit(1);
    }
    diat_tensor_download(parity.ctx[side], t, host);
    return host;
}

void copy_across(int from, const diat_tensor *src, int to, diat_tensor *dst)
{
    float *host = download(from, src);
    diat_tensor_upload(parity.ctx[to], dst, host);
    free(host);
}

void jitter_tensor(diat_tensor *t)
{
    if (parity.jitter == 0.0 || !t->data) return;
    size_t count = diat_tensor_count(t);
    float *host = download(DUT, t), *u = random_host(count, -1.0f, 1.0f);
    for (size_t i = 0; i < count; i++) host[i] *= (float)(1.0 + parity.jitter * u[i]);
    diat_tensor_upload(parity.ctx[DUT], t, host);
    free(host);
    free(u);
}

void jitter_net(diat_net *net)
{
    for (int i = 0; i < net->param_count; i++) jitter_tensor(&net->params[i].value);
}

const char *name_of(const char *fmt, ...)
{
    static char names[8][256];
    static int next;
    char *name = names[next++ % 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof names[0], fmt, ap);
    va_end(ap);
    return name;
}

void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("# ", stdout);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
}

/* Prints the check's line; a tolerance other than PARITY_TOL is shown. */
static int report(const char *name, double err, double tol, const char *detail)
{
    int ok = err <= tol; /* NaN fails */
    ok ? passed++ : failed++;
    printf("%s %s err=%.2e", ok ? "ok  " : "FAIL", name, err);
    if (tol != PARITY_TOL) printf(" tol=%.0e", tol);
    if (detail && *detail) printf(" (%s)", detail);
    putchar('\n');
    return ok;
}

int check_with(const char *name, double err, double tol, const char *detail)
{
    return report(name, err, tol, detail);
}

/* A non-finite value on either side is an error (infinite): the inputs are
 * chosen so that a correct op never makes one. */
double normalized_error(const float *ref, const float *dut, size_t count, size_t *worst)
{
    double scale = 0.0, gap = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        if (!isfinite(ref[i]) || !isfinite(dut[i])) {
            if (worst) *worst = i;
            return INFINITY;
        }
        scale = fmax(scale, fabs((double)ref[i]));
        double d = fabs((double)dut[i] - (double)ref[i]);
        if (d > gap) gap = d, at = i;
    }
    if (worst) *worst = at;
    return gap / fmax(scale, 1e-30);
}

int check_values(const char *name, const float *ref, const float *dut, size_t count, double tol)
{
    size_t at = 0;
    double err = normalized_error(ref, dut, count, &at);
    char detail[160] = "";
    if (!(err <= tol) && count)
        snprintf(detail, sizeof detail, "element %zu of %zu: dut %.9g, ref %.9g", at, count,
                 (double)dut[at], (double)ref[at]);
    return report(name, err, tol, detail);
}

int check_tensors(const char *name, const diat_tensor *ref, const diat_tensor *dut, double tol)
{
    if (ref->n != dut->n || ref->c != dut->c || ref->h != dut->h || ref->w != dut->w) {
        char detail[160];
        snprintf(detail, sizeof detail, "shape %dx%dx%dx%d, ref %dx%dx%dx%d", dut->n, dut->c,
                 dut->h, dut->w, ref->n, ref->c, ref->h, ref->w);
        return report(name, INFINITY, tol, detail);
    }
    float *r = download(REF, ref), *d = download(DUT, dut);
    int ok = check_values(name, r, d, diat_tensor_count(ref), tol);
    free(r);
    free(d);
    return ok;
}

int check_twin(const char *name, const twin *t, double tol)
{
    return check_tensors(name, &t->t[REF], &t->t[DUT], tol);
}

int check_scalar(const char *name, double ref, double dut, double tol)
{
    double err =
        isfinite(ref) && isfinite(dut) ? fabs(dut - ref) / fmax(fabs(ref), 1e-30) : INFINITY;
    char detail[96] = "";
    if (!(err <= tol)) snprintf(detail, sizeof detail, "dut %.9g, ref %.9g", dut, ref);
    return report(name, err, tol, detail);
}

/* ==== op cases ============================================================ */

enum { MAX_IN = 6, MAX_OUT = 5, MAX_GRAD = 3 };

typedef struct op_case op_case;

/* The tensors of one case: inputs hold the same values on both sides. */
typedef struct op_state {
    const op_case *c;
    twin in[MAX_IN], out[MAX_OUT], grad[MAX_GRAD];
    const char *out_name[MAX_OUT], *grad_name[MAX_GRAD];
    int n_in, n_out, n_grad;
    size_t count, off; /* pointer-and-count ops: elements, and offset into each buffer */
} op_state;

typedef struct op_spec {
    const char *name;
    void (*setup)(op_state *s);
    void (*forward)(op_state *s, int side);                                  /* NULL: none */
    void (*backward)(op_state *s, int side, diat_tensor *const g[MAX_GRAD]); /* NULL: none */
    void (*post)(op_state *s, const char *label); /* extra checks, NULL: none */
} op_spec;

struct op_case {
    const op_spec *op;
    int n, c, h, w;   /* the (first) input; pointer ops: count = n*c*h*w */
    int k, s, p;      /* kernel or window, stride, padding; resampling factor in k */
    int out_c;        /* conv and linear outputs; concat: channels of the second input */
    int out_h, out_w; /* resize target */
    int bias;         /* conv, depthwise, linear: with a bias */
    int variant;      /* op-specific, see the op's setup */
    int offset;       /* pointer ops: elements before (and guards after) the range */
    diat_activation act;
    float f;    /* leaky slope, norm eps, loss scale or target, penalty lambda */
    double tol; /* 0: PARITY_TOL */
    const char *why;
};

#define CTX parity.ctx[side]
#define BE parity.be[side]
#define IN(i) (&s->in[i].t[side])
#define OUT(i) (&s->out[i].t[side])
#define PIN(i) (s->in[i].t[side].data + s->off) /* pointer ops: start of the range */
#define POUT(i) (s->out[i].t[side].data + s->off)
#define PGRAD(g) ((g) ? (g)->data + s->off : NULL)

static twin *input(op_state *s, int n, int c, int h, int w, float lo, float hi)
{
    s->in[s->n_in] = twin_random(n, c, h, w, lo, hi);
    return &s->in[s->n_in++];
}

/* Forward outputs: the reference's start at 0 and the DUT's at NaN, so an
 * element the DUT forgets to write fails; `guard` elements at both ends
 * start at 7 on both sides, so a write outside the range fails too. */
static void prefill(twin *t, size_t guard)
{
    size_t count = diat_tensor_count(&t->t[REF]);
    float *host = malloc(count * sizeof *host);
    for (int side = 0; side < 2; side++) {
        for (size_t i = 0; i < count; i++)
            host[i] = i < guard || i >= count - guard ? 7.0f : side == REF ? 0.0f : NAN;
        diat_tensor_upload(parity.ctx[side], &t->t[side], host);
    }
    free(host);
}

static void output(op_state *s, const char *name, int n, int c, int h, int w)
{
    s->out_name[s->n_out] = name;
    s->out[s->n_out] = twin_alloc(n, c, h, w);
    prefill(&s->out[s->n_out++], 0);
}

/* An output the op reads and updates (running statistics, Adam's state, in
 * place): the same values on both sides. */
static twin *in_out(op_state *s, const char *name, int n, int c, int h, int w, float lo, float hi)
{
    s->out_name[s->n_out] = name;
    s->out[s->n_out] = twin_random(n, c, h, w, lo, hi);
    return &s->out[s->n_out++];
}

static void gradient_like(op_state *s, const char *name, const twin *like)
{
    const diat_tensor *t = &like->t[REF];
    s->grad_name[s->n_grad] = name;
    s->grad[s->n_grad++] = twin_alloc(t->n, t->c, t->h, t->w);
}

/* Pointer ops: buffers of count + 2 offset elements, the op's range in the
 * middle. */
static twin *pointer_input(op_state *s, float lo, float hi)
{
    return input(s, 1, 1, 1, (int)(s->count + 2 * s->off), lo, hi);
}

static void pointer_output(op_state *s, const char *name)
{
    s->out_name[s->n_out] = name;
    s->out[s->n_out] = twin_alloc(1, 1, 1, (int)(s->count + 2 * s->off));
    prefill(&s->out[s->n_out++], s->off);
}

static void pointer_setup(op_state *s)
{
    const op_case *c = s->c;
    s->count = (size_t)c->n * c->c * c->h * c->w;
    s->off = (size_t)c->offset;
}

static int out_side(int len, const op_case *c)
{
    return (len + 2 * c->p - c->k) / c->s + 1;
}

static diat_conv_geometry geometry(const op_case *c)
{
    return (diat_conv_geometry){c->k, c->s, c->p};
}

/* ---- memory and element-wise ---------------------------------------------- */

static void fill_setup(op_state *s)
{
    pointer_setup(s);
    pointer_output(s, "y");
}
static void fill_forward(op_state *s, int side)
{
    BE->fill(CTX, POUT(0), -2.5f, s->count);
}
static const op_spec op_fill = {"fill", fill_setup, fill_forward, NULL, NULL};

/* axpy: y (variant 0, an update in place); add: a + b, out of place
 * (variant 0) or into a itself (variant 1). */
static void axpy_setup(op_state *s)
{
    pointer_setup(s);
    pointer_input(s, -1.0f, 1.0f);
    in_out(s, "y", 1, 1, 1, (int)(s->count + 2 * s->off), -1.0f, 1.0f);
}
static void axpy_forward(op_state *s, int side)
{
    BE->axpy(CTX, s->c->f, PIN(0), POUT(0), s->count);
}
static const op_spec op_axpy = {"axpy", axpy_setup, axpy_forward, NULL, NULL};

static void binary_setup(op_state *s) /* add and mul */
{
    pointer_setup(s);
    twin *a = pointer_input(s, -1.0f, 1.0f);
    pointer_input(s, -1.0f, 1.0f);
    if (s->c->variant) { /* in place: the output starts as a copy of a */
        in_out(s, "y", 1, 1, 1, (int)(s->count + 2 * s->off), 0.0f, 0.0f);
        copy_across(REF, &a->t[REF], REF, &s->out[0].t[REF]);
        copy_across(REF, &a->t[REF], DUT, &s->out[0].t[DUT]);
    } else {
        pointer_output(s, "y");
    }
}
static void add_forward(op_state *s, int side)
{
    const float *a = s->c->variant ? POUT(0) : PIN(0);
    BE->add(CTX, a, PIN(1), POUT(0), s->count);
}
static const op_spec op_add = {"add", binary_setup, add_forward, NULL, NULL};
static void mul_forward(op_state *s, int side)
{
    const float *a = s->c->variant ? POUT(0) : PIN(0);
    BE->mul(CTX, a, PIN(1), POUT(0), s->count);
}
static const op_spec op_mul = {"mul", binary_setup, mul_forward, NULL, NULL};

/* ---- convolutions, linear --------------------------------------------------- */

/* Weights scaled by 1/sqrt(fan-in), so outputs stay O(1) and the fused
 * sigmoid and tanh are not compared on their flat ends only. */
static void conv_setup(op_state *s)
{
    const op_case *c = s->c;
    int oh = out_side(c->h, c), ow = out_side(c->w, c);
    float bound = 1.7f / sqrtf((float)(c->c * c->k * c->k));
    twin *x = input(s, c->n, c->c, c->h, c->w, -1.0f, 1.0f);
    twin *w = input(s, c->out_c, c->c, c->k, c->k, -bound, bound);
    twin *b = input(s, c->out_c, 1, 1, 1, -0.5f, 0.5f);
    input(s, c->n, c->out_c, oh, ow, -1.0f, 1.0f); /* dy */
    output(s, "y", c->n, c->out_c, oh, ow);
    gradient_like(s, "dx", x);
    gradient_like(s, "dweight", w);
    if (c->bias) gradient_like(s, "dbias", b);
}
static void conv_forward(op_state *s, int side)
{
    BE->conv2d_forward(CTX, IN(0), IN(1), s->c->bias ? IN(2) : NULL, geometry(s->c), s->c->act,
                       s->c->f, OUT(0));
}
static void conv_backward(op_state *s, int side, diat_tensor *const g[MAX_GRAD])
{
    BE->conv2d_backward(CTX, IN(0), IN(1), IN(3), geometry(s->c), g[0], g[1], g[2]);
}
static const op_spec op_conv = {"conv2d", conv_setup, conv_forward, conv_backward, NULL};

static void depthwise_setup(op_state *s)
{
    const op_case *c = s->c;
    int oh = out_side(c->h, c), ow = out_side(c->w, c);
    float bound = 1.7f / (float)c->k;
    twin *x = input(s, c->n, c->c, c->h, c->w, -1.0f, 1.0f);
    twin *w = input(s, c->c, 1, c->k, c->k, -bound, bound);
    twin *b = input(s, c->c, 1, 1, 1, -0.5f, 0.5f);
    input(s, c->n, c->c, oh, ow, -1.0f, 1.0f);
    output(s, "y", c->n, c->c, oh, ow);
    gradient_like(s, "dx", x);
    gradient_like(s, "dweight", w);
    if (c->bias) gradient_like(s, "dbias", b);
}
static void depthwise_forward(op_state *s, int side)
{
    BE->depthwise_conv2d_forward(CTX, IN(0), IN(1), s->c->bias ? IN(2) : NULL, geometry(s->c),
                                 s->c->act, s->c->f, OUT(0));
}
static void depthwise_backward(op_state *s, int side, diat_tensor *const g[MAX_GRAD])
{
    BE->depthwise_conv2d_backward(CTX, IN(0), IN(1), IN(3), geometry(s->c), g[0], g[1], g[2]);
}
static const op_spec op_depthwise = {"depthwise_conv2d", depthwise_setup, depthwise_forward,
                                     depthwise_backward, NULL};

static void linear_setup(op_state *s)
{
    const op_case *c = s->c;
    int in = c->c * c->h * c->w;
    float bound = 1.7f / sqrtf((float)in);
    twin *x = input(s, c->n, c->c, c->h, c->w, -1.0f, 1.0f);
    twin *w = input(s, c->out_c, in, 1, 1, -bound, bound);
    twin *b = input(s, c->out_c, 1, 1, 1, -0.5f, 0.5f);
    input(s, c->n, c->out_c, 1, 1, -1.0f, 1.0f);
    output(s, "y", c->n, c->out_c, 1, 1);
    gradient_like(s, "dx", x);
    gradient_like(s, "dweight", w);
    if (c->bias) gradient_like(s, "dbias", b);
}
static void linear_forward(op_state *s, int side)
{
    BE->linear_forward(CTX, IN(0), IN(1), s->c->bias ? IN(2) : NULL, OUT(0));
}
static void linear_backward(op_state *s, int side, diat_tensor *const g[MAX_GRAD])
{
    BE->linear_backward(CTX, IN(0), IN(1), IN(3), g[0], g[1], g[2]);
}
static const op_spec op_linear = {"linear", linear_setup, linear_forward, linear_backward, NULL};

/* ---- normalisation ------------------------------------------------------------ */

/* x off-centre (mean ~0.5), so subtracting the mean matters. The backward
 * reads the statistics of the forward: the driver gives both sides the
 * reference's before it runs. */
static void batchnorm_setup(op_state *s)
{
    const op_case *c = s->c;
    twin *x = input(s, c->n, c->c, c->h, c->w, -0.5f, 1.5f);
    twin *gamma = input(s, c->c, 1, 1, 1, 0.5f, 1.5f);
    twin *beta = input(s, c->c, 1, 1, 1, -0.5f, 0.5f);
    input(s, c->n, c->c, c->h, c->w, -1.0f, 1.0f); /* dy */
    output(s, "y", c->n, c->c, c->h, c->w);
    output(s, "save_mean", c->c, 1, 1, 1);
    output(s, "save_invstd", c->c, 1, 1, 1);
    in_out(s, "running_mean", c->c, 1, 1, 1, -0.5f, 0.5f); /* running mean */
    in_out(s, "running_var", c->c, 1, 1, 1, 0.5f, 1.5f);   /* running variance */
    gradient_like(s, "dx", x);
    gradient_like(s, "dgamma", gamma);
    gradient_like(s, "dbeta", beta);
}
static void batchnorm_forward(op_state *s, int side)
{
    BE->batchnorm_forward_train(CTX, IN(0), IN(1), IN(2), s->c->f, 0.1f, OUT(3), OUT(4), OUT(1),
                                OUT(2), OUT(0));
}
static void batchnorm_backward(op_state *s, int side, diat_tensor *const g[MAX_GRAD])
{
    BE->batchnorm_backward(CTX, IN(0), IN(1), OUT(1), OUT(2), IN(3), g[0], g[1], g[2]);
}
static const op_spec op_batchnorm = {"batchnorm_train", batchnorm_setup, batchnorm_forward,
                                     batchnorm_backward, NULL};

static void batchnorm_infer_setup(op_state *s)
{
    const op_case *c = s->c;
    input(s, c->n, c->c, c->h, c->w, -1.0f, 1.0f);
    input(s, c->c, 1, 1, 1, 0.5f, 1.5f);
    input(s, c->c, 1, 1, 1, -0.5f, 0.5f);
    input(s, c->c, 1, 1, 1, -0.5f, 0.5f);
    input(s, c->c, 1, 1, 1, 0.1f, 2.0f);
    output(s, "y", c->n, c->c, c->h, c->w);
}
static void batchnorm_infer_forward(op_state *s, int side)
{
    BE->batchnorm_forward_infer(CTX, IN(0), IN(1), IN(2), IN(3), IN(4), s->c->f, OUT(0));
}
static const op_spec op_batchnorm_infer = {"batchnorm_infer", batchnorm_infer_setup,
                                           batchnorm_infer_forward, NULL, NULL};

static void instancenorm_setup(op_state *s)
{
    const op_case *c = s->c;
    twin *x = input(s, c->n, c->c, c->h, c->w, -0.5f, 1.5f);
    twin *gamma = input(s, c->c, 1, 1, 1, 0.5f, 1.5f);
    twin *beta = input(s, c->c, 1, 1, 1, -0.5f, 0.5f);
    input(s, c->n, c->c, c->h, c->w, -1.0f, 1.0f);
    output(s, "y", c->n, c->c, c->h, c->w);
    output(s, "save_mean", c->n * c->c, 1, 1, 1);
    output(s, "save_invstd", c->n * c->c, 1, 1, 1);
    gradient_like(s, "dx", x);
    gradient_like(s, "dgamma", gamma);
    gradient_like(s, "dbeta", beta);
}
static void instancenorm_forward(op_state *s, int side)
{
    BE->instancenorm_forward(CTX, IN(0), IN(1), IN(2), s->c->f, OUT(1), OUT(2), OUT(0));
}
static void instancenorm_backward(op_state *s, int side, diat_tensor *const g[MAX_GRAD])
{
    BE->instancenorm_backward(CTX, IN(0), IN(1), OUT(1), OUT(2), IN(3), g[0], g[1], g[2]);
}
static const op_spec op_instancenorm = {"instancenorm", instancenorm_setup, instancenorm_forward,
                                        instancenorm_backward, NULL};

/* ---- activations, binarize ------------------------------------------------- */

/* variant 1: in place (y aliases x, which the API allows). The backward
 * reads y: the reference's, on both sides. */
static void activation_setup(op_state *s)
{
    pointer_setup(s);
    twin *x = pointer_input(s, -3.0f, 3.0f);
    pointer_input(s, -1.0f, 1.0f); /* dy */
    if (s->c->variant) {
        in_out(s, "y", 1, 1, 1, (int)(s->count + 2 * s->off), 0.0f, 0.0f);
        copy_across(REF, &x->t[REF], REF, &s->out[0].t[REF]);
        copy_across(REF, &x->t[REF], DUT, &s->out[0].t[DUT]);
    } else {
        pointer_output(s, "y");
    }
    gradient_like(s, "dx", x);
}
static void activation_forward(op_state *s, int side)
{
    const float *x = s->c->variant ? POUT(0) : PIN(0);
    BE->activation_forward(CTX, s->c->act, s->c->f, x, POUT(0), s->count);
}
static void activation_backward(op_state *s, int side, diat_tensor *const g[MAX_GRAD])
{
    BE->activation_backward(CTX, s->c->act, s->c->f, POUT(0), PIN(1), PGRAD(g[0]), s->count);
}
static const op_spec op_activation = {"activation", activation_setup, activation_forward,
                                      activation_backward, NULL};

/* Every 5th value exactly the threshold: "x > threshold" must give 0 there. */
static void binarize_setup(op_state *s)
{
    pointer_setup(s);
    twin *x = pointer_input(s, 0.0f, 1.0f);
    size_t total = s->count + 2 * s->off;
    float *host = download(REF, &x->t[REF]);
    for (size_t i = 0; i < total; i += 5) host[i] = 0.5f;
    twin_upload(x, host);
    free(host);
    pointer_input(s, -1.0f, 1.0f);
    pointer_output(s, "y");
    gradient_like(s, "dx", x);
}
static void binarize_forward(op_state *s, int side)
{
    BE->binarize_forward(CTX, PIN(0), 0.5f, POUT(0), s->count);
}
static void binarize_backward(op_state *s, int side, diat_tensor *const g[MAX_GRAD])
{
    BE->binarize_backward(CTX, PIN(1), PGRAD(g[0]), s->count);
}
static const op_spec op_binarize = {"binarize", binarize_setup, binarize_forward, binarize_backward,
                                    NULL};

/* ---- resampling, pooling, concatenation, blur ------------------------------ */

/* The output shape of each single-input op; the backward maps dy to dx. */
static void unary_setup(op_state *s, int on, int oc, int oh, int ow, float lo, float hi)
{
    const op_case *c = s->c;
    twin *x = input(s, c->n, c->c, c->h, c->w, lo, hi);
    input(s, on, oc, oh, ow, -1.0f, 1.0f);
    output(s, "y", on, oc, oh, ow);
    gradient_like(s, "dx", x);
}

static void d2s_setup(op_state *s)
{
    const op_case *c = s->c;
    unary_setup(s, c->n, c->c / (c->k * c->k), c->h * c->k, c->w * c->k, -1.0f, 1.0f);
}
static void d2s_forward(op_state *s, int side)
{
    BE->depth_to_space_forward(CTX, IN(0), s->c->k, OUT(0));
}
static void d2s_backward(op_state *s, int side, diat_tensor *const g[MAX_GRAD])
{
    BE->depth_to_space_backward(CTX, IN(1), s->c->k, g[0]);
}
static const op_spec op_d2s = {"depth_to_space", d2s_setup, d2s_forward, d2s_backward, NULL};

static void upsample_setup(op_state *s)
{
    const op_case *c = s->c;
    unary_setup(s, c->n, c->c, c->h * c->k, c->w * c->k, -1.0f, 1.0f);
}
static void nearest_forward(op_state *s, int side)
{
    BE->upsample_nearest_forward(CTX, IN(0), s->c->k, OUT(0));
}
static void nearest_backward(op_state *s, int side, diat_tensor *const g[MAX_GRAD])
{
    BE->upsample_nearest_backward(CTX, IN(1), s->c->k, g[0]);
}
static const op_spec op_nearest = {"upsample_nearest", upsample_setup, nearest_forward,
                                   nearest_backward, NULL};
static void bilinear_forward(op_state *s, int side)
{
    BE->upsample_bilinear_forward(CTX, IN(0), s->c->k, OUT(0));
}
static void bilinear_backward(op_state *s, int side, diat_tensor *const g[MAX_GRAD])
{
    BE->upsample_bilinear_backward(CTX, IN(1), s->c->k, g[0]);
}
static const op_spec op_bilinear = {"upsample_bilinear", upsample_setup, bilinear_forward,
                                    bilinear_backward, NULL};

static void resize_setup(op_state *s)
{
    const op_case *c = s->c;
    unary_setup(s, c->n, c->c, c->out_h, c->out_w, -1.0f, 1.0f);
}
static void resize_forward(op_state *s, int side)
{
    BE->resize_bilinear_forward(CTX, IN(0), OUT(0));
}
static void resize_backward(op_state *s, int side, diat_tensor *const g[MAX_GRAD])
{
    BE->resize_bilinear_backward(CTX, IN(1), g[0]);
}
static const op_spec op_resize = {"resize_bilinear", resize_setup, resize_forward, resize_backward,
                                  NULL};

static void avgpool_setup(op_state *s)
{
    const op_case *c = s->c;
    unary_setup(s, c->n, c->c, out_side(c->h, c), out_side(c->w, c), -1.0f, 1.0f);
}
static void avgpool_forward(op_state *s, int side)
{
    BE->avgpool_forward(CTX, IN(0), s->c->k, s->c->s, OUT(0));
}
static void avgpool_backward(op_state *s, int side, diat_tensor *const g[MAX_GRAD])
{
    BE->avgpool_backward(CTX, IN(1), s->c->k, s->c->s, g[0]);
}
static const op_spec op_avgpool = {"avgpool", avgpool_setup, avgpool_forward, avgpool_backward,
                                   NULL};

/* variant 1: values on a 0.5 grid, so windows hold equal maxima and the
 * backward must pick the first; variant 2: all negative, so with padding
 * the zeros of the border must never win. */
static void maxpool_setup(op_state *s)
{
    const op_case *c = s->c;
    unary_setup(s, c->n, c->c, out_side(c->h, c), out_side(c->w, c),
                c->variant == 2 ? -2.0f : -1.0f, c->variant == 2 ? -1.0f : 1.0f);
    if (c->variant == 1) {
        twin *x = &s->in[0];
        size_t count = diat_tensor_count(&x->t[REF]);
        float *host = download(REF, &x->t[REF]);
        for (size_t i = 0; i < count; i++) host[i] = roundf(host[i] * 2.0f) * 0.5f;
        twin_upload(x, host);
        free(host);
    }
}
static void maxpool_forward(op_state *s, int side)
{
    BE->maxpool_forward(CTX, IN(0), s->c->k, s->c->s, s->c->p, OUT(0));
}
static void maxpool_backward(op_state *s, int side, diat_tensor *const g[MAX_GRAD])
{
    BE->maxpool_backward(CTX, IN(0), IN(1), s->c->k, s->c->s, s->c->p, g[0]);
}
static const op_spec op_maxpool = {"maxpool", maxpool_setup, maxpool_forward, maxpool_backward,
                                   NULL};

static void concat_setup(op_state *s)
{
    const op_case *c = s->c;
    twin *a = input(s, c->n, c->c, c->h, c->w, -1.0f, 1.0f);
    twin *b = input(s, c->n, c->out_c, c->h, c->w, -1.0f, 1.0f);
    input(s, c->n, c->c + c->out_c, c->h, c->w, -1.0f, 1.0f);
    output(s, "y", c->n, c->c + c->out_c, c->h, c->w);
    gradient_like(s, "da", a);
    gradient_like(s, "db", b);
}
static void concat_forward(op_state *s, int side)
{
    BE->concat_forward(CTX, IN(0), IN(1), OUT(0));
}
static void concat_backward(op_state *s, int side, diat_tensor *const g[MAX_GRAD])
{
    BE->concat_backward(CTX, IN(2), g[0], g[1]);
}
static const op_spec op_concat = {"concat", concat_setup, concat_forward, concat_backward, NULL};

/* add_overlap accumulates from into the top-left overlap of `to` (a
 * gradient-like buffer: random on both sides, compared after); from is the
 * case's shape, to is out_h x out_w (smaller or larger). */
static void add_overlap_setup(op_state *s)
{
    const op_case *c = s->c;
    input(s, c->n, c->c, c->h, c->w, -1.0f, 1.0f);
    twin *to = input(s, c->n, c->c, c->out_h, c->out_w, -1.0f, 1.0f);
    gradient_like(s, "to", to);
}
static void add_overlap_accumulate(op_state *s, int side, diat_tensor *const g[MAX_GRAD])
{
    BE->add_overlap(CTX, IN(0), g[0]);
}
static const op_spec op_add_overlap = {"add_overlap", add_overlap_setup, NULL,
                                       add_overlap_accumulate, NULL};

/* variant 1: asymmetric taps, so a kernel that flips them fails. */
static const float lopsided_taps[5] = {0.05f, 0.1f, 0.5f, 0.3f, 0.05f};
static const float *taps_of(const op_case *c)
{
    return c->variant ? lopsided_taps : diat_gaussian5_taps();
}
static void gaussian_setup(op_state *s)
{
    const op_case *c = s->c;
    unary_setup(s, c->n, c->c, c->h, c->w, -1.0f, 1.0f);
}
static void gaussian_forward(op_state *s, int side)
{
    BE->gaussian5_forward(CTX, IN(0), taps_of(s->c), OUT(0));
}
static void gaussian_backward(op_state *s, int side, diat_tensor *const g[MAX_GRAD])
{
    BE->gaussian5_backward(CTX, IN(1), taps_of(s->c), g[0]);
}
static const op_spec op_gaussian = {"gaussian5", gaussian_setup, gaussian_forward,
                                    gaussian_backward, NULL};

/* ---- the trainer's ops: composition, losses, Adam -------------------------- */

static void compose_setup(op_state *s)
{
    const op_case *c = s->c;
    twin *m = input(s, c->n, 1, c->h, c->w, 0.0f, 1.0f);
    twin *a = input(s, c->n, c->c, c->h, c->w, -1.0f, 1.0f);
    twin *b = input(s, c->n, c->c, c->h, c->w, -1.0f, 1.0f);
    input(s, c->n, c->c, c->h, c->w, -1.0f, 1.0f);
    output(s, "y", c->n, c->c, c->h, c->w);
    gradient_like(s, "dm", m);
    gradient_like(s, "da", a);
    gradient_like(s, "db", b);
}
static void compose_forward(op_state *s, int side)
{
    BE->compose_forward(CTX, IN(0), IN(1), IN(2), OUT(0));
}
static void compose_backward(op_state *s, int side, diat_tensor *const g[MAX_GRAD])
{
    BE->compose_backward(CTX, IN(0), IN(1), IN(2), IN(3), g[0], g[1], g[2]);
}
static const op_spec op_compose = {"compose", compose_setup, compose_forward, compose_backward,
                                   NULL};

/* Scalars are 1-float tensors in backend memory, compared like any output.
 * squared_error variant 1: b NULL (zeros), so only da exists. */
static void squared_error_setup(op_state *s)
{
    pointer_setup(s);
    twin *a = pointer_input(s, -1.0f, 1.0f);
    twin *b = pointer_input(s, -1.0f, 1.0f);
    output(s, "out", 1, 1, 1, 1);
    gradient_like(s, "da", a);
    if (!s->c->variant) gradient_like(s, "db", b);
}
static void squared_error_forward(op_state *s, int side)
{
    BE->squared_error_forward(CTX, PIN(0), s->c->variant ? NULL : PIN(1), s->count, s->c->f,
                              OUT(0)->data);
}
static void squared_error_backward(op_state *s, int side, diat_tensor *const g[MAX_GRAD])
{
    BE->squared_error_backward(CTX, PIN(0), s->c->variant ? NULL : PIN(1), s->count, s->c->f,
                               PGRAD(g[0]), PGRAD(g[1]));
}
static const op_spec op_squared_error = {"squared_error", squared_error_setup,
                                         squared_error_forward, squared_error_backward, NULL};

/* Values mostly positive: a sum near zero would compare rounding noise. */
static void sum_setup(op_state *s)
{
    pointer_setup(s);
    pointer_input(s, -0.5f, 1.0f);
    output(s, "out", 1, 1, 1, 1);
}
static void sum_forward(op_state *s, int side)
{
    BE->sum_forward(CTX, PIN(0), s->count, s->c->f, OUT(0)->data);
}
static const op_spec op_sum = {"sum", sum_setup, sum_forward, NULL, NULL};

/* f is the target; the scale is fixed. variant 1: every value 0.25 with
 * target 0.25 and a power-of-two count, where the mean equals the target
 * exactly in any summation order and whether divided or multiplied by
 * 1/count: the subgradient there is 0 and dx must stay as it was. */
#define RATIO_SCALE 0.75f
static void ratio_setup(op_state *s)
{
    pointer_setup(s);
    twin *x = pointer_input(s, 0.0f, 1.0f);
    if (s->c->variant) {
        size_t total = s->count + 2 * s->off;
        float *host = malloc(total * sizeof *host);
        for (size_t i = 0; i < total; i++) host[i] = 0.25f;
        twin_upload(x, host);
        free(host);
    }
    output(s, "out", 1, 1, 1, 1);
    gradient_like(s, "dx", x);
}
static void ratio_forward(op_state *s, int side)
{
    BE->ratio_loss_forward(CTX, PIN(0), s->count, s->c->f, RATIO_SCALE, OUT(0)->data);
}
static void ratio_backward(op_state *s, int side, diat_tensor *const g[MAX_GRAD])
{
    BE->ratio_loss_backward(CTX, PIN(0), s->count, s->c->f, RATIO_SCALE, PGRAD(g[0]));
}
static const op_spec op_ratio = {"ratio_loss", ratio_setup, ratio_forward, ratio_backward, NULL};

/* Per-sample norms near 1.2 (the penalty's interesting range); variant 1:
 * sample 1 all zeros, where only the norm's epsilon keeps g / |g| finite. */
static void penalty_setup(op_state *s)
{
    const op_case *c = s->c;
    size_t per = (size_t)c->c * c->h * c->w;
    float amp = 1.2f * sqrtf(3.0f / (float)per);
    twin *g = input(s, c->n, c->c, c->h, c->w, -amp, amp);
    if (c->variant) {
        float *host = download(REF, &g->t[REF]);
        memset(host + per, 0, per * sizeof *host);
        twin_upload(g, host);
        free(host);
    }
    output(s, "out", 1, 1, 1, 1);
    gradient_like(s, "dg", g);
}
static void penalty_forward(op_state *s, int side)
{
    BE->gradient_penalty_forward(CTX, IN(0), s->c->f, OUT(0)->data);
}
static void penalty_backward(op_state *s, int side, diat_tensor *const g[MAX_GRAD])
{
    BE->gradient_penalty_backward(CTX, IN(0), s->c->f, g[0]);
}
static const op_spec op_penalty = {"gradient_penalty", penalty_setup, penalty_forward,
                                   penalty_backward, NULL};

/* Three Adam steps (bias corrections at t = 1, 2, 3) with different
 * gradients, some of them near and at zero (where eps matters). Outputs:
 * the parameters and both moments; the post check compares the update
 * itself, since the parameters' own scale would hide an update that is
 * wrong by a lot (it is ~lr). */
#define ADAM_STEPS 3
static void adam_setup(op_state *s)
{
    pointer_setup(s);
    size_t total = s->count + 2 * s->off;
    for (int t = 0; t < ADAM_STEPS; t++) {
        twin *g = pointer_input(s, -1.0f, 1.0f);
        float *host = download(REF, &g->t[REF]);
        for (size_t i = 0; i < total; i += 7) host[i] *= 1e-7f; /* near eps = 1e-8 */
        for (size_t i = 3; i < total; i += 11) host[i] = 0.0f;
        twin_upload(g, host);
        free(host);
    }
    /* Parameters ~0.1: a rounding step of p - update stays ~1e-6 of the update. */
    twin *p = in_out(s, "param", 1, 1, 1, (int)total, -0.1f, 0.1f);
    in_out(s, "m", 1, 1, 1, (int)total, 0.0f, 0.0f);    /* m */
    in_out(s, "v", 1, 1, 1, (int)total, 0.0f, 0.0f);    /* v */
    s->in[s->n_in++] = twin_alloc(1, 1, 1, (int)total); /* the parameters before */
    copy_across(REF, &p->t[REF], REF, &s->in[ADAM_STEPS].t[REF]);
}
static void adam_forward(op_state *s, int side)
{
    for (int t = 1; t <= ADAM_STEPS; t++)
        BE->adam_update(CTX, POUT(0), PIN(t - 1), POUT(1), POUT(2), s->count, s->c->f, 0.5f, 0.9f,
                        1e-8f, t);
}
static void adam_post(op_state *s, const char *label)
{
    size_t total = s->count + 2 * s->off;
    float *before = download(REF, &s->in[ADAM_STEPS].t[REF]);
    float *ref = download(REF, &s->out[0].t[REF]), *dut = download(DUT, &s->out[0].t[DUT]);
    for (size_t i = 0; i < total; i++) ref[i] -= before[i], dut[i] -= before[i];
    check_values(name_of("%s: update (parameters after - before)", label), ref, dut, total,
                 PARITY_TOL);
    free(before);
    free(ref);
    free(dut);
}
static const op_spec op_adam = {"adam_update", adam_setup, adam_forward, NULL, adam_post};

/* ---- the driver -------------------------------------------------------------- */

static double tol_of(const op_case *c)
{
    return c->tol > 0.0 ? c->tol : PARITY_TOL;
}

static void check_backward(op_state *s, const char *label)
{
    const op_spec *op = s->c->op;
    /* Every gradient output at once, then each alone with the others NULL. */
    int variants = s->n_grad > 1 ? s->n_grad + 1 : 1;
    for (int v = 0; v < variants; v++) {
        for (int k = 0; k < s->n_grad; k++)
            if (v == 0 || v == k + 1) twin_randomize(&s->grad[k], -1.0f, 1.0f);
        for (int side = 0; side < 2; side++) {
            diat_tensor *g[MAX_GRAD] = {NULL, NULL, NULL};
            for (int k = 0; k < s->n_grad; k++)
                if (v == 0 || v == k + 1) g[k] = &s->grad[k].t[side];
            op->backward(s, side, g);
        }
        for (int k = 0; k < s->n_grad; k++)
            if (v == 0 || v == k + 1)
                check_twin(name_of("%s: %s%s", label, s->grad_name[k], v ? " alone" : ""),
                           &s->grad[k], tol_of(s->c));
    }
}

static void run_case(const op_case *c)
{
    const op_spec *op = c->op;
    op_state s;
    memset(&s, 0, sizeof s);
    s.c = c;
    char label[200];
    snprintf(label, sizeof label, "%s %dx%dx%dx%d %s", op->name, c->n, c->c, c->h, c->w, c->why);
    op->setup(&s);
    if (op->forward) {
        for (int side = 0; side < 2; side++) op->forward(&s, side);
        for (int i = 0; i < s.n_out; i++)
            check_twin(name_of("%s: %s", label, s.out_name[i]), &s.out[i], tol_of(c));
        if (op->post) op->post(&s, label);
        /* Backwards read forward outputs (activations y, norms their
         * statistics): both sides get the reference's, so the backward is
         * compared on identical inputs. */
        for (int i = 0; i < s.n_out; i++) copy_across(REF, &s.out[i].t[REF], DUT, &s.out[i].t[DUT]);
    }
    if (op->backward) check_backward(&s, label);
    for (int i = 0; i < s.n_in; i++) twin_release(&s.in[i]);
    for (int i = 0; i < s.n_out; i++) twin_release(&s.out[i]);
    for (int i = 0; i < s.n_grad; i++) twin_release(&s.grad[i]);
}

/* Upload, download and zero move bits: exact. */
static void check_memory(void)
{
    const int count = 1003;
    twin t = twin_random(1, 1, 1, count, -1.0f, 1.0f);
    float *want = download(REF, &t.t[REF]), *got = download(DUT, &t.t[DUT]);
    check_values("memory: upload + download round trip (exact)", want, got, (size_t)count, 0.0);
    free(got);
    diat_tensor_zero(parity.ctx[DUT], &t.t[DUT]);
    got = download(DUT, &t.t[DUT]);
    float *zeros = calloc((size_t)count, sizeof *zeros);
    check_values("memory: diat_tensor_zero (exact)", zeros, got, (size_t)count, 0.0);
    free(want);
    free(got);
    free(zeros);
    twin_release(&t);
}

/* ---- the table -------------------------------------------------------------- */

#define LEAKY DIAT_ACT_LEAKY_RELU
#define RELU DIAT_ACT_RELU
#define SIGMOID DIAT_ACT_SIGMOID
#define TANH DIAT_ACT_TANH
#define IDENTITY DIAT_ACT_IDENTITY

/* Shapes: odd sizes and batches > 1 throughout; the convolution geometries
 * of the nets (T: k3 s2 p1 down, k3 s1 p1 up; M: k3 s2/s1 p1 with one output
 * channel last; D: k4 s2 p1; DN: k3 s1 p1; phi: k7 s2 p0 stem, k3 s2 p0
 * down, k3 s1 p1) and each fused activation. */
static const op_case op_cases[] = {
    /* memory and element-wise: odd counts at an offset, guards around */
    {&op_fill, 1, 1, 1, 1001, .offset = 4, .why = "offset 4"},
    {&op_axpy, 1, 1, 1, 1001, .offset = 4, .f = -0.75f, .why = "offset 4"},
    {&op_add, 1, 1, 1, 1001, .offset = 4, .why = "offset 4"},
    {&op_add, 1, 1, 1, 777, .variant = 1, .why = "in place (y = a)"},
    {&op_mul, 1, 1, 1, 1001, .offset = 4, .why = "offset 4"},
    {&op_mul, 1, 1, 1, 777, .variant = 1, .why = "in place (y = a)"},
    /* convolution */
    {&op_conv, 2, 3, 7, 9, 3, 1, 1, 4, .bias = 1, .why = "k3 s1 p1 3->4 bias, 3-channel input"},
    {&op_conv, 2, 5, 16, 16, 3, 1, 1, 8, .bias = 1, .act = RELU, .why = "k3 s1 p1 5->8 relu"},
    {&op_conv, 2, 16, 13, 11, 3, 1, 1, 3, .bias = 1, .why = "k3 s1 p1 16->3 (DN's last)"},
    {&op_conv, 3, 8, 12, 12, 3, 1, 1, 1, .act = SIGMOID, .why = "k3 s1 p1 8->1 sigmoid (M's e)"},
    {&op_conv, 2, 3, 32, 32, 3, 2, 1, 6, .bias = 1, .act = LEAKY, .f = 0.2f,
     .why = "k3 s2 p1 3->6 leaky 0.2 (T.down1)"},
    {&op_conv, 3, 4, 9, 7, 3, 2, 1, 5, .act = RELU, .why = "k3 s2 p1 4->5 no bias, odd sides"},
    {&op_conv, 1, 48, 4, 4, 3, 1, 1, 12, .bias = 1, .why = "k3 s1 p1 48->12 (T.up: 16 columns)"},
    {&op_conv, 2, 3, 32, 32, 4, 2, 1, 4, .bias = 1, .act = LEAKY, .f = 0.2f,
     .why = "k4 s2 p1 3->4 leaky 0.2 (D.conv1)"},
    {&op_conv, 4, 16, 8, 8, 4, 2, 1, 32, .bias = 1, .act = LEAKY, .f = 0.2f,
     .why = "k4 s2 p1 16->32 batch 4 (D.conv4: 4x4 outputs)"},
    {&op_conv, 2, 6, 9, 7, 4, 2, 1, 5, .act = LEAKY, .f = 0.1f,
     .why = "k4 s2 p1 6->5 leaky 0.1, odd sides"},
    {&op_conv, 2, 6, 5, 7, 1, 1, 0, 5, .bias = 1, .act = TANH, .why = "k1 s1 p0 6->5 tanh"},
    {&op_conv, 2, 4, 5, 5, 1, 2, 0, 6, .why = "k1 s2 p0 4->6"},
    {&op_conv, 2, 4, 11, 11, 3, 2, 0, 6, .bias = 1, .act = RELU, .why = "k3 s2 p0 4->6 (phi down)"},
    {&op_conv, 2, 3, 23, 23, 7, 2, 0, 8, .bias = 1, .act = RELU, .why = "k7 s2 p0 3->8 (phi stem)"},
    {&op_conv, 2, 3, 5, 4, 4, 1, 2, 2, .bias = 1, .act = SIGMOID,
     .why = "k4 s1 p2: kernel wider than an axis"},
    {&op_conv, 2, 3, 128, 128, 4, 2, 1, 8, .bias = 1, .act = LEAKY, .f = 0.2f,
     .why = "k4 s2 p1 3->8 at 128x128 (D.conv1 full size)"},
    {&op_conv, 2, 16, 64, 64, 3, 1, 1, 16, .bias = 1, .act = RELU,
     .why = "k3 s1 p1 16->16 at 64x64 (DN body)"},
    /* depthwise convolution (face detector and landmarks) */
    {&op_depthwise, 2, 5, 9, 7, 3, 1, 1, .bias = 1, .act = RELU, .why = "k3 s1 p1 bias relu"},
    {&op_depthwise, 2, 8, 16, 16, 3, 2, 1, .why = "k3 s2 p1 no bias"},
    {&op_depthwise, 1, 4, 6, 5, 3, 1, 1, .bias = 1, .act = LEAKY, .f = 0.1f,
     .why = "k3 s1 p1 leaky 0.1"},
    /* linear */
    {&op_linear, 3, 2, 2, 3, .out_c = 5, .bias = 1, .why = "12->5 bias, 4-d x flattened"},
    {&op_linear, 4, 256, 1, 1, .out_c = 128, .why = "256->128 no bias (phi's fc)"},
    {&op_linear, 2, 16, 4, 4, .out_c = 1, .bias = 1, .why = "256->1 (D's score)"},
    /* normalisation */
    {&op_batchnorm, 3, 4, 5, 7, .f = 1e-5f, .why = "eps 1e-5"},
    {&op_batchnorm, 4, 1, 8, 8, .f = 1e-5f, .why = "one channel (M.bn5)"},
    {&op_batchnorm, 2, 16, 32, 32, .f = 1e-3f, .why = "eps 1e-3, 2048 per channel"},
    {&op_batchnorm_infer, 2, 4, 5, 7, .f = 1e-5f, .why = "running statistics"},
    {&op_instancenorm, 2, 3, 5, 4, .f = 1e-5f, .why = "eps 1e-5"},
    {&op_instancenorm, 1, 2, 3, 7, .f = 1e-3f, .why = "eps 1e-3"},
    /* activations */
    {&op_activation, 1, 1, 1, 1001, .offset = 4, .act = IDENTITY, .why = "identity"},
    {&op_activation, 1, 1, 1, 1001, .offset = 4, .act = RELU, .why = "relu"},
    {&op_activation, 1, 1, 1, 1001, .offset = 4, .act = LEAKY, .f = 0.2f, .why = "leaky 0.2"},
    {&op_activation, 1, 1, 1, 1001, .offset = 4, .act = SIGMOID, .why = "sigmoid"},
    {&op_activation, 1, 1, 1, 1001, .offset = 4, .act = TANH, .why = "tanh"},
    {&op_activation, 1, 1, 1, 999, .variant = 1, .act = LEAKY, .f = 0.01f,
     .why = "leaky 0.01 in place"},
    {&op_activation, 1, 1, 1, 999, .variant = 1, .act = SIGMOID, .why = "sigmoid in place"},
    {&op_binarize, 1, 1, 1, 1001, .offset = 4, .why = "threshold 0.5, exact ties"},
    /* resampling, pooling, concatenation, blur */
    {&op_d2s, 2, 12, 3, 5, 2, .why = "r 2"},
    {&op_d2s, 1, 18, 2, 3, 3, .why = "r 3"},
    {&op_nearest, 2, 3, 5, 7, 2, .why = "x2"},
    {&op_nearest, 1, 2, 3, 4, 3, .why = "x3"},
    {&op_bilinear, 3, 1, 8, 8, 4, .why = "x4 (M's e to m)"},
    {&op_bilinear, 2, 3, 5, 7, 2, .why = "x2 odd sides"},
    {&op_bilinear, 4, 1, 32, 32, 4, .why = "x4 at M's full size"},
    {&op_resize, 2, 3, 128, 128, .out_h = 150, .out_w = 150, .tol = RESIZE_TOL,
     .why = "to 150x150 (phi's input)"},
    {&op_resize, 1, 2, 13, 11, .out_h = 7, .out_w = 5, .why = "down to 7x5"},
    {&op_resize, 2, 3, 5, 7, .out_h = 9, .out_w = 8, .why = "up to 9x8, non-integer"},
    {&op_avgpool, 2, 3, 8, 8, 2, 2, .why = "k2 s2 (phi's skip)"},
    {&op_avgpool, 2, 4, 7, 9, 2, 2, .why = "k2 s2 odd sides (floor)"},
    {&op_avgpool, 2, 16, 4, 4, 4, 4, .why = "k4 s4 (global average)"},
    {&op_avgpool, 1, 2, 9, 9, 3, 2, .why = "k3 s2 overlapping"},
    {&op_maxpool, 2, 4, 72, 72, 3, 2, 0, .why = "k3 s2 p0 (phi: 72 -> 35)"},
    {&op_maxpool, 2, 3, 9, 8, 3, 2, 1, .why = "k3 s2 p1"},
    {&op_maxpool, 2, 2, 8, 8, 2, 2, 0, .variant = 1, .why = "k2 s2, equal maxima"},
    {&op_maxpool, 2, 3, 7, 7, 3, 2, 1, .variant = 2, .why = "k3 s2 p1 all negative"},
    {&op_concat, 2, 3, 4, 5, .out_c = 2, .why = "3 + 2 channels"},
    {&op_add_overlap, 2, 3, 17, 17, .out_h = 18, .out_w = 18, .why = "into a larger plane"},
    {&op_add_overlap, 2, 3, 18, 18, .out_h = 17, .out_w = 16, .why = "cropped to a smaller one"},
    {&op_gaussian, 2, 1, 16, 16, .why = "mask taps"},
    {&op_gaussian, 2, 3, 5, 7, .variant = 1, .why = "lopsided taps"},
    {&op_gaussian, 1, 1, 3, 2, .why = "smaller than the kernel"},
    {&op_gaussian, 4, 1, 128, 128, .why = "M's mask size"},
    /* the trainer's ops */
    {&op_compose, 2, 3, 5, 4, .why = "odd sides"},
    {&op_compose, 4, 3, 128, 128, .why = "a batch of faces"},
    {&op_squared_error, 1, 1, 1, 1001, .offset = 4, .f = 0.3f, .why = "offset 4"},
    {&op_squared_error, 1, 1, 1, 1001, .offset = 4, .variant = 1, .f = 0.3f, .why = "b NULL"},
    {&op_squared_error, 4, 3, 128, 128, .f = 1.0f / 196608.0f, .why = "a batch of faces"},
    {&op_sum, 1, 1, 1, 1001, .offset = 4, .f = -0.5f, .why = "offset 4"},
    {&op_sum, 1, 1, 1, 65539, .f = 1.0f / 65539.0f, .why = "mean of 65539"},
    {&op_ratio, 1, 1, 128, 128, .offset = 16384, .f = 0.3f, .why = "face 2, mean above target"},
    {&op_ratio, 1, 1, 128, 128, .f = 0.9f, .why = "mean below target"},
    {&op_ratio, 1, 1, 1, 1024, .offset = 4, .variant = 1, .f = 0.25f, .why = "mean at target"},
    {&op_penalty, 3, 3, 16, 16, .variant = 1, .f = 10.0f, .why = "lambda 10, one zero sample"},
    {&op_penalty, 2, 3, 128, 128, .f = 10.0f, .why = "lambda 10, D's input size"},
    {&op_adam, 1, 1, 1, 1001, .offset = 4, .f = 0.01f, .why = "lr 0.01, betas 0.5 0.9, 3 steps"},
};

/* Any float pointer is a valid argument of the pointer-and-count ops (the
 * trainer passes interior pointers), so they run once more one float off
 * 16-byte alignment. Last of all: a kernel that assumes alignment faults,
 * and a CUDA fault ends the process. */
static const op_case misaligned_cases[] = {
    {&op_fill, 1, 1, 1, 1001, .offset = 1, .why = "offset 1"},
    {&op_axpy, 1, 1, 1, 1001, .offset = 3, .f = -0.75f, .why = "offset 3"},
    {&op_add, 1, 1, 1, 1001, .offset = 1, .why = "offset 1"},
    {&op_mul, 1, 1, 1, 1001, .offset = 1, .why = "offset 1"},
    {&op_activation, 1, 1, 1, 1001, .offset = 1, .act = LEAKY, .f = 0.2f, .why = "leaky, offset 1"},
    {&op_binarize, 1, 1, 1, 1001, .offset = 1, .why = "offset 1"},
    {&op_squared_error, 1, 1, 1, 1001, .offset = 1, .f = 0.3f, .why = "offset 1"},
    {&op_sum, 1, 1, 1, 1001, .offset = 1, .f = -0.5f, .why = "offset 1"},
    {&op_ratio, 1, 1, 1, 1001, .offset = 1, .f = 0.3f, .why = "offset 1"},
    {&op_adam, 1, 1, 1, 1001, .offset = 1, .f = 0.01f, .why = "offset 1"},
};

/* ==== main ================================================================== */

static double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int env_flag(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    parity.self_test = env_flag("DIAT_PARITY_SELF_TEST");
    if (parity.self_test && getenv("DIAT_PARITY_JITTER"))
        parity.jitter = strtod(getenv("DIAT_PARITY_JITTER"), NULL);
    parity.dut_backend = parity.self_test ? "cpu" : "cuda";
    parity.source_root = getenv("DIAT_SOURCE_ROOT") ? getenv("DIAT_SOURCE_ROOT") : ".";
    parity.shared_data = getenv("DIAT_SHARED_DATA");

    diat_error err;
    if (diat_context_new(DIAT_BACKEND_CPU, 0, &parity.own[REF], &err) != DIAT_OK) {
        printf("FAIL CPU context: %s\n0 passed, 1 failed\n", err.message);
        return 1;
    }
    diat_backend_kind kind = parity.self_test ? DIAT_BACKEND_CPU : DIAT_BACKEND_CUDA;
    if (diat_context_new(kind, 0, &parity.own[DUT], &err) != DIAT_OK) {
        printf("FAIL %s context: %s\n0 passed, 1 failed\n", parity.dut_backend, err.message);
        diat_context_free(parity.own[REF]);
        return 1;
    }
    const char *notice = diat_context_notice(parity.own[DUT]);
    if (!parity.self_test &&
        (notice || strcmp(diat_context_backend_name(parity.own[DUT]), "cpu") == 0)) {
        printf("skipped: no CUDA device (%s)\n",
               notice ? notice : "the CUDA context runs on the CPU");
        diat_context_free(parity.own[DUT]);
        diat_context_free(parity.own[REF]);
        return 77;
    }
    parity_use(NULL, NULL);
    note("reference: %s context; device under test: %s context%s", parity.be[REF]->name,
         parity.be[DUT]->name, parity.self_test ? " (self-test: DIAT_PARITY_SELF_TEST=1)" : "");
    if (parity.jitter != 0.0)
        note("DIAT_PARITY_JITTER=%g: the DUT's network parameters are perturbed", parity.jitter);

    double start = seconds_now();
    check_memory();
    for (size_t i = 0; i < sizeof op_cases / sizeof op_cases[0]; i++) {
        random_seed(1000 + i);
        run_case(&op_cases[i]);
    }
    double ops_done = seconds_now();
    parity_nets();
    double nets_done = seconds_now();
    parity_training_step();
    for (size_t i = 0; i < sizeof misaligned_cases / sizeof misaligned_cases[0]; i++) {
        random_seed(2000 + i);
        run_case(&misaligned_cases[i]);
    }
    double end = seconds_now();
    note("time: ops %.1f s, networks %.1f s, training step (and misaligned ops) %.1f s",
         ops_done - start, nets_done - ops_done, end - nets_done);

    diat_context_free(parity.own[DUT]);
    diat_context_free(parity.own[REF]);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
