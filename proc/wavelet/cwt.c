/* SPDX-License-Identifier: MIT */
/*
 * The continuous wavelet transform as PyCWT computes it (PYCWT_NOTES.md 1.2-1.4): zero
 * padding to the next power of two, numpy's frequency order (negative Nyquist), PyCWT's
 * default s0 and J, Paul's dropped rows; plus icwt, scale-averaged band power and wisdom.
 *
 * A plan precomputes each scale's Fourier kernel once (band-limited, see struct
 * rtd_cwt_kernel), so execution is one r2c FFT of the input and, per scale, a sparse
 * multiply and one inverse c2c FFT of length M: within a few percent of J+1 bare FFTs.
 */
#include "wavelet_internal.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

pthread_mutex_t rtd_wavelet_planner_lock = PTHREAD_MUTEX_INITIALIZER;

void *rtd_wavelet_zalloc(size_t bytes)
{
    void *p = fftw_malloc(bytes ? bytes : 1);
    if (p)
        memset(p, 0, bytes);
    return p;
}

int rtd_wavelet_check_finite(const double *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return -EDOM;
    return 0;
}

size_t rtd_cwt_padded_len(size_t n)
{
    size_t m = 1;
    while (m < n)
        m <<= 1;
    return m;
}

double rtd_cwt_default_s0(double dt, const struct rtd_mother *m)
{
    return 2 * dt / m->flambda;
}

int rtd_cwt_default_J(size_t n, double dt, double dj, double s0)
{
    /* numpy's round is half-to-even, as nearbyint in the default rounding mode. */
    return (int)nearbyint(log2((double)n * dt / s0) / dj);
}

/* Does PyCWT's Paul psi_ft give NaN somewhere on this row (overflow at the Nyquist bin)? */
static int paul_row_overflows(const struct rtd_mother *m, double s, double dt, size_t M)
{
    int mm = (int)m->param;
    double c = pow(2, mm) / sqrt(mm * tgamma(2.0 * mm));
    double f = s * (2 * M_PI * (-(double)(M / 2) * (1.0 / ((double)M * dt))));
    double v = (c * pow(f, mm)) * exp(-f);
    return !isfinite(v);
}

/* Real part of the kernel (the complex constant is factored out into cconst). */
static double kernel_real(const struct rtd_mother *m, double f)
{
    switch (m->kind) {
    case RTD_MOTHER_MORLET:
        return exp(-0.5 * (f - m->param) * (f - m->param));
    case RTD_MOTHER_PAUL:
        return f > 0 ? pow(f, (int)m->param) * exp(-f) : 0;
    case RTD_MOTHER_DOG:
        return pow(f, (int)m->param) * exp(-0.5 * f * f);
    }
    return 0;
}

static double complex mother_const(const struct rtd_mother *m)
{
    int mm = (int)m->param;
    switch (m->kind) {
    case RTD_MOTHER_MORLET:
        return pow(M_PI, -0.25);
    case RTD_MOTHER_PAUL:
        return pow(2, mm) / sqrt(mm * tgamma(2.0 * mm));
    case RTD_MOTHER_DOG: {
        double complex im = (mm % 4 == 0) ? 1 : (mm % 4 == 1) ? I : (mm % 4 == 2) ? -1 : -I;
        return -im / sqrt(tgamma(mm + 0.5));
    }
    }
    return 0;
}

/*
 * An interval [flo, fhi] of f = s omega outside which |kernel_real(f)| < 1e-30 of its largest
 * value (*gmax), so a row only evaluates the bins that can pass the 1e-20 cut below.
 */
static void kernel_support(const struct rtd_mother *m, double *flo, double *fhi, double *gmax)
{
    double c = m->param, peak_f = c;
    switch (m->kind) {
    case RTD_MOTHER_MORLET:
        /* exp(-72) = 5e-32 */
        *flo = c - 12;
        *fhi = c + 12;
        *gmax = 1;
        return;
    case RTD_MOTHER_PAUL:
        peak_f = c;
        break;
    case RTD_MOTHER_DOG:
        peak_f = sqrt(c);
        break;
    }
    double g = kernel_real(m, peak_f), f = peak_f;
    while (fabs(kernel_real(m, f)) >= 1e-30 * g && f < 1e6)
        f += 1;
    *gmax = g;
    *fhi = f;
    *flo = m->kind == RTD_MOTHER_PAUL ? 0 : -f;
}

/* The candidate bins [*i0, *i1) (index = signed bin + M/2) of the row of scale s. */
static void kernel_candidate(const struct rtd_cwt_plan *p, double s, size_t *i0, size_t *i1)
{
    size_t M = p->M;
    /* f = s omega_k = s 2 pi k' / (M dt) */
    double per_bin = s * 2 * M_PI / ((double)M * p->dt), half = (double)(M / 2);
    double klo = floor(p->kflo / per_bin) - 1, khi = ceil(p->kfhi / per_bin) + 1;
    *i0 = klo <= -half ? 0 : (size_t)(klo + half);
    *i1 = khi >= half - 1 ? M : (size_t)(khi + half) + 1;
    if (*i1 <= *i0) {
        *i0 = 0;
        *i1 = M;
    }
}

/*
 * Row j's kernel over the bins [i0, i1) into buf[0 .. i1-i0), trimmed to the bins above
 * 1e-20 of the row's peak: k->lo, k->len and k->v (a pointer into buf). -EAGAIN when the
 * candidate range cannot be trusted (the sampled peak is tiny: rows so wide or so narrow that
 * the grid misses the wavelet) and the whole spectrum must be scanned instead. The bins
 * skipped are below 1e-30 norm gmax, so as long as that is under the cut the result is
 * exactly the full scan's.
 */
static int kernel_eval(const struct rtd_cwt_plan *p, double s, size_t i0, size_t i1, double *buf,
                       struct rtd_cwt_kernel *k)
{
    size_t M = p->M;
    double norm = sqrt(s * (2 * M_PI / ((double)M * p->dt)) * (double)M) / (double)M;
    double peak = 0;
    for (size_t i = i0; i < i1; i++) {
        long kp = (long)i - (long)(M / 2);
        double omega = 2 * M_PI * ((double)kp * (1.0 / ((double)M * p->dt)));
        double v = norm * kernel_real(&p->mother, s * omega);
        buf[i - i0] = v;
        if (fabs(v) > peak)
            peak = fabs(v);
    }
    if (!(peak >= 1e-10 * norm * p->kgmax) && !(i0 == 0 && i1 == M))
        return -EAGAIN;
    double thr = peak * 1e-20;
    size_t a = i0, b = i1;
    while (a < i1 && fabs(buf[a - i0]) <= thr)
        a++;
    while (b > a && fabs(buf[b - 1 - i0]) <= thr)
        b--;
    k->lo = (long)a - (long)(M / 2);
    k->len = b - a;
    k->v = buf + (a - i0);
    return 0;
}

static int build_kernel(struct rtd_cwt_plan *p, size_t j, double s)
{
    size_t i0, i1;
    kernel_candidate(p, s, &i0, &i1);
    struct rtd_cwt_kernel *k = &p->kern[j];
    for (;;) {
        k->mem = malloc((i1 - i0) * sizeof(double));
        if (!k->mem)
            return -ENOMEM;
        if (kernel_eval(p, s, i0, i1, k->mem, k) == 0)
            return 0;
        free(k->mem);
        i0 = 0;
        i1 = p->M;
    }
}

/* A one-shot plan's kernel for row j, evaluated into the thread's scratch (not stored). */
static void oneshot_kernel(const struct rtd_cwt_plan *p, size_t j, struct rtd_cwt_scratch *sc,
                           struct rtd_cwt_kernel *k)
{
    size_t i0, i1;
    kernel_candidate(p, p->scales[j], &i0, &i1);
    if (kernel_eval(p, p->scales[j], i0, i1, sc->kv, k))
        kernel_eval(p, p->scales[j], 0, p->M, sc->kv, k);
}

int rtd_cwt_scratch_init(const struct rtd_cwt_plan *p, struct rtd_cwt_scratch *s)
{
    s->spec = rtd_wavelet_zalloc(p->M * sizeof(fftw_complex));
    s->out = rtd_wavelet_zalloc(p->M * sizeof(fftw_complex));
    s->kv = (p->flags & RTD_WAVELET_ONESHOT) ? rtd_wavelet_zalloc(p->M * sizeof(double)) : NULL;
    s->prev_lo = s->prevf_lo = 0;
    s->prev_len = s->prevf_len = 0;
    s->specf = s->outf = NULL;
    if (p->flags & RTD_WAVELET_SINGLE) {
        s->specf = fftwf_malloc(p->M * sizeof(fftwf_complex));
        s->outf = fftwf_malloc(p->M * sizeof(fftwf_complex));
        if (s->specf)
            memset(s->specf, 0, p->M * sizeof(fftwf_complex));
        if (!s->specf || !s->outf)
            return -ENOMEM;
    }
    return s->spec && s->out && (s->kv || !(p->flags & RTD_WAVELET_ONESHOT)) ? 0 : -ENOMEM;
}

void rtd_cwt_scratch_free(struct rtd_cwt_scratch *s)
{
    fftw_free(s->spec);
    fftw_free(s->out);
    fftw_free(s->kv);
    fftwf_free(s->specf);
    fftwf_free(s->outf);
    s->spec = s->out = NULL;
    s->kv = NULL;
    s->specf = s->outf = NULL;
}

int rtd_cwt_plan_create(struct rtd_cwt_plan **out, size_t n, double dt, double dj, double s0, int J,
                        const struct rtd_mother *m, unsigned flags)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!m || n < 2 || !isfinite(dt) || dt <= 0 || !isfinite(dj) || !isfinite(s0) ||
        n > ((size_t)1 << 30))
        return -EINVAL;
    if (dj <= 0)
        dj = 1.0 / 12;
    if (s0 <= 0)
        s0 = rtd_cwt_default_s0(dt, m);
    if (J < 0)
        J = rtd_cwt_default_J(n, dt, dj, s0);
    if (J < 0 || J > 10000)
        return -EINVAL;

    struct rtd_cwt_plan *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->n = n;
    p->M = rtd_cwt_padded_len(n);
    p->dt = dt;
    p->dj = dj;
    p->s0 = s0;
    p->J = J;
    p->flags = flags;
    p->mother = *m;
    p->cconst = conj(mother_const(m));
    p->nthreads = 1;
    size_t M = p->M, rows = (size_t)J + 1;
    int rc = -ENOMEM;
    kernel_support(m, &p->kflo, &p->kfhi, &p->kgmax);
    p->scales = malloc(rows * sizeof(double));
    p->freqs = malloc(rows * sizeof(double));
    p->coi = malloc(n * sizeof(double));
    p->kern = calloc(rows, sizeof(*p->kern));
    p->xpad = rtd_wavelet_zalloc(M * sizeof(double));
    p->xspec = rtd_wavelet_zalloc((M / 2 + 1) * sizeof(fftw_complex));
    p->xfull = rtd_wavelet_zalloc(M * sizeof(double complex));
    p->scr = calloc(1, sizeof(*p->scr));
    if (!p->scales || !p->freqs || !p->coi || !p->kern || !p->xpad || !p->xspec || !p->xfull ||
        !p->scr || rtd_cwt_scratch_init(p, &p->scr[0]))
        goto fail;

    size_t kept = 0;
    for (size_t j = 0; j < rows; j++) {
        double s = s0 * pow(2, (double)j * dj);
        /* PyCWT drops Paul rows whose psi_ft overflows to NaN (inf * 0). */
        if (m->kind == RTD_MOTHER_PAUL && !(flags & RTD_WAVELET_FIX_PAUL_ROWS) &&
            paul_row_overflows(m, s, dt, M))
            continue;
        p->scales[kept] = s;
        p->freqs[kept] = 1 / (m->flambda * s);
        if (!(flags & RTD_WAVELET_ONESHOT) && (rc = build_kernel(p, kept, s)))
            goto fail;
        kept++;
    }
    p->nscales = kept;
    double cf = m->flambda * m->coi_factor;
    for (size_t i = 0; i < n; i++)
        p->coi[i] = cf * dt * ((double)n / 2 - fabs((double)i - ((double)n - 1) / 2));

    pthread_mutex_lock(&rtd_wavelet_planner_lock);
    p->fwd = rtd_wavelet_plan_r2c((int)M, p->xpad, p->xspec, flags);
    p->inv = rtd_wavelet_plan_c2c((int)M, p->scr[0].spec, p->scr[0].out, FFTW_BACKWARD, flags);
    pthread_mutex_unlock(&rtd_wavelet_planner_lock);
    rtd_wavelet_wisdom_commit();
    if (!p->fwd || !p->inv)
        goto fail;
    if (flags & RTD_WAVELET_SINGLE) {
        p->xpadf = fftwf_malloc(M * sizeof(float));
        p->xspecf = fftwf_malloc((M / 2 + 1) * sizeof(fftwf_complex));
        p->xfullf = fftwf_malloc(M * sizeof(fftwf_complex));
        if (!p->xpadf || !p->xspecf || !p->xfullf)
            goto fail;
        pthread_mutex_lock(&rtd_wavelet_planner_lock);
        p->fwdf = rtd_wavelet_planf_r2c((int)M, p->xpadf, p->xspecf, flags);
        p->invf =
            rtd_wavelet_planf_c2c((int)M, p->scr[0].specf, p->scr[0].outf, FFTW_BACKWARD, flags);
        pthread_mutex_unlock(&rtd_wavelet_planner_lock);
        rtd_wavelet_wisdom_commit();
        if (!p->fwdf || !p->invf)
            goto fail;
        memset(p->scr[0].specf, 0, M * sizeof(fftwf_complex));
    }
    /* MEASURE scribbles on the arrays it plans with. */
    memset(p->scr[0].spec, 0, M * sizeof(fftw_complex));
    *out = p;
    return 0;
fail:
    rtd_cwt_plan_destroy(p);
    return rc;
}

void rtd_cwt_plan_destroy(struct rtd_cwt_plan *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&rtd_wavelet_planner_lock);
    if (p->fwd)
        fftw_destroy_plan(p->fwd);
    if (p->fwdf)
        fftwf_destroy_plan(p->fwdf);
    if (p->invf)
        fftwf_destroy_plan(p->invf);
    if (p->inv)
        fftw_destroy_plan(p->inv);
    pthread_mutex_unlock(&rtd_wavelet_planner_lock);
    if (p->kern)
        for (size_t j = 0; j < (size_t)p->J + 1; j++)
            free(p->kern[j].mem);
    free(p->kern);
    if (p->scr)
        for (int t = 0; t < p->nthreads; t++)
            rtd_cwt_scratch_free(&p->scr[t]);
    free(p->scr);
    free(p->scales);
    free(p->freqs);
    free(p->coi);
    fftw_free(p->xpad);
    fftw_free(p->xspec);
    fftw_free(p->xfull);
    fftwf_free(p->xpadf);
    fftwf_free(p->xspecf);
    fftwf_free(p->xfullf);
    free(p);
}

int rtd_cwt_plan_set_threads(struct rtd_cwt_plan *p, int nthreads)
{
    if (!p || nthreads < 1 || nthreads > 1024)
        return -EINVAL;
    if (nthreads == p->nthreads)
        return 0;
    struct rtd_cwt_scratch *scr = calloc((size_t)nthreads, sizeof(*scr));
    if (!scr)
        return -ENOMEM;
    for (int t = 0; t < nthreads; t++)
        if (rtd_cwt_scratch_init(p, &scr[t])) {
            for (int u = 0; u <= t; u++)
                rtd_cwt_scratch_free(&scr[u]);
            free(scr);
            return -ENOMEM;
        }
    for (int t = 0; t < p->nthreads; t++)
        rtd_cwt_scratch_free(&p->scr[t]);
    free(p->scr);
    p->scr = scr;
    p->nthreads = nthreads;
    return 0;
}

size_t rtd_cwt_n(const struct rtd_cwt_plan *p)
{
    return p->n;
}
size_t rtd_cwt_padded(const struct rtd_cwt_plan *p)
{
    return p->M;
}
size_t rtd_cwt_nscales(const struct rtd_cwt_plan *p)
{
    return p->nscales;
}
int rtd_cwt_J(const struct rtd_cwt_plan *p)
{
    return p->J;
}
double rtd_cwt_s0(const struct rtd_cwt_plan *p)
{
    return p->s0;
}
double rtd_cwt_dj(const struct rtd_cwt_plan *p)
{
    return p->dj;
}
double rtd_cwt_dt(const struct rtd_cwt_plan *p)
{
    return p->dt;
}
const struct rtd_mother *rtd_cwt_mother(const struct rtd_cwt_plan *p)
{
    return &p->mother;
}
const double *rtd_cwt_scales(const struct rtd_cwt_plan *p)
{
    return p->scales;
}
const double *rtd_cwt_freqs(const struct rtd_cwt_plan *p)
{
    return p->freqs;
}
const double *rtd_cwt_coi(const struct rtd_cwt_plan *p)
{
    return p->coi;
}

void rtd_cwt_spectrum(struct rtd_cwt_plan *p, const double *x, double complex *xfull, double *xpad,
                      fftw_complex *xspec)
{
    size_t M = p->M, n = p->n;
    memcpy(xpad, x, n * sizeof(double));
    memset(xpad + n, 0, (M - n) * sizeof(double));
    fftw_execute_dft_r2c(p->fwd, xpad, xspec);
    double complex c = p->cconst;
    for (size_t k = 0; k <= M / 2; k++) {
        double complex v = xspec[k];
        xfull[k] = c * v;
        if (k > 0 && k < M / 2)
            xfull[M - k] = c * conj(v);
    }
}

void rtd_cwt_row(const struct rtd_cwt_plan *p, const double complex *xfull, size_t j,
                 struct rtd_cwt_scratch *s)
{
    rtd_cwt_row_to(p, xfull, j, s, s->out);
}

void rtd_cwt_row_to(const struct rtd_cwt_plan *p, const double complex *xfull, size_t j,
                    struct rtd_cwt_scratch *s, double complex *out)
{
    const struct rtd_cwt_kernel *k = &p->kern[j];
    struct rtd_cwt_kernel once;
    if (p->flags & RTD_WAVELET_ONESHOT) {
        oneshot_kernel(p, j, s, &once);
        k = &once;
    }
    size_t M = p->M;
    double complex *spec = (double complex *)s->spec;
    size_t mask = M - 1;
    /* The previous row's band is the only non-zero part of spec (the inverse is out of place
     * and preserves its input), so clearing it is enough. */
    for (size_t i = 0; i < s->prev_len; i++)
        spec[((size_t)(s->prev_lo + (long)i)) & mask] = 0;
    for (size_t i = 0; i < k->len; i++) {
        size_t idx = ((size_t)(k->lo + (long)i)) & mask;
        spec[idx] = xfull[idx] * k->v[i];
    }
    s->prev_lo = k->lo;
    s->prev_len = k->len;
    fftw_execute_dft(p->inv, s->spec, out);
}

int rtd_cwt_load(struct rtd_cwt_plan *p, const double *x)
{
    if (!p || !x)
        return -EINVAL;
    int rc = rtd_wavelet_check_finite(x, p->n);
    if (rc)
        return rc;
    rtd_cwt_spectrum(p, x, p->xfull, p->xpad, p->xspec);
    if (p->flags & RTD_WAVELET_SINGLE) {
        size_t M = p->M, n = p->n;
        for (size_t i = 0; i < n; i++)
            p->xpadf[i] = (float)x[i];
        memset(p->xpadf + n, 0, (M - n) * sizeof(float));
        fftwf_execute_dft_r2c(p->fwdf, p->xpadf, p->xspecf);
        float complex c = (float complex)p->cconst;
        for (size_t k = 0; k <= M / 2; k++) {
            float complex v = p->xspecf[k];
            p->xfullf[k] = c * v;
            if (k > 0 && k < M / 2)
                p->xfullf[M - k] = c * conjf(v);
        }
    }
    p->loaded = 1;
    return 0;
}

/* Row j in float32 into out (M complex64), as rtd_cwt_row_to does in float64. */
static void row_to_f(const struct rtd_cwt_plan *p, size_t j, struct rtd_cwt_scratch *s,
                     float complex *out)
{
    const struct rtd_cwt_kernel *k = &p->kern[j];
    struct rtd_cwt_kernel once;
    if (p->flags & RTD_WAVELET_ONESHOT) {
        oneshot_kernel(p, j, s, &once);
        k = &once;
    }
    size_t mask = p->M - 1;
    float complex *spec = s->specf;
    for (size_t i = 0; i < s->prevf_len; i++)
        spec[((size_t)(s->prevf_lo + (long)i)) & mask] = 0;
    for (size_t i = 0; i < k->len; i++) {
        size_t idx = ((size_t)(k->lo + (long)i)) & mask;
        spec[idx] = p->xfullf[idx] * (float)k->v[i];
    }
    s->prevf_lo = k->lo;
    s->prevf_len = k->len;
    fftwf_execute_dft(p->invf, s->specf, out);
}

int rtd_cwt_execute_rows_f(struct rtd_cwt_plan *p, size_t j0, size_t j1, float complex *rows_out)
{
    if (!p || !rows_out || j0 > j1 || j1 > p->nscales || !p->loaded ||
        !(p->flags & RTD_WAVELET_SINGLE))
        return -EINVAL;
    size_t n = p->n;
    long first = (long)j0, last = (long)j1;
#pragma omp parallel for num_threads(p->nthreads) schedule(dynamic, 1) if (p->nthreads > 1)
    for (long j = first; j < last; j++) {
        struct rtd_cwt_scratch *s = &p->scr[omp_get_thread_num()];
        float complex *row = rows_out + (size_t)(j - first) * n;
        if (n == p->M && fftwf_alignment_of((float *)row) == fftwf_alignment_of((float *)s->outf)) {
            row_to_f(p, (size_t)j, s, row);
        } else {
            row_to_f(p, (size_t)j, s, s->outf);
            memcpy(row, s->outf, n * sizeof(float complex));
        }
    }
    return 0;
}

int rtd_cwt_execute_rows(struct rtd_cwt_plan *p, size_t j0, size_t j1, double complex *rows_out)
{
    if (!p || !rows_out || j0 > j1 || j1 > p->nscales || !p->loaded)
        return -EINVAL;
    size_t n = p->n;
    long first = (long)j0, last = (long)j1;
#pragma omp parallel for num_threads(p->nthreads) schedule(dynamic, 1) if (p->nthreads > 1)
    for (long j = first; j < last; j++) {
        struct rtd_cwt_scratch *s = &p->scr[omp_get_thread_num()];
        double complex *row = rows_out + (size_t)(j - first) * n;
        /* Unpadded (n == M): the inverse FFT may write the caller's row directly if it is
         * aligned as the planning arrays were; that saves a copy of every row. */
        if (n == p->M && fftw_alignment_of((double *)row) == fftw_alignment_of((double *)s->out)) {
            rtd_cwt_row_to(p, p->xfull, (size_t)j, s, row);
        } else {
            rtd_cwt_row(p, p->xfull, (size_t)j, s);
            memcpy(row, s->out, n * sizeof(double complex));
        }
    }
    return 0;
}

int rtd_cwt_execute(struct rtd_cwt_plan *p, const double *x, double complex *wave)
{
    if (!p || !x || !wave)
        return -EINVAL;
    int rc = rtd_cwt_load(p, x);
    return rc ? rc : rtd_cwt_execute_rows(p, 0, p->nscales, wave);
}

int rtd_cwt_fft(struct rtd_cwt_plan *p, const double *x, double complex *fft, double *fftfreqs)
{
    if (!p || !x)
        return -EINVAL;
    int rc = rtd_wavelet_check_finite(x, p->n);
    if (rc)
        return rc;
    size_t M = p->M;
    if (fft) {
        memcpy(p->xpad, x, p->n * sizeof(double));
        memset(p->xpad + p->n, 0, (M - p->n) * sizeof(double));
        fftw_execute_dft_r2c(p->fwd, p->xpad, p->xspec);
        double r = sqrt((double)M);
        for (size_t k = 1; k < M / 2; k++)
            fft[k - 1] = p->xspec[k] / r;
    }
    if (fftfreqs)
        for (size_t k = 1; k < M / 2; k++)
            fftfreqs[k - 1] = (double)k * (1.0 / ((double)M * p->dt));
    return 0;
}

int rtd_icwt(const double complex *wave, const double *scales, size_t nscales, size_t n, double dt,
             double dj, const struct rtd_mother *m, unsigned flags, double *out)
{
    if (!wave || !scales || !m || !out || !nscales || !n || !(dt > 0) || !(dj > 0))
        return -EINVAL;
    if (m->cdelta <= 0)
        return -EINVAL;
    double complex fac = dj * sqrt(dt) / (m->cdelta * rtd_mother_psi0(m, flags));
    for (size_t t = 0; t < n; t++)
        out[t] = 0;
    for (size_t j = 0; j < nscales; j++) {
        double rs = sqrt(scales[j]);
        const double complex *w = wave + j * n;
        for (size_t t = 0; t < n; t++)
            out[t] += creal(w[t]) / rs;
    }
    for (size_t t = 0; t < n; t++)
        out[t] = creal(fac * out[t]);
    return 0;
}

int rtd_wavelet_band_power(const double complex *wave, const double *scales, size_t nscales,
                           size_t n, double dt, double dj, const struct rtd_mother *m,
                           double period_lo, double period_hi, double *out)
{
    if (!wave || !scales || !m || !out || !(dt > 0) || !(dj > 0))
        return -EINVAL;
    if (m->cdelta <= 0)
        return -EINVAL;
    for (size_t t = 0; t < n; t++)
        out[t] = 0;
    int used = 0;
    for (size_t j = 0; j < nscales; j++) {
        double period = m->flambda * scales[j];
        if (!(period >= period_lo && period < period_hi))
            continue;
        const double complex *w = wave + j * n;
        double inv = 1 / scales[j];
        for (size_t t = 0; t < n; t++)
            out[t] += (creal(w[t]) * creal(w[t]) + cimag(w[t]) * cimag(w[t])) * inv;
        used++;
    }
    double fac = dj * dt / m->cdelta;
    for (size_t t = 0; t < n; t++)
        out[t] *= fac;
    return used;
}

int rtd_wavelet_wisdom_load(const char *path)
{
    pthread_mutex_lock(&rtd_wavelet_planner_lock);
    int ok = fftw_import_wisdom_from_filename(path);
    pthread_mutex_unlock(&rtd_wavelet_planner_lock);
    return ok ? 0 : -EIO;
}

int rtd_wavelet_wisdom_save(const char *path)
{
    pthread_mutex_lock(&rtd_wavelet_planner_lock);
    int ok = fftw_export_wisdom_to_filename(path);
    pthread_mutex_unlock(&rtd_wavelet_planner_lock);
    return ok ? 0 : -EIO;
}
