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

#include <stdint.h>

#define RTD_CUDA_MAX_NODES 256

enum { LM_GAUSS_1D = 0, LM_GAUSS_2D = 1, LM_SHM_1D = 2, LM_SHM_LEGACY = 3 };
enum { LM_LSE = 0, LM_MLE = 1 };
enum { LM_CONVERGED = 0, LM_MAX_ITER = 1, LM_SINGULAR = 2, LM_NEG_CURV = 3 };

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
    int shm_nodes;
    const float *nodes; /* device: Gauss-Chebyshev c_j = cos((j - 1/2) pi / N), j = 1..N */
};

/* Model value and derivatives at sample i (x = i; GAUSS_2D: x = i % size, y = i / size). */
template <int M>
__device__ __forceinline__ float lm_model(const float *p, int i, const lm_cfg &c, float *d)
{
    if (M == LM_GAUSS_1D) {
        float dx = (float)i - p[1];
        float is2 = 1.0f / (p[2] * p[2]);
        float e = __expf(-0.5f * dx * dx * is2);
        float ae = p[0] * e;
        d[0] = e;
        d[1] = ae * dx * is2;
        d[2] = ae * dx * dx * is2 / p[2];
        d[3] = 1.0f;
        return p[3] + ae;
    } else if (M == LM_GAUSS_2D) {
        int iy = i / c.size;
        int ix = i - iy * c.size;
        float dx = (float)ix - p[1];
        float dy = (float)iy - p[2];
        float is2 = 1.0f / (p[3] * p[3]);
        float r2 = dx * dx + dy * dy;
        float e = __expf(-0.5f * r2 * is2);
        float ae = p[0] * e;
        d[0] = e;
        d[1] = ae * dx * is2;
        d[2] = ae * dy * is2;
        d[3] = ae * r2 * is2 / p[3];
        d[4] = 1.0f;
        return p[4] + ae;
    } else if (M == LM_SHM_1D) {
        float u = (float)i - p[1];
        float A = p[2];
        float s = p[3];
        float is2 = 1.0f / (s * s);
        float k = 0.0f, kx = 0.0f, ka = 0.0f, ks = 0.0f;
        for (int j = 0; j < c.shm_nodes; j++) {
            float cj = __ldg(&c.nodes[j]);
            float w = u - A * cj;
            float e = __expf(-0.5f * w * w * is2);
            k += e;
            kx += e * w;
            ka += e * w * cj;
            ks += e * w * w;
        }
        float inv = 1.0f / (float)c.shm_nodes;
        float amp = p[0];
        d[0] = k * inv;
        d[1] = amp * kx * is2 * inv;
        d[2] = amp * ka * is2 * inv;
        d[3] = amp * ks * is2 / s * inv;
        d[4] = 1.0f;
        return p[4] + amp * k * inv;
    } else {
        /* SHM_LEGACY (y0, R, A, offset): bare arcsine, offset only outside |y - y0| < R. */
        float dy = (float)i - p[0];
        float R = p[1];
        float q = R * R - dy * dy;
        d[3] = 1.0f;
        if (q <= 0.0f) {
            d[0] = d[1] = d[2] = 0.0f;
            return p[3];
        }
        float rs = rsqrtf(q);
        float t = p[2] * rs * rs * rs;
        d[0] = t * dy;
        d[1] = -t * R;
        d[2] = rs;
        return p[2] * rs + p[3];
    }
}

/*
 * One pass over the samples: chi2, gradient g (the right-hand side, -1/2 dchi2/dp)
 * and the upper triangle of the normal matrix. Returns 1 when an MLE model value
 * was not positive (the Poisson likelihood is undefined there: state 3).
 */
template <int M, int E>
__device__ __forceinline__ int lm_accumulate(const float *p, const float *y, int ystride,
                                             const lm_cfg &c, float *chi2, float *g, float *h)
{
    constexpr int NP = lm_np<M>::n;
    float d[NP];
    float cs = 0.0f;
    int bad = 0;
#pragma unroll
    for (int j = 0; j < NP; j++)
        g[j] = 0.0f;
#pragma unroll
    for (int j = 0; j < NP * (NP + 1) / 2; j++)
        h[j] = 0.0f;
    for (int i = 0; i < c.n_points; i++) {
        float f = lm_model<M>(p, i, c, d);
        float yi = y[i * ystride];
        float r, w;
        if (E == LM_LSE) {
            r = yi - f;
            cs += r * r;
            w = 1.0f;
        } else {
            if (f <= 0.0f) {
                bad = 1;
                f = 1e-30f;
            }
            float inv = 1.0f / f;
            if (yi > 0.0f)
                cs += 2.0f * (f - yi - yi * __logf(f / yi));
            else
                cs += 2.0f * f;
            r = yi * inv - 1.0f;
            w = yi * inv * inv;
        }
        int k = 0;
#pragma unroll
        for (int a = 0; a < NP; a++) {
            g[a] += r * d[a];
            float wd = w * d[a];
#pragma unroll
            for (int b = a; b < NP; b++)
                h[k++] += wd * d[b];
        }
    }
    *chi2 = cs;
    return bad;
}

/* Solve (packed SPD) A x = b by Cholesky in registers; 0 or 1 when A is not positive definite. */
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
        if (!(s > 0.0f))
            return 1;
        float dj = sqrtf(s);
        l[j][j] = dj;
        float idj = 1.0f / dj;
#pragma unroll
        for (int i = j + 1; i < NP; i++) {
            float t = l[i][j];
#pragma unroll
            for (int m = 0; m < j; m++)
                t -= l[i][m] * l[j][m];
            l[i][j] = t * idj;
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
    }
#pragma unroll
    for (int i = 0; i < NP; i++)
        if (!isfinite(x[i]))
            return 1;
    return 0;
}

/* Diagonal index of parameter j in the packed upper triangle. */
template <int NP> __device__ __forceinline__ int lm_diag(int j)
{
    return j * NP - j * (j - 1) / 2;
}

/*
 * Fit one model: p holds the initial values on entry and the result on return.
 * y[i * ystride] is sample i. Gpufit's LM: lambda starts at 1e-3, damping adds
 * lambda times the largest diagonal seen so far, a better chi2 is accepted and
 * lambda divided by 10, a worse one rejected and lambda multiplied by 10; the
 * fit has converged when |chi2_new - chi2| < tol * max(1, chi2_new).
 */
template <int M, int E>
__device__ void lm_fit(float *p, const float *y, int ystride, const lm_cfg &c, int *state_out,
                       int *iters_out, float *chi2_out)
{
    constexpr int NP = lm_np<M>::n;
    constexpr int NH = NP * (NP + 1) / 2;
    float g[NP], h[NH], scale[NP], pn[NP], gn[NP], hn[NH], a[NH], dp[NP];
    float chi2, chi2n;
    float lambda = 1e-3f;
    int state = LM_MAX_ITER;
    int it = 0;

#pragma unroll
    for (int j = 0; j < NP; j++)
        scale[j] = 0.0f;
    if (lm_accumulate<M, E>(p, y, ystride, c, &chi2, g, h) && E == LM_MLE) {
        *state_out = LM_NEG_CURV;
        *iters_out = 0;
        *chi2_out = chi2;
        return;
    }
    for (it = 0; it < c.max_iter; it++) {
#pragma unroll
        for (int j = 0; j < NH; j++)
            a[j] = h[j];
#pragma unroll
        for (int j = 0; j < NP; j++) {
            int dj = lm_diag<NP>(j);
            scale[j] = fmaxf(scale[j], h[dj]);
            a[dj] += scale[j] * lambda;
        }
        if (lm_solve<NP>(a, g, dp)) {
            state = LM_SINGULAR;
            break;
        }
#pragma unroll
        for (int j = 0; j < NP; j++)
            pn[j] = p[j] + dp[j];
        int bad = lm_accumulate<M, E>(pn, y, ystride, c, &chi2n, gn, hn);
        if (bad && E == LM_MLE) {
            state = LM_NEG_CURV;
            break;
        }
        int conv = fabsf(chi2n - chi2) < c.tol * fmaxf(1.0f, chi2n);
        if (chi2n < chi2) {
#pragma unroll
            for (int j = 0; j < NP; j++) {
                p[j] = pn[j];
                g[j] = gn[j];
            }
#pragma unroll
            for (int j = 0; j < NH; j++)
                h[j] = hn[j];
            chi2 = chi2n;
            lambda *= 0.1f;
        } else {
            lambda *= 10.0f;
        }
        if (conv) {
            state = LM_CONVERGED;
            it++;
            break;
        }
    }
    *state_out = state;
    *iters_out = it;
    *chi2_out = chi2;
}

#endif
