/* SPDX-License-Identifier: MIT */
/*
 * What the fit kernels share: the job description one kernel call works on (a
 * contiguous range of fits) and the kernel entry points of each instruction set.
 * Private to proc/fit.
 */
#ifndef RTD_FIT_INTERNAL_H
#define RTD_FIT_INTERNAL_H

#include "rtd_fit.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* One batch, already validated; kernels fit [begin, end) of it. */
struct fit_job {
    int model, estimator, np;
    uint32_t n_points, size; /* size: GAUSS_2D side */
    uint32_t max_iter;
    float tol;
    uint32_t shm_nodes; /* 0 = auto */
    uint32_t fixed;     /* bit k: parameter k is held at its start value */
    const float *data, *init;
    float *params;
    int32_t *states, *iters;
    float *chi2;
};

/* Each returns 0 or -ENOMEM (scratch allocation). */
int fit_kernel_ref64(const struct fit_job *j, size_t begin, size_t end);
int fit_kernel_scalar(const struct fit_job *j, size_t begin, size_t end);
int fit_kernel_avx2(const struct fit_job *j, size_t begin, size_t end);
int fit_kernel_avx512(const struct fit_job *j, size_t begin, size_t end);

/* Largest quadrature the kernels use (auto nodes are capped here too). */
#define FIT_SHM_MAX_NODES 256

/*
 * Widths enter the models squared (and SHM_1D's A through +-c_j), so a fit can
 * end at -sigma or -A with the same chi2: report them positive. Returns whether
 * parameter k of model m is such a magnitude.
 */
static inline int fit_param_is_magnitude(int model, int k)
{
    switch (model) {
    case RTD_FIT_GAUSS_1D:
        return k == 2;
    case RTD_FIT_GAUSS_2D:
        return k == 3;
    case RTD_FIT_SHM_1D:
        return k == 2 || k == 3;
    default: /* SHM_LEGACY: R */
        return k == 1;
    }
}

/*
 * Auto rule for SHM_1D nodes: 2.8 A/sigma + 4 is float-accurate (refdata), rounded
 * up to even (nodes pair as +-c), at least 8. No margin is needed for A growing
 * during a fit: the kernels re-apply the rule to every trial step (only growing).
 */
static inline uint32_t fit_shm_nodes_for(double A, double sigma)
{
    double r = fabs(A) / fmax(fabs(sigma), 1e-3);
    if (!(r < 80.0))
        r = 80.0;
    uint32_t n = (uint32_t)ceil(2.8 * r) + 4u;
    n = (n + 1u) & ~1u;
    if (n < 8u)
        n = 8u;
    return n > FIT_SHM_MAX_NODES ? FIT_SHM_MAX_NODES : n;
}

/* Nodes for one evaluation: the fixed option, or the auto rule, never fewer than cur. */
static inline uint32_t fit_shm_nodes_pick(uint32_t fixed, double A, double sigma, uint32_t cur)
{
    if (fixed)
        return fixed;
    uint32_t n = fit_shm_nodes_for(A, sigma);
    return n > cur ? n : cur;
}

/* Positive Gauss-Chebyshev nodes c_j = cos((j-1/2) pi/N), j = 1..N/2 (the rest are -c_j). */
static inline void fit_shm_half_nodes(uint32_t n, double *c)
{
    for (uint32_t j = 0; j < n / 2; j++)
        c[j] = cos(((double)j + 0.5) * M_PI / (double)n);
}

#endif
