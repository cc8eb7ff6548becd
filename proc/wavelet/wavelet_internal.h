/* SPDX-License-Identifier: MIT */
/*
 * Private to proc/wavelet: the plan layouts shared by cwt.c and wct.c, the FFTW planner
 * lock and the per-thread scratch. Nothing here is part of the public API.
 */
#ifndef RTD_WAVELET_INTERNAL_H
#define RTD_WAVELET_INTERNAL_H

#include "rtd_wavelet.h"

#include <fftw3.h>
#include <pthread.h>

/* FFTW's planner (and wisdom) is process-global and not thread-safe. */
extern pthread_mutex_t rtd_wavelet_planner_lock;

/*
 * The wavelet's Fourier kernel for one scale, sqrt(2 pi s/dt) conj(psi_hat(s omega_k)) / M
 * without the complex constant (kept once per plan), stored only where it is not negligible
 * (> 1e-20 of the row's peak): signed bins lo .. lo+len-1 in numpy's order (k' = k - M for
 * k >= M/2). Bins outside contribute less than a rounding error of the sum.
 */
struct rtd_cwt_kernel {
    long lo;
    size_t len;
    double *v;   /* len values (points into mem) */
    double *mem; /* the allocation (NULL in one-shot plans, which evaluate rows as they go) */
};

struct rtd_cwt_scratch {
    fftw_complex *spec;          /* M: the product X K_j fed to the inverse FFT */
    fftw_complex *out;           /* M: inverse FFT result */
    double *kv;                  /* M: one-shot plans' kernel row */
    fftwf_complex *specf, *outf; /* M each: the same for RTD_WAVELET_SINGLE plans */
    long prevf_lo;
    size_t prevf_len;
    long prev_lo; /* band written by the previous row (to re-zero cheaply) */
    size_t prev_len;
};

struct rtd_cwt_plan {
    size_t n, M, nscales;
    int J;
    double dt, dj, s0;
    unsigned flags;
    struct rtd_mother mother;
    double complex cconst; /* conj of the mother's complex constant factor */
    double *scales, *freqs, *coi;
    struct rtd_cwt_kernel *kern;
    fftw_plan fwd;         /* r2c, M real -> M/2+1 */
    fftw_plan inv;         /* c2c backward, M, out of place */
    double *xpad;          /* M */
    fftw_complex *xspec;   /* M/2+1 */
    double complex *xfull; /* M: cconst * X[k], full spectrum */
    int loaded;            /* xfull holds a series (rtd_cwt_load) */
    double kflo, kfhi;     /* f = s omega outside which the kernel is < 1e-30 kgmax */
    double kgmax;
    /* RTD_WAVELET_SINGLE: float32 transforms (rtd_cwt_execute_rows_f) */
    fftwf_plan fwdf, invf;
    float *xpadf;
    fftwf_complex *xspecf, *xfullf;
    int nthreads;
    struct rtd_cwt_scratch *scr; /* nthreads */
};

/* Allocate aligned (FFTW) memory, zeroed. NULL on failure. */
void *rtd_wavelet_zalloc(size_t bytes);

/* Spectrum of x (n samples) zero-padded to M into p->xfull (times p->cconst). */
void rtd_cwt_spectrum(struct rtd_cwt_plan *p, const double *x, double complex *xfull, double *xpad,
                      fftw_complex *xspec);
/* One row j of the transform from a full spectrum into out (M complex, aligned scratch). */
void rtd_cwt_row(const struct rtd_cwt_plan *p, const double complex *xfull, size_t j,
                 struct rtd_cwt_scratch *s);
/* The same into out (M complex, aligned as FFTW planned). */
void rtd_cwt_row_to(const struct rtd_cwt_plan *p, const double complex *xfull, size_t j,
                    struct rtd_cwt_scratch *s, double complex *out);
int rtd_cwt_scratch_init(const struct rtd_cwt_plan *p, struct rtd_cwt_scratch *s);
void rtd_cwt_scratch_free(struct rtd_cwt_scratch *s);

int rtd_wavelet_check_finite(const double *x, size_t n);

/*
 * Plans under the process's wisdom policy (wisdom.c); the caller holds the planner lock and
 * calls rtd_wavelet_wisdom_commit() after releasing it, which saves newly measured plans.
 */
fftw_plan rtd_wavelet_plan_c2c(int n, fftw_complex *in, fftw_complex *out, int sign,
                               unsigned flags);
fftw_plan rtd_wavelet_plan_r2c(int n, double *in, fftw_complex *out, unsigned flags);
fftwf_plan rtd_wavelet_planf_c2c(int n, fftwf_complex *in, fftwf_complex *out, int sign,
                                 unsigned flags);
fftwf_plan rtd_wavelet_planf_r2c(int n, float *in, fftwf_complex *out, unsigned flags);
void rtd_wavelet_wisdom_commit(void);

#endif
