/* SPDX-License-Identifier: MIT */
/*
 * The frame pipeline on the GPU, batch by batch. Per batch of B frames, on the
 * batch's own stream:
 *
 *   H2D frames -> blur_h -> blur_v -> stats (radix-select median and MAD of the
 *   subsample) -> peaks (threshold, local maximum, min_pixels; atomic append)
 *   -> frame_fit (one block per frame: sort the peaks brightest first, ROIs,
 *   initial guesses, one fit per thread, overlap flags and de-blending refits)
 *   -> D2H per-frame and per-ion records
 *
 * and the host turns the records into struct rtd_pipe_ion with the CPU
 * pipeline's final steps (plausibility flags, duplicate removal). Every step
 * mirrors proc/pipeline/rtd_pipeline.c; the blur uses round-to-nearest adds and
 * multiplies in the CPU's order and this file is compiled without FMA
 * contraction, so the blurred image, the threshold and hence the detections
 * are the CPU's bit for bit; the fits agree to float rounding.
 */
#include "rtd_fit_cuda.h"
#include "rtd_cuda_internal.h"
#include "lm_kernel.cuh"

#include "rtd_fit.h"
extern "C" {
#include "rtd_pipeline.h"
}
extern "C" {
#include "rtd_util.h"
}

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PIPE_MAX_RADIUS 32 /* as rtd_pipeline.c */
#define PIPE_MAX_PEAKS  4096
#define MAX_BATCH       64
#define MAX_INFLIGHT    8

#define PIPE_HBINS 1024 /* rtd_pipeline.c: PIPE_HBINS_CAP / 4 */

/* Everything the kernels need, passed by value. */
struct kparams {
    int W, H;             /* frame */
    int wx0, wy0, ww, wh; /* analysis window (full pixels) */
    int bin, bw, bh;      /* detection binning and the binned window */
    float wxk[PIPE_MAX_RADIUS + 1], wyk[PIPE_MAX_RADIUS + 1];
    int rx, ry; /* blur half-widths (binned pixels) */
    int subsample;
    float k, threshold, min_excess;
    int radius_x, radius_y, min_pixels; /* radius in binned pixels */
    int roi_w, roi_h;
    float sigma_guess, blur_x, dup_dist;
    int deblend, max_ions, estimator, analysis;
    lm_cfg c2d, c1d, cshm;
};

/* One frame's detection figures (device -> host); med, mad and thr in binned units. */
struct frame_out {
    float med, mad, thr;
    int n_found; /* local maxima found (may exceed PIPE_MAX_PEAKS: truncated) */
    int n_fit;   /* ROIs fitted */
    int pad[3];
};

/* One ion (device -> host). Static: p = GAUSS_2D params; shm: p = GAUSS_1D, v = SHM_1D. */
struct ion_out {
    float p[5], v[5];
    float peak_value;
    float chi2, chi2v;
    int state, statev, iters, itersv;
    int peak_x, peak_y, roi_x0, roi_y0, flags;
};

/* ---- detection kernels ---------------------------------------------------------------------- */

/* scipy's "reflect" edge as rtd_pipeline.c's blur_row/blur_col, clamped for tiny windows. */
__device__ __forceinline__ int reflect(int j, int n)
{
    j = j < 0 ? -j - 1 : (j >= n ? 2 * n - 1 - j : j);
    return j < 0 ? 0 : (j >= n ? n - 1 : j);
}

/* Binned pixel (x, y) of the window as float: a u16, or the integer sum of 2x2 u16. */
__device__ __forceinline__ float binned(const kparams &kp, const uint16_t *frame, int x, int y)
{
    if (kp.bin == 1)
        return (float)frame[(size_t)(kp.wy0 + y) * kp.W + kp.wx0 + x];
    const uint16_t *a = frame + (size_t)(kp.wy0 + 2 * y) * kp.W + kp.wx0 + 2 * x;
    const uint16_t *b = a + kp.W;
    return (float)((uint32_t)a[0] + a[1] + b[0] + b[1]);
}

__global__ void k_blur_h(kparams kp, const uint16_t *frames, float *hbl)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y, f = blockIdx.z;
    if (x >= kp.bw)
        return;
    const uint16_t *frame = frames + (size_t)f * kp.W * kp.H;
    const int n = kp.bw;
    float acc = __fmul_rn(kp.wxk[0], binned(kp, frame, x, y));
    for (int k = 1; k <= kp.rx; k++) {
        float a = binned(kp, frame, reflect(x - k, n), y);
        float b = binned(kp, frame, reflect(x + k, n), y);
        acc = __fadd_rn(acc, __fmul_rn(kp.wxk[k], __fadd_rn(a, b)));
    }
    hbl[(size_t)f * kp.bw * kp.bh + (size_t)y * kp.bw + x] = acc;
}

__global__ void k_blur_v(kparams kp, const float *hbl, float *blur)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y, f = blockIdx.z;
    if (x >= kp.bw)
        return;
    const float *src = hbl + (size_t)f * kp.bw * kp.bh;
    const int h = kp.bh;
    float acc = __fmul_rn(src[(size_t)y * kp.bw + x], kp.wyk[0]);
    for (int k = 1; k <= kp.ry; k++) {
        float a = src[(size_t)reflect(y - k, h) * kp.bw + x];
        float b = src[(size_t)reflect(y + k, h) * kp.bw + x];
        acc = __fadd_rn(acc, __fmul_rn(__fadd_rn(a, b), kp.wyk[k]));
    }
    blur[(size_t)f * kp.bw * kp.bh + (size_t)y * kp.bw + x] = acc;
}

/* Sample i of the background subsample (raster order, as the CPU gathers it), or |v - med|. */
struct sampler {
    const float *b;
    int bw, s, nx, n0;
    __device__ float at(int i, float med, int dev) const
    {
        float v = n0 ? b[(size_t)(s / 2 + (i / nx) * s) * bw + s / 2 + (i % nx) * s] : b[0];
        return dev ? fabsf(__fsub_rn(v, med)) : v;
    }
};

/* Exact k-th smallest by radix selection on the float bits (values >= 0 order as their bits). */
__device__ float block_select(const sampler &sp, int n, unsigned k, float med, int dev,
                              unsigned *hist, unsigned *sh)
{
    uint32_t prefix = 0, mask = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = threadIdx.x; i < 256; i += blockDim.x)
            hist[i] = 0;
        __syncthreads();
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            uint32_t u = __float_as_uint(sp.at(i, med, dev));
            if ((u & mask) == prefix)
                atomicAdd(&hist[(u >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            unsigned cum = 0;
            int d = 0;
            for (; d < 255; d++) {
                if (cum + hist[d] > k)
                    break;
                cum += hist[d];
            }
            k -= cum;
            sh[0] = prefix | ((uint32_t)d << shift);
            sh[1] = k;
        }
        __syncthreads();
        prefix = sh[0];
        k = sh[1];
        mask |= 255u << shift;
        __syncthreads();
    }
    return __uint_as_float(prefix);
}

/*
 * rtd_pipeline.c's hist_kth(): the k-th smallest interpolated inside its bin of a
 * PIPE_HBINS histogram (bin width hw from lo); 0, or -1 when it falls in an end
 * bin. Counts are order-free, so shared-memory atomics give the CPU's histogram.
 */
__device__ int block_hist_kth(const sampler &sp, int n, unsigned k, float lo, float hw, float med,
                              int dev, unsigned *hist, float *out, float *sh_out, int *sh_rc)
{
    const float inv = 1.0f / hw, top = (float)(PIPE_HBINS - 1);
    for (int i = threadIdx.x; i < PIPE_HBINS; i += blockDim.x)
        hist[i] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float b = __fmul_rn(__fsub_rn(sp.at(i, med, dev), lo), inv);
        b = b < 0.0f ? 0.0f : (b > top ? top : b);
        atomicAdd(&hist[(int)b], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned cum = 0;
        int rc = -1;
        for (int b = 0; b < PIPE_HBINS; b++) {
            if (cum + hist[b] > k) {
                if (b != 0 && b != PIPE_HBINS - 1) {
                    *sh_out = __fadd_rn(
                        lo, __fmul_rn(
                                hw, __fadd_rn((float)b, __fdiv_rn(__fadd_rn((float)(k - cum), 0.5f),
                                                                  (float)hist[b]))));
                    rc = 0;
                }
                break;
            }
            cum += hist[b];
        }
        *sh_rc = rc;
    }
    __syncthreads();
    *out = *sh_out;
    int rc = *sh_rc;
    __syncthreads();
    return rc;
}

/* Rank sort of m <= 63 floats in shared memory (equal values keep their order). */
__device__ void small_sort(const float *in, float *out, int m)
{
    for (int i = threadIdx.x; i < m; i += blockDim.x) {
        float v = in[i];
        int r = 0;
        for (int j = 0; j < m; j++)
            r += in[j] < v || (in[j] == v && j < i);
        out[r] = v;
    }
    __syncthreads();
}

/* Background median and MAD as rtd_pipeline.c's background_stats(), one block per frame. */
__global__ void k_stats(kparams kp, const float *blur, frame_out *fo, int *npk)
{
    __shared__ unsigned hist[PIPE_HBINS];
    __shared__ unsigned sh[2];
    __shared__ float g[64], gs[64], sh_out;
    __shared__ int sh_rc;
    const int f = blockIdx.x, s = kp.subsample;
    sampler sp;
    sp.b = blur + (size_t)f * kp.bw * kp.bh;
    sp.bw = kp.bw;
    sp.s = s;
    sp.nx = kp.bw > s / 2 ? (kp.bw - s / 2 + s - 1) / s : 0;
    int ny = kp.bh > s / 2 ? (kp.bh - s / 2 + s - 1) / s : 0;
    int n = sp.nx * ny;
    sp.n0 = n;
    if (n == 0)
        n = 1; /* the CPU falls back to the first pixel */
    const int m = n < 63 ? n : 63;
    for (int i = threadIdx.x; i < m; i += blockDim.x)
        g[i] = sp.at((int)((size_t)i * n / m), 0.0f, 0);
    __syncthreads();
    small_sort(g, gs, m);
    const float g_med = gs[m / 2];
    for (int i = threadIdx.x; i < m; i += blockDim.x)
        g[i] = fabsf(__fsub_rn(gs[i], g_med));
    __syncthreads();
    small_sort(g, gs, m);
    const float g_mad = gs[m / 2] > 1e-3f ? gs[m / 2] : 1e-3f;
    const float hw = __fdiv_rn(g_mad, 16.0f);
    float med, dev;
    const unsigned k = (unsigned)n / 2;
    if (block_hist_kth(sp, n, k, __fsub_rn(g_med, __fmul_rn(hw, (float)(PIPE_HBINS / 2))), hw, 0.0f,
                       0, hist, &med, &sh_out, &sh_rc) < 0)
        med = block_select(sp, n, k, 0.0f, 0, hist, sh);
    if (block_hist_kth(sp, n, k, -hw, hw, med, 1, hist, &dev, &sh_out, &sh_rc) < 0)
        dev = block_select(sp, n, k, med, 1, hist, sh);
    if (threadIdx.x == 0) {
        float mad = dev < 0 ? 0 : dev;
        const float b2 = (float)(kp.bin * kp.bin);
        float excess = kp.threshold > 0 ? kp.threshold : __fdiv_rn(__fmul_rn(kp.k, mad), b2);
        if (!(kp.threshold > 0) && excess < kp.min_excess)
            excess = kp.min_excess;
        fo[f].med = med;
        fo[f].mad = mad;
        fo[f].thr = __fadd_rn(med, __fmul_rn(excess, b2));
        npk[f] = 0;
    }
}

__global__ void k_peaks(kparams kp, const float *blur, const frame_out *fo, int *npk,
                        unsigned long long *keys)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y, f = blockIdx.z;
    if (x >= kp.bw)
        return;
    const int w = kp.bw, h = kp.bh;
    const float *b = blur + (size_t)f * w * h;
    const float thr = fo[f].thr;
    const float v = b[(size_t)y * w + x];
    if (!(v > thr))
        return;
    int y0 = max(y - kp.radius_y, 0), y1 = min(y + kp.radius_y, h - 1);
    int x0 = max(x - kp.radius_x, 0), x1 = min(x + kp.radius_x, w - 1);
    for (int yy = y0; yy <= y1; yy++)
        for (int xx = x0; xx <= x1; xx++) {
            float u = b[(size_t)yy * w + xx];
            if (u > v || (u == v && (yy < y || (yy == y && xx < x))))
                return;
        }
    int cnt = 0;
    for (int yy = y - 1; yy <= y + 1; yy++)
        for (int xx = x - 1; xx <= x + 1; xx++)
            if (yy >= 0 && yy < h && xx >= 0 && xx < w && b[(size_t)yy * w + xx] > thr)
                cnt++;
    if (cnt < kp.min_pixels)
        return;
    int i = atomicAdd(&npk[f], 1);
    if (i < PIPE_MAX_PEAKS)
        keys[(size_t)f * PIPE_MAX_PEAKS + i] =
            ((unsigned long long)(~__float_as_uint(v)) << 32) | (unsigned)(y * w + x);
}

__device__ int roi_origin(int peak, int size, int n, int *shifted)
{
    int o = peak - size / 2;
    *shifted = 0;
    if (o < 0) {
        o = 0;
        *shifted = 1;
    }
    if (o > n - size) {
        o = n - size;
        *shifted = 1;
    }
    return o;
}

__device__ void peak_centroid(const float *b, int w, int h, int x, int y, float base, float *cx,
                              float *cy)
{
    double sw = 0, sx = 0, sy = 0;
    for (int yy = y - 1; yy <= y + 1; yy++) {
        if (yy < 0 || yy >= h)
            continue;
        for (int xx = x - 1; xx <= x + 1; xx++) {
            if (xx < 0 || xx >= w)
                continue;
            double v = (double)b[(size_t)yy * w + xx] - (double)base;
            if (v <= 0)
                continue;
            sw += v;
            sx += v * xx;
            sy += v * yy;
        }
    }
    *cx = sw > 0 ? (float)(sx / sw) : (float)x;
    *cy = sw > 0 ? (float)(sy / sw) : (float)y;
}

__device__ int fit_outside(double x0, double sigma, double amp, int size)
{
    return !(x0 >= -0.5 && x0 <= size - 0.5) || !(sigma > 0.3 && sigma < size) || !(amp > 0);
}

template <int M>
__device__ void fit_one(const kparams &kp, const lm_cfg &c, float *p, const float *y, int *st,
                        int *it, float *cs)
{
    if (kp.estimator)
        lm_fit<M, LM_MLE, 1>(p, y, 1, c, st, it, cs);
    else
        lm_fit<M, LM_LSE, 1>(p, y, 1, c, st, it, cs);
}

/*
 * One block per frame: sort the peaks (brightest first, then raster order, as
 * the CPU's qsort), then ROIs, guesses and fits with one thread per ion.
 */
__global__ void __launch_bounds__(128)
    k_frame_fit(kparams kp, const uint16_t *frames, const float *blur, frame_out *fo,
                const int *npk, unsigned long long *keys, ion_out *io, float *roi, float *roi2)
{
    __shared__ unsigned long long sk[PIPE_MAX_PEAKS];
    const int f = blockIdx.x, t = threadIdx.x;
    const int nfound = npk[f];
    const int n = min(nfound, PIPE_MAX_PEAKS);
    int n2 = 1;
    while (n2 < n)
        n2 <<= 1;
    for (int i = t; i < n2; i += blockDim.x)
        sk[i] = i < n ? keys[(size_t)f * PIPE_MAX_PEAKS + i] : ~0ull;
    __syncthreads();
    for (int k = 2; k <= n2; k <<= 1)
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = t; i < n2; i += blockDim.x) {
                int l = i ^ j;
                if (l > i) {
                    unsigned long long a = sk[i], b = sk[l];
                    bool up = (i & k) == 0;
                    if ((a > b) == up) {
                        sk[i] = b;
                        sk[l] = a;
                    }
                }
            }
            __syncthreads();
        }
    const int nfit = min(n, kp.max_ions);
    if (t == 0) {
        fo[f].n_found = nfound;
        fo[f].n_fit = nfit;
    }
    const int w = kp.bw, h = kp.bh;
    const float *b = blur + (size_t)f * w * h;
    const uint16_t *frame = frames + (size_t)f * kp.W * kp.H;
    const float b2 = (float)(kp.bin * kp.bin);
    const float bg = fo[f].med / b2; /* the CPU's st.background */
    const int npx = kp.roi_w * kp.roi_h;
    ion_out *ions = io + (size_t)f * kp.max_ions;
    float *rf = roi + (size_t)f * kp.max_ions * npx;
    float *rf2 = roi2 + (size_t)f * kp.max_ions * npx;

    for (int i = t; i < nfit; i += blockDim.x) {
        unsigned long long key = sk[i];
        float value = __uint_as_float(~(uint32_t)(key >> 32));
        int pxw = (int)((uint32_t)key % (uint32_t)w), pyw = (int)((uint32_t)key / (uint32_t)w);
        /* rtd_pipeline.c's peak_position(): centroid in binned pixels, then full pixels. */
        float cx, cy;
        peak_centroid(b, w, h, pxw, pyw, bg * b2, &cx, &cy);
        const float fx = (float)kp.bin * cx + 0.5f * (float)(kp.bin - 1) + (float)kp.wx0;
        const float fy = (float)kp.bin * cy + 0.5f * (float)(kp.bin - 1) + (float)kp.wy0;
        int px = __float2int_rn(fx), py = __float2int_rn(fy), shx, shy;
        int ox = roi_origin(px, kp.roi_w, kp.W, &shx), oy = roi_origin(py, kp.roi_h, kp.H, &shy);
        ion_out *ion = &ions[i];
        ion->peak_value = value;
        ion->peak_x = px;
        ion->peak_y = py;
        ion->roi_x0 = ox;
        ion->roi_y0 = oy;
        ion->flags = (shx || shy) ? RTD_ION_EDGE : 0;
        float *d = rf + (size_t)i * npx;
        if (kp.analysis == RTD_PIPE_STATIC) {
            const int S = kp.roi_w;
            for (int r = 0; r < S; r++)
                for (int q = 0; q < S; q++)
                    d[r * S + q] = (float)frame[(size_t)(oy + r) * kp.W + ox + q];
            const float sb2 = kp.blur_x * kp.blur_x + (b2 - 1.0f) / 12.0f;
            const float sg2 = kp.sigma_guess * kp.sigma_guess;
            const float amp_scale = (sg2 + sb2) / sg2;
            float p[5];
            p[0] = (value / b2 - bg) * amp_scale;
            p[1] = fx - (float)ox;
            p[2] = fy - (float)oy;
            p[3] = kp.sigma_guess;
            p[4] = bg;
            fit_one<LM_GAUSS_2D>(kp, kp.c2d, p, d, &ion->state, &ion->iters, &ion->chi2);
            for (int j = 0; j < 5; j++)
                ion->p[j] = p[j];
        } else {
            const int W = kp.roi_w, H = kp.roi_h;
            const double sq2pi = 2.5066282746310002;
            float *hp = d, *vp = d + W;
            for (int q = 0; q < W; q++)
                hp[q] = 0;
            for (int r = 0; r < H; r++) {
                const uint16_t *src = frame + (size_t)(oy + r) * kp.W + ox;
                float s = 0;
                for (int q = 0; q < W; q++) {
                    hp[q] += (float)src[q];
                    s += (float)src[q];
                }
                vp[r] = s;
            }
            double hoff = (double)bg * H, voff = (double)bg * W, harea = 0, varea = 0, vm = 0,
                   vv = 0;
            for (int q = 0; q < W; q++)
                harea += (double)hp[q] - hoff;
            for (int r = 0; r < H; r++) {
                double e = (double)vp[r] - voff;
                if (e > 0) {
                    varea += e;
                    vm += e * r;
                }
            }
            double vmean = varea > 0 ? vm / varea : (double)(fy - (float)oy);
            for (int r = 0; r < H; r++) {
                double e = (double)vp[r] - voff;
                if (e > 0)
                    vv += e * (r - vmean) * (r - vmean);
            }
            double var = varea > 0 ? vv / varea : 0;
            double sg = kp.sigma_guess;
            double a2 = 2.0 * (var - sg * sg);
            double a0 = a2 > 1.0 ? sqrt(a2) : 1.0;
            if (a0 > H / 2.0)
                a0 = H / 2.0;
            float hi[4], vi[5];
            hi[0] =
                (float)(harea > 0 ? harea / (sq2pi * sg) : (double)((value / b2 - bg) * (float)H));
            hi[1] = fx - (float)ox;
            hi[2] = (float)sg;
            hi[3] = (float)hoff;
            vi[0] =
                (float)(varea > 0 ? varea / (sq2pi * sg) : (double)((value / b2 - bg) * (float)W));
            vi[1] = fy - (float)oy;
            vi[2] = (float)a0;
            vi[3] = (float)sg;
            vi[4] = (float)voff;
            fit_one<LM_GAUSS_1D>(kp, kp.c1d, hi, hp, &ion->state, &ion->iters, &ion->chi2);
            fit_one<LM_SHM_1D>(kp, kp.cshm, vi, vp, &ion->statev, &ion->itersv, &ion->chi2v);
            for (int j = 0; j < 4; j++)
                ion->p[j] = hi[j];
            ion->p[4] = 0;
            for (int j = 0; j < 5; j++)
                ion->v[j] = vi[j];
        }
    }
    if (kp.analysis != RTD_PIPE_STATIC)
        return;
    __syncthreads();

    /* Overlap flags and de-blending refits, from every ion's first-pass result. */
    const int S = kp.roi_w;
    for (int i = t; i < nfit; i += blockDim.x) {
        ion_out *a = &ions[i];
        double ax = (double)a->p[1] + a->roi_x0, ay = (double)a->p[2] + a->roi_y0;
        int overlap = 0;
        for (int j = 0; j < nfit && !overlap; j++) {
            if (j == i)
                continue;
            const ion_out *bj = &ions[j];
            double bx = (double)bj->p[1] + bj->roi_x0, by = (double)bj->p[2] + bj->roi_y0;
            double bs = fabs((double)bj->p[3]);
            double reach = S / 2.0 + 2.0 * bs;
            if (fabs(bx - (a->roi_x0 + S / 2.0 - 0.5)) < reach &&
                fabs(by - (a->roi_y0 + S / 2.0 - 0.5)) < reach &&
                hypot(bx - ax, by - ay) >= (double)kp.dup_dist)
                overlap = 1;
        }
        a->v[0] = a->p[0]; /* first pass kept in v (static analysis does not use v) */
        for (int j = 1; j < 5; j++)
            a->v[j] = a->p[j];
        a->statev = overlap;
    }
    __syncthreads();
    for (int i = t; i < nfit; i += blockDim.x) {
        ion_out *a = &ions[i];
        int overlap = a->statev;
        a->statev = 0;
        if (overlap)
            a->flags |= RTD_ION_OVERLAP;
        if (!overlap || !kp.deblend)
            continue;
        double ax = (double)a->v[1] + a->roi_x0, ay = (double)a->v[2] + a->roi_y0;
        float *d = rf2 + (size_t)i * npx;
        const float *d0 = rf + (size_t)i * npx;
        for (int k = 0; k < npx; k++)
            d[k] = d0[k];
        for (int j = 0; j < nfit; j++) {
            const ion_out *bj = &ions[j];
            double bamp = bj->v[0], bs = fabs((double)bj->v[3]);
            double bx = (double)bj->v[1] + bj->roi_x0, by = (double)bj->v[2] + bj->roi_y0;
            if (j == i || !(bamp > 0) || !(bs > 0.3) || bs > S ||
                hypot(bx - ax, by - ay) < (double)kp.dup_dist)
                continue;
            double inv = -0.5 / (bs * bs);
            for (int r = 0; r < S; r++) {
                double dy = a->roi_y0 + r - by;
                for (int q = 0; q < S; q++) {
                    double dx = a->roi_x0 + q - bx;
                    d[r * S + q] -= (float)(bamp * exp((dx * dx + dy * dy) * inv));
                }
            }
        }
        float p[5];
        for (int j = 0; j < 5; j++)
            p[j] = a->v[j];
        int st, it;
        float cs;
        fit_one<LM_GAUSS_2D>(kp, kp.c2d, p, d, &st, &it, &cs);
        a->itersv = it;
        if (st != 0 || fit_outside(p[1], p[3], p[0], S))
            continue;
        for (int j = 0; j < 5; j++)
            a->p[j] = p[j];
        a->chi2 = cs;
        a->state = st;
        a->iters += it;
    }
}

/* ---- host side ----------------------------------------------------------------------------- */

enum { B_FILLING = 0, B_INFLIGHT = 1, B_DONE = 2 };

struct batch {
    cudaStream_t stream;
    cudaEvent_t done;
    uint16_t *h_frames, *d_frames;
    float *d_hbl, *d_blur, *d_roi, *d_roi2;
    unsigned long long *d_keys;
    int *d_npk;
    frame_out *d_fo, *h_fo;
    ion_out *d_io, *h_io;
    int state, n, next;
    uint64_t ids[MAX_BATCH], t_submit[MAX_BATCH];
    uint64_t t_launch, t_done;
};

struct rtd_cuda_pipe {
    struct rtd_pipe_config cfg;
    struct rtd_cuda_pipe_opts o;
    kparams kp;
    int W, H, max_ions;
    float knorm; /* sqrt(sum of squared weights) of the 2-D blur kernel, as rtd_pipeline.c */
    float *d_nodes;
    struct batch b[MAX_INFLIGHT];
    int fill, head, pending;
};

extern "C" void rtd_cuda_pipe_opts_default(struct rtd_cuda_pipe_opts *o)
{
    memset(o, 0, sizeof *o);
    o->batch_frames = 4;
    o->n_inflight = 4;
    o->max_wait_ns = 250000;
}

/* The CPU pipeline's blur kernel (rtd_pipeline.c: blur_kernel), weights computed in double. */
static int blur_weights(float sigma, float *w)
{
    if (sigma <= 0.0f) {
        w[0] = 1.0f;
        return 0;
    }
    int r = (int)ceilf(2.5f * sigma);
    if (r > PIPE_MAX_RADIUS)
        r = PIPE_MAX_RADIUS;
    double sum = 0, tmp[PIPE_MAX_RADIUS + 1];
    for (int k = 0; k <= r; k++) {
        tmp[k] = exp(-0.5 * (double)k * k / ((double)sigma * (double)sigma));
        sum += k ? 2 * tmp[k] : tmp[k];
    }
    for (int k = 0; k <= r; k++)
        w[k] = (float)(tmp[k] / sum);
    return r;
}

static void lm_cfg_from(lm_cfg *c, int model, int n_points, int max_iter, const float *nodes)
{
    struct rtd_fit_opts o;
    rtd_fit_opts_default(&o, (enum rtd_fit_model)model, n_points);
    c->n_points = n_points;
    c->size = (int)lround(sqrt((double)n_points));
    c->max_iter = max_iter;
    c->tol = o.tol > 0.0f ? o.tol : 1e-4f;
    c->shm_nodes = (int)o.shm_nodes;
    c->nodes = nodes;
}

static void batch_free(struct batch *b)
{
    if (b->stream)
        cudaStreamDestroy(b->stream);
    if (b->done)
        cudaEventDestroy(b->done);
    cudaFreeHost(b->h_frames);
    cudaFreeHost(b->h_fo);
    cudaFreeHost(b->h_io);
    cudaFree(b->d_frames);
    cudaFree(b->d_hbl);
    cudaFree(b->d_blur);
    cudaFree(b->d_roi);
    cudaFree(b->d_roi2);
    cudaFree(b->d_keys);
    cudaFree(b->d_npk);
    cudaFree(b->d_fo);
    cudaFree(b->d_io);
    memset(b, 0, sizeof *b);
}

static int batch_alloc(struct rtd_cuda_pipe *p, struct batch *b)
{
    const size_t B = (size_t)p->o.batch_frames, fr = (size_t)p->W * (size_t)p->H;
    const size_t win = (size_t)p->kp.bw * (size_t)p->kp.bh;
    const size_t npx = (size_t)p->cfg.roi_w * (size_t)p->cfg.roi_h;
    const size_t ni = B * (size_t)p->max_ions;
    RTD_CUDA_TRY(cudaStreamCreateWithFlags(&b->stream, cudaStreamNonBlocking));
    RTD_CUDA_TRY(cudaEventCreateWithFlags(&b->done, cudaEventDisableTiming));
    RTD_CUDA_TRY(cudaHostAlloc((void **)&b->h_frames, B * fr * sizeof(uint16_t), 0));
    RTD_CUDA_TRY(cudaHostAlloc((void **)&b->h_fo, B * sizeof(frame_out), 0));
    RTD_CUDA_TRY(cudaHostAlloc((void **)&b->h_io, ni * sizeof(ion_out), 0));
    RTD_CUDA_TRY(cudaMalloc((void **)&b->d_frames, B * fr * sizeof(uint16_t)));
    RTD_CUDA_TRY(cudaMalloc((void **)&b->d_hbl, B * win * sizeof(float)));
    RTD_CUDA_TRY(cudaMalloc((void **)&b->d_blur, B * win * sizeof(float)));
    RTD_CUDA_TRY(cudaMalloc((void **)&b->d_roi, ni * npx * sizeof(float)));
    RTD_CUDA_TRY(cudaMalloc((void **)&b->d_roi2, ni * npx * sizeof(float)));
    RTD_CUDA_TRY(cudaMalloc((void **)&b->d_keys, B * PIPE_MAX_PEAKS * sizeof(unsigned long long)));
    RTD_CUDA_TRY(cudaMalloc((void **)&b->d_npk, B * sizeof(int)));
    RTD_CUDA_TRY(cudaMalloc((void **)&b->d_fo, B * sizeof(frame_out)));
    RTD_CUDA_TRY(cudaMalloc((void **)&b->d_io, ni * sizeof(ion_out)));
    return 0;
}

extern "C" void rtd_cuda_pipe_destroy(struct rtd_cuda_pipe *p)
{
    if (!p)
        return;
    for (int i = 0; i < MAX_INFLIGHT; i++) {
        if (p->b[i].stream)
            cudaStreamSynchronize(p->b[i].stream);
        batch_free(&p->b[i]);
    }
    cudaFree(p->d_nodes);
    free(p);
}

extern "C" int rtd_cuda_pipe_create(struct rtd_cuda_pipe **out, const struct rtd_pipe_config *cfg,
                                    int width, int height, const struct rtd_cuda_pipe_opts *o)
{
    *out = NULL;
    struct rtd_cuda_pipe_opts def;
    if (!o) {
        rtd_cuda_pipe_opts_default(&def);
        o = &def;
    }
    if (!cfg || rtd_pipe_config_check(cfg, NULL, 0) < 0 || width < cfg->roi_w ||
        height < cfg->roi_h)
        return -EINVAL;
    if (o->batch_frames < 1 || o->batch_frames > MAX_BATCH || o->n_inflight < 1 ||
        o->n_inflight > MAX_INFLIGHT)
        return -EINVAL;
    int wx0 = cfg->xstart > 0 ? cfg->xstart : 0, wy0 = cfg->ystart > 0 ? cfg->ystart : 0;
    int wx1 = cfg->xfinish > 0 && cfg->xfinish < width ? cfg->xfinish : width;
    int wy1 = cfg->yfinish > 0 && cfg->yfinish < height ? cfg->yfinish : height;
    if (wx1 - wx0 < 3 || wy1 - wy0 < 3)
        return -EINVAL;
    int rc = rtd_cuda_ensure_device();
    if (rc)
        return rc;
    struct rtd_cuda_pipe *p = (struct rtd_cuda_pipe *)calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->cfg = *cfg;
    p->o = *o;
    p->W = width;
    p->H = height;
    p->max_ions = cfg->max_ions < PIPE_MAX_PEAKS ? cfg->max_ions : PIPE_MAX_PEAKS;
    kparams *k = &p->kp;
    k->W = width;
    k->H = height;
    k->wx0 = wx0;
    k->wy0 = wy0;
    k->ww = wx1 - wx0;
    k->wh = wy1 - wy0;
    k->bin = cfg->bin;
    k->bw = k->ww / cfg->bin;
    k->bh = k->wh / cfg->bin;
    k->rx = blur_weights(cfg->blur_x / (float)cfg->bin, k->wxk);
    k->ry = blur_weights(cfg->blur_y / (float)cfg->bin, k->wyk);
    double sx = (double)(k->wxk[0] * k->wxk[0]), sy = (double)(k->wyk[0] * k->wyk[0]);
    for (int j = 1; j <= k->rx; j++)
        sx += 2.0 * (double)(k->wxk[j] * k->wxk[j]);
    for (int j = 1; j <= k->ry; j++)
        sy += 2.0 * (double)(k->wyk[j] * k->wyk[j]);
    p->knorm = (float)sqrt(sx * sy);
    k->subsample = cfg->subsample;
    k->k = cfg->k;
    k->threshold = cfg->threshold;
    k->min_excess = cfg->min_excess;
    k->radius_x = (cfg->radius_x + cfg->bin - 1) / cfg->bin;
    k->radius_y = (cfg->radius_y + cfg->bin - 1) / cfg->bin;
    k->min_pixels = cfg->min_pixels;
    k->roi_w = cfg->roi_w;
    k->roi_h = cfg->roi_h;
    k->sigma_guess = cfg->sigma_guess;
    k->blur_x = cfg->blur_x;
    k->dup_dist = cfg->dup_dist;
    k->deblend = cfg->deblend;
    k->max_ions = p->max_ions;
    k->estimator = cfg->estimator;
    k->analysis = cfg->analysis;
    static float tab[RTD_CUDA_NODE_TABLE];
    rtd_cuda_node_table(tab);
    cudaError_t e = cudaMalloc((void **)&p->d_nodes, sizeof tab);
    if (e != cudaSuccess) {
        rtd_cuda_pipe_destroy(p);
        return rtd_cuda_err(e, "cudaMalloc(nodes)");
    }
    lm_cfg_from(&k->c2d, RTD_FIT_GAUSS_2D, cfg->roi_w * cfg->roi_h, cfg->max_iter, p->d_nodes);
    lm_cfg_from(&k->c1d, RTD_FIT_GAUSS_1D, cfg->roi_w, cfg->max_iter, p->d_nodes);
    lm_cfg_from(&k->cshm, RTD_FIT_SHM_1D, cfg->roi_h, cfg->max_iter, p->d_nodes);
    e = cudaMemcpy(p->d_nodes, tab, sizeof tab, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) {
        rtd_cuda_pipe_destroy(p);
        return rtd_cuda_err(e, "cudaMemcpy(nodes)");
    }
    for (int i = 0; i < o->n_inflight; i++)
        if ((rc = batch_alloc(p, &p->b[i]))) {
            rtd_cuda_pipe_destroy(p);
            return rc;
        }
    *out = p;
    return 0;
}

static int batch_launch(struct rtd_cuda_pipe *p, struct batch *b)
{
    const int n = b->n;
    const kparams &k = p->kp;
    const size_t fr = (size_t)p->W * (size_t)p->H;
    RTD_CUDA_TRY(cudaMemcpyAsync(b->d_frames, b->h_frames, n * fr * sizeof(uint16_t),
                                 cudaMemcpyHostToDevice, b->stream));
    dim3 g((k.bw + 127) / 128, k.bh, n);
    k_blur_h<<<g, 128, 0, b->stream>>>(k, b->d_frames, b->d_hbl);
    k_blur_v<<<g, 128, 0, b->stream>>>(k, b->d_hbl, b->d_blur);
    k_stats<<<n, 256, 0, b->stream>>>(k, b->d_blur, b->d_fo, b->d_npk);
    k_peaks<<<g, 128, 0, b->stream>>>(k, b->d_blur, b->d_fo, b->d_npk, b->d_keys);
    k_frame_fit<<<n, 128, 0, b->stream>>>(k, b->d_frames, b->d_blur, b->d_fo, b->d_npk, b->d_keys,
                                          b->d_io, b->d_roi, b->d_roi2);
    RTD_CUDA_TRY(cudaGetLastError());
    RTD_CUDA_TRY(cudaMemcpyAsync(b->h_fo, b->d_fo, n * sizeof(frame_out), cudaMemcpyDeviceToHost,
                                 b->stream));
    RTD_CUDA_TRY(cudaMemcpyAsync(b->h_io, b->d_io, (size_t)n * p->max_ions * sizeof(ion_out),
                                 cudaMemcpyDeviceToHost, b->stream));
    RTD_CUDA_TRY(cudaEventRecord(b->done, b->stream));
    b->state = B_INFLIGHT;
    b->t_launch = rtd_now_ns();
    p->fill = (p->fill + 1) % p->o.n_inflight;
    return 0;
}

/* Launch the filling batch when its oldest frame has waited long enough. */
static int check_deadline(struct rtd_cuda_pipe *p)
{
    struct batch *b = &p->b[p->fill];
    if (b->state == B_FILLING && b->n > 0 && rtd_now_ns() - b->t_submit[0] >= p->o.max_wait_ns)
        return batch_launch(p, b);
    return 0;
}

extern "C" int rtd_cuda_pipe_submit(struct rtd_cuda_pipe *p, const uint16_t *frame, size_t stride,
                                    uint64_t frame_id)
{
    if (stride < (size_t)p->W)
        return -EINVAL;
    int rc = check_deadline(p);
    if (rc)
        return rc;
    struct batch *b = &p->b[p->fill];
    if (b->state != B_FILLING)
        return -EAGAIN;
    uint16_t *dst = b->h_frames + (size_t)b->n * p->W * p->H;
    if (stride == (size_t)p->W)
        memcpy(dst, frame, sizeof(uint16_t) * p->W * p->H);
    else
        for (int y = 0; y < p->H; y++)
            memcpy(dst + (size_t)y * p->W, frame + (size_t)y * stride, sizeof(uint16_t) * p->W);
    b->ids[b->n] = frame_id;
    b->t_submit[b->n] = rtd_now_ns();
    b->n++;
    p->pending++;
    if (b->n == p->o.batch_frames)
        return batch_launch(p, b);
    return 0;
}

extern "C" int rtd_cuda_pipe_flush(struct rtd_cuda_pipe *p)
{
    struct batch *b = &p->b[p->fill];
    if (b->state == B_FILLING && b->n > 0)
        return batch_launch(p, b);
    return 0;
}

extern "C" int rtd_cuda_pipe_pending(const struct rtd_cuda_pipe *p)
{
    return p->pending;
}

/* The CPU pipeline's last steps on one frame's records: ions, flags, duplicates, counts. */
static int finish_frame(const struct rtd_cuda_pipe *p, const struct batch *b, int fi,
                        struct rtd_pipe_ion *ions, int max_ions, struct rtd_pipe_frame_stats *st)
{
    const struct rtd_pipe_config *c = &p->cfg;
    const frame_out *fo = &b->h_fo[fi];
    const ion_out *io = b->h_io + (size_t)fi * p->max_ions;
    memset(st, 0, sizeof *st);
    const float b2 = (float)(c->bin * c->bin);
    st->background = fo->med / b2;
    st->noise = fo->mad / b2;
    st->threshold = fo->thr / b2;
    int found = fo->n_found < PIPE_MAX_PEAKS ? fo->n_found : PIPE_MAX_PEAKS;
    st->n_peaks = (uint32_t)found;
    int lim = max_ions < c->max_ions ? max_ions : c->max_ions;
    int npk = fo->n_fit < lim ? fo->n_fit : lim;
    st->truncated = fo->n_found > PIPE_MAX_PEAKS || found > lim;
    const int S = c->roi_w, Wr = c->roi_w, Hr = c->roi_h;
    for (int i = 0; i < npk; i++) {
        const ion_out *r = &io[i];
        struct rtd_pipe_ion *ion = &ions[i];
        memset(ion, 0, sizeof *ion);
        ion->frame = b->ids[fi];
        ion->peak_x = r->peak_x;
        ion->peak_y = r->peak_y;
        ion->roi_x0 = r->roi_x0;
        ion->roi_y0 = r->roi_y0;
        ion->flags = r->flags;
        if (c->analysis == RTD_PIPE_STATIC) {
            ion->amp = r->p[0];
            ion->x = (double)r->p[1] + ion->roi_x0;
            ion->y = (double)r->p[2] + ion->roi_y0;
            ion->sigma = ion->sigma_y = fabs((double)r->p[3]);
            ion->offset = r->p[4];
            ion->chi2 = r->chi2;
            ion->state = r->state;
            ion->iters = r->iters;
            double rx = ion->x - ion->roi_x0, ry = ion->y - ion->roi_y0;
            if (!(rx >= -0.5 && rx <= S - 0.5) || !(ion->sigma > 0.3 && ion->sigma < S) ||
                !(ion->amp > 0) || !(ry >= -0.5 && ry <= S - 0.5))
                ion->flags |= RTD_ION_OUTSIDE;
        } else {
            ion->amp = r->p[0];
            ion->x = (double)r->p[1] + ion->roi_x0;
            ion->sigma = fabs((double)r->p[2]);
            ion->offset = r->p[3];
            ion->v_amp = r->v[0];
            ion->y = (double)r->v[1] + ion->roi_y0;
            ion->A = fabs((double)r->v[2]);
            ion->sigma_y = fabs((double)r->v[3]);
            ion->v_offset = r->v[4];
            ion->chi2 = (double)r->chi2 + (double)r->chi2v;
            ion->state = r->state ? r->state : r->statev;
            ion->iters = r->iters > r->itersv ? r->iters : r->itersv;
            double hx = r->p[1], vy = r->v[1];
            if (!(hx >= -0.5 && hx <= Wr - 0.5) || !(ion->sigma > 0.3 && ion->sigma < Wr) ||
                !(r->p[0] > 0) || !(vy >= -0.5 && vy <= Hr - 0.5) ||
                !(ion->sigma_y > 0.3 && ion->sigma_y < Hr) || !(r->v[0] > 0))
                ion->flags |= RTD_ION_OUTSIDE;
        }
    }
    if (c->analysis == RTD_PIPE_SHM)
        for (int i = 0; i < npk; i++)
            for (int j = 0; j < npk; j++)
                if (j != i && fabs(ions[j].x - ions[i].x) < Wr / 2.0 + 2 * ions[j].sigma &&
                    fabs(ions[j].y - ions[i].y) < Hr / 2.0 + 2 * ions[j].sigma_y + ions[j].A)
                    ions[i].flags |= RTD_ION_OVERLAP;
    /* rtd_pipeline.c: drop implausible fits (unless keep_outside) and, for static frames,
     * fits below min_snr with SNR = sigma * amp * sqrt(pi) / per-pixel noise. */
    double snr_scale = 0;
    if (c->analysis == RTD_PIPE_STATIC && c->min_snr > 0 && npk > 0) {
        float px_noise = fo->mad / (0.6745f * (float)c->bin * p->knorm) + 1e-3f;
        snr_scale = 1.7724538509055159 / (double)px_noise;
    }
    int n = 0;
    for (int i = 0; i < npk; i++) {
        if ((!c->keep_outside && (ions[i].flags & RTD_ION_OUTSIDE)) ||
            (snr_scale > 0 && ions[i].sigma * ions[i].amp * snr_scale < (double)c->min_snr)) {
            st->n_rejected++;
            continue;
        }
        int dup = 0;
        for (int j = 0; j < n && !dup; j++)
            dup = hypot(ions[i].x - ions[j].x, ions[i].y - ions[j].y) < (double)c->dup_dist;
        if (dup) {
            st->n_duplicates++;
            continue;
        }
        if (n != i)
            ions[n] = ions[i];
        if (ions[n].state == 0)
            st->n_converged++;
        else
            st->n_failed++;
        n++;
    }
    st->n_ions = (uint32_t)n;
    return n;
}

extern "C" int rtd_cuda_pipe_poll(struct rtd_cuda_pipe *p, struct rtd_cuda_frame_result *res,
                                  struct rtd_pipe_ion *ions, int max_ions,
                                  struct rtd_pipe_frame_stats *st_out, int wait)
{
    int rc = check_deadline(p);
    if (rc)
        return rc;
    struct batch *b = &p->b[p->head];
    if (b->state == B_FILLING) {
        if (b->n == 0 || !wait)
            return 0;
        if ((rc = batch_launch(p, b)))
            return rc;
    }
    if (b->state == B_INFLIGHT) {
        cudaError_t e = wait ? cudaEventSynchronize(b->done) : cudaEventQuery(b->done);
        if (e == cudaErrorNotReady)
            return 0;
        if (e != cudaSuccess)
            return rtd_cuda_err(e, "batch completion");
        b->state = B_DONE;
        b->t_done = rtd_now_ns();
    }
    struct rtd_pipe_frame_stats st;
    int fi = b->next;
    int n = finish_frame(p, b, fi, ions, max_ions < 0 ? 0 : max_ions, &st);
    st.t_detect_ns = 0;
    st.t_fit_ns = b->t_done - b->t_launch;
    st.t_total_ns = b->t_done - b->t_submit[fi];
    if (st_out)
        *st_out = st;
    if (res) {
        res->frame_id = b->ids[fi];
        res->t_submit_ns = b->t_submit[fi];
        res->t_launch_ns = b->t_launch;
        res->t_done_ns = b->t_done;
        res->n_ions = n;
        res->batch_size = b->n;
    }
    p->pending--;
    if (++b->next == b->n) {
        b->state = B_FILLING;
        b->n = b->next = 0;
        p->head = (p->head + 1) % p->o.n_inflight;
    }
    return 1;
}

extern "C" int rtd_cuda_pipe_process(struct rtd_cuda_pipe *p, const uint16_t *frame, int width,
                                     int height, size_t stride, uint64_t frame_id,
                                     struct rtd_pipe_ion *ions, int max_ions,
                                     struct rtd_pipe_frame_stats *st)
{
    if (width != p->W || height != p->H)
        return -EINVAL;
    if (p->pending)
        return -EBUSY;
    int rc = rtd_cuda_pipe_submit(p, frame, stride, frame_id);
    if (rc)
        return rc;
    struct rtd_cuda_frame_result res = {0, 0, 0, 0, 0, 0};
    rc = rtd_cuda_pipe_poll(p, &res, ions, max_ions, st, 1);
    return rc < 0 ? rc : res.n_ions;
}
