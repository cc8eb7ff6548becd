/* SPDX-License-Identifier: MIT */
/*
 * The frame pipeline: detection in float on the analysis window, then every
 * ROI of the frame in one batched call of the fit library. The detection is
 * written as plain loops over rows that the compiler vectorises; the few
 * functions that touch every pixel are cloned for AVX2 and picked at load time
 * (the build targets baseline x86-64).
 *
 * Cost model for a 300x300 frame with 10 ions (see docs/proc.md for figures):
 * the blur (two separable passes) and the threshold scan touch every pixel;
 * the background statistics run on a subsample; the fits touch 10 ROIs.
 */
#include "rtd_pipeline.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rtd_fit.h"
#include "rtd_util.h"

#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define RTD_PIPE_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RTD_PIPE_CLONES
#endif

#define PIPE_MAX_RADIUS 32 /* blur kernel half-width cap (px) */
#define PIPE_MAX_PEAKS  4096
#define PIPE_HBINS_CAP  4096
#define PIPE_BG_MAXB    32 /* smooth background: at most this many blocks per axis */

struct pipe_peak {
    float value; /* blurred value at the peak */
    int x, y;
};

struct rtd_pipe {
    struct rtd_pipe_config cfg;
    int cap_w, cap_h; /* scratch sized for frames up to this */
    float wx[PIPE_MAX_RADIUS + 1], wy[PIPE_MAX_RADIUS + 1];
    int rx, ry;  /* blur kernel half-widths */
    float knorm; /* sqrt(sum of squared weights) of the 2-D kernel: white noise is scaled by it */
    float px_noise; /* this frame's per-pixel noise (ADU), from the blurred MAD */
    float *pad;     /* one padded row: cap_w + 2*rx */
    float *hbl;     /* horizontally blurred window, cap_w * cap_h */
    float *blur;    /* blurred window, cap_w * cap_h */
    float *sample;
    size_t sample_cap;
    uint32_t hist[PIPE_HBINS_CAP];
    struct pipe_peak *peaks;
    /* Fit batches: up to max_ions ROIs. */
    float *data, *init, *params, *chi2;
    int32_t *states, *iters;
    /* Second batch for shm (vertical profiles) and for de-blending refits. */
    float *data2, *init2, *params2, *chi2b;
    int32_t *states2, *iters2;
    int *map;   /* refit index -> ion index */
    float *snr; /* shm: per peak, rows of its horizontal profile, then its significance */
    /*
     * Smooth background (RTD_PIPE_BG_SMOOTH), in binned window coordinates and binned-sum
     * units: the binned window, block edges and centres, the model's mean and noise per block.
     */
    float *bbuf;        /* binned window, cap_w * cap_h */
    float *mrow, *srow; /* one row of the model and of 1 / noise, cap_w */
    float *colacc;      /* per-column accumulators of the model fit, 5 x cap_w */
    int nbx, nby;
    int bx0[PIPE_BG_MAXB + 1], by0[PIPE_BG_MAXB + 1];
    float bcx[PIPE_BG_MAXB], bcy[PIPE_BG_MAXB];
    float gm[PIPE_BG_MAXB * PIPE_BG_MAXB], gs[PIPE_BG_MAXB * PIPE_BG_MAXB];
    float det_base; /* blurred level of "no light" that peak centroids are taken above */
};

const char *rtd_pipe_analysis_name(enum rtd_pipe_analysis a)
{
    return a == RTD_PIPE_SHM ? "shm" : "static";
}

int rtd_pipe_analysis_parse(const char *name, enum rtd_pipe_analysis *out)
{
    if (!strcmp(name, "static"))
        *out = RTD_PIPE_STATIC;
    else if (!strcmp(name, "shm"))
        *out = RTD_PIPE_SHM;
    else
        return -EINVAL;
    return 0;
}

/*
 * The reference pipeline's settings (refdata manifest, frames_300): static
 * ions blur 2 px, k = 6, peak radius 3, ROI 11x11; oscillating ions blur
 * 2 px across and 6 px along the motion, radius 3 x 8, ROI 11 wide x 31 high.
 */
void rtd_pipe_config_default(struct rtd_pipe_config *c, enum rtd_pipe_analysis analysis)
{
    memset(c, 0, sizeof *c);
    c->analysis = analysis;
    c->blur_x = 2.0f;
    c->blur_y = analysis == RTD_PIPE_SHM ? 6.0f : 2.0f;
    c->k = 6.0f;
    c->threshold = 0.0f;
    c->min_excess = 2.0f;
    c->radius_x = 3;
    c->radius_y = analysis == RTD_PIPE_SHM ? 8 : 3;
    c->roi_w = 11;
    c->roi_h = analysis == RTD_PIPE_SHM ? 31 : 11;
    c->min_pixels = 4;
    c->bin = 2;
    c->subsample = 4;
    c->sigma_guess = 2.0f;
    c->dup_dist = 1.5f;
    c->estimator = 0;
    c->max_iter = 25;
    c->deblend = 1;
    c->max_ions = 256;
    c->min_snr = 5.0f;
    c->min_sigma = 0.6f;
    c->keep_outside = 0;
    /*
     * Oscillating ions: the smooth background (a gradient under a dim, spread-out ion is as
     * large as its light) and the detection geometry of the expected motion. Static ions keep
     * the flat estimate: the reference frames have no gradient, and it is the 10 kHz path.
     */
    c->background = analysis == RTD_PIPE_SHM ? RTD_PIPE_BG_SMOOTH : RTD_PIPE_BG_FLAT;
    c->bg_block_x = c->bg_block_y = 0;
    c->max_amplitude = 0.0f;
    c->tie_sigma = analysis == RTD_PIPE_SHM;
    if (analysis == RTD_PIPE_SHM)
        rtd_pipe_config_set_max_amplitude(c, 8.0f);
}

void rtd_pipe_config_set_max_amplitude(struct rtd_pipe_config *c, float A)
{
    const float s = c->sigma_guess;
    c->max_amplitude = A;
    c->blur_y = sqrtf(s * s + A * A / 3.0f);
    c->radius_y = (int)ceilf(A + 2.0f * s);
    c->roi_h = 2 * (int)ceilf(A + 4.0f * s) + 1;
}

int rtd_pipe_config_check(const struct rtd_pipe_config *c, char *err, size_t errcap)
{
    const char *why = NULL;
    if (c->analysis != RTD_PIPE_STATIC && c->analysis != RTD_PIPE_SHM)
        why = "analysis must be static or shm";
    else if (c->roi_w < 3 || c->roi_h < 3 || c->roi_w > 64 || c->roi_h > 64)
        why = "ROI size must be 3..64 px";
    else if (c->analysis == RTD_PIPE_STATIC && c->roi_w != c->roi_h)
        why = "static analysis needs a square ROI (GAUSS_2D)";
    else if (!(c->blur_x >= 0 && c->blur_x <= 12) || !(c->blur_y >= 0 && c->blur_y <= 12))
        why = "blur sigma must be 0..12 px";
    else if (c->radius_x < 1 || c->radius_y < 1 || c->radius_x > 64 || c->radius_y > 64)
        why = "peak radius must be 1..64 px";
    else if (!(c->k > 0) && !(c->threshold > 0))
        why = "need k > 0 or an absolute threshold > 0";
    else if (c->bin != 1 && c->bin != 2)
        why = "bin must be 1 or 2";
    else if (c->subsample < 1 || c->subsample > 64)
        why = "subsample must be 1..64";
    else if (!(c->sigma_guess > 0.2f))
        why = "sigma guess must be > 0.2 px";
    else if (c->max_ions < 1 || c->max_ions > PIPE_MAX_PEAKS)
        why = "max ions must be 1..4096";
    else if (c->max_iter < 1 || c->max_iter > 1000)
        why = "max iterations must be 1..1000";
    else if (c->estimator != 0 && c->estimator != 1)
        why = "estimator must be 0 (LSE) or 1 (MLE)";
    else if (!(c->min_sigma >= 0 && c->min_sigma < 5))
        why = "min sigma must be 0..5 px";
    else if (c->min_pixels < 1 || c->min_pixels > 9)
        why = "min pixels must be 1..9";
    else if (c->background != RTD_PIPE_BG_FLAT && c->background != RTD_PIPE_BG_SMOOTH)
        why = "background must be flat or smooth";
    else if (c->bg_block_x < 0 || c->bg_block_y < 0 || c->bg_block_x > 4096 ||
             c->bg_block_y > 4096 || (c->bg_block_x > 0 && c->bg_block_x < 8) ||
             (c->bg_block_y > 0 && c->bg_block_y < 8))
        why = "background block must be 0 (auto) or 8..4096 px";
    else if (c->tie_sigma != 0 && c->tie_sigma != 1)
        why = "tie sigma must be 0 or 1";
    else if (!(c->max_amplitude >= 0 && c->max_amplitude <= 20))
        why = "max amplitude must be 0..20 px";
    if (!why)
        return 0;
    if (err)
        snprintf(err, errcap, "%s", why);
    return -EINVAL;
}

static int blur_kernel(float sigma, float *w)
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

static void pipe_free_scratch(struct rtd_pipe *p)
{
    free(p->pad);
    free(p->hbl);
    free(p->blur);
    free(p->sample);
    free(p->bbuf);
    free(p->mrow);
    free(p->srow);
    free(p->colacc);
    p->pad = p->hbl = p->blur = p->sample = p->bbuf = p->mrow = p->srow = p->colacc = NULL;
}

static int pipe_grow(struct rtd_pipe *p, int w, int h)
{
    if (w <= p->cap_w && h <= p->cap_h)
        return 0;
    pipe_free_scratch(p);
    int cw = w > p->cap_w ? w : p->cap_w, ch = h > p->cap_h ? h : p->cap_h;
    size_t n = (size_t)cw * (size_t)ch;
    p->pad = malloc(sizeof(float) * ((size_t)cw + 2u * (size_t)p->rx + 16));
    p->hbl = malloc(sizeof(float) * n);
    p->blur = malloc(sizeof(float) * n);
    p->sample_cap = n;
    p->sample = malloc(sizeof(float) * n);
    if (p->cfg.background == RTD_PIPE_BG_SMOOTH) {
        p->bbuf = malloc(sizeof(float) * n);
        p->mrow = malloc(sizeof(float) * ((size_t)cw + 16));
        p->srow = malloc(sizeof(float) * ((size_t)cw + 16));
        p->colacc = malloc(sizeof(float) * 5 * ((size_t)cw + 16));
    }
    if (!p->pad || !p->hbl || !p->blur || !p->sample ||
        (p->cfg.background == RTD_PIPE_BG_SMOOTH &&
         (!p->bbuf || !p->mrow || !p->srow || !p->colacc))) {
        pipe_free_scratch(p);
        p->cap_w = p->cap_h = 0;
        return -ENOMEM;
    }
    p->cap_w = cw;
    p->cap_h = ch;
    return 0;
}

int rtd_pipe_create(struct rtd_pipe **out, const struct rtd_pipe_config *cfg, int width, int height)
{
    *out = NULL;
    if (rtd_pipe_config_check(cfg, NULL, 0) < 0 || width < 1 || height < 1)
        return -EINVAL;
    struct rtd_pipe *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->cfg = *cfg;
    p->rx = blur_kernel(cfg->blur_x / (float)cfg->bin, p->wx);
    p->ry = blur_kernel(cfg->blur_y / (float)cfg->bin, p->wy);
    double sx = (double)(p->wx[0] * p->wx[0]), sy = (double)(p->wy[0] * p->wy[0]);
    for (int k = 1; k <= p->rx; k++)
        sx += 2.0 * (double)(p->wx[k] * p->wx[k]);
    for (int k = 1; k <= p->ry; k++)
        sy += 2.0 * (double)(p->wy[k] * p->wy[k]);
    p->knorm = (float)sqrt(sx * sy);
    size_t m = (size_t)cfg->max_ions;
    size_t npx = (size_t)cfg->roi_w * (size_t)cfg->roi_h;
    size_t np = 5;
    p->peaks = malloc(sizeof *p->peaks * PIPE_MAX_PEAKS);
    p->data = malloc(sizeof(float) * m * npx);
    p->init = malloc(sizeof(float) * m * np);
    p->params = malloc(sizeof(float) * m * np);
    p->chi2 = malloc(sizeof(float) * m);
    p->states = malloc(sizeof(int32_t) * m);
    p->iters = malloc(sizeof(int32_t) * m);
    p->data2 = malloc(sizeof(float) * m * npx);
    p->init2 = malloc(sizeof(float) * m * np);
    p->params2 = malloc(sizeof(float) * m * np);
    p->chi2b = malloc(sizeof(float) * m);
    p->states2 = malloc(sizeof(int32_t) * m);
    p->iters2 = malloc(sizeof(int32_t) * m);
    p->map = malloc(sizeof(int) * m);
    p->snr = malloc(sizeof(float) * m);
    if (!p->peaks || !p->data || !p->init || !p->params || !p->chi2 || !p->states || !p->iters ||
        !p->data2 || !p->init2 || !p->params2 || !p->chi2b || !p->states2 || !p->iters2 ||
        !p->map || !p->snr || pipe_grow(p, width, height) < 0) {
        rtd_pipe_destroy(p);
        return -ENOMEM;
    }
    *out = p;
    return 0;
}

void rtd_pipe_destroy(struct rtd_pipe *p)
{
    if (!p)
        return;
    pipe_free_scratch(p);
    free(p->peaks);
    free(p->data);
    free(p->init);
    free(p->params);
    free(p->chi2);
    free(p->states);
    free(p->iters);
    free(p->data2);
    free(p->init2);
    free(p->params2);
    free(p->chi2b);
    free(p->states2);
    free(p->iters2);
    free(p->map);
    free(p->snr);
    free(p);
}

/* ---- detection ------------------------------------------------------------ */

/* Load one source row as float (bin 1). */
RTD_PIPE_CLONES
static void load_row1(const uint16_t *restrict src, int n, float *restrict dst)
{
    for (int i = 0; i < n; i++)
        dst[i] = (float)src[i];
}

/* Load one binned row: the sum of 2x2 pixels of two source rows (bin 2), n outputs. */
/* Reads two u16 pixels at once: the pair sum vectorises, strided u16 loads do not. */
typedef uint32_t pipe_u32a __attribute__((may_alias, aligned(2)));

RTD_PIPE_CLONES
static void load_row2(const uint16_t *restrict a, const uint16_t *restrict b, int n,
                      float *restrict dst)
{
    const pipe_u32a *a2 = (const pipe_u32a *)(const void *)a;
    const pipe_u32a *b2 = (const pipe_u32a *)(const void *)b;
    for (int i = 0; i < n; i++) {
        uint32_t u = a2[i], v = b2[i];
        dst[i] = (float)((u & 0xffffu) + (u >> 16) + (v & 0xffffu) + (v >> 16));
    }
}

/* Eight floats, loaded and stored unaligned (GCC vector extension). */
typedef float pipe_v8f __attribute__((vector_size(32), aligned(4)));

/*
 * Horizontal kernel over a row already loaded at pad + r, mirrored at the edges
 * (scipy's "reflect"): replicating the edge pixel instead gives it half the
 * kernel's weight, its noise is not averaged down, and false peaks line the border.
 */
RTD_PIPE_CLONES
static void blur_row(float *restrict pad, int n, float *restrict dst, const float *restrict w,
                     int r)
{
    for (int i = 0; i < r; i++) {
        pad[r - 1 - i] = pad[r + (i < n ? i : n - 1)];
        pad[r + n + i] = pad[r + n - 1 - (i < n ? i : n - 1)];
    }
    /* The sum stays in a register across the taps (as in blur_col): one store per output
     * instead of a read-modify-write of dst per tap. */
    const float *c = pad + r;
    int x = 0;
    for (; x + 8 <= n; x += 8) {
        pipe_v8f s = *(const pipe_v8f *)(const void *)(c + x) * w[0];
        for (int k = 1; k <= r; k++)
            s += (*(const pipe_v8f *)(const void *)(c + x - k) +
                  *(const pipe_v8f *)(const void *)(c + x + k)) *
                 w[k];
        *(pipe_v8f *)(void *)(dst + x) = s;
    }
    for (; x < n; x++) {
        float s = w[0] * c[x];
        for (int k = 1; k <= r; k++)
            s += w[k] * (c[x - k] + c[x + k]);
        dst[x] = s;
    }
}

/* One output row of the vertical kernel; rows[] are the (mirrored) source rows. */

/*
 * The sum stays in a register across the taps (8 columns at a time, GCC vector
 * extension: one AVX register in the AVX2 clone, two SSE registers otherwise);
 * the scalar tail takes the last n % 8 columns.
 */
RTD_PIPE_CLONES
static void blur_col(const float *const *rows, int n, float *restrict dst, const float *restrict w,
                     int r)
{
    const float *c = rows[r];
    int x = 0;
    for (; x + 8 <= n; x += 8) {
        pipe_v8f s = *(const pipe_v8f *)(const void *)(c + x) * w[0];
        for (int k = 1; k <= r; k++)
            s += (*(const pipe_v8f *)(const void *)(rows[r - k] + x) +
                  *(const pipe_v8f *)(const void *)(rows[r + k] + x)) *
                 w[k];
        *(pipe_v8f *)(void *)(dst + x) = s;
    }
    for (; x < n; x++) {
        float s = w[0] * c[x];
        for (int k = 1; k <= r; k++)
            s += w[k] * (rows[r - k][x] + rows[r + k][x]);
        dst[x] = s;
    }
}

/* Does any of the n values exceed t? Branch-free so that it vectorises: most rows are
 * skipped whole. */
RTD_PIPE_CLONES
static int any_above(const float *restrict v, int n, float t)
{
    int any = 0;
    for (int i = 0; i < n; i++)
        any |= v[i] > t;
    return any;
}

static void swapf(float *a, float *b)
{
    float t = *a;
    *a = *b;
    *b = t;
}

/* k-th smallest of v[0..n) (reorders v): Hoare's quickselect with a median-of-three pivot. */
static float select_kth(float *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (hi > lo) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < v[lo])
            swapf(&v[mid], &v[lo]);
        if (v[hi] < v[lo])
            swapf(&v[hi], &v[lo]);
        if (v[hi] < v[mid])
            swapf(&v[hi], &v[mid]);
        float pivot = v[mid];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                swapf(&v[i], &v[j]);
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return v[k];
    }
    return v[k];
}

/* Insertion sort: for the 63 pilot samples it beats qsort's calls through a pointer. */
static void sort_small(float *v, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        float x = v[i];
        size_t j = i;
        for (; j > 0 && v[j - 1] > x; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}

/*
 * The k-th smallest of v[0..n) from a histogram of bin width hw starting at lo:
 * two passes without branches on the data, where a quickselect mispredicts
 * half its compares. -1 when the answer falls in an end bin (clipped values).
 */
#define PIPE_HBINS (PIPE_HBINS_CAP / 4)
static int hist_kth(const float *v, size_t n, size_t k, float lo, float hw, uint32_t *hist4,
                    float *out)
{
    /* Four interleaved histograms: neighbouring values often share a bin, and
     * one histogram would serialise on store-to-load forwarding. */
    memset(hist4, 0, sizeof(uint32_t) * PIPE_HBINS * 4);
    const float inv = 1.0f / hw, top = (float)(PIPE_HBINS - 1);
    size_t i = 0;
    for (; i < n; i++) {
        float b = (v[i] - lo) * inv;
        b = b < 0.0f ? 0.0f : (b > top ? top : b);
        hist4[((size_t)b << 2) | (i & 3)]++;
    }
    uint32_t hist[PIPE_HBINS];
    for (int j = 0; j < PIPE_HBINS; j++)
        hist[j] = hist4[4 * j] + hist4[4 * j + 1] + hist4[4 * j + 2] + hist4[4 * j + 3];
    size_t cum = 0;
    for (int b = 0; b < PIPE_HBINS; b++) {
        if (cum + hist[b] > k) {
            if (b == 0 || b == PIPE_HBINS - 1)
                return -1;
            /* Interpolate inside the bin as if its values were spread evenly. */
            *out = lo + hw * ((float)b + ((float)(k - cum) + 0.5f) / (float)hist[b]);
            return 0;
        }
        cum += hist[b];
    }
    return -1;
}

/*
 * Median and MAD of the blurred window on a subsample (every s-th row and
 * column). A rough median and MAD from 63 evenly spaced samples set the
 * histogram's range and resolution (1/16 of the MAD, +-32 MADs); the rare frame whose
 * values do not fit falls back to quickselect.
 */
static void background_stats(struct rtd_pipe *p, int w, int h, float *median, float *mad)
{
    const int s = p->cfg.subsample;
    size_t n = 0;
    for (int y = s / 2; y < h; y += s) {
        const float *row = p->blur + (size_t)y * (size_t)w;
        for (int x = s / 2; x < w; x += s)
            p->sample[n++] = row[x];
    }
    if (n == 0)
        p->sample[n++] = p->blur[0];
    float g[63], d[63];
    size_t m = n < 63 ? n : 63;
    for (size_t i = 0; i < m; i++)
        g[i] = p->sample[i * n / m];
    sort_small(g, m);
    float g_med = g[m / 2];
    for (size_t i = 0; i < m; i++)
        d[i] = fabsf(g[i] - g_med);
    sort_small(d, m);
    float g_mad = d[m / 2] > 1e-3f ? d[m / 2] : 1e-3f;
    float hw = g_mad / 16.0f, med, dev;
    if (hist_kth(p->sample, n, n / 2, g_med - hw * (PIPE_HBINS / 2), hw, p->hist, &med) < 0)
        med = select_kth(p->sample, n, n / 2);
    for (size_t i = 0; i < n; i++)
        p->sample[i] = fabsf(p->sample[i] - med);
    if (hist_kth(p->sample, n, n / 2, -hw, hw, p->hist, &dev) < 0)
        dev = select_kth(p->sample, n, n / 2);
    *median = med;
    *mad = dev < 0 ? 0 : dev;
}

/*
 * Is (x, y) the maximum of its (2rx+1) x (2ry+1) neighbourhood? Ties go to the
 * first pixel in raster order so that a flat top gives exactly one peak.
 */
static int is_local_max(const float *b, int w, int h, int x, int y, int rx, int ry)
{
    const float v = b[(size_t)y * (size_t)w + (size_t)x];
    int y0 = y - ry < 0 ? 0 : y - ry, y1 = y + ry >= h ? h - 1 : y + ry;
    int x0 = x - rx < 0 ? 0 : x - rx, x1 = x + rx >= w ? w - 1 : x + rx;
    for (int yy = y0; yy <= y1; yy++) {
        const float *row = b + (size_t)yy * (size_t)w;
        for (int xx = x0; xx <= x1; xx++) {
            float u = row[xx];
            if (u > v)
                return 0;
            if (u == v && (yy < y || (yy == y && xx < x)))
                return 0;
        }
    }
    return 1;
}

static int count_above3(const float *b, int w, int h, int x, int y, float t)
{
    int n = 0;
    for (int yy = y - 1; yy <= y + 1; yy++) {
        if (yy < 0 || yy >= h)
            continue;
        for (int xx = x - 1; xx <= x + 1; xx++)
            if (xx >= 0 && xx < w && b[(size_t)yy * (size_t)w + (size_t)xx] > t)
                n++;
    }
    return n;
}

static int peak_cmp(const void *a, const void *b)
{
    const struct pipe_peak *pa = a, *pb = b;
    if (pa->value != pb->value)
        return pa->value < pb->value ? 1 : -1;
    if (pa->y != pb->y)
        return pa->y < pb->y ? -1 : 1;
    return pa->x < pb->x ? -1 : (pa->x > pb->x);
}

/*
 * Local maxima above thr of the blurred window (w x h, binned), brightest first.
 * Returns the peak count.
 */
static int scan_peaks(struct rtd_pipe *p, int w, int h, float thr, int *truncated)
{
    const struct rtd_pipe_config *c = &p->cfg;
    const int bin = c->bin;
    int n = 0;
    *truncated = 0;
    enum { CHUNK = 32 };
    for (int y = 0; y < h; y++) {
        const float *row = p->blur + (size_t)y * (size_t)w;
        if (!any_above(row, w, thr))
            continue;
        for (int x0 = 0; x0 < w; x0 += CHUNK) {
            int len = w - x0 < CHUNK ? w - x0 : CHUNK;
            if (!any_above(row + x0, len, thr))
                continue;
            /* Visit only the pixels above threshold: a bit mask, not a branch per pixel. */
            uint32_t mask = 0;
            for (int i = 0; i < len; i++)
                mask |= (uint32_t)(row[x0 + i] > thr) << i;
            for (; mask; mask &= mask - 1) {
                const int x = x0 + __builtin_ctz(mask);
                /* Most pixels of a spot's flank fail against a direct neighbour. */
                if ((x > 0 && row[x - 1] > row[x]) || (x + 1 < w && row[x + 1] > row[x]) ||
                    (y > 0 && row[x - w] > row[x]) || (y + 1 < h && row[x + w] > row[x]))
                    continue;
                if (!is_local_max(p->blur, w, h, x, y, (c->radius_x + bin - 1) / bin,
                                  (c->radius_y + bin - 1) / bin))
                    continue;
                if (count_above3(p->blur, w, h, x, y, thr) < c->min_pixels)
                    continue;
                if (n == PIPE_MAX_PEAKS) {
                    *truncated = 1;
                    continue;
                }
                p->peaks[n++] = (struct pipe_peak){row[x], x, y};
            }
        }
    }
    qsort(p->peaks, (size_t)n, sizeof *p->peaks, peak_cmp);
    return n;
}

/* ---- smooth background ------------------------------------------------------ */

/*
 * The model is two grids of block values (mean gm and noise gs, nby x nbx) at
 * the block centres, bilinear between them and extrapolated linearly beyond
 * the outer centres, so a linear gradient is reproduced exactly up to the edges
 * of the frame. grid_col interpolates a grid to one binned row (one value per
 * block column), grid_row spreads those values along the row.
 */
static void grid_col(const struct rtd_pipe *p, const float *g, float y, float *col)
{
    const int nbx = p->nbx;
    if (p->nby == 1) {
        memcpy(col, g, sizeof(float) * (size_t)nbx);
        return;
    }
    int j = 0;
    while (j < p->nby - 2 && y > p->bcy[j + 1])
        j++;
    const float t = (y - p->bcy[j]) / (p->bcy[j + 1] - p->bcy[j]);
    for (int i = 0; i < nbx; i++)
        col[i] = g[j * nbx + i] + t * (g[(j + 1) * nbx + i] - g[j * nbx + i]);
}

RTD_PIPE_CLONES
static void grid_row(const struct rtd_pipe *p, const float *col, int w, float *restrict out)
{
    const int nbx = p->nbx;
    if (nbx == 1) {
        for (int x = 0; x < w; x++)
            out[x] = col[0];
        return;
    }
    int x = 0;
    for (int i = 0; i < nbx - 1; i++) {
        const int xe = i == nbx - 2 ? w : (int)ceilf(p->bcx[i + 1]);
        const float slope = (col[i + 1] - col[i]) / (p->bcx[i + 1] - p->bcx[i]), c0 = p->bcx[i];
        for (; x < xe; x++)
            out[x] = col[i] + ((float)x - c0) * slope;
    }
}

/* The model along part of a row: n points from x0 in steps of dx (binned), for the ROIs. */
static void grid_span(const struct rtd_pipe *p, const float *col, float x0, float dx, int n,
                      float *out)
{
    if (p->nbx == 1) {
        for (int k = 0; k < n; k++)
            out[k] = col[0];
        return;
    }
    int i = 0;
    for (int k = 0; k < n; k++) {
        const float x = x0 + dx * (float)k;
        while (i < p->nbx - 2 && x > p->bcx[i + 1])
            i++;
        out[k] = col[i] + (x - p->bcx[i]) * (col[i + 1] - col[i]) / (p->bcx[i + 1] - p->bcx[i]);
    }
}

/* The model at one binned point (x, y): for the ROIs of the fits. */
static float grid_at(const struct rtd_pipe *p, const float *col, float x)
{
    if (p->nbx == 1)
        return col[0];
    int i = 0;
    while (i < p->nbx - 2 && x > p->bcx[i + 1])
        i++;
    return col[i] + (x - p->bcx[i]) * (col[i + 1] - col[i]) / (p->bcx[i + 1] - p->bcx[i]);
}

/*
 * Per-column accumulation over the rows of one block row (whole rows at a time, so the loops
 * vectorise; the blocks' sums are taken from the columns at the end of the block row): the
 * residual r = v - m, its square, and inside [lo, hi] (per column: its block's limits) the
 * clipped sum, square and count.
 */
RTD_PIPE_CLONES
static void col_sq(const float *restrict v, const float *restrict m, int n, float *restrict a2)
{
    for (int x = 0; x < n; x++) {
        const float r = v[x] - m[x];
        a2[x] += r * r;
    }
}

RTD_PIPE_CLONES
static void col_clip(const float *restrict v, const float *restrict m, const float *restrict lo,
                     const float *restrict hi, int n, float *restrict cs, float *restrict cs2,
                     float *restrict cn)
{
    for (int x = 0; x < n; x++) {
        const float r = v[x] - m[x];
        const float in = (r >= lo[x] && r <= hi[x]) ? 1.0f : 0.0f;
        cs[x] += in * r;
        cs2[x] += in * r * r;
        cn[x] += in;
    }
}

RTD_PIPE_CLONES
static void col_add(const float *restrict v, int n, float *restrict acc)
{
    for (int x = 0; x < n; x++)
        acc[x] += v[x];
}

static double seg_total(const float *v, int x0, int x1)
{
    double t = 0;
    for (int x = x0; x < x1; x++)
        t += (double)v[x];
    return t;
}

/*
 * Fit the block model to the binned window (p->bbuf, w x h). Three passes over
 * it: block means (the first model), the rms residual about that model per
 * block (the gradient inside a block is not noise), then the mean and rms of
 * the residuals inside [-5, +3] of that rms, which leaves out the ions' cores:
 * the model is moved by that mean and the noise is that rms, corrected for the
 * clipping of a normal distribution (mean -0.0044 s, rms 0.9933 s). The first
 * model's rows are kept in p->blur (not yet used this frame) for passes 2 and 3.
 */
static void bg_fit(struct rtd_pipe *p, int w, int h)
{
    const struct rtd_pipe_config *c = &p->cfg;
    const int bin = c->bin;
    /* Blocks: twice the ROI by default, so one ion's light is a small part of a block. */
    int bw = c->bg_block_x > 0 ? c->bg_block_x : 2 * c->roi_w;
    int bh = c->bg_block_y > 0 ? c->bg_block_y : 2 * c->roi_h;
    bw = bw < 24 && !c->bg_block_x ? 24 : bw;
    bh = bh < 24 && !c->bg_block_y ? 24 : bh;
    int nbx = w * bin / bw, nby = h * bin / bh;
    nbx = nbx < 1 ? 1 : (nbx > PIPE_BG_MAXB ? PIPE_BG_MAXB : nbx);
    nby = nby < 1 ? 1 : (nby > PIPE_BG_MAXB ? PIPE_BG_MAXB : nby);
    p->nbx = nbx;
    p->nby = nby;
    for (int i = 0; i <= nbx; i++)
        p->bx0[i] = i * w / nbx;
    for (int j = 0; j <= nby; j++)
        p->by0[j] = j * h / nby;
    for (int i = 0; i < nbx; i++)
        p->bcx[i] = 0.5f * (float)(p->bx0[i] + p->bx0[i + 1] - 1);
    for (int j = 0; j < nby; j++)
        p->bcy[j] = 0.5f * (float)(p->by0[j] + p->by0[j + 1] - 1);
    float *const a0 = p->colacc, *const a1 = a0 + p->cap_w, *const a2 = a1 + p->cap_w;
    float *const lo = a2 + p->cap_w, *const hi = lo + p->cap_w;
    float col[PIPE_BG_MAXB];
    const size_t wb = sizeof(float) * (size_t)w;
    /* Pass 1: block means. */
    for (int j = 0; j < nby; j++) {
        memset(a0, 0, wb);
        for (int y = p->by0[j]; y < p->by0[j + 1]; y++)
            col_add(p->bbuf + (size_t)y * (size_t)w, w, a0);
        for (int i = 0; i < nbx; i++) {
            const double n = (double)(p->bx0[i + 1] - p->bx0[i]) * (p->by0[j + 1] - p->by0[j]);
            p->gm[j * nbx + i] = (float)(seg_total(a0, p->bx0[i], p->bx0[i + 1]) / n);
        }
    }
    for (int y = 0; y < h; y++) {
        grid_col(p, p->gm, (float)y, col);
        grid_row(p, col, w, p->blur + (size_t)y * (size_t)w);
    }
    /* Pass 2: rms about the first model; pass 3: clipped mean and rms about it. */
    for (int j = 0; j < nby; j++) {
        const double rows = p->by0[j + 1] - p->by0[j];
        memset(a0, 0, wb);
        for (int y = p->by0[j]; y < p->by0[j + 1]; y++)
            col_sq(p->bbuf + (size_t)y * (size_t)w, p->blur + (size_t)y * (size_t)w, w, a0);
        for (int i = 0; i < nbx; i++) {
            const double n = (double)(p->bx0[i + 1] - p->bx0[i]) * rows;
            const float rms = (float)sqrt(seg_total(a0, p->bx0[i], p->bx0[i + 1]) / n);
            for (int x = p->bx0[i]; x < p->bx0[i + 1]; x++) {
                hi[x] = 3.0f * rms;
                lo[x] = -5.0f * rms;
            }
        }
        memset(a0, 0, wb);
        memset(a1, 0, wb);
        memset(a2, 0, wb);
        for (int y = p->by0[j]; y < p->by0[j + 1]; y++)
            col_clip(p->bbuf + (size_t)y * (size_t)w, p->blur + (size_t)y * (size_t)w, lo, hi, w,
                     a0, a1, a2);
        for (int i = 0; i < nbx; i++) {
            const int k = j * nbx + i, x0 = p->bx0[i], x1 = p->bx0[i + 1];
            const double cnt = seg_total(a2, x0, x1);
            const double m = cnt > 0 ? seg_total(a0, x0, x1) / cnt : 0;
            const double v = cnt > 0 ? seg_total(a1, x0, x1) / cnt - m * m : 0;
            double sd = sqrt(v > 0 ? v : 0) / 0.9933;
            /* Integer pixels: a noiseless frame still has the rounding's 0.29 ADU per pixel. */
            const double floor_sd = 0.29 * bin;
            sd = sd > floor_sd ? sd : floor_sd;
            p->gm[k] += (float)(m + 0.0044 * sd);
            p->gs[k] = (float)sd;
        }
    }
}

/* Norm of the blur kernel folded by the mirror at an edge, over the unfolded norm (>= 1). */
static float edge_gain(const float *wk, int r, int pos, int n)
{
    float acc[2 * PIPE_MAX_RADIUS + 1] = {0};
    double full = 0;
    int lo = pos - r < 0 ? 0 : pos - r;
    for (int k = -r; k <= r; k++) {
        int q = pos + k;
        q = q < 0 ? -q - 1 : (q >= n ? 2 * n - 1 - q : q);
        q = q < 0 ? 0 : (q >= n ? n - 1 : q);
        const float wt = wk[k < 0 ? -k : k];
        full += (double)wt * (double)wt;
        if (q - lo >= 0 && q - lo < 2 * PIPE_MAX_RADIUS + 1)
            acc[q - lo] += wt;
    }
    double f = 0;
    for (int i = 0; i < 2 * PIPE_MAX_RADIUS + 1; i++)
        f += (double)acc[i] * (double)acc[i];
    return (float)sqrt(f / full);
}

/*
 * Detection on the smooth background: bin the window, fit the model, then blur
 * (x - model) / noise. The blurred map is in units of the local noise, so one
 * threshold (k MADs of the map) means the same significance under a bright
 * gradient and a dark corner. The mirror at the frame's edges makes a pixel's
 * noise count twice in the blurred values next to the edge: those values are
 * divided by the folded kernel's gain, or noise would line the edges with peaks.
 */
static int detect_smooth(struct rtd_pipe *p, const uint16_t *frame, size_t stride, int wx0, int wy0,
                         int w, int h, struct rtd_pipe_frame_stats *st, int *truncated)
{
    const struct rtd_pipe_config *c = &p->cfg;
    const int bin = c->bin;
    w /= bin;
    h /= bin;
    for (int y = 0; y < h; y++) {
        const uint16_t *src = frame + (size_t)(wy0 + y * bin) * stride + (size_t)wx0;
        if (bin == 1)
            load_row1(src, w, p->bbuf + (size_t)y * (size_t)w);
        else
            load_row2(src, src + stride, w, p->bbuf + (size_t)y * (size_t)w);
    }
    bg_fit(p, w, h);
    const int whiten = !(c->threshold > 0); /* an absolute threshold stays in ADU */
    float col[PIPE_BG_MAXB];
    const float *rows[2 * PIPE_MAX_RADIUS + 1];
    float gx[PIPE_MAX_RADIUS];
    for (int x = 0; x < p->rx && x < w; x++)
        gx[x] = 1.0f / edge_gain(p->wx, p->rx, x, w);
    int made = 0;
    for (int y = 0; y < h; y++) {
        const int need = y + p->ry < h ? y + p->ry : h - 1;
        for (; made <= need; made++) {
            const float *b = p->bbuf + (size_t)made * (size_t)w;
            float *dst = p->pad + p->rx;
            grid_col(p, p->gm, (float)made, col);
            grid_row(p, col, w, p->mrow);
            if (whiten) {
                grid_col(p, p->gs, (float)made, col);
                grid_row(p, col, w, p->srow);
                for (int x = 0; x < w; x++)
                    dst[x] = (b[x] - p->mrow[x]) / p->srow[x];
            } else {
                for (int x = 0; x < w; x++)
                    dst[x] = b[x] - p->mrow[x];
            }
            float *out = p->hbl + (size_t)made * (size_t)w;
            blur_row(p->pad, w, out, p->wx, p->rx);
            for (int x = 0; x < p->rx && x < w; x++) {
                out[x] *= gx[x];
                out[w - 1 - x] *= gx[x];
            }
        }
        for (int k = -p->ry; k <= p->ry; k++) {
            int yy = y + k < 0 ? -(y + k) - 1 : (y + k >= h ? 2 * h - 1 - (y + k) : y + k);
            yy = yy < 0 ? 0 : (yy >= h ? h - 1 : yy);
            rows[k + p->ry] = p->hbl + (size_t)yy * (size_t)w;
        }
        float *out = p->blur + (size_t)y * (size_t)w;
        blur_col(rows, w, out, p->wy, p->ry);
        if (y < p->ry || y >= h - p->ry) {
            const float g = 1.0f / edge_gain(p->wy, p->ry, y, h);
            for (int x = 0; x < w; x++)
                out[x] *= g;
        }
    }
    const float b2 = (float)(bin * bin);
    float med, mad;
    background_stats(p, w, h, &med, &mad);
    /* Typical level and noise of the model, for the frame's figures (per pixel). */
    float lv[PIPE_BG_MAXB * PIPE_BG_MAXB], nv[PIPE_BG_MAXB * PIPE_BG_MAXB];
    const int nb = p->nbx * p->nby;
    memcpy(lv, p->gm, sizeof(float) * (size_t)nb);
    memcpy(nv, p->gs, sizeof(float) * (size_t)nb);
    sort_small(lv, (size_t)nb);
    sort_small(nv, (size_t)nb);
    const float level = lv[nb / 2] / b2, sd = nv[nb / 2];
    float thr;
    if (whiten) {
        /* min_excess (ADU per pixel) in noise units: keeps a noiseless window clean. */
        float ex = c->k * mad;
        const float floor_ex = c->min_excess * b2 / sd;
        ex = ex > floor_ex ? ex : floor_ex;
        thr = med + ex;
        st->threshold = level + (thr - med) * sd / b2;
    } else {
        thr = med + c->threshold * b2;
        st->threshold = level + c->threshold;
    }
    st->background = level;
    st->noise = sd / (float)bin;
    p->px_noise = sd / (float)bin;
    p->det_base = med;
    return scan_peaks(p, w, h, thr, truncated);
}

/*
 * Blur the window, estimate the background, and collect local maxima above
 * threshold (window coordinates), brightest first. Returns the peak count.
 */
static int detect(struct rtd_pipe *p, const uint16_t *frame, size_t stride, int wx0, int wy0, int w,
                  int h, struct rtd_pipe_frame_stats *st, int *truncated)
{
    const struct rtd_pipe_config *c = &p->cfg;
    if (c->background == RTD_PIPE_BG_SMOOTH)
        return detect_smooth(p, frame, stride, wx0, wy0, w, h, st, truncated);
    const int bin = c->bin;
    w /= bin;
    h /= bin;
    /* Each horizontal row is made just before the first vertical output that needs it, so it
     * is still in L1 when the ry output rows around it read it. */
    const float *rows[2 * PIPE_MAX_RADIUS + 1];
    int made = 0;
    for (int y = 0; y < h; y++) {
        const int need = y + p->ry < h ? y + p->ry : h - 1;
        for (; made <= need; made++) {
            const uint16_t *src = frame + (size_t)(wy0 + made * bin) * stride + (size_t)wx0;
            /* The frame was just written by the ingest core: ask for the source rows two
             * binned rows ahead while this one is blurred, instead of stalling on each line. */
            if (made + 2 < h) {
                const char *pf = (const char *)(src + (size_t)(2 * bin) * stride);
                const size_t bytes = (size_t)w * (size_t)bin * sizeof(uint16_t);
                for (int r = 0; r < bin; r++, pf += stride * sizeof(uint16_t))
                    for (size_t o = 0; o < bytes; o += 64)
                        __builtin_prefetch(pf + o);
            }
            if (bin == 1)
                load_row1(src, w, p->pad + p->rx);
            else
                load_row2(src, src + stride, w, p->pad + p->rx);
            blur_row(p->pad, w, p->hbl + (size_t)made * (size_t)w, p->wx, p->rx);
        }
        for (int k = -p->ry; k <= p->ry; k++) {
            int yy = y + k < 0 ? -(y + k) - 1 : (y + k >= h ? 2 * h - 1 - (y + k) : y + k);
            yy = yy < 0 ? 0 : (yy >= h ? h - 1 : yy);
            rows[k + p->ry] = p->hbl + (size_t)yy * (size_t)w;
        }
        blur_col(rows, w, p->blur + (size_t)y * (size_t)w, p->wy, p->ry);
    }
    /* Binned values are sums of bin^2 pixels; thresholds and stats are per pixel. */
    const float b2 = (float)(bin * bin);
    float med, mad;
    background_stats(p, w, h, &med, &mad);
    float excess = c->threshold > 0 ? c->threshold : c->k * mad / b2;
    if (!(c->threshold > 0) && excess < c->min_excess)
        excess = c->min_excess;
    const float thr = med + excess * b2;
    st->background = med / b2;
    st->noise = mad / b2;
    st->threshold = thr / b2;
    /* White pixel noise s gives blurred binned noise s * bin * knorm (the bin sums bin^2 pixels).
     */
    p->px_noise = mad / (0.6745f * (float)bin * p->knorm) + 1e-3f;

    p->det_base = med;
    return scan_peaks(p, w, h, thr, truncated);
}

/* Sub-pixel position of a peak: centroid of the blurred excess in its 3x3. */
static void peak_centroid(const float *b, int w, int h, int x, int y, float base, float *cx,
                          float *cy)
{
    double sw = 0, sx = 0, sy = 0;
    for (int yy = y - 1; yy <= y + 1; yy++) {
        if (yy < 0 || yy >= h)
            continue;
        for (int xx = x - 1; xx <= x + 1; xx++) {
            if (xx < 0 || xx >= w)
                continue;
            double v = (double)b[(size_t)yy * (size_t)w + (size_t)xx] - (double)base;
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

/* ROI origin along one axis: centred on the peak, shifted inside [0, n). */
static int roi_origin(int peak, int size, int n, int *shifted)
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

/*
 * A peak in full-pixel frame coordinates: the sub-pixel centroid of the
 * blurred excess (binned pixel i covers full pixels bin*i .. bin*i+bin-1) and
 * the nearest pixel, which centres the ROI.
 */
static void peak_position(const struct rtd_pipe *p, const struct pipe_peak *pk, int win_w,
                          int win_h, int wx0, int wy0, float bg, float *fx, float *fy, int *ix,
                          int *iy)
{
    const int bin = p->cfg.bin;
    float cx, cy;
    const float base =
        p->cfg.background == RTD_PIPE_BG_SMOOTH ? p->det_base : bg * (float)(bin * bin);
    peak_centroid(p->blur, win_w / bin, win_h / bin, pk->x, pk->y, base, &cx, &cy);
    *fx = (float)bin * cx + 0.5f * (float)(bin - 1) + (float)wx0;
    *fy = (float)bin * cy + 0.5f * (float)(bin - 1) + (float)wy0;
    *ix = (int)lrintf(*fx);
    *iy = (int)lrintf(*fy);
}

/* ---- fits ----------------------------------------------------------------- */

static int run_fits_fixed(const struct rtd_pipe_config *c, int model, int n_points, size_t n,
                          const float *data, const float *init, float *params, int32_t *states,
                          int32_t *iters, float *chi2, uint32_t fixed)
{
    if (n == 0)
        return 0;
    struct rtd_fit_opts o;
    rtd_fit_opts_default(&o, (enum rtd_fit_model)model, (uint32_t)n_points);
    o.estimator = c->estimator ? RTD_FIT_MLE : RTD_FIT_LSE;
    o.max_iter = (uint32_t)c->max_iter;
    o.threads = 1; /* one frame per worker core: no OpenMP fork/join on the hot path */
    o.fixed = fixed;
    return rtd_fit_batch(&o, n, data, init, params, states, iters, chi2);
}

static int run_fits(const struct rtd_pipe_config *c, int model, int n_points, size_t n,
                    const float *data, const float *init, float *params, int32_t *states,
                    int32_t *iters, float *chi2)
{
    return run_fits_fixed(c, model, n_points, n, data, init, params, states, iters, chi2, 0);
}

/* Plausibility of a fitted spot inside its ROI (px in ROI coordinates). */
static int fit_outside(double x0, double sigma, double amp, int size)
{
    return !(x0 >= -0.5 && x0 <= size - 0.5) || !(sigma > 0.3 && sigma < size) || !(amp > 0);
}

static void load_roi(const uint16_t *frame, size_t stride, int ox, int oy, int S, float *d)
{
    for (int r = 0; r < S; r++) {
        const uint16_t *src = frame + (size_t)(oy + r) * stride + (size_t)ox;
        for (int q = 0; q < S; q++)
            d[r * S + q] = (float)src[q];
    }
}

static void set_ion_params(struct rtd_pipe_ion *ion, const float *q, float chi2, int32_t state)
{
    ion->amp = q[0];
    ion->x = (double)q[1] + ion->roi_x0;
    ion->y = (double)q[2] + ion->roi_y0;
    ion->sigma = ion->sigma_y = fabs((double)q[3]);
    ion->offset = q[4];
    ion->chi2 = chi2;
    ion->state = state;
}

/*
 * Blends. Two ions closer than the blur can separate (~2 sigma_eff = 5.7 px)
 * give one peak, and one Gaussian fitted to them leaves a positive residual
 * lobe over each ion (or, when the fit sat on the brighter one, over the
 * other). Where the largest residual of a converged fit stands
 * out of the noise (6 sigma of the frame's pixel noise, from the blurred
 * frame's MAD, and 15 % of the fitted amplitude) and away from its centre, the ion is split in two:
 * one at the residual peak, the other mirrored through the fitted centre if the fit was widened,
 * else left where it was. The de-blending passes then fit each with the other subtracted. Returns
 * the splits made.
 */
static int split_blends(struct rtd_pipe *p, const uint16_t *frame, size_t stride, int fw, int fh,
                        struct rtd_pipe_ion *ions, int *npk_io, int lim, float bg)
{
    const struct rtd_pipe_config *c = &p->cfg;
    const int S = c->roi_w, n0 = *npk_io;
    const size_t npx = (size_t)S * (size_t)S;
    int npk = n0, nsplit = 0;
    const double noise = (double)p->px_noise;
    /* The frame's typical width: a blend fits wider (fit between) or sits on a raised offset. */
    double sig[64], med_sigma = c->sigma_guess;
    int ns = 0;
    for (int i = 0; i < n0 && ns < 64; i++)
        if (ions[i].state == 0 && ions[i].sigma > 0.3 && ions[i].sigma < S)
            sig[ns++] = ions[i].sigma;
    if (ns >= 3) {
        for (int i = 1; i < ns; i++)
            for (int j = i; j > 0 && sig[j - 1] > sig[j]; j--) {
                double tmp = sig[j];
                sig[j] = sig[j - 1];
                sig[j - 1] = tmp;
            }
        med_sigma = sig[ns / 2];
    }
    for (int i = 0; i < n0 && npk < lim; i++) {
        struct rtd_pipe_ion *a = &ions[i];
        if (a->state != 0 || fit_outside(a->x - a->roi_x0, a->sigma, a->amp, S))
            continue;
        /* Cheap screen before the residual (121 exps): most single ions stop here. */
        if (fabs(a->sigma / med_sigma - 1.0) < 0.15 && a->offset - (double)bg < 0.08 * a->amp)
            continue;
        const float *d = p->data + (size_t)i * npx;
        double inv = -0.5 / (a->sigma * a->sigma), best = 0;
        int bx = 0, by = 0;
        for (int r = 0; r < S; r++) {
            double dy = a->roi_y0 + r - a->y;
            for (int q = 0; q < S; q++) {
                double dx = a->roi_x0 + q - a->x;
                double res =
                    (double)d[r * S + q] - a->offset - a->amp * exp((dx * dx + dy * dy) * inv);
                if (res > best) {
                    best = res;
                    bx = q;
                    by = r;
                }
            }
        }
        double ax = a->roi_x0 + bx, ay = a->roi_y0 + by;
        if (best < 0.15 * a->amp || hypot(ax - a->x, ay - a->y) < 1.5)
            continue;
        /* The fit's own chi2 is inflated by the blend: measure the pixel noise on the frame. */
        if (best < 6.0 * noise)
            continue;
        const float sg = c->sigma_guess;
        /* A fit between the two (widened) is mirrored; a fit that sat on one ion stays. */
        double mx = a->x, my = a->y;
        if (a->sigma > 1.25 * (double)sg) {
            mx = 2 * a->x - ax;
            my = 2 * a->y - ay;
        }
        /* The mirrored ion keeps this ROI; the new one gets its own around the residual peak. */
        float *in = p->params + (size_t)i * 5;
        in[0] = (float)(0.6 * a->amp);
        in[1] = (float)(mx - a->roi_x0);
        in[2] = (float)(my - a->roi_y0);
        in[3] = sg;
        set_ion_params(a, in, (float)a->chi2, 0);
        struct rtd_pipe_ion *b = &ions[npk];
        *b = *a;
        int shx, shy;
        b->peak_x = (int)lrint(ax);
        b->peak_y = (int)lrint(ay);
        b->roi_x0 = roi_origin(b->peak_x, S, fw, &shx);
        b->roi_y0 = roi_origin(b->peak_y, S, fh, &shy);
        b->flags = (shx || shy) ? RTD_ION_EDGE : 0;
        load_roi(frame, stride, b->roi_x0, b->roi_y0, S, p->data + (size_t)npk * npx);
        float *bn = p->params + (size_t)npk * 5;
        bn[0] = (float)best;
        bn[1] = (float)(ax - b->roi_x0);
        bn[2] = (float)(ay - b->roi_y0);
        bn[3] = sg;
        bn[4] = (float)a->offset;
        set_ion_params(b, bn, (float)a->chi2, 0);
        npk++;
        nsplit++;
    }
    *npk_io = npk;
    return nsplit;
}

/* One de-blending pass: each ion of map[0..nre) refitted with every neighbour's model removed. */
static int deblend_pass(struct rtd_pipe *p, struct rtd_pipe_ion *ions, int npk, int nre)
{
    const struct rtd_pipe_config *c = &p->cfg;
    const int S = c->roi_w;
    const size_t npx = (size_t)S * (size_t)S;
    for (int k = 0; k < nre; k++) {
        int i = p->map[k];
        const struct rtd_pipe_ion *a = &ions[i];
        float *d = p->data2 + (size_t)k * npx;
        memcpy(d, p->data + (size_t)i * npx, sizeof(float) * npx);
        for (int j = 0; j < npk; j++) {
            const struct rtd_pipe_ion *b = &ions[j];
            if (j == i || !(b->amp > 0) || !(b->sigma > 0.3) || b->sigma > S ||
                hypot(b->x - a->x, b->y - a->y) < (double)c->dup_dist)
                continue;
            /* Beyond 5 sigma of the ROI a neighbour adds < 4e-6 of its amplitude. */
            const double cx = a->roi_x0 + (S - 1) / 2.0, cy = a->roi_y0 + (S - 1) / 2.0;
            if (fabs(b->x - cx) > S / 2.0 + 5 * b->sigma ||
                fabs(b->y - cy) > S / 2.0 + 5 * b->sigma)
                continue;
            double inv = -0.5 / (b->sigma * b->sigma);
            for (int r = 0; r < S; r++) {
                double dy = a->roi_y0 + r - b->y;
                for (int q = 0; q < S; q++) {
                    double dx = a->roi_x0 + q - b->x;
                    d[r * S + q] -= (float)(b->amp * exp((dx * dx + dy * dy) * inv));
                }
            }
        }
        float *in = p->init2 + (size_t)k * 5;
        in[0] = (float)a->amp;
        in[1] = (float)(a->x - a->roi_x0);
        in[2] = (float)(a->y - a->roi_y0);
        in[3] = (float)a->sigma;
        in[4] = (float)a->offset;
    }
    int rc = run_fits(c, RTD_FIT_GAUSS_2D, (int)npx, (size_t)nre, p->data2, p->init2, p->params2,
                      p->states2, p->iters2, p->chi2b);
    if (rc < 0)
        return rc;
    for (int k = 0; k < nre; k++) {
        const float *q = p->params2 + (size_t)k * 5;
        if (p->states2[k] != 0 || fit_outside(q[1], q[3], q[0], S) ||
            fit_outside(q[2], q[3], q[0], S))
            continue; /* keep the previous values when the refit went astray */
        struct rtd_pipe_ion *ion = &ions[p->map[k]];
        set_ion_params(ion, q, p->chi2b[k], p->states2[k]);
        ion->iters += p->iters2[k];
    }
    return 0;
}

/*
 * Static analysis: GAUSS_2D per ROI. Overlapping neighbours are subtracted
 * with their first-pass parameters and the ROI is fitted again, which removes
 * most of the pull a close neighbour's tail has on the centre.
 */
static int fit_static(struct rtd_pipe *p, const uint16_t *frame, size_t stride, int fw, int fh,
                      int wx0, int wy0, int win_w, int win_h, int *npk_io, int lim, float bg,
                      uint64_t fid, struct rtd_pipe_ion *ions, struct rtd_pipe_frame_stats *st)
{
    int npk = *npk_io;
    const struct rtd_pipe_config *c = &p->cfg;
    const int S = c->roi_w;
    const size_t npx = (size_t)S * (size_t)S;
    /* A Gaussian spot of sigma s blurred by b (and binned) peaks at amp * s^2 / (s^2 + b^2). */
    const float b2 = (float)(c->bin * c->bin);
    const float sb2 = c->blur_x * c->blur_x + (b2 - 1.0f) / 12.0f;
    const float sg2 = c->sigma_guess * c->sigma_guess;
    const float amp_scale = (sg2 + sb2) / sg2;
    for (int i = 0; i < npk; i++) {
        const struct pipe_peak *pk = &p->peaks[i];
        float fx, fy;
        int px, py, shx, shy;
        peak_position(p, pk, win_w, win_h, wx0, wy0, bg, &fx, &fy, &px, &py);
        int ox = roi_origin(px, S, fw, &shx), oy = roi_origin(py, S, fh, &shy);
        float *d = p->data + (size_t)i * npx;
        for (int r = 0; r < S; r++) {
            const uint16_t *src = frame + (size_t)(oy + r) * stride + (size_t)ox;
            for (int q = 0; q < S; q++)
                d[r * S + q] = (float)src[q];
        }
        float *in = p->init + (size_t)i * 5;
        in[0] = (pk->value / b2 - bg) * amp_scale;
        in[1] = fx - (float)ox;
        in[2] = fy - (float)oy;
        in[3] = c->sigma_guess;
        in[4] = bg;
        struct rtd_pipe_ion *ion = &ions[i];
        memset(ion, 0, sizeof *ion);
        ion->frame = fid;
        ion->peak_x = px;
        ion->peak_y = py;
        ion->roi_x0 = ox;
        ion->roi_y0 = oy;
        ion->flags = (shx || shy) ? RTD_ION_EDGE : 0;
    }
    int rc = run_fits(c, RTD_FIT_GAUSS_2D, (int)npx, (size_t)npk, p->data, p->init, p->params,
                      p->states, p->iters, p->chi2);
    if (rc < 0)
        return rc;
    for (int i = 0; i < npk; i++) {
        const float *q = p->params + (size_t)i * 5;
        struct rtd_pipe_ion *ion = &ions[i];
        ion->amp = q[0];
        ion->x = (double)q[1] + ion->roi_x0;
        ion->y = (double)q[2] + ion->roi_y0;
        ion->sigma = ion->sigma_y = fabs((double)q[3]);
        ion->offset = q[4];
        ion->chi2 = p->chi2[i];
        ion->state = p->states[i];
        ion->iters = p->iters[i];
    }
    int nsplit = c->deblend ? split_blends(p, frame, stride, fw, fh, ions, &npk, lim, bg) : 0;
    *npk_io = npk;
    /* Overlap: another ion's light reaches into this ROI (centre within S/2 + 2 sigma). */
    int nre = 0;
    for (int i = 0; i < npk; i++) {
        struct rtd_pipe_ion *a = &ions[i];
        for (int j = 0; j < npk; j++) {
            if (j == i)
                continue;
            const struct rtd_pipe_ion *b = &ions[j];
            double reach = S / 2.0 + 2.0 * b->sigma;
            if (fabs(b->x - (a->roi_x0 + S / 2.0 - 0.5)) < reach &&
                fabs(b->y - (a->roi_y0 + S / 2.0 - 0.5)) < reach &&
                hypot(b->x - a->x, b->y - a->y) >= (double)c->dup_dist) {
                a->flags |= RTD_ION_OVERLAP;
                break;
            }
        }
        if ((a->flags & RTD_ION_OVERLAP) && c->deblend)
            p->map[nre++] = i;
    }
    /* Split blends start from rough guesses: a few passes let the pair settle together. */
    const int passes = nsplit ? 4 : 1;
    for (int pass = 0; pass < passes && nre > 0; pass++) {
        rc = deblend_pass(p, ions, npk, nre);
        if (rc < 0)
            return rc;
    }
    for (int i = 0; i < npk; i++) {
        struct rtd_pipe_ion *ion = &ions[i];
        if (fit_outside(ion->x - ion->roi_x0, ion->sigma, ion->amp, S) ||
            ion->sigma < (double)c->min_sigma ||
            !(ion->y - ion->roi_y0 >= -0.5 && ion->y - ion->roi_y0 <= S - 0.5))
            ion->flags |= RTD_ION_OUTSIDE;
    }
    (void)win_h;
    return 0;
}

/*
 * Profiles are smoothed before the 1-D fits by a narrow Gaussian (mirrored at
 * the ends): the model's PSF sigma then fits sqrt(sigma^2 + s^2), and a noisy
 * profile can no longer be fitted by a spike (GAUSS_1D sigma -> 0) or by
 * SHM_1D's bare arcsine horns on two samples (sigma_y -> 0). The widths are
 * reported with s^2 taken out again. smat (n x n, optional) receives the
 * smoothing matrix, for the covariance of the fit.
 */
#define PIPE_SMOOTH_H 0.7f /* horizontal profile (px) */
#define PIPE_SMOOTH_V 1.0f /* vertical profile (px) */

static void smooth_profile(float *v, int n, float sigma, double *smat)
{
    float w[PIPE_MAX_RADIUS + 1], tmp[64];
    const int r = blur_kernel(sigma, w);
    memcpy(tmp, v, sizeof(float) * (size_t)n);
    if (smat)
        memset(smat, 0, sizeof(double) * (size_t)n * (size_t)n);
    for (int i = 0; i < n; i++) {
        float s = 0;
        for (int k = -r; k <= r; k++) {
            int j = i + k;
            j = j < 0 ? -j - 1 : (j >= n ? 2 * n - 1 - j : j);
            j = j < 0 ? 0 : (j >= n ? n - 1 : j);
            s += w[k < 0 ? -k : k] * tmp[j];
            if (smat)
                smat[i * n + j] += (double)w[k < 0 ? -k : k];
        }
        v[i] = s;
    }
}

/* Invert the 5x5 matrix a in place (Gauss-Jordan, partial pivoting); -1 if singular. */
static int inv5(double a[5][5])
{
    double m[5][10];
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 10; j++)
            m[i][j] = j < 5 ? a[i][j] : (j == i + 5);
    for (int col = 0; col < 5; col++) {
        int piv = col;
        for (int r = col + 1; r < 5; r++)
            if (fabs(m[r][col]) > fabs(m[piv][col]))
                piv = r;
        if (!(fabs(m[piv][col]) > 1e-300))
            return -1;
        for (int j = 0; j < 10; j++) {
            double t = m[col][j];
            m[col][j] = m[piv][j];
            m[piv][j] = t;
        }
        const double inv = 1.0 / m[col][col];
        for (int j = 0; j < 10; j++)
            m[col][j] *= inv;
        for (int r = 0; r < 5; r++)
            if (r != col && m[r][col] != 0) {
                const double f = m[r][col];
                for (int j = 0; j < 10; j++)
                    m[r][j] -= f * m[col][j];
            }
    }
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
            a[i][j] = m[i][j + 5];
    return 0;
}

/*
 * Standard error of the SHM_1D amplitude A fitted (parameters q) to a profile
 * of H samples smoothed by smat (y_s = S y): the least-squares covariance of
 * correlated data, C = B J^T S S^T J B with B = (J^T J)^-1 (J the model's
 * Jacobian, float64), times the raw samples' noise variance, estimated from the
 * residuals as chi2 / (tr(S S^T) (H - 5) / H). Below A ~ sigma the (A, sigma)
 * block of J^T J is nearly singular and the error grows: "A unresolved", which
 * a user can tell from "A = 0". -1 when the matrix cannot be inverted.
 */
static double shm_A_err(const float *q, int H, double chi2, const double *smat)
{
    double pp[5], jac[64 * 5], b[5][5] = {{0}};
    for (int k = 0; k < 5; k++)
        pp[k] = (double)q[k];
    if (H > 64 || H <= 5 || rtd_fit_model_eval(RTD_FIT_SHM_1D, pp, (uint32_t)H, 0, NULL, jac) < 0)
        return -1;
    for (int i = 0; i < H; i++)
        for (int x = 0; x < 5; x++)
            for (int y = 0; y < 5; y++)
                b[x][y] += jac[i * 5 + x] * jac[i * 5 + y];
    if (inv5(b) < 0)
        return -1;
    /* g = S^T J b_A: the sensitivity of A to each raw sample. */
    double jb[64], g2 = 0, tr = 0;
    for (int i = 0; i < H; i++) {
        jb[i] = 0;
        for (int x = 0; x < 5; x++)
            jb[i] += jac[i * 5 + x] * b[x][2];
    }
    for (int j = 0; j < H; j++) {
        double g = 0;
        for (int i = 0; i < H; i++)
            g += smat[i * H + j] * jb[i];
        g2 += g * g;
    }
    for (int i = 0; i < H * H; i++)
        tr += smat[i] * smat[i];
    const double var = chi2 / (tr * (H - 5) / H);
    return g2 > 0 && var > 0 ? sqrt(g2 * var) : -1;
}

/*
 * SHM analysis: profiles of a roi_w x roi_h ROI. The horizontal profile (sum
 * over rows) gets GAUSS_1D, the vertical (sum over columns) SHM_1D; both
 * batches go to the fit library in one call each. With the smooth background
 * the model is subtracted from every pixel of the ROI first: a gradient along
 * the motion is a slope in the vertical profile that SHM_1D's constant offset
 * cannot follow, and it would bias A. The horizontal fit comes first, and its
 * sigma (the PSF's, which is round) seeds the vertical fit: A starts at
 * sqrt(2 (var - sigma^2)) from the vertical profile's second moment (harmonic
 * motion adds A^2/2 to the variance), never below 1 px (SHM_1D's derivative in
 * A vanishes at A = 0) nor above max_amplitude.
 */
static int fit_shm(struct rtd_pipe *p, const uint16_t *frame, size_t stride, int fw, int fh,
                   int wx0, int wy0, int win_w, int win_h, int npk, float bg, uint64_t fid,
                   struct rtd_pipe_ion *ions, struct rtd_pipe_frame_stats *st)
{
    const struct rtd_pipe_config *c = &p->cfg;
    const int W = c->roi_w, H = c->roi_h;
    const double sq2pi = 2.5066282746310002;
    const float b2 = (float)(c->bin * c->bin);
    const int smooth = c->background == RTD_PIPE_BG_SMOOTH;
    float col[PIPE_BG_MAXB];
    for (int i = 0; i < npk; i++) {
        const struct pipe_peak *pk = &p->peaks[i];
        float cx, cy;
        int px, py, shx, shy;
        peak_position(p, pk, win_w, win_h, wx0, wy0, bg, &cx, &cy, &px, &py);
        int ox = roi_origin(px, W, fw, &shx), oy = roi_origin(py, H, fh, &shy);
        float *hp = p->data + (size_t)i * (size_t)W;
        float *vp = p->data2 + (size_t)i * (size_t)H;
        float roi[64 * 64];
        for (int r = 0; r < H; r++) {
            const uint16_t *src = frame + (size_t)(oy + r) * stride + (size_t)ox;
            float *d = roi + r * W, s = 0;
            if (smooth) {
                /* Full pixel x sits at binned window coordinate ((x - wx0) - (bin-1)/2) / bin. */
                const float inv = 1.0f / (float)c->bin, half = 0.5f * (float)(c->bin - 1);
                float bgr[64];
                grid_col(p, p->gm, ((float)(oy + r - wy0) - half) * inv, col);
                grid_span(p, col, ((float)(ox - wx0) - half) * inv, inv, W, bgr);
                for (int q = 0; q < W; q++)
                    d[q] = (float)src[q] - bgr[q] / b2;
            } else {
                for (int q = 0; q < W; q++)
                    d[q] = (float)src[q];
            }
            for (int q = 0; q < W; q++)
                s += d[q];
            vp[r] = s;
        }
        /*
         * The horizontal profile sums only the rows the ion's light reaches (its vertical
         * extent from the profile's second moment): the other rows of the tall ROI add only
         * noise to it, and an ion with little motion would get a poor x and sigma.
         */
        const double sg0 = c->sigma_guess, voff0 = smooth ? 0.0 : (double)bg * W;
        double ea = 0, em = 0, ev = 0;
        for (int r = 0; r < H; r++) {
            const double e = (double)vp[r] - voff0;
            if (e > 0) {
                ea += e;
                em += e * r;
            }
        }
        const double emean = ea > 0 ? em / ea : (double)(cy - (float)oy);
        for (int r = 0; r < H; r++) {
            const double e = (double)vp[r] - voff0;
            if (e > 0)
                ev += e * (r - emean) * (r - emean);
        }
        const double ea2 = ea > 0 ? 2.0 * (ev / ea - sg0 * sg0) : 0;
        const double ext = (ea2 > 0 ? sqrt(ea2) : 0) + 3.0 * sg0;
        int r0 = (int)floor(emean - ext), r1 = (int)ceil(emean + ext);
        r0 = r0 < 0 ? 0 : r0;
        r1 = r1 > H - 1 ? H - 1 : r1;
        if (r1 - r0 < 4) {
            r0 = 0;
            r1 = H - 1;
        }
        for (int q = 0; q < W; q++)
            hp[q] = 0;
        for (int r = r0; r <= r1; r++)
            for (int q = 0; q < W; q++)
                hp[q] += roi[r * W + q];
        /* Profile areas above the background give amplitudes that do not depend on A. */
        const double hoff = smooth ? 0.0 : (double)bg * (r1 - r0 + 1);
        p->snr[i] = (float)(r1 - r0 + 1);
        double harea = 0;
        for (int q = 0; q < W; q++)
            harea += (double)hp[q] - hoff;
        const double sg = c->sigma_guess;
        float *hi = p->init + (size_t)i * 4;
        hi[0] =
            (float)(harea > 0 ? harea / (sq2pi * sg) : (double)((pk->value / b2 - bg) * (float)H));
        if (smooth && !(hi[0] > 0))
            hi[0] = (float)(fabs(harea) / (sq2pi * sg) + 1.0);
        hi[1] = cx - (float)ox;
        hi[2] = (float)sg;
        hi[3] = (float)hoff;
        float *vi = p->init2 + (size_t)i * 5;
        vi[1] = cy - (float)oy;
        struct rtd_pipe_ion *ion = &ions[i];
        memset(ion, 0, sizeof *ion);
        ion->frame = fid;
        ion->peak_x = px;
        ion->peak_y = py;
        ion->roi_x0 = ox;
        ion->roi_y0 = oy;
        ion->flags = (shx || shy) ? RTD_ION_EDGE : 0;
    }
    for (int i = 0; i < npk; i++) {
        smooth_profile(p->data + (size_t)i * (size_t)W, W, PIPE_SMOOTH_H, NULL);
        float *hi = p->init + (size_t)i * 4;
        hi[2] = sqrtf(hi[2] * hi[2] + PIPE_SMOOTH_H * PIPE_SMOOTH_H);
    }
    int rc = run_fits(c, RTD_FIT_GAUSS_1D, W, (size_t)npk, p->data, p->init, p->params, p->states,
                      p->iters, p->chi2);
    if (rc < 0)
        return rc;
    for (int i = 0; i < npk; i++) { /* back to the PSF's sigma */
        float *h = p->params + (size_t)i * 4;
        const float s2 = h[2] * h[2] - PIPE_SMOOTH_H * PIPE_SMOOTH_H;
        h[2] = s2 > 0.0f ? sqrtf(s2) : 0.0f;
        /*
         * A dim ion's profile can let GAUSS_1D run off into a broad bump traded against its
         * offset (sigma > 3 sigma_guess, or a negative amplitude). The ion was detected all
         * the same: its x is then the centroid of the profile's excess within 2 sigma_guess
         * of the detected peak, and its sigma the guess (the fit's state is kept).
         */
        if (!(h[0] > 0.0f) || h[2] > 3.0f * c->sigma_guess) {
            const float *hp = p->data + (size_t)i * (size_t)W, *hi = p->init + (size_t)i * 4;
            double sw = 0, sx = 0;
            for (int q = 0; q < W; q++)
                if (fabs(q - (double)hi[1]) <= 2.0 * (double)c->sigma_guess && hp[q] > hi[3]) {
                    sw += (double)(hp[q] - hi[3]);
                    sx += (double)(hp[q] - hi[3]) * q;
                }
            h[1] = sw > 0 ? (float)(sx / sw) : hi[1];
            h[2] = c->sigma_guess;
            h[0] = hp[(int)lrintf(h[1] < 0 ? 0 : (h[1] > W - 1 ? (float)(W - 1) : h[1]))] - hi[3];
            h[3] = hi[3];
        }
    }
    const double amax = c->max_amplitude > 1.0f ? (double)c->max_amplitude : H / 2.0;
    /*
     * The frame's PSF: the median sigma of its plausible horizontal fits (one optics images
     * every ion). With the sigma tied, a dim ion's noisy horizontal width would otherwise
     * move its A: at A ~ sigma, 0.3 px of sigma error is ~1 px of A.
     */
    float sv[64];
    int nsv = 0;
    for (int i = 0; i < npk && nsv < 64; i++) {
        const float *h = p->params + (size_t)i * 4;
        if (p->states[i] == 0 && h[2] > 0.5f * c->sigma_guess && h[2] < 2.0f * c->sigma_guess)
            sv[nsv++] = h[2];
    }
    sort_small(sv, (size_t)nsv);
    const double frame_sg = nsv >= 3 ? (double)sv[nsv / 2] : 0.0;
    for (int i = 0; i < npk; i++) {
        const float *h = p->params + (size_t)i * 4;
        const float *vp = p->data2 + (size_t)i * (size_t)H;
        float *vi = p->init2 + (size_t)i * 5;
        /* The frame's PSF sigma, else this ion's horizontal fit when plausible, else the guess. */
        double sg = c->sigma_guess;
        if (frame_sg > 0)
            sg = frame_sg;
        else if (p->states[i] == 0 && h[2] > 0.5f * c->sigma_guess && h[2] < 2.0f * c->sigma_guess)
            sg = (double)h[2];
        const double voff = smooth ? 0.0 : (double)bg * W;
        double varea = 0, vm = 0, vv = 0;
        for (int r = 0; r < H; r++) {
            double e = (double)vp[r] - voff;
            if (e > 0) {
                varea += e;
                vm += e * r;
            }
        }
        const double vmean = varea > 0 ? vm / varea : (double)vi[1];
        for (int r = 0; r < H; r++) {
            double e = (double)vp[r] - voff;
            if (e > 0)
                vv += e * (r - vmean) * (r - vmean);
        }
        const double var = varea > 0 ? vv / varea : 0;
        const double a2 = 2.0 * (var - sg * sg);
        double a0 = a2 > 1.0 ? sqrt(a2) : 1.0;
        a0 = a0 > amax ? amax : a0;
        vi[0] = (float)(varea > 0 ? varea / (sq2pi * sg)
                                  : (double)((p->peaks[i].value / b2 - bg) * (float)W));
        if (!(vi[0] > 0))
            vi[0] = 1.0f;
        vi[2] = (float)a0;
        vi[3] = sqrtf((float)(sg * sg) + PIPE_SMOOTH_V * PIPE_SMOOTH_V);
        vi[4] = (float)voff;
        smooth_profile(p->data2 + (size_t)i * (size_t)H, H, PIPE_SMOOTH_V, NULL);
    }
    /* SHM_1D's A and sigma are nearly degenerate: its library default of 50 iterations. */
    struct rtd_pipe_config cv = *c;
    cv.max_iter = c->max_iter > 50 ? c->max_iter : 50;
    double smat[64 * 64];
    {
        float unit[64] = {0};
        smooth_profile(unit, H, PIPE_SMOOTH_V, smat);
    }
    rc = run_fits_fixed(&cv, RTD_FIT_SHM_1D, H, (size_t)npk, p->data2, p->init2, p->params2,
                        p->states2, p->iters2, p->chi2b, c->tie_sigma ? 1u << 3 : 0u);
    if (rc < 0)
        return rc;
    for (int i = 0; i < npk; i++) {
        const float *h = p->params + (size_t)i * 4, *v = p->params2 + (size_t)i * 5;
        struct rtd_pipe_ion *ion = &ions[i];
        ion->amp = h[0];
        ion->x = (double)h[1] + ion->roi_x0;
        ion->sigma = fabs((double)h[2]);
        ion->offset = h[3];
        ion->v_amp = v[0];
        ion->y = (double)v[1] + ion->roi_y0;
        ion->A = fabs((double)v[2]);
        const double sy2 = (double)v[3] * (double)v[3] - (double)(PIPE_SMOOTH_V * PIPE_SMOOTH_V);
        ion->sigma_y = sy2 > 0 ? sqrt(sy2) : 0.0;
        ion->v_offset = v[4];
        ion->chi2 = (double)p->chi2[i] + (double)p->chi2b[i];
        ion->state = p->states[i] ? p->states[i] : p->states2[i];
        ion->iters = p->iters[i] > p->iters2[i] ? p->iters[i] : p->iters2[i];
        ion->A_err = p->states2[i] == 0 ? shm_A_err(v, H, (double)p->chi2b[i], smat) : -1;
        /*
         * Significance, as the static analysis's: the horizontal profile's photons (its area,
         * which the smoothing keeps) over the noise of the samples a Gaussian of its width
         * covers, SNR = area pi^(1/4) / (sqrt(2 pi sigma) noise_sample), with the local
         * per-pixel noise of the background model times sqrt(rows summed).
         */
        double npx = (double)p->px_noise;
        if (smooth) {
            const float inv = 1.0f / (float)c->bin, half = 0.5f * (float)(c->bin - 1);
            grid_col(p, p->gs, ((float)ion->y - (float)wy0 - half) * inv, col);
            npx = (double)grid_at(p, col, ((float)ion->x - (float)wx0 - half) * inv) / c->bin;
        }
        const double sp = sqrt(ion->sigma * ion->sigma + (double)(PIPE_SMOOTH_H * PIPE_SMOOTH_H));
        const double area = (double)h[0] * sp * 2.5066282746310002;
        p->snr[i] = (float)(area * 1.3313353638003897 /
                            (sqrt(2.5066282746310002 * (ion->sigma > 0.5 ? ion->sigma : 0.5)) *
                                 npx * sqrt((double)p->snr[i]) +
                             1e-9));
        /*
         * Hot pixels and cosmics are narrow across the motion: sigma_x < min_sigma. The
         * vertical sigma is not tested against it: traded against A, a dim ion's sharp
         * turning points can fit a narrow sigma_y, and it is an ion all the same.
         */
        if (fit_outside(h[1], ion->sigma, h[0], W) ||
            fit_outside(v[1], fabs((double)v[3]), v[0], H) || ion->sigma < (double)c->min_sigma)
            ion->flags |= RTD_ION_OUTSIDE;
    }
    for (int i = 0; i < npk; i++)
        for (int j = 0; j < npk; j++)
            if (j != i && fabs(ions[j].x - ions[i].x) < W / 2.0 + 2 * ions[j].sigma &&
                fabs(ions[j].y - ions[i].y) < H / 2.0 + 2 * ions[j].sigma_y + ions[j].A)
                ions[i].flags |= RTD_ION_OVERLAP;
    (void)st;
    return 0;
}

int rtd_pipe_process(struct rtd_pipe *p, const uint16_t *frame, int width, int height,
                     size_t stride, uint64_t frame_id, struct rtd_pipe_ion *ions, int max_ions,
                     struct rtd_pipe_frame_stats *st_out)
{
    struct rtd_pipe_frame_stats st;
    memset(&st, 0, sizeof st);
    const uint64_t t0 = rtd_now_ns();
    const struct rtd_pipe_config *c = &p->cfg;
    if (width < 1 || height < 1 || stride < (size_t)width || max_ions < 0)
        return -EINVAL;
    if (width < c->roi_w || height < c->roi_h)
        return -EINVAL;
    int wx0 = c->xstart > 0 ? c->xstart : 0, wy0 = c->ystart > 0 ? c->ystart : 0;
    int wx1 = c->xfinish > 0 && c->xfinish < width ? c->xfinish : width;
    int wy1 = c->yfinish > 0 && c->yfinish < height ? c->yfinish : height;
    if (wx1 - wx0 < 3 || wy1 - wy0 < 3)
        return -EINVAL;
    int rc = pipe_grow(p, wx1 - wx0, wy1 - wy0);
    if (rc < 0)
        return rc;
    int truncated;
    int npk = detect(p, frame, stride, wx0, wy0, wx1 - wx0, wy1 - wy0, &st, &truncated);
    st.n_peaks = (uint32_t)npk;
    int lim = max_ions < c->max_ions ? max_ions : c->max_ions;
    if (npk > lim) {
        npk = lim;
        truncated = 1;
    }
    st.truncated = (uint32_t)truncated;
    const uint64_t t1 = rtd_now_ns();
    if (npk > 0) {
        if (c->analysis == RTD_PIPE_STATIC)
            rc = fit_static(p, frame, stride, width, height, wx0, wy0, wx1 - wx0, wy1 - wy0, &npk,
                            lim, st.background, frame_id, ions, &st);
        else
            rc = fit_shm(p, frame, stride, width, height, wx0, wy0, wx1 - wx0, wy1 - wy0, npk,
                         st.background, frame_id, ions, &st);
        if (rc < 0)
            return rc;
    }
    /*
     * Significance of a static fit: its photons over the noise of the pixels it
     * covers, SNR = sigma * amp * sqrt(pi) / noise, with the per-pixel noise
     * from the median chi2 of the frame's fits (robust to the odd bad fit).
     * Noise bumps that passed the threshold fit to a few ADU and fail here.
     */
    double snr_scale = 0;
    if (c->analysis == RTD_PIPE_STATIC && c->min_snr > 0 && npk > 0)
        snr_scale = 1.7724538509055159 / (double)p->px_noise;
    const int shm_snr = c->analysis == RTD_PIPE_SHM && c->min_snr > 0;
    /* Duplicates: two peaks that fit to the same spot; the brighter peak (earlier) is kept. */
    int n = 0;
    for (int i = 0; i < npk; i++) {
        if ((!c->keep_outside && (ions[i].flags & RTD_ION_OUTSIDE)) ||
            (snr_scale > 0 && ions[i].sigma * ions[i].amp * snr_scale < (double)c->min_snr) ||
            (shm_snr && !((double)p->snr[i] >= (double)c->min_snr))) {
            st.n_rejected++;
            continue;
        }
        int dup = 0;
        for (int j = 0; j < n && !dup; j++)
            dup = hypot(ions[i].x - ions[j].x, ions[i].y - ions[j].y) < (double)c->dup_dist;
        if (dup) {
            st.n_duplicates++;
            continue;
        }
        if (n != i)
            ions[n] = ions[i];
        if (ions[n].state == 0)
            st.n_converged++;
        else
            st.n_failed++;
        n++;
    }
    st.n_ions = (uint32_t)n;
    const uint64_t t2 = rtd_now_ns();
    st.t_detect_ns = t1 - t0;
    st.t_fit_ns = t2 - t1;
    st.t_total_ns = t2 - t0;
    if (st_out)
        *st_out = st;
    return n;
}
