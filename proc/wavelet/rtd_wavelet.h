/* SPDX-License-Identifier: MIT */
/*
 * Continuous wavelet analysis that reproduces PyCWT (regeirk/pycwt f88aec2, scipy.fftpack
 * back end) number for number: mother wavelets, cwt/icwt, ar1, red-noise significance,
 * wavelet coherence (wct) and its Monte Carlo significance. The specification is
 * tests/data/wavelet/PYCWT_NOTES.md; docs/wavelet.md lists every deliberate deviation.
 *
 * Conventions
 * - float64 throughout. Complex arrays are C99 `double complex`, i.e. interleaved (re, im)
 *   pairs, exactly the layout of the reference files (complex128).
 * - 2-D arrays are row-major [scale j][time n]: row j of a wave is wave + j * n.
 * - Every function returns 0 (or a count) on success and -errno on failure
 *   (-EINVAL for bad parameters, -EDOM for NaN/Inf input, -ENOMEM).
 * - PyCWT's bugs that change numbers are reproduced by default; each has an RTD_WAVELET_FIX_*
 *   flag that selects the corrected behaviour.
 *
 * Plans. A cwt plan holds the FFTW plans, the scales and the wavelet's Fourier kernel per
 * scale, so a streaming worker can call rtd_cwt_execute() every hop without re-planning or
 * allocating. Creating and destroying plans takes a process-wide mutex (FFTW's planner is not
 * thread-safe); executing does not. One plan must not be executed by two threads at once (it
 * owns its scratch); different plans may run concurrently.
 */
#ifndef RTD_WAVELET_H
#define RTD_WAVELET_H

#include <complex.h>
#include <stddef.h>
#include <stdint.h>

/* ---- flags (bit set, 0 = PyCWT-compatible, ESTIMATE planning) ---- */
#define RTD_WAVELET_MEASURE          (1u << 0) /* FFTW_MEASURE planning (slower plan, faster run) */
#define RTD_WAVELET_FIX_PAUL_PSI0    (1u << 1) /* icwt: Paul psi(0) with m!, not (m-2)! */
#define RTD_WAVELET_FIX_PAUL_ROWS    (1u << 2) /* cwt: keep Paul's overflowing large scales */
#define RTD_WAVELET_FIX_REDNOISE     (1u << 3) /* significance: cos(2 pi f) for array input (#26) */
#define RTD_WAVELET_FIX_GLOBAL_THEOR (1u << 4) /* sigma_test=1 returns theor, not signif again */
#define RTD_WAVELET_FIX_MC_LASTSCALE (1u << 5) /* wct_significance: level at maxscale, not NaN */
#define RTD_WAVELET_FIX_MC_AR1       (1u << 6) /* wct_significance: AR(1) surrogates, not white */
#define RTD_WAVELET_MC_FLOAT         (1u << 7) /* wct_significance: float32 FFTs (statistical) */
/* cwt plan for one execution: each row's kernel is evaluated as the row is computed instead of
 * being tabulated at plan time (same numbers; the table is ~1.7 M doubles at N = 65536, which a
 * single run would fault in, fill and read once). Not for wct plans (ignored there). */
#define RTD_WAVELET_ONESHOT (1u << 8)
/* cwt plan that can also run in float32 (rtd_cwt_execute_rows_f): float FFTs and kernels,
 * complex64 rows; docs/wavelet.md gives the measured error against float64. */
#define RTD_WAVELET_SINGLE (1u << 9)
#define RTD_WAVELET_FIX_ALL                                                                        \
    (RTD_WAVELET_FIX_PAUL_PSI0 | RTD_WAVELET_FIX_PAUL_ROWS | RTD_WAVELET_FIX_REDNOISE |            \
     RTD_WAVELET_FIX_GLOBAL_THEOR | RTD_WAVELET_FIX_MC_LASTSCALE | RTD_WAVELET_FIX_MC_AR1)

/* ---- mother wavelets ---- */
enum rtd_mother_kind { RTD_MOTHER_MORLET = 0, RTD_MOTHER_PAUL = 1, RTD_MOTHER_DOG = 2 };

struct rtd_mother {
    enum rtd_mother_kind kind;
    double param;      /* Morlet f0, Paul m, DOG m */
    double flambda;    /* Fourier period / scale */
    double coi_factor; /* what PyCWT's wavelet.coi() returns */
    double cdelta;     /* TC98 Table 2 C_delta; -1 where PyCWT has none */
    double gamma;      /* TC98 decorrelation factor; -1 where none */
    double dj0;        /* TC98 scale decorrelation length; -1 where none */
    double dofmin;     /* degrees of freedom of one |W|^2 value: 2 (complex) or 1 (DOG) */
    char name[24];     /* "morlet:6", "paul:4", "dog:2" */
};

/* Fill m for Morlet(f0), Paul(m) or DOG(m). -EINVAL for a non-positive or non-integer order. */
int rtd_mother_init(struct rtd_mother *m, enum rtd_mother_kind kind, double param);
/* Parse "morlet[:f0]", "paul[:m]", "dog[:m]", "mexicanhat" (= dog:2). -EINVAL when unknown. */
int rtd_mother_parse(struct rtd_mother *m, const char *spec);
/* psi_hat(f) exactly as PyCWT's psi_ft (f = s * omega), without Paul's overflow NaN. */
double complex rtd_mother_psi_ft(const struct rtd_mother *m, double f);
/* psi(0) as icwt uses it; Paul's PyCWT bug unless flags has RTD_WAVELET_FIX_PAUL_PSI0. */
double complex rtd_mother_psi0(const struct rtd_mother *m, unsigned flags);

/* ---- scales ---- */
/* PyCWT's defaults: s0 <= 0 -> 2 dt / flambda; J < 0 -> int(round_half_even(log2(n dt/s0)/dj)). */
double rtd_cwt_default_s0(double dt, const struct rtd_mother *m);
int rtd_cwt_default_J(size_t n, double dt, double dj, double s0);
/* Next power of two >= n: PyCWT's zero-padded FFT length. */
size_t rtd_cwt_padded_len(size_t n);

/* ---- cwt ---- */
struct rtd_cwt_plan;

/*
 * Plan a cwt of n samples. dj <= 0 -> 1/12, s0 <= 0 and J < 0 -> PyCWT's defaults.
 * The plan keeps J+1 rows, minus Paul's overflowing rows (as PyCWT drops them) unless
 * RTD_WAVELET_FIX_PAUL_ROWS. 0 or -errno; *out is NULL on failure.
 */
int rtd_cwt_plan_create(struct rtd_cwt_plan **out, size_t n, double dt, double dj, double s0, int J,
                        const struct rtd_mother *m, unsigned flags);
void rtd_cwt_plan_destroy(struct rtd_cwt_plan *p);
/* Rows computed by rtd_cwt_execute in parallel (OpenMP); 1 by default. 0 or -errno. */
int rtd_cwt_plan_set_threads(struct rtd_cwt_plan *p, int nthreads);

size_t rtd_cwt_n(const struct rtd_cwt_plan *p);       /* samples per row */
size_t rtd_cwt_padded(const struct rtd_cwt_plan *p);  /* FFT length M */
size_t rtd_cwt_nscales(const struct rtd_cwt_plan *p); /* rows of wave (after Paul's drop) */
int rtd_cwt_J(const struct rtd_cwt_plan *p);          /* the J used (J+1 rows requested) */
double rtd_cwt_s0(const struct rtd_cwt_plan *p);
double rtd_cwt_dj(const struct rtd_cwt_plan *p);
double rtd_cwt_dt(const struct rtd_cwt_plan *p);
const struct rtd_mother *rtd_cwt_mother(const struct rtd_cwt_plan *p);
const double *rtd_cwt_scales(const struct rtd_cwt_plan *p); /* nscales, time units */
const double *rtd_cwt_freqs(const struct rtd_cwt_plan *p);  /* nscales, 1/(flambda s_j) */
const double *rtd_cwt_coi(const struct rtd_cwt_plan *p);    /* n, Fourier period units */

/* wave[j * n + t] for j < nscales. x has n finite samples. 0 or -errno (-EDOM for NaN/Inf). */
int rtd_cwt_execute(struct rtd_cwt_plan *p, const double *x, double complex *wave);
/*
 * The same in two steps, for callers that stream rows out while later scales compute (and
 * so never hold the whole rows x n array): rtd_cwt_load() transforms x once, then
 * rtd_cwt_execute_rows() writes rows j0 <= j < j1 to out[(j - j0) * n + t] (bit-identical to
 * rtd_cwt_execute). -EINVAL before a successful load.
 */
int rtd_cwt_load(struct rtd_cwt_plan *p, const double *x);
int rtd_cwt_execute_rows(struct rtd_cwt_plan *p, size_t j0, size_t j1, double complex *out);
/* Rows in float32 (plans made with RTD_WAVELET_SINGLE; -EINVAL otherwise): the series is
 * rounded to float, transformed with fftwf, multiplied by the float-rounded kernel. */
int rtd_cwt_execute_rows_f(struct rtd_cwt_plan *p, size_t j0, size_t j1, float complex *out);
/* PyCWT's extra outputs: fft = X[1..M/2-1]/sqrt(M) and fftfreqs = k/(M dt) (either may be NULL). */
int rtd_cwt_fft(struct rtd_cwt_plan *p, const double *x, double complex *fft, double *fftfreqs);

/* ---- icwt (TC98 eq. 11) ---- */
/* out[n] = dj sqrt(dt)/(C_delta psi(0)) sum_j Re(W_jn)/sqrt(s_j), real part. -EINVAL without
 * C_delta. */
int rtd_icwt(const double complex *wave, const double *scales, size_t nscales, size_t n, double dt,
             double dj, const struct rtd_mother *m, unsigned flags, double *out);

/* ---- red noise ---- */
/* Allen & Smith bias-corrected lag-1: g (alpha), a (innovation std), mu2. -EDOM when D <= 0. */
int rtd_wavelet_ar1(const double *x, size_t n, double *g, double *a, double *mu2);

/*
 * Red-noise significance (PyCWT significance()).
 * signal != NULL: variance = var(signal) (ddof 0), n0 = n_signal, alpha = ar1(signal) when
 *   alpha is NaN; the cosine uses n0 (bug #26) unless RTD_WAVELET_FIX_REDNOISE.
 * signal == NULL: variance is the scalar given, n0 = 1.
 * sigma_test 0: signif[j], theor[j] per scale (dof ignored).
 * sigma_test 1: dof[nscales] = n_a per scale (values < 1 are clipped to 1 in a copy);
 *   theor receives signif again (PyCWT aliasing) unless RTD_WAVELET_FIX_GLOBAL_THEOR.
 * sigma_test 2: dof[0..1] = [s1, s2]; signif[0] and theor[0] (= P-bar) are scalars.
 * 0 or -errno.
 */
int rtd_wavelet_significance(const double *signal, size_t n_signal, double variance, double dt,
                             const double *scales, size_t nscales, int sigma_test, double alpha,
                             double level, const double *dof, size_t ndof,
                             const struct rtd_mother *m, unsigned flags, double *signif,
                             double *theor);

/* chi2 quantile for non-integer dof: 2 * gammaincinv(dof/2, p). */
double rtd_wavelet_chi2_ppf(double p, double dof);

/*
 * Scale-averaged power (TC98 eq. 24) over scales whose Fourier period lies in
 * [period_lo, period_hi): out[t] = dj dt / C_delta * sum_j |W_jt|^2 / s_j. Returns the number
 * of scales used (0 leaves out zeroed) or -errno (-EINVAL without C_delta).
 */
int rtd_wavelet_band_power(const double complex *wave, const double *scales, size_t nscales,
                           size_t n, double dt, double dj, const struct rtd_mother *m,
                           double period_lo, double period_hi, double *out);

/* ---- wavelet coherence (Morlet(6) only, as PyCWT) ---- */
struct rtd_wct_plan;

/* Plan wct of two series of n samples (same defaults as cwt). -EINVAL for another mother. */
int rtd_wct_plan_create(struct rtd_wct_plan **out, size_t n, double dt, double dj, double s0, int J,
                        const struct rtd_mother *m, unsigned flags);
void rtd_wct_plan_destroy(struct rtd_wct_plan *p);
int rtd_wct_plan_set_threads(struct rtd_wct_plan *p, int nthreads);
/* The underlying cwt plan: scales, freqs, coi, nscales. */
const struct rtd_cwt_plan *rtd_wct_cwt(const struct rtd_wct_plan *p);
/*
 * WCT[j*n+t] = |S(W1 conj(W2) / s)|^2 / (S(|W1|^2 / s) S(|W2|^2 / s)); aWCT (may be NULL) is
 * the angle of the unsmoothed W1 conj(W2). normalize != 0 standardises y1, y2 first (PyCWT's
 * default).
 */
int rtd_wct_execute(struct rtd_wct_plan *p, const double *y1, const double *y2, int normalize,
                    double *wct, double *awct);

/*
 * Monte Carlo significance of wct (PyCWT wct_significance, cache off). Surrogates of length
 * ceil(6 s_max/dt): white noise as PyCWT really draws them (its rednoise() filters along a
 * length-1 axis, so al1 and al2 have no effect), AR(1) with RTD_WAVELET_FIX_MC_AR1; 1000-bin
 * histogram of R^2 outside the COI, level per scale. RNG: iteration i draws from xoshiro256**
 * seeded by splitmix64(seed, i), normals by the polar Box-Muller method; iterations run on nthreads
 * OpenMP threads and the histogram is an integer sum, so the result is identical for every thread
 * count. sig95 has J+1 entries (NaN at maxscale unless RTD_WAVELET_FIX_MC_LASTSCALE, 0 for scales
 * inside the COI); counts ((J+1) x 1000) and n_outside ((J+1)) may be NULL. 0 or -errno.
 */
struct rtd_wct_signif_opts {
    double level;   /* 0.95 */
    int mc_count;   /* 300 */
    uint64_t seed;  /* any */
    int nthreads;   /* <= 0: OpenMP default */
    unsigned flags; /* RTD_WAVELET_* */
};
/*
 * PyCWT's significance level read from a Monte Carlo R^2 histogram (nbins bins on
 * [0, 1]): P = normalised cumulative counts, level = the R^2 where P crosses
 * `level`, linearly interpolated. NAN for an empty histogram. For callers that sum
 * histograms of several Monte Carlo chunks (ctl's jobs, rtdaq-web).
 */
double rtd_wct_level_from_counts(const double *h, int nbins, double level);
int rtd_wct_significance(double al1, double al2, double dt, double dj, double s0, int J,
                         const struct rtd_mother *m, const struct rtd_wct_signif_opts *o,
                         double *sig95, double *counts, double *n_outside);

/*
 * rtd_wct_significance through a cache of levels (see signif_cache.c): the same key (algorithm
 * version, al1, al2, dt, dj, s0, J, mother, level, mc_count, seed, result-changing flags) gives
 * the stored sig95/counts/n_outside at once, with *from_cache = 1; otherwise it computes and
 * stores. Directory $RTDAQ_SIGNIF_CACHE_DIR, else $XDG_CACHE_HOME/rtdaq/signif, else
 * ~/.cache/rtdaq/signif; RTDAQ_SIGNIF_CACHE=off turns it off. 0 or -errno.
 */
int rtd_wct_significance_cached(double al1, double al2, double dt, double dj, double s0, int J,
                                const struct rtd_mother *m, const struct rtd_wct_signif_opts *o,
                                double *sig95, double *counts, double *n_outside, int *from_cache);

/*
 * Progress of the Monte Carlo loop: fn(ctx, done, total) is called on the calling thread (only
 * on it) as surrogate pairs finish, while that thread runs rtd_wct_significance. Thread-local:
 * it affects only calls made from the thread that set it. fn NULL removes it.
 */
typedef void (*rtd_wavelet_progress_fn)(void *ctx, int done, int total);
void rtd_wavelet_set_progress(rtd_wavelet_progress_fn fn, void *ctx);

/* AR(1) red noise y_i = a e_i + g y_(i-1), spin-up ceil(-2/ln|g|) dropped, from the seeded
 * stream (seed, stream) of the Monte Carlo RNG. (PyCWT's own rednoise() returns white noise.) */
int rtd_wavelet_rednoise(double *out, size_t n, double g, double a, uint64_t seed, uint64_t stream);

/* ---- FFTW wisdom (process-wide, under the planner mutex) ---- */
int rtd_wavelet_wisdom_load(const char *path);
int rtd_wavelet_wisdom_save(const char *path);

/*
 * The wisdom cache. After rtd_wavelet_wisdom_auto(0), every plan the library makes in this
 * process is an FFTW_MEASURE plan: taken from wisdom when the package's system file
 * (<datadir>/rtdaq/fftw-wisdom[f], or $RTDAQ_WISDOM_SYSTEM_DIR) or the user's cache
 * ($RTDAQ_WISDOM_DIR, else $XDG_CACHE_HOME/rtdaq, else ~/.cache/rtdaq) has it, measured
 * otherwise and then merged into the user's file at once (flock, temporary file, rename).
 * An unreadable file is ignored with a warning. RTD_WISDOM_REFRESH forgets what is loaded so
 * the next plans are measured again (and saved); RTD_WISDOM_READONLY never writes.
 * RTDAQ_WISDOM=off in the environment turns the cache off (plans are FFTW_ESTIMATE again).
 * Idempotent; 0 or -errno. Long-lived processes call it once at start-up.
 */
#define RTD_WISDOM_REFRESH  (1u << 0)
#define RTD_WISDOM_READONLY (1u << 1)
int rtd_wavelet_wisdom_auto(unsigned wflags);

struct rtd_wisdom_stats {
    int enabled;       /* rtd_wavelet_wisdom_auto() is in force */
    int loaded_system; /* files imported from the system directory */
    int loaded_user;   /* files imported from the user's cache */
    int corrupt;       /* files ignored because FFTW could not read them */
    unsigned long planned_from_wisdom, planned_measured; /* FFTW plans made each way */
    unsigned long saves, save_errors;
    char user_path[1024]; /* the double-precision cache file ("" without a home) */
};
void rtd_wavelet_wisdom_stats(struct rtd_wisdom_stats *out);
/* Plan every FFT the library uses for FFT length M (a wisdom file made ahead of time). */
int rtd_wavelet_wisdom_prepare(size_t M);
/* Write this process's wisdom to dir/fftw-wisdom and dir/fftw-wisdomf (merged, atomic). */
int rtd_wavelet_wisdom_export_dir(const char *dir);

#endif
