/* SPDX-License-Identifier: MIT */
/*
 * The Levenberg-Marquardt fit of one ROI/profile by one GPU thread, shared by
 * the batch fits (rtd_fit_cuda.cu) and the frame pipeline (rtd_pipe_cuda.cu).
 * Models, estimators, damping, convergence test and states follow the CPU
 * library (proc/fit) step for step so that the two agree to float rounding;
 * where the CPU code makes a choice (how lambda moves, when chi2 counts as
 * converged), the same choice is made here and says so.
 *
 * Per fit everything lives in registers: parameters, the packed normal matrix
 * (upper triangle), gradient and damping scale. Data come from a pointer the
 * caller chose (shared memory for batches, a device ROI buffer for frames).
 */
#ifndef RTD_LM_KERNEL_CUH
#define RTD_LM_KERNEL_CUH

#include <math_constants.h>
#include <stdint.h>

#define RTD_CUDA_MAX_NODES 256

enum { LM_GAUSS_1D = 0, LM_GAUSS_2D = 1, LM_SHM_1D = 2, LM_SHM_LEGACY = 3 };
enum { LM_LSE = 0, LM_MLE = 1 };
enum { LM_CONVERGED = 0, LM_MAX_ITER = 1, LM_SINGULAR = 2, LM_NEG_CURV = 3, LM_BAD_INPUT = 5 };

template <int M> struct lm_np;
template <> struct lm_np<LM_GAUSS_1D> {
    static constexpr int n = 4;
};
template <> struct lm_np<LM_GAUSS_2D> {
    static constexpr int n = 5;
};
template <> struct lm_np<LM_SHM_1D> {
    static constexpr int n = 5;
};
template <> struct lm_np<LM_SHM_LEGACY> {
    static constexpr int n = 4;
};

struct lm_cfg {
    int n_points;
    int size; /* GAUSS_2D: side of the square ROI */
    int max_iter;
    float tol;
    int shm_nodes;      /* fixed N (even), or 0 = auto per evaluation as proc/fit does */
    const float *nodes; /* device: positive half-node table for every even N <= 256 */
};

/*
 * glibc's expf/logf are correctly rounded in all but a few cases; CUDA's expf/logf
 * are within 2 ulp. Rounding the double result gives the CPU's float nearly always,
 * which keeps the two backends' LM paths together (the differences that remain are
 * the rare double-rounding cases).
 */
template <int F> __device__ __forceinline__ float lm_expf(float x)
{
    return F ? expf(x) : (float)exp((double)x);
}
template <int F> __device__ __forceinline__ float lm_logf(float x)
{
    return F ? logf(x) : (float)log((double)x);
}

/* Offset of N's N/2 positive nodes in the table (N = 2k: k(k-1)/2). */
__device__ __forceinline__ int lm_node_off(int n)
{
    int k = n / 2;
    return k * (k - 1) / 2;
}

/* proc/fit's fit_shm_nodes_pick(): the auto rule with a 4-node margin, never shrinking. */
__device__ __forceinline__ int lm_shm_nodes(int fixed, float A, float sigma, int cur)
{
    if (fixed)
        return fixed;
    double r = fabs((double)A) / fmax(fabs((double)sigma), 1e-3);
    if (!(r < 80.0))
        r = 80.0;
    int n = (int)ceil(2.8 * r) + 8;
    n = (n + 1) & ~1;
    if (n < 8)
        n = 8;
    if (n > RTD_CUDA_MAX_NODES)
        n = RTD_CUDA_MAX_NODES;
    return n > cur ? n : cur;
}

/*
 * Model value and derivatives at sample i (x = i; GAUSS_2D: x = i % size, y = i / size),
 * written in proc/fit's operation order (fit_scalar_tmpl.h: model_eval_).
 */
template <int M, int F>
__device__ __forceinline__ float lm_model(const float *p, int i, const lm_cfg &c, int nodes,
                                          float *d)
{
    if (M == LM_GAUSS_1D) {
        float is2 = 1.0f / (p[2] * p[2]);
        float dx = (float)i - p[1];
        float e = lm_expf<F>(-0.5f * dx * dx * is2);
        float ae = p[0] * e;
        d[0] = e;
        d[1] = ae * dx * is2;
        d[2] = ae * dx * dx * is2 / p[2];
        d[3] = 1.0f;
        return ae + p[3];
    } else if (M == LM_GAUSS_2D) {
        int iy = i / c.size;
        int ix = i - iy * c.size;
        float is2 = 1.0f / (p[3] * p[3]);
        float dx = (float)ix - p[1];
        float dy = (float)iy - p[2];
        float r2 = dx * dx + dy * dy;
        float e = lm_expf<F>(-0.5f * r2 * is2);
        float ae = p[0] * e;
        d[0] = e;
        d[1] = ae * dx * is2;
        d[2] = ae * dy * is2;
        d[3] = ae * r2 * is2 / p[3];
        d[4] = 1.0f;
        return ae + p[4];
    } else if (M == LM_SHM_1D) {
        const float A = p[2], s = p[3], is2 = 1.0f / (s * s);
        const float inv_n = 1.0f / (float)nodes;
        const float *cn = c.nodes + lm_node_off(nodes);
        float u = (float)i - p[1];
        float k = 0.0f, kx = 0.0f, ka = 0.0f, ks = 0.0f;
        for (int j = 0; j < nodes / 2; j++) {
            float cj = __ldg(&cn[j]);
            float w1 = u - A * cj, w2 = u + A * cj;
            float e1 = lm_expf<F>(-0.5f * w1 * w1 * is2);
            float e2 = lm_expf<F>(-0.5f * w2 * w2 * is2);
            float t1 = e1 * w1, t2 = e2 * w2;
            k += e1 + e2;
            kx += t1 + t2;
            ka += (t1 - t2) * cj;
            ks += t1 * w1 + t2 * w2;
        }
        k *= inv_n;
        kx *= inv_n * is2;
        ka *= inv_n * is2;
        ks *= inv_n * is2 / s;
        d[0] = k;
        d[1] = p[0] * kx;
        d[2] = p[0] * ka;
        d[3] = p[0] * ks;
        d[4] = 1.0f;
        return p[0] * k + p[4];
    } else {
        /* SHM_LEGACY (y0, R, A, offset): bare arcsine, offset only outside |y - y0| < R. */
        const float R = p[1], A = p[2];
        float dy = (float)i - p[0];
        float q = R * R - dy * dy;
        d[3] = 1.0f;
        if (!(q > 0.0f)) {
            d[0] = d[1] = d[2] = 0.0f;
            return p[3];
        }
        float rs = 1.0f / sqrtf(q);
        float t = A * rs * rs * rs;
        d[0] = -t * dy;
        d[1] = -t * R;
        d[2] = rs;
        return A * rs + p[3];
    }
}

/*
 * chi2 at p (summed in double as proc/fit's chi2_of_). Returns 1 when an MLE
 * model value was not positive (the Poisson likelihood is undefined: state 3),
 * with chi2 = 0 as there.
 */
template <int M, int E, int F>
__device__ __forceinline__ int lm_chi2(const float *p, const float *y, int ystride, const lm_cfg &c,
                                       int nodes, double *chi2)
{
    constexpr int NP = lm_np<M>::n;
    float d[NP];
    double cs = 0.0;
    for (int i = 0; i < c.n_points; i++) {
        float f = lm_model<M, F>(p, i, c, nodes, d);
        float yi = y[i * ystride];
        float df = f - yi;
        if (E == LM_LSE) {
            cs += (double)(df * df);
        } else {
            if (!(f > 0.0f)) {
                *chi2 = 0.0;
                return 1;
            }
            if (yi != 0.0f)
                cs += 2.0 * (double)(df - yi * lm_logf<F>(f / yi));
            else
                cs += 2.0 * (double)df;
        }
    }
    *chi2 = cs;
    return 0;
}

/*
 * Gradient g (-1/2 dchi2/dp) and the upper triangle of the normal matrix at p,
 * each term formed in float and summed in double, as proc/fit's coefficients_.
 */
template <int M, int E, int F>
__device__ __forceinline__ void lm_coeff(const float *p, const float *y, int ystride,
                                         const lm_cfg &c, int nodes, float *g, float *h)
{
    constexpr int NP = lm_np<M>::n;
    constexpr int NH = NP * (NP + 1) / 2;
    float d[NP];
    double sg[NP], sh[NH];
#pragma unroll
    for (int j = 0; j < NP; j++)
        sg[j] = 0.0;
#pragma unroll
    for (int j = 0; j < NH; j++)
        sh[j] = 0.0;
    for (int i = 0; i < c.n_points; i++) {
        float f = lm_model<M, F>(p, i, c, nodes, d);
        float yi = y[i * ystride];
        float w = 1.0f, yf = 0.0f;
        if (E == LM_MLE) {
            yf = 1.0f - yi / f;
            w = yi / (f * f);
        }
        int k = 0;
#pragma unroll
        for (int a = 0; a < NP; a++) {
            if (E == LM_LSE)
                sg[a] += (double)((yi - f) * d[a]);
            else
                sg[a] += (double)(-d[a] * yf);
#pragma unroll
            for (int b = a; b < NP; b++)
                sh[k++] += (double)(w * d[a] * d[b]);
        }
    }
#pragma unroll
    for (int j = 0; j < NP; j++)
        g[j] = (float)sg[j];
#pragma unroll
    for (int j = 0; j < NH; j++)
        h[j] = (float)sh[j];
}

/* Solve (packed SPD) A x = b by Cholesky in registers; 0, or 1 when not positive definite. */
template <int NP> __device__ __forceinline__ int lm_solve(const float *a, const float *b, float *x)
{
    float l[NP][NP];
    int k = 0;
#pragma unroll
    for (int i = 0; i < NP; i++)
#pragma unroll
        for (int j = i; j < NP; j++)
            l[j][i] = a[k++];
#pragma unroll
    for (int j = 0; j < NP; j++) {
        float s = l[j][j];
#pragma unroll
        for (int m = 0; m < j; m++)
            s -= l[j][m] * l[j][m];
        if (!(s > 0.0f) || !isfinite(s))
            return 1;
        float dj = sqrtf(s);
        l[j][j] = dj;
#pragma unroll
        for (int i = j + 1; i < NP; i++) {
            float t = l[i][j];
#pragma unroll
            for (int m = 0; m < j; m++)
                t -= l[i][m] * l[j][m];
            l[i][j] = t / dj;
        }
    }
    float z[NP];
#pragma unroll
    for (int i = 0; i < NP; i++) {
        float t = b[i];
#pragma unroll
        for (int m = 0; m < i; m++)
            t -= l[i][m] * z[m];
        z[i] = t / l[i][i];
    }
#pragma unroll
    for (int i = NP - 1; i >= 0; i--) {
        float t = z[i];
#pragma unroll
        for (int m = i + 1; m < NP; m++)
            t -= l[m][i] * x[m];
        x[i] = t / l[i][i];
        if (!isfinite(x[i]))
            return 1;
    }
    return 0;
}

/* Diagonal index of parameter j in the packed upper triangle. */
template <int NP> __device__ __forceinline__ int lm_diag(int j)
{
    return j * NP - j * (j - 1) / 2;
}

/*
 * Fit one model: p holds the initial values on entry and the result on return.
 * y[i * ystride] is sample i. proc/fit's (and Cpufit's) LM step for step: lambda
 * starts at 1e-3, damping adds lambda times the largest diagonal seen so far, a
 * better chi2 is accepted and lambda divided by 10, a worse one rejected and
 * lambda multiplied by 10; converged when |chi2_new - chi2| < max(tol,
 * tol*|chi2_new|). States, iteration counts and chi2 on every exit as there:
 * bad input (non-finite values, sigma == 0) keeps the start values.
 * F = 1 uses CUDA's single-precision exp/log (within 2 ulp) instead of the
 * rounded double ones: about 3x shorter per fit, for the frame pipeline, whose
 * latency is one thread's fit; results then differ from the CPU's at ~1e-4 px.
 */
template <int M, int E, int F = 0>
__device__ void lm_fit(float *p, const float *y, int ystride, const lm_cfg &c, int *state_out,
                       int *iters_out, float *chi2_out)
{
    constexpr int NP = lm_np<M>::n;
    constexpr int NH = NP * (NP + 1) / 2;
    float g[NP], h[NH], scale[NP], pn[NP], a[NH], dp[NP];
    double chi2 = CUDART_NAN, chi2n;
    float lambda = 1e-3f;
    int state = LM_CONVERGED, iters = 0, nodes = 0;
    int bad = 0;

#pragma unroll
    for (int j = 0; j < NP; j++) {
        scale[j] = 0.0f;
        bad |= !isfinite(p[j]);
    }
    for (int i = 0; i < c.n_points && !bad; i++)
        bad |= !isfinite(y[i * ystride]);
    if (M != LM_SHM_LEGACY && p[M == LM_GAUSS_1D ? 2 : 3] == 0.0f)
        bad = 1;
    if (bad) {
        *state_out = LM_BAD_INPUT;
        *iters_out = 0;
        *chi2_out = CUDART_NAN_F;
        return;
    }
    if (M == LM_SHM_1D) {
        /* A = 0 is a stationary point of the model (dK/dA = 0): start off it. */
        if (p[2] == 0.0f)
            p[2] = 0.25f * fabsf(p[3]);
        nodes = lm_shm_nodes(c.shm_nodes, p[2], p[3], 0);
    }
    if (lm_chi2<M, E, F>(p, y, ystride, c, nodes, &chi2)) {
        *state_out = LM_NEG_CURV;
        *iters_out = 0;
        *chi2_out = 0.0f;
        return;
    }
    lm_coeff<M, E, F>(p, y, ystride, c, nodes, g, h);
    for (int it = 0; it < c.max_iter; it++) {
#pragma unroll
        for (int j = 0; j < NH; j++)
            a[j] = h[j];
#pragma unroll
        for (int j = 0; j < NP; j++) {
            int dj = lm_diag<NP>(j);
            if (h[dj] > scale[j])
                scale[j] = h[dj];
            a[dj] += scale[j] * lambda;
        }
        if (lm_solve<NP>(a, g, dp)) {
            state = LM_SINGULAR;
            iters = it;
            break;
        }
#pragma unroll
        for (int j = 0; j < NP; j++)
            pn[j] = p[j] + dp[j];
        if (M == LM_SHM_1D)
            nodes = lm_shm_nodes(c.shm_nodes, pn[2], pn[3], nodes);
        int badn = lm_chi2<M, E, F>(pn, y, ystride, c, nodes, &chi2n);
        iters = it + 1;
        if (badn) {
            state = LM_NEG_CURV;
            break;
        }
        double tol = (double)c.tol;
        int conv = fabs(chi2n - chi2) < fmax(tol, tol * fabs(chi2n));
        if (chi2n < chi2) {
#pragma unroll
            for (int j = 0; j < NP; j++)
                p[j] = pn[j];
            chi2 = chi2n;
            lm_coeff<M, E, F>(p, y, ystride, c, nodes, g, h);
            lambda *= 0.1f;
        } else {
            lambda *= 10.0f;
        }
        if (conv) {
            state = LM_CONVERGED;
            break;
        }
        if (it + 1 == c.max_iter)
            state = LM_MAX_ITER;
    }
    *state_out = state;
    *iters_out = iters;
    *chi2_out = (float)chi2;
}

#endif
