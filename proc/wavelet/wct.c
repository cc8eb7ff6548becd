/* SPDX-License-Identifier: MIT */
/*
 * Wavelet coherence and its Monte Carlo significance (PYCWT_NOTES.md 1.7-1.8).
 *
 * Smoothing is PyCWT's Morlet.smooth: a Gaussian of sigma = s_j/dt samples applied through
 * a zero-padded FFT of length M (the Gaussian's spectrum is stored band-limited per scale),
 * then a boxcar of L = round(2 dj0/dj) rows, weights [1/2, 1, ..., 1, 1/2]/(L-1), zero-filled,
 * centred as scipy's convolve2d(..., 'same').
 *
 * The Monte Carlo loop runs surrogate pairs in parallel; every thread owns its buffers and
 * an integer histogram, the iteration i draws from its own RNG stream (seed, i), and the
 * histograms are summed at the end, so the level does not depend on the thread count. Inside
 * an iteration the two real smoothing inputs |W1|^2/s and |W2|^2/s share one complex FFT
 * (real and imaginary part), which the exact wct path does not do (see wct_row).
 */
#include "wavelet_internal.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- RNG: xoshiro256** seeded by splitmix64, normals by Marsaglia's polar method ---- */
struct rtd_rng {
    uint64_t s[4];
    double spare;
    int has_spare;
};

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void rng_seed(struct rtd_rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed;
    x = splitmix64(&x) ^ ((stream + 1) * 0x9E3779B97F4A7C15ull);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
    r->has_spare = 0;
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(struct rtd_rng *r)
{
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

static double rng_normal(struct rtd_rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u, v, q;
    do {
        u = 2 * ((double)(rng_next(r) >> 11) * 0x1.0p-53) - 1;
        v = 2 * ((double)(rng_next(r) >> 11) * 0x1.0p-53) - 1;
        q = u * u + v * v;
    } while (q >= 1 || q == 0);
    double f = sqrt(-2 * log(q) / q);
    r->spare = v * f;
    r->has_spare = 1;
    return u * f;
}

static void rednoise_draw(struct rtd_rng *r, double *out, size_t n, double g, double a, int filter)
{
    size_t tau = g == 0 ? 0 : (size_t)ceil(-2 / log(fabs(g)));
    double y = 0;
    for (size_t i = 0; i < n + tau; i++) {
        y = a * rng_normal(r) + (filter ? g * y : 0.0);
        if (i >= tau)
            out[i - tau] = y;
    }
}

int rtd_wavelet_rednoise(double *out, size_t n, double g, double a, uint64_t seed, uint64_t stream)
{
    if (!out || !n || !isfinite(g) || fabs(g) >= 1 || !isfinite(a))
        return -EINVAL;
    struct rtd_rng r;
    rng_seed(&r, seed, stream);
    rednoise_draw(&r, out, n, g, a, 1);
    return 0;
}

/* ---- the smoothing operator ---- */
struct gauss_row {
    size_t K;  /* F is stored for |k'| = 0..K; zero beyond */
    double *f; /* exp(-(s/dt)^2 kappa^2 / 2) / M (the inverse FFT's 1/M folded in) */
};

struct wct_work {
    struct rtd_cwt_scratch c1, c2;
    fftw_complex *a, *a2, *b; /* M each */
    double *acc;              /* 4 n: scale-boxcar accumulators */
};

struct rtd_wct_plan {
    struct rtd_cwt_plan *cwt;
    size_t n, M, rows;
    int L, h;
    double *w;
    struct gauss_row *g;
    fftw_plan fwd, inv; /* in-place c2c, M */
    fftw_plan inv_oop;  /* out-of-place inverse, M (Monte Carlo rows of stride M) */
    int nthreads;
    struct wct_work *work;
    double complex *ta, *ta2, *tb; /* rows x n */
    double complex *x1full, *x2full;
    double *xpad, *z1, *z2;
    fftw_complex *xspec;
};

static int work_init(const struct rtd_wct_plan *p, struct wct_work *w)
{
    memset(w, 0, sizeof(*w));
    if (rtd_cwt_scratch_init(p->cwt, &w->c1) || rtd_cwt_scratch_init(p->cwt, &w->c2))
        return -ENOMEM;
    w->a = rtd_wavelet_zalloc(p->M * sizeof(fftw_complex));
    w->a2 = rtd_wavelet_zalloc(p->M * sizeof(fftw_complex));
    w->b = rtd_wavelet_zalloc(p->M * sizeof(fftw_complex));
    w->acc = rtd_wavelet_zalloc(4 * p->n * sizeof(double));
    return w->a && w->a2 && w->b && w->acc ? 0 : -ENOMEM;
}

static void work_free(struct wct_work *w)
{
    rtd_cwt_scratch_free(&w->c1);
    rtd_cwt_scratch_free(&w->c2);
    fftw_free(w->a);
    fftw_free(w->a2);
    fftw_free(w->b);
    fftw_free(w->acc);
}

int rtd_wct_plan_create(struct rtd_wct_plan **out, size_t n, double dt, double dj, double s0, int J,
                        const struct rtd_mother *m, unsigned flags)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    /* PyCWT's smooth() exists for Morlet only and needs dj0 (f0 = 6). */
    if (!m || m->kind != RTD_MOTHER_MORLET || m->dj0 <= 0)
        return -EINVAL;
    struct rtd_wct_plan *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    int rc = rtd_cwt_plan_create(&p->cwt, n, dt, dj, s0, J, m,
                                 flags & ~(RTD_WAVELET_ONESHOT | RTD_WAVELET_SINGLE));
    if (rc) {
        free(p);
        return rc;
    }
    dj = rtd_cwt_dj(p->cwt);
    p->n = n;
    p->M = rtd_cwt_padded(p->cwt);
    p->rows = rtd_cwt_nscales(p->cwt);
    p->nthreads = 1;
    rc = -ENOMEM;
    size_t M = p->M, rows = p->rows;
    p->L = (int)nearbyint(m->dj0 / dj * 2);
    if (p->L < 1)
        p->L = 1;
    p->h = (p->L - 1) / 2;
    p->w = malloc((size_t)p->L * sizeof(double));
    p->g = calloc(rows, sizeof(*p->g));
    p->work = calloc(1, sizeof(*p->work));
    p->ta = malloc(rows * n * sizeof(double complex));
    p->ta2 = malloc(rows * n * sizeof(double complex));
    p->tb = malloc(rows * n * sizeof(double complex));
    p->x1full = rtd_wavelet_zalloc(M * sizeof(double complex));
    p->x2full = rtd_wavelet_zalloc(M * sizeof(double complex));
    p->xpad = rtd_wavelet_zalloc(M * sizeof(double));
    p->xspec = rtd_wavelet_zalloc((M / 2 + 1) * sizeof(fftw_complex));
    p->z1 = malloc(n * sizeof(double));
    p->z2 = malloc(n * sizeof(double));
    if (!p->w || !p->g || !p->work || !p->ta || !p->ta2 || !p->tb || !p->x1full || !p->x2full ||
        !p->xpad || !p->xspec || !p->z1 || !p->z2)
        goto fail;
    double wsum = 0;
    for (int q = 0; q < p->L; q++)
        wsum += p->w[q] = (q == 0 || q == p->L - 1) ? 0.5 : 1.0;
    for (int q = 0; q < p->L; q++)
        p->w[q] /= wsum;
    const double *sc = rtd_cwt_scales(p->cwt);
    for (size_t j = 0; j < rows; j++) {
        double sn = sc[j] / dt;
        size_t K = 0;
        while (K < M / 2) {
            double kap = 2 * M_PI * ((double)(K + 1) / (double)M);
            if (exp(-0.5 * (sn * sn) * (kap * kap)) < 1e-25)
                break;
            K++;
        }
        p->g[j].K = K;
        p->g[j].f = malloc((K + 1) * sizeof(double));
        if (!p->g[j].f)
            goto fail;
        for (size_t k = 0; k <= K; k++) {
            double kap = 2 * M_PI * ((double)k / (double)M);
            p->g[j].f[k] = exp(-0.5 * (sn * sn) * (kap * kap)) / (double)M;
        }
    }
    if (work_init(p, &p->work[0]))
        goto fail;
    pthread_mutex_lock(&rtd_wavelet_planner_lock);
    p->fwd = rtd_wavelet_plan_c2c((int)M, p->work[0].a, p->work[0].a, FFTW_FORWARD, flags);
    p->inv = rtd_wavelet_plan_c2c((int)M, p->work[0].a, p->work[0].a, FFTW_BACKWARD, flags);
    p->inv_oop = rtd_wavelet_plan_c2c((int)M, p->work[0].a, p->work[0].b, FFTW_BACKWARD, flags);
    pthread_mutex_unlock(&rtd_wavelet_planner_lock);
    rtd_wavelet_wisdom_commit();
    if (!p->fwd || !p->inv || !p->inv_oop)
        goto fail;
    *out = p;
    return 0;
fail:
    rtd_wct_plan_destroy(p);
    return rc;
}

void rtd_wct_plan_destroy(struct rtd_wct_plan *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&rtd_wavelet_planner_lock);
    if (p->fwd)
        fftw_destroy_plan(p->fwd);
    if (p->inv)
        fftw_destroy_plan(p->inv);
    if (p->inv_oop)
        fftw_destroy_plan(p->inv_oop);
    pthread_mutex_unlock(&rtd_wavelet_planner_lock);
    if (p->g)
        for (size_t j = 0; j < p->rows; j++)
            free(p->g[j].f);
    if (p->work)
        for (int t = 0; t < p->nthreads; t++)
            work_free(&p->work[t]);
    free(p->work);
    free(p->g);
    free(p->w);
    free(p->ta);
    free(p->ta2);
    free(p->tb);
    fftw_free(p->x1full);
    fftw_free(p->x2full);
    fftw_free(p->xpad);
    fftw_free(p->xspec);
    free(p->z1);
    free(p->z2);
    rtd_cwt_plan_destroy(p->cwt);
    free(p);
}

int rtd_wct_plan_set_threads(struct rtd_wct_plan *p, int nthreads)
{
    if (!p || nthreads < 1 || nthreads > 1024)
        return -EINVAL;
    if (nthreads == p->nthreads)
        return 0;
    struct wct_work *w = calloc((size_t)nthreads, sizeof(*w));
    if (!w)
        return -ENOMEM;
    for (int t = 0; t < nthreads; t++)
        if (work_init(p, &w[t])) {
            for (int u = 0; u <= t; u++)
                work_free(&w[u]);
            free(w);
            return -ENOMEM;
        }
    for (int t = 0; t < p->nthreads; t++)
        work_free(&p->work[t]);
    free(p->work);
    p->work = w;
    p->nthreads = nthreads;
    return 0;
}

const struct rtd_cwt_plan *rtd_wct_cwt(const struct rtd_wct_plan *p)
{
    return p->cwt;
}

/* Multiply a forward spectrum by row j's Gaussian (zero outside its band). */
static void gauss_apply(const struct rtd_wct_plan *p, size_t j, double complex *a)
{
    const struct gauss_row *g = &p->g[j];
    size_t M = p->M, K = g->K;
    if (2 * K + 1 < M)
        memset(a + K + 1, 0, (M - 2 * K - 1) * sizeof(double complex));
    a[0] *= g->f[0];
    for (size_t k = 1; k <= K && k <= M / 2; k++) {
        a[k] *= g->f[k];
        if (k < M / 2 || K < M / 2)
            a[M - k] *= g->f[k];
    }
}

/*
 * Row j: W1, W2, the time-smoothed rows of |W1|^2/s, |W2|^2/s (ta, ta2) and W1 conj(W2)/s
 * (tb), and the phase of the unsmoothed cross spectrum. packed != 0 smooths |W1|^2/s and
 * |W2|^2/s as the real and imaginary part of one FFT (ta gets both, ta2 is unused): rounding
 * then mixes the two at 1e-16 of the larger, fine for the Monte Carlo loop but not for the
 * reference-exact wct.
 */
static void wct_row(const struct rtd_wct_plan *p, struct wct_work *w, const double complex *x1full,
                    const double complex *x2full, size_t j, int packed, double complex *ta,
                    double complex *ta2, double complex *tb, double *awct, size_t n)
{
    rtd_cwt_row(p->cwt, x1full, j, &w->c1);
    rtd_cwt_row(p->cwt, x2full, j, &w->c2);
    const double *W1 = (const double *)w->c1.out;
    const double *W2 = (const double *)w->c2.out;
    double *a = (double *)w->a, *a2 = (double *)w->a2, *b = (double *)w->b;
    double inv_s = 1 / rtd_cwt_scales(p->cwt)[j];
    size_t M = p->M;
    /* Real arithmetic: C's complex multiply would guard every product against NaN. */
    for (size_t t = 0; t < n; t++) {
        double r1 = W1[2 * t], i1 = W1[2 * t + 1], r2 = W2[2 * t], i2 = W2[2 * t + 1];
        double cr = r1 * r2 + i1 * i2, ci = i1 * r2 - r1 * i2;
        if (awct)
            awct[t] = atan2(ci, cr);
        b[2 * t] = cr * inv_s;
        b[2 * t + 1] = ci * inv_s;
        double p1 = (r1 * r1 + i1 * i1) * inv_s, p2 = (r2 * r2 + i2 * i2) * inv_s;
        if (packed) {
            a[2 * t] = p1;
            a[2 * t + 1] = p2;
        } else {
            a[2 * t] = p1;
            a[2 * t + 1] = 0;
            a2[2 * t] = p2;
            a2[2 * t + 1] = 0;
        }
    }
    if (n < M) {
        memset(a + 2 * n, 0, (M - n) * sizeof(double complex));
        memset(b + 2 * n, 0, (M - n) * sizeof(double complex));
        if (!packed)
            memset(a2 + 2 * n, 0, (M - n) * sizeof(double complex));
    }
    fftw_execute_dft(p->fwd, w->a, w->a);
    fftw_execute_dft(p->fwd, w->b, w->b);
    gauss_apply(p, j, w->a);
    gauss_apply(p, j, w->b);
    if (packed) {
        /* Monte Carlo rows have stride M: the inverse writes them directly (out of place). */
        fftw_execute_dft(p->inv_oop, w->a, ta);
        fftw_execute_dft(p->inv_oop, w->b, tb);
        return;
    }
    fftw_execute_dft(p->inv, w->a, w->a);
    fftw_execute_dft(p->inv, w->b, w->b);
    memcpy(ta, w->a, n * sizeof(double complex));
    memcpy(tb, w->b, n * sizeof(double complex));
    fftw_execute_dft(p->fwd, w->a2, w->a2);
    gauss_apply(p, j, w->a2);
    fftw_execute_dft(p->inv, w->a2, w->a2);
    memcpy(ta2, w->a2, n * sizeof(double complex));
}

static void zstandardise(const double *y, size_t n, double *z)
{
    double mean = 0, v = 0;
    for (size_t i = 0; i < n; i++)
        mean += y[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++)
        v += (y[i] - mean) * (y[i] - mean);
    double sd = sqrt(v / (double)n);
    for (size_t i = 0; i < n; i++)
        z[i] = (y[i] - mean) / sd;
}

int rtd_wct_execute(struct rtd_wct_plan *p, const double *y1, const double *y2, int normalize,
                    double *wct, double *awct)
{
    if (!p || !y1 || !y2 || !wct)
        return -EINVAL;
    size_t n = p->n, rows = p->rows;
    int rc = rtd_wavelet_check_finite(y1, n);
    if (!rc)
        rc = rtd_wavelet_check_finite(y2, n);
    if (rc)
        return rc;
    const double *u1 = y1, *u2 = y2;
    if (normalize) {
        zstandardise(y1, n, p->z1);
        zstandardise(y2, n, p->z2);
        u1 = p->z1;
        u2 = p->z2;
        /* A constant series has no standard deviation: nothing to normalise by. */
        if (rtd_wavelet_check_finite(u1, n) || rtd_wavelet_check_finite(u2, n))
            return -EDOM;
    }
    rtd_cwt_spectrum(p->cwt, u1, p->x1full, p->xpad, p->xspec);
    rtd_cwt_spectrum(p->cwt, u2, p->x2full, p->xpad, p->xspec);
#pragma omp parallel for num_threads(p->nthreads) schedule(dynamic, 1) if (p->nthreads > 1)
    for (long j = 0; j < (long)rows; j++) {
        struct wct_work *w = &p->work[omp_get_thread_num()];
        size_t o = (size_t)j * n;
        wct_row(p, w, p->x1full, p->x2full, (size_t)j, 0, p->ta + o, p->ta2 + o, p->tb + o,
                awct ? awct + o : NULL, n);
    }
    int L = p->L, h = p->h;
    /* Boxcar in scale, row by row with contiguous inner loops (the rows x n arrays do not fit
     * in cache, so walking down a column for every t would miss on every load). */
#pragma omp parallel for num_threads(p->nthreads) schedule(static) if (p->nthreads > 1)
    for (long r = 0; r < (long)rows; r++) {
        struct wct_work *w = &p->work[omp_get_thread_num()];
        double *s1 = w->acc, *s2 = w->acc + n;
        double complex *s12 = (double complex *)(w->acc + 2 * n);
        memset(w->acc, 0, 4 * n * sizeof(double));
        for (int q = 0; q < L; q++) {
            long i = r + h - q;
            if (i < 0 || i >= (long)rows)
                continue;
            double wq = p->w[q];
            const double complex *ta = p->ta + (size_t)i * n, *ta2 = p->ta2 + (size_t)i * n;
            const double complex *tb = p->tb + (size_t)i * n;
            for (size_t t = 0; t < n; t++) {
                s1[t] += wq * creal(ta[t]);
                s2[t] += wq * creal(ta2[t]);
                s12[t] += wq * tb[t];
            }
        }
        double *out = wct + (size_t)r * n;
        for (size_t t = 0; t < n; t++)
            out[t] =
                (creal(s12[t]) * creal(s12[t]) + cimag(s12[t]) * cimag(s12[t])) / (s1[t] * s2[t]);
    }
    return 0;
}

/* ---- Monte Carlo significance ---- */
#define RTD_MC_NBINS 1000

struct mc_thread {
    struct wct_work w;
    double *e1, *e2, *xpad;
    fftw_complex *xspec;
    double complex *x1full, *x2full, *ta, *tb, *sa, *sb;
    uint32_t *hist, *lanes;
    double complex *zero; /* ld zeros */
    double *r2;           /* n */
    size_t n;
    size_t ld; /* row stride of ta, tb: M, so the inverse FFT writes rows in place */
};

static void mc_free(struct mc_thread *m)
{
    work_free(&m->w);
    free(m->e1);
    free(m->e2);
    fftw_free(m->xpad);
    fftw_free(m->xspec);
    fftw_free(m->x1full);
    fftw_free(m->x2full);
    fftw_free(m->ta);
    fftw_free(m->tb);
    free(m->sa);
    free(m->sb);
    free(m->hist);
    free(m->lanes);
    fftw_free(m->zero);
    free(m->r2);
}

static int mc_init(const struct rtd_wct_plan *p, struct mc_thread *m)
{
    size_t n = p->n, M = p->M, rows = p->rows;
    memset(m, 0, sizeof(*m));
    m->n = n;
    if (work_init(p, &m->w))
        return -ENOMEM;
    m->e1 = malloc(n * sizeof(double));
    m->e2 = malloc(n * sizeof(double));
    m->xpad = rtd_wavelet_zalloc(M * sizeof(double));
    m->xspec = rtd_wavelet_zalloc((M / 2 + 1) * sizeof(fftw_complex));
    m->x1full = rtd_wavelet_zalloc(M * sizeof(double complex));
    m->x2full = rtd_wavelet_zalloc(M * sizeof(double complex));
    m->ld = M;
    m->ta = rtd_wavelet_zalloc(rows * M * sizeof(double complex));
    m->tb = rtd_wavelet_zalloc(rows * M * sizeof(double complex));
    m->sa = malloc(n * sizeof(double complex));
    m->sb = malloc(n * sizeof(double complex));
    m->hist = calloc(rows * RTD_MC_NBINS, sizeof(uint32_t));
    m->lanes = calloc(4 * RTD_MC_NBINS, sizeof(uint32_t));
    m->zero = rtd_wavelet_zalloc(M * sizeof(double complex));
    m->r2 = malloc(n * sizeof(double));
    return m->e1 && m->e2 && m->xpad && m->xspec && m->x1full && m->x2full && m->ta && m->tb &&
                   m->sa && m->sb && m->hist && m->lanes && m->zero && m->r2
               ? 0
               : -ENOMEM;
}

static inline int mc_bin(double r2)
{
    /* R^2 >= 0, so truncation is floor; NaN (0/0) counts as 0. */
    if (!(r2 > 0))
        return 0;
    if (!(r2 < 1))
        return RTD_MC_NBINS - 1;
    return (int)(r2 * RTD_MC_NBINS);
}

static inline void hist_add(uint32_t *hist, double r2)
{
    hist[mc_bin(r2)]++;
}

/*
 * Bin a row of R^2 values: floor(1000 R^2), with R^2 >= 1 (rounding; an IndexError in PyCWT)
 * in the top bin. Neighbouring points fall in the same bin, so four interleaved lane
 * histograms keep the increments from waiting on each other.
 */
static void hist_add_row(uint32_t *hist, uint32_t *lanes, const double *r2, size_t n)
{
    memset(lanes, 0, 4 * RTD_MC_NBINS * sizeof(uint32_t));
    size_t t = 0;
    for (; t + 4 <= n; t += 4)
        for (int l = 0; l < 4; l++)
            lanes[l * RTD_MC_NBINS + mc_bin(r2[t + (size_t)l])]++;
    for (; t < n; t++)
        lanes[mc_bin(r2[t])]++;
    for (int b = 0; b < RTD_MC_NBINS; b++)
        hist[b] += lanes[b] + lanes[RTD_MC_NBINS + b] + lanes[2 * RTD_MC_NBINS + b] +
                   lanes[3 * RTD_MC_NBINS + b];
}

static void row_axpy(double complex *ua, double complex *ub, const struct mc_thread *m, size_t i,
                     double c, size_t a, size_t b)
{
    size_t ld = m->ld;
    const double complex *ta = m->ta + i * ld, *tb = m->tb + i * ld;
    for (size_t t = a; t < b; t++) {
        ua[t] += c * ta[t];
        ub[t] += c * tb[t];
    }
}

/* The boxcar as PyCWT writes it, for windows too short for the running sum. */
static void mc_direct_boxcar(const struct rtd_wct_plan *p, struct mc_thread *m, size_t nhist,
                             const size_t *lo, const size_t *hi)
{
    size_t rows = p->rows;
    int L = p->L, h = p->h;
    for (size_t rr = 0; rr < nhist; rr++) {
        long r = (long)rr;
        size_t a = lo[rr], b = hi[rr];
        if (a >= b)
            continue;
        double complex *sa = m->sa, *sb = m->sb;
        for (size_t t = a; t < b; t++)
            sa[t] = sb[t] = 0;
        for (int q = 0; q < L; q++) {
            long i = r + h - q;
            if (i < 0 || i >= (long)rows)
                continue;
            double wq = p->w[q];
            const double complex *ta = m->ta + (size_t)i * m->ld, *tb = m->tb + (size_t)i * m->ld;
            for (size_t t = a; t < b; t++) {
                sa[t] += wq * ta[t];
                sb[t] += wq * tb[t];
            }
        }
        uint32_t *hist = m->hist + rr * RTD_MC_NBINS;
        for (size_t t = a; t < b; t++)
            hist_add(hist, (creal(sb[t]) * creal(sb[t]) + cimag(sb[t]) * cimag(sb[t])) /
                               (creal(sa[t]) * cimag(sa[t])));
    }
}

/* One surrogate pair: smoothed coherence on the rows < nhist, binned outside the COI. */
static void mc_iteration(const struct rtd_wct_plan *p, struct mc_thread *m, double al1, double al2,
                         uint64_t seed, uint64_t iter, size_t nhist, const size_t *lo,
                         const size_t *hi)
{
    size_t n = p->n, rows = p->rows;
    struct rtd_rng rng;
    rng_seed(&rng, seed, iter);
    /* PyCWT's rednoise() filters randn(N + tau, 1) along its length-1 axis, so its
     * "red" surrogates are white noise; the AR(1) filter is the explicit fix. */
    int ar1 = (p->cwt->flags & RTD_WAVELET_FIX_MC_AR1) != 0;
    rednoise_draw(&rng, m->e1, n, al1, 1, ar1);
    rednoise_draw(&rng, m->e2, n, al2, 1, ar1);
    rtd_cwt_spectrum(p->cwt, m->e1, m->x1full, m->xpad, m->xspec);
    rtd_cwt_spectrum(p->cwt, m->e2, m->x2full, m->xpad, m->xspec);
    for (size_t j = 0; j < rows; j++)
        wct_row(p, &m->w, m->x1full, m->x2full, j, 1, m->ta + j * m->ld, NULL, m->tb + j * m->ld,
                NULL, n);
    int L = p->L, h = p->h;
    if (L <= 2) {
        mc_direct_boxcar(p, m, nhist, lo, hi);
        return;
    }
    /*
     * Running sum over the boxcar: u holds sum_i T_i over the window's rows, and the two end
     * rows are taken back to half weight. The counted interval [lo, hi) only shrinks as the
     * scale grows, so keeping u over the first row's interval covers every later one.
     */
    size_t a0 = lo[0], b0 = hi[0];
    double complex *ua = m->sa, *ub = m->sb;
    for (size_t t = a0; t < b0; t++)
        ua[t] = ub[t] = 0;
    for (long i = h - (L - 1); i <= h; i++)
        if (i >= 0 && i < (long)rows)
            row_axpy(ua, ub, m, (size_t)i, 1.0, a0, b0);
    for (size_t rr = 0; rr < nhist; rr++) {
        long r = (long)rr, top = r + h, bot = r + h - (L - 1);
        size_t a = lo[rr], b = hi[rr];
        if (a < b) {
            /* Rows outside 0..J are zero (convolve2d's fill): point at a zero row so the loop
             * has no branches and vectorises. The 1/(L-1) weight cancels in the ratio. */
            const double complex *tat = top < (long)rows ? m->ta + (size_t)top * m->ld : m->zero;
            const double complex *tbt = top < (long)rows ? m->tb + (size_t)top * m->ld : m->zero;
            const double complex *tab = bot >= 0 ? m->ta + (size_t)bot * m->ld : m->zero;
            const double complex *tbb = bot >= 0 ? m->tb + (size_t)bot * m->ld : m->zero;
            const double *uar = (const double *)ua, *ubr = (const double *)ub;
            const double *at = (const double *)tat, *bt = (const double *)tbt;
            const double *ab = (const double *)tab, *bb = (const double *)tbb;
            double *r2 = m->r2;
            for (size_t t = a; t < b; t++) {
                double sar = uar[2 * t] - 0.5 * (at[2 * t] + ab[2 * t]);
                double sai = uar[2 * t + 1] - 0.5 * (at[2 * t + 1] + ab[2 * t + 1]);
                double sbr = ubr[2 * t] - 0.5 * (bt[2 * t] + bb[2 * t]);
                double sbi = ubr[2 * t + 1] - 0.5 * (bt[2 * t + 1] + bb[2 * t + 1]);
                r2[t] = (sbr * sbr + sbi * sbi) / (sar * sai);
            }
            hist_add_row(m->hist + rr * RTD_MC_NBINS, m->lanes, r2 + a, b - a);
        }
        /* Slide the window one row up. */
        if (top + 1 < (long)rows)
            row_axpy(ua, ub, m, (size_t)(top + 1), 1.0, a0, b0);
        if (bot >= 0)
            row_axpy(ua, ub, m, (size_t)bot, -1.0, a0, b0);
    }
}

static _Thread_local rtd_wavelet_progress_fn progress_fn;
static _Thread_local void *progress_ctx;

void rtd_wavelet_set_progress(rtd_wavelet_progress_fn fn, void *ctx)
{
    progress_fn = fn;
    progress_ctx = ctx;
}

/*
 * One pair finished. The count is only a figure for a progress bar (relaxed: it orders
 * nothing); thread 0 of the team is the calling thread, whose thread-local hook it runs.
 */
static void mc_progress(_Atomic int *done, int total, rtd_wavelet_progress_fn fn, void *ctx)
{
    int d = atomic_fetch_add_explicit(done, 1, memory_order_relaxed) + 1;
    if (fn && omp_get_thread_num() == 0)
        fn(ctx, d, total);
}

/* ---- float32 Monte Carlo loop (RTD_WAVELET_MC_FLOAT) ----
 * The same algorithm with single-precision FFTs and rows (double accumulators for the boxcar
 * and R^2): FFTs of 8192 points run about twice as fast. R^2 then carries ~1e-6 relative
 * rounding, far below the 1e-3 bin width and the Monte Carlo spread; the level is
 * statistically the same but not bit-identical to the float64 loop.
 */
struct mcf_plans {
    fftwf_plan r2c, inv, fwd, inv_oop;
};

struct mcf_thread {
    double *e1, *e2;
    float *xpad;
    float complex *xspec, *x1, *x2, *spec1, *out1, *spec2, *out2, *a, *b, *ta, *tb, *zero;
    long plo1, plo2;
    size_t plen1, plen2;
    double complex *ua, *ub;
    double *r2;
    uint32_t *hist, *lanes;
};

static void *fz(size_t bytes)
{
    void *q = fftwf_malloc(bytes ? bytes : 1);
    if (q)
        memset(q, 0, bytes);
    return q;
}

static void mcf_free(struct mcf_thread *m)
{
    free(m->e1);
    free(m->e2);
    fftwf_free(m->xpad);
    float complex *fb[] = {m->xspec, m->x1, m->x2, m->spec1, m->out1, m->spec2,
                           m->out2,  m->a,  m->b,  m->ta,    m->tb,   m->zero};
    for (size_t i = 0; i < sizeof fb / sizeof fb[0]; i++)
        fftwf_free(fb[i]);
    free(m->ua);
    free(m->ub);
    free(m->r2);
    free(m->hist);
    free(m->lanes);
}

static int mcf_init(const struct rtd_wct_plan *p, struct mcf_thread *m)
{
    size_t n = p->n, M = p->M, rows = p->rows, c = sizeof(float complex);
    memset(m, 0, sizeof(*m));
    m->e1 = malloc(n * sizeof(double));
    m->e2 = malloc(n * sizeof(double));
    m->xpad = fz(M * sizeof(float));
    m->xspec = fz((M / 2 + 1) * c);
    m->x1 = fz(M * c);
    m->x2 = fz(M * c);
    m->spec1 = fz(M * c);
    m->out1 = fz(M * c);
    m->spec2 = fz(M * c);
    m->out2 = fz(M * c);
    m->a = fz(M * c);
    m->b = fz(M * c);
    m->ta = fz(rows * M * c);
    m->tb = fz(rows * M * c);
    m->zero = fz(M * c);
    m->ua = malloc(n * sizeof(double complex));
    m->ub = malloc(n * sizeof(double complex));
    m->r2 = malloc(n * sizeof(double));
    m->hist = calloc(rows * RTD_MC_NBINS, sizeof(uint32_t));
    m->lanes = calloc(4 * RTD_MC_NBINS, sizeof(uint32_t));
    return m->e1 && m->e2 && m->xpad && m->xspec && m->x1 && m->x2 && m->spec1 && m->out1 &&
                   m->spec2 && m->out2 && m->a && m->b && m->ta && m->tb && m->zero && m->ua &&
                   m->ub && m->r2 && m->hist && m->lanes
               ? 0
               : -ENOMEM;
}

static void mcf_spectrum(const struct rtd_wct_plan *p, const struct mcf_plans *fp,
                         struct mcf_thread *m, const double *x, float complex *xfull)
{
    size_t M = p->M, n = p->n;
    for (size_t i = 0; i < n; i++)
        m->xpad[i] = (float)x[i];
    memset(m->xpad + n, 0, (M - n) * sizeof(float));
    fftwf_execute_dft_r2c(fp->r2c, m->xpad, m->xspec);
    float complex c = (float complex)p->cwt->cconst;
    for (size_t k = 0; k <= M / 2; k++) {
        xfull[k] = c * m->xspec[k];
        if (k > 0 && k < M / 2)
            xfull[M - k] = c * conjf(m->xspec[k]);
    }
}

static void mcf_cwt_row(const struct rtd_wct_plan *p, const struct mcf_plans *fp,
                        const float complex *xfull, size_t j, float complex *spec,
                        float complex *out, long *plo, size_t *plen)
{
    const struct rtd_cwt_kernel *k = &p->cwt->kern[j];
    size_t mask = p->M - 1;
    for (size_t i = 0; i < *plen; i++)
        spec[((size_t)(*plo + (long)i)) & mask] = 0;
    for (size_t i = 0; i < k->len; i++) {
        size_t idx = ((size_t)(k->lo + (long)i)) & mask;
        spec[idx] = xfull[idx] * (float)k->v[i];
    }
    *plo = k->lo;
    *plen = k->len;
    fftwf_execute_dft(fp->inv, spec, out);
}

static void mcf_gauss(const struct rtd_wct_plan *p, size_t j, float complex *a)
{
    const struct gauss_row *g = &p->g[j];
    size_t M = p->M, K = g->K;
    if (2 * K + 1 < M)
        memset(a + K + 1, 0, (M - 2 * K - 1) * sizeof(float complex));
    a[0] *= (float)g->f[0];
    for (size_t k = 1; k <= K && k <= M / 2; k++) {
        float f = (float)g->f[k];
        a[k] *= f;
        if (k < M / 2 || K < M / 2)
            a[M - k] *= f;
    }
}

static void mcf_axpy(double complex *ua, double complex *ub, const float complex *ta,
                     const float complex *tb, double c, size_t a, size_t b)
{
    for (size_t t = a; t < b; t++) {
        ua[t] += c * (double complex)ta[t];
        ub[t] += c * (double complex)tb[t];
    }
}

static void mcf_iteration(const struct rtd_wct_plan *p, const struct mcf_plans *fp,
                          struct mcf_thread *m, double al1, double al2, uint64_t seed,
                          uint64_t iter, size_t nhist, const size_t *lo, const size_t *hi)
{
    size_t n = p->n, rows = p->rows, M = p->M;
    struct rtd_rng rng;
    rng_seed(&rng, seed, iter);
    int ar1 = (p->cwt->flags & RTD_WAVELET_FIX_MC_AR1) != 0;
    rednoise_draw(&rng, m->e1, n, al1, 1, ar1);
    rednoise_draw(&rng, m->e2, n, al2, 1, ar1);
    mcf_spectrum(p, fp, m, m->e1, m->x1);
    mcf_spectrum(p, fp, m, m->e2, m->x2);
    for (size_t j = 0; j < rows; j++) {
        mcf_cwt_row(p, fp, m->x1, j, m->spec1, m->out1, &m->plo1, &m->plen1);
        mcf_cwt_row(p, fp, m->x2, j, m->spec2, m->out2, &m->plo2, &m->plen2);
        const float *W1 = (const float *)m->out1, *W2 = (const float *)m->out2;
        float *a = (float *)m->a, *b = (float *)m->b;
        float inv_s = (float)(1 / rtd_cwt_scales(p->cwt)[j]);
        for (size_t t = 0; t < n; t++) {
            float r1 = W1[2 * t], i1 = W1[2 * t + 1], r2 = W2[2 * t], i2 = W2[2 * t + 1];
            b[2 * t] = (r1 * r2 + i1 * i2) * inv_s;
            b[2 * t + 1] = (i1 * r2 - r1 * i2) * inv_s;
            a[2 * t] = (r1 * r1 + i1 * i1) * inv_s;
            a[2 * t + 1] = (r2 * r2 + i2 * i2) * inv_s;
        }
        if (n < M) {
            memset(m->a + n, 0, (M - n) * sizeof(float complex));
            memset(m->b + n, 0, (M - n) * sizeof(float complex));
        }
        fftwf_execute_dft(fp->fwd, m->a, m->a);
        fftwf_execute_dft(fp->fwd, m->b, m->b);
        mcf_gauss(p, j, m->a);
        mcf_gauss(p, j, m->b);
        fftwf_execute_dft(fp->inv_oop, m->a, m->ta + j * M);
        fftwf_execute_dft(fp->inv_oop, m->b, m->tb + j * M);
    }
    int L = p->L, h = p->h;
    size_t a0 = lo[0], b0 = hi[0];
    for (size_t t = a0; t < b0; t++)
        m->ua[t] = m->ub[t] = 0;
    for (long i = h - (L - 1); i <= h; i++)
        if (i >= 0 && i < (long)rows)
            mcf_axpy(m->ua, m->ub, m->ta + (size_t)i * M, m->tb + (size_t)i * M, 1.0, a0, b0);
    for (size_t rr = 0; rr < nhist; rr++) {
        long r = (long)rr, top = r + h, bot = r + h - (L - 1);
        size_t a = lo[rr], b = hi[rr];
        if (a < b) {
            const float *at = (const float *)(top < (long)rows ? m->ta + (size_t)top * M : m->zero);
            const float *bt = (const float *)(top < (long)rows ? m->tb + (size_t)top * M : m->zero);
            const float *ab = (const float *)(bot >= 0 ? m->ta + (size_t)bot * M : m->zero);
            const float *bb = (const float *)(bot >= 0 ? m->tb + (size_t)bot * M : m->zero);
            const double *uar = (const double *)m->ua, *ubr = (const double *)m->ub;
            for (size_t t = a; t < b; t++) {
                double sar = uar[2 * t] - 0.5 * ((double)at[2 * t] + (double)ab[2 * t]);
                double sai = uar[2 * t + 1] - 0.5 * ((double)at[2 * t + 1] + (double)ab[2 * t + 1]);
                double sbr = ubr[2 * t] - 0.5 * ((double)bt[2 * t] + (double)bb[2 * t]);
                double sbi = ubr[2 * t + 1] - 0.5 * ((double)bt[2 * t + 1] + (double)bb[2 * t + 1]);
                m->r2[t] = (sbr * sbr + sbi * sbi) / (sar * sai);
            }
            hist_add_row(m->hist + rr * RTD_MC_NBINS, m->lanes, m->r2 + a, b - a);
        }
        if (top + 1 < (long)rows)
            mcf_axpy(m->ua, m->ub, m->ta + (size_t)(top + 1) * M, m->tb + (size_t)(top + 1) * M,
                     1.0, a0, b0);
        if (bot >= 0)
            mcf_axpy(m->ua, m->ub, m->ta + (size_t)bot * M, m->tb + (size_t)bot * M, -1.0, a0, b0);
    }
}

/* Run the float32 loop on nthreads threads; histograms summed into hist (rows x NBINS). */
static int mcf_run(const struct rtd_wct_plan *p, int nthreads, double al1, double al2,
                   const struct rtd_wct_signif_opts *o, size_t nhist, const size_t *lo,
                   const size_t *hi, uint64_t *hist)
{
    struct mcf_thread *th = calloc((size_t)nthreads, sizeof(*th));
    struct mcf_plans fp = {0};
    int rc = -ENOMEM, ok = th != NULL;
    for (int t = 0; ok && t < nthreads; t++)
        if (mcf_init(p, &th[t]))
            ok = 0;
    if (ok) {
        int M = (int)p->M;
        unsigned pf = o->flags;
        struct mcf_thread *m = &th[0];
        pthread_mutex_lock(&rtd_wavelet_planner_lock);
        fp.r2c = rtd_wavelet_planf_r2c(M, m->xpad, m->xspec, pf);
        fp.inv = rtd_wavelet_planf_c2c(M, m->spec1, m->out1, FFTW_BACKWARD, pf);
        fp.fwd = rtd_wavelet_planf_c2c(M, m->a, m->a, FFTW_FORWARD, pf);
        fp.inv_oop = rtd_wavelet_planf_c2c(M, m->a, m->b, FFTW_BACKWARD, pf);
        pthread_mutex_unlock(&rtd_wavelet_planner_lock);
        rtd_wavelet_wisdom_commit();
        ok = fp.r2c && fp.inv && fp.fwd && fp.inv_oop;
        /* MEASURE scribbles on the planning arrays; the band bookkeeping needs zeros. */
        memset(m->spec1, 0, p->M * sizeof(float complex));
    }
    if (ok) {
        _Atomic int done = 0;
        rtd_wavelet_progress_fn fn = progress_fn;
        void *ctx = progress_ctx;
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1) if (nthreads > 1)
        for (int it = 0; it < o->mc_count; it++) {
            mcf_iteration(p, &fp, &th[omp_get_thread_num()], al1, al2, o->seed, (uint64_t)it, nhist,
                          lo, hi);
            mc_progress(&done, o->mc_count, fn, ctx);
        }
        for (int t = 0; t < nthreads; t++)
            for (size_t i = 0; i < p->rows * RTD_MC_NBINS; i++)
                hist[i] += th[t].hist[i];
        rc = 0;
    }
    pthread_mutex_lock(&rtd_wavelet_planner_lock);
    fftwf_plan pl[] = {fp.r2c, fp.inv, fp.fwd, fp.inv_oop};
    for (size_t i = 0; i < 4; i++)
        if (pl[i])
            fftwf_destroy_plan(pl[i]);
    pthread_mutex_unlock(&rtd_wavelet_planner_lock);
    if (th)
        for (int t = 0; t < nthreads; t++)
            mcf_free(&th[t]);
    free(th);
    return rc;
}

/* numpy.interp(x, xp, fp) for increasing xp: linear, clamped at the ends. */
static double interp(double x, const double *xp, const double *fp, size_t n)
{
    if (x <= xp[0])
        return fp[0];
    if (x >= xp[n - 1])
        return fp[n - 1];
    size_t i = 1;
    while (xp[i] < x)
        i++;
    if (xp[i] == x)
        return fp[i];
    return fp[i - 1] + (x - xp[i - 1]) * (fp[i] - fp[i - 1]) / (xp[i] - xp[i - 1]);
}

int rtd_wct_significance(double al1, double al2, double dt, double dj, double s0, int J,
                         const struct rtd_mother *m, const struct rtd_wct_signif_opts *o,
                         double *sig95, double *counts, double *n_outside)
{
    if (!m || !o || !sig95 || !isfinite(al1) || !isfinite(al2) || fabs(al1) >= 1 ||
        fabs(al2) >= 1 || !(dt > 0) || o->mc_count < 1 || !(o->level > 0 && o->level < 1))
        return -EINVAL;
    if (dj <= 0)
        dj = 1.0 / 12;
    if (s0 <= 0)
        s0 = rtd_cwt_default_s0(dt, m);
    if (J < 0)
        return -EINVAL;
    /* Surrogates are six times the largest scale long; the data length plays no part. */
    double ms = s0 * pow(2, J * dj) / dt;
    size_t nmc = (size_t)ceil(ms * 6);
    if (nmc < 2 || nmc > ((size_t)1 << 26))
        return -EINVAL;
    int nthreads = o->nthreads > 0 ? o->nthreads : omp_get_max_threads();
    if (nthreads > o->mc_count)
        nthreads = o->mc_count;
    struct rtd_wct_plan *p;
    int rc = rtd_wct_plan_create(&p, nmc, dt, dj, s0, J, m, o->flags);
    if (rc)
        return rc;
    size_t rows = p->rows, n = p->n;
    const double *freqs = rtd_cwt_freqs(p->cwt), *coi = rtd_cwt_coi(p->cwt);
    size_t *lo = calloc(rows, sizeof(size_t)), *hi = calloc(rows, sizeof(size_t));
    uint64_t *tot = NULL;
    struct mc_thread *th = calloc((size_t)nthreads, sizeof(*th));
    rc = -ENOMEM;
    if (!lo || !hi || !th)
        goto out;
    long maxscale = -1;
    for (size_t j = 0; j < rows; j++) {
        double period = 1 / freqs[j];
        size_t a = 0, b = n;
        while (a < n && !(period <= coi[a]))
            a++;
        while (b > a && !(period <= coi[b - 1]))
            b--;
        lo[j] = a;
        hi[j] = b;
        if (b > a)
            maxscale = (long)j;
        if (n_outside)
            n_outside[j] = (double)(b - a);
    }
    if (maxscale < 0) {
        rc = -EINVAL;
        goto out;
    }
    /* PyCWT's range(maxscale) leaves maxscale itself out. */
    size_t nhist =
        (o->flags & RTD_WAVELET_FIX_MC_LASTSCALE) ? (size_t)maxscale + 1 : (size_t)maxscale;
    tot = calloc(rows * RTD_MC_NBINS, sizeof(uint64_t));
    if (!tot)
        goto out;
    if (o->flags & RTD_WAVELET_MC_FLOAT) {
        if ((rc = mcf_run(p, nthreads, al1, al2, o, nhist, lo, hi, tot)))
            goto out;
        rc = -ENOMEM;
    } else {
        int ok = 1;
        for (int t = 0; t < nthreads; t++)
            if (mc_init(p, &th[t]))
                ok = 0;
        if (!ok)
            goto out;
        _Atomic int done = 0;
        rtd_wavelet_progress_fn fn = progress_fn;
        void *ctx = progress_ctx;
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1) if (nthreads > 1)
        for (int it = 0; it < o->mc_count; it++) {
            mc_iteration(p, &th[omp_get_thread_num()], al1, al2, o->seed, (uint64_t)it, nhist, lo,
                         hi);
            mc_progress(&done, o->mc_count, fn, ctx);
        }
        for (int t = 0; t < nthreads; t++)
            for (size_t i = 0; i < rows * RTD_MC_NBINS; i++)
                tot[i] += th[t].hist[i];
    }

    double R2y[RTD_MC_NBINS], P[RTD_MC_NBINS], F[RTD_MC_NBINS];
    for (int b = 0; b < RTD_MC_NBINS; b++)
        R2y[b] = (b + 0.5) / RTD_MC_NBINS;
    for (size_t j = 0; j < rows; j++) {
        uint64_t c[RTD_MC_NBINS], total = 0;
        for (int b = 0; b < RTD_MC_NBINS; b++) {
            c[b] = tot[j * RTD_MC_NBINS + (size_t)b];
            total += c[b];
        }
        if (counts)
            for (int b = 0; b < RTD_MC_NBINS; b++)
                counts[j * RTD_MC_NBINS + (size_t)b] = (double)c[b];
        if (j >= nhist) {
            sig95[j] = (long)j == maxscale ? (double)NAN : 0.0;
            continue;
        }
        if (!total) {
            sig95[j] = 0.0;
            continue;
        }
        size_t k = 0;
        uint64_t cum = 0;
        for (int b = 0; b < RTD_MC_NBINS; b++) {
            if (!c[b])
                continue;
            cum += c[b];
            P[k] = ((double)cum - 0.5) / (double)total;
            F[k] = R2y[b];
            k++;
        }
        sig95[j] = interp(o->level, P, F, k);
    }
    rc = 0;
out:
    if (th)
        for (int t = 0; t < nthreads; t++)
            mc_free(&th[t]);
    free(th);
    free(tot);
    free(lo);
    free(hi);
    rtd_wct_plan_destroy(p);
    return rc;
}

double rtd_wct_level_from_counts(const double *h, int nbins, double level)
{
    double total = 0, cum = 0;
    for (int b = 0; b < nbins; b++)
        total += h[b];
    if (total <= 0)
        return (double)NAN;
    double pmin = h[0], pmax = total;
    if (pmax <= pmin)
        return 0;
    double prev_p = 0, prev_r = 0;
    for (int b = 0; b < nbins; b++) {
        cum += h[b];
        double p = (cum - pmin) / (pmax - pmin), r = (double)b / (nbins - 1);
        if (p >= level) {
            if (b == 0 || p == prev_p)
                return r;
            return prev_r + (r - prev_r) * (level - prev_p) / (p - prev_p);
        }
        prev_p = p;
        prev_r = r;
    }
    return 1;
}
