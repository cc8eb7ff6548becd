/* SPDX-License-Identifier: MIT */
/*
 * Batched Levenberg-Marquardt fits of the ion-imaging models (GAUSS_1D,
 * GAUSS_2D, SHM_1D, SHM_LEGACY) by least squares or Poisson maximum likelihood,
 * with Gpufit's algorithm, parameter order, conventions and result states.
 *
 * One call fits many independent data sets: data is n_fits rows of n_points
 * float32 samples (C order), init and params n_fits rows of n_params. Sample i
 * of a 1-D model sits at x = i; a GAUSS_2D ROI is square (n_points = size^2),
 * pixel (ix, iy) at index iy*size + ix with its centre at (ix, iy).
 *
 * Implementations: a scalar float64 reference, a scalar float32 one, and SIMD
 * ones that put 8 (AVX2+FMA) or 16 (AVX-512) fits in the lanes of a vector,
 * chosen at run time (isa = RTD_FIT_ISA_AUTO) with the scalar float32 code as
 * the fallback. Batches are spread over cores with OpenMP (threads).
 *
 * Every function returns 0 (or a count) on success and -errno on failure.
 * Bad values inside one fit (NaN data or start values) are not errors of the
 * call: that fit gets RTD_FIT_BAD_INPUT and the others are fitted.
 */
#ifndef RTD_FIT_H
#define RTD_FIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Models and their parameter vectors (refdata README):
 *  GAUSS_1D   (amp, x0, sigma, offset)      f = offset + amp exp(-(x-x0)^2 / (2 sigma^2))
 *  GAUSS_2D   (amp, x0, y0, sigma, offset)  f = offset + amp exp(-((x-x0)^2+(y-y0)^2) / (2
 * sigma^2)) SHM_1D     (amp, x0, A, sigma, offset)   f = offset + amp K(x-x0), K(u) = mean_j
 *             exp(-(u - A c_j)^2 / (2 sigma^2)), c_j = cos((j-1/2) pi/N): harmonic motion of
 *             amplitude A (arcsine density) blurred by a Gaussian PSF; K = GAUSS_1D at A = 0.
 *  SHM_LEGACY (y0, R, A, offset)            f = offset + A / sqrt(R^2 - (y-y0)^2) inside
 *             |y-y0| < R, offset outside: the old handler's bare arcsine.
 */
enum rtd_fit_model {
    RTD_FIT_GAUSS_1D = 0,
    RTD_FIT_GAUSS_2D = 1,
    RTD_FIT_SHM_1D = 2,
    RTD_FIT_SHM_LEGACY = 3,
};
#define RTD_FIT_N_MODELS   4
#define RTD_FIT_MAX_PARAMS 5

/* LSE: chi2 = sum (data - f)^2. MLE: Poisson deviance 2 sum (f - d - d ln(f/d)), as Gpufit. */
enum rtd_fit_estimator { RTD_FIT_LSE = 0, RTD_FIT_MLE = 1 };

/* Per-fit result states; 0-3 have Gpufit's meaning. */
enum rtd_fit_state {
    RTD_FIT_CONVERGED = 0,         /* relative chi2 change below tol */
    RTD_FIT_MAX_ITERATION = 1,     /* max_iter iterations without converging */
    RTD_FIT_SINGULAR = 2,          /* the damped normal matrix could not be factored */
    RTD_FIT_NEG_CURVATURE_MLE = 3, /* MLE: the model went <= 0 where the likelihood needs > 0 */
    RTD_FIT_BAD_INPUT = 5,         /* NaN/Inf in this fit's data or start values, or sigma == 0 */
};

/* Instruction sets of the fit kernels; AUTO picks the best the CPU supports. */
enum rtd_fit_isa {
    RTD_FIT_ISA_AUTO = 0,
    RTD_FIT_ISA_SCALAR = 1, /* scalar float32 (the fallback) */
    RTD_FIT_ISA_AVX2 = 2,   /* 8 fits per vector, AVX2 + FMA */
    RTD_FIT_ISA_AVX512 = 3, /* 16 fits per vector, AVX-512F */
    RTD_FIT_ISA_REF64 = 4,  /* scalar float64: the reference the others are tested against */
};

/*
 * Options. Zero means "default" for max_iter, tol and shm_nodes, so a zeroed struct
 * with model and n_points set is valid; rtd_fit_opts_default() fills them explicitly.
 */
struct rtd_fit_opts {
    enum rtd_fit_model model;
    enum rtd_fit_estimator estimator;
    uint32_t n_points; /* samples per fit; GAUSS_2D: size*size (square ROI) */
    uint32_t max_iter; /* LM iterations (default 25 as Gpufit; SHM_1D 50) */
    float tol; /* converged when |chi2 - chi2_prev| < max(tol, tol*|chi2|) (1e-4; SHM_1D 1e-6) */
    uint32_t shm_nodes; /* SHM_1D quadrature nodes N (even); 0 = auto: N >= 2.8 A/sigma + 4 */
    int threads;        /* 0 = OpenMP default, 1 = the calling thread only, n = n threads */
    int isa;            /* enum rtd_fit_isa (0 = auto); forcing one the CPU lacks gives -ENOTSUP */
    /*
     * Bit k set: parameter k keeps its start value (its row and column of the normal
     * equations are taken out of the step). Appended; 0 = all free. For example SHM_1D
     * with sigma known from elsewhere (bit 3): below A ~ sigma, A and sigma are nearly
     * degenerate and a free fit trades one for the other.
     */
    uint32_t fixed;
};

/*
 * Fill o with the defaults for model m on n_points samples: LSE, Gpufit's 25
 * iterations and tol 1e-4; SHM_1D 50 and 1e-6 (its A and sigma are nearly
 * degenerate, so 1e-4 stops short of the optimum); auto nodes, threads and isa.
 */
void rtd_fit_opts_default(struct rtd_fit_opts *o, enum rtd_fit_model m, uint32_t n_points);

/* Parameters of model m (4 or 5), or -EINVAL. */
int rtd_fit_n_params(enum rtd_fit_model m);

/* "gauss1d", "gauss2d", "shm1d", "shm-legacy" (the CLI's names), or NULL. */
const char *rtd_fit_model_name(enum rtd_fit_model m);
/* Inverse of rtd_fit_model_name (also accepts GAUSS_2D-style names). -EINVAL when unknown. */
int rtd_fit_model_parse(const char *name);

/*
 * Fit n_fits data sets. data: n_fits*n_points; init: n_fits*n_params start values;
 * params: n_fits*n_params results (may alias init; widths sigma, R and SHM_1D's A, which
 * enter the models squared, are reported as magnitudes). states, iters (iterations done)
 * and chi2 (final chi2, LSE sum of squares or MLE deviance) may be NULL.
 * 0 on success (per-fit failures are in states); -EINVAL bad options (unknown
 * model, n_points < n_params, GAUSS_2D n_points not a square), -ENOTSUP forced isa
 * not supported here, -ENOMEM.
 */
int rtd_fit_batch(const struct rtd_fit_opts *o, size_t n_fits, const float *data, const float *init,
                  float *params, int32_t *states, int32_t *iters, float *chi2);

/*
 * Evaluate model m at parameter vector p (n_params doubles) on n_points samples,
 * in float64 with the same quadrature as the fits (shm_nodes, 0 = auto for this p).
 * f: n_points values (may be NULL); jac: n_points*n_params, jac[i*n_params + k] =
 * df_i/dp_k (may be NULL). 0 or -EINVAL. Used by tests and by other backends.
 */
int rtd_fit_model_eval(enum rtd_fit_model m, const double *p, uint32_t n_points, uint32_t shm_nodes,
                       double *f, double *jac);

/* Quadrature nodes the SHM_1D fits use for amplitude A and width sigma (auto rule). */
uint32_t rtd_fit_shm_nodes_auto(double A, double sigma);

/* Best ISA this CPU supports (RTD_FIT_ISA_AVX512, _AVX2 or _SCALAR). */
int rtd_fit_isa_detect(void);
/* 1 when isa can run here (AUTO, SCALAR and REF64 always can). */
int rtd_fit_isa_supported(int isa);
/* "auto", "scalar", "avx2", "avx512", "ref64"; "?" for others. */
const char *rtd_fit_isa_name(int isa);
/* Inverse of rtd_fit_isa_name; -EINVAL when unknown. */
int rtd_fit_isa_parse(const char *name);
/* Fits per vector of isa (1 for the scalar ones). */
int rtd_fit_isa_lanes(int isa);

#ifdef __cplusplus
}
#endif

#endif
