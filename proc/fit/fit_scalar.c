/* SPDX-License-Identifier: MIT */
/*
 * The scalar kernels: float64 (the reference) and float32 (the fallback for
 * CPUs without AVX2), both from fit_scalar_tmpl.h, plus rtd_fit_model_eval(),
 * the float64 model and Jacobian that tests and other backends check against.
 */
#include "fit_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static inline double exp_d(double x)
{
    return exp(x);
}
static inline double log_d(double x)
{
    return log(x);
}
static inline double sqrt_d(double x)
{
    return sqrt(x);
}
static inline double fabs_d(double x)
{
    return fabs(x);
}
static inline float exp_f(float x)
{
    return expf(x);
}
static inline float log_f(float x)
{
    return logf(x);
}
static inline float sqrt_f(float x)
{
    return sqrtf(x);
}
static inline float fabs_f(float x)
{
    return fabsf(x);
}

#define REAL double
#define SFX  d
#include "fit_scalar_tmpl.h"
#undef REAL
#undef SFX

#define REAL float
#define SFX  f
#include "fit_scalar_tmpl.h"
#undef REAL
#undef SFX

int fit_kernel_ref64(const struct fit_job *j, size_t begin, size_t end)
{
    return kernel_d(j, begin, end);
}

int fit_kernel_scalar(const struct fit_job *j, size_t begin, size_t end)
{
    return kernel_f(j, begin, end);
}

int rtd_fit_model_eval(enum rtd_fit_model m, const double *p, uint32_t n_points, uint32_t shm_nodes,
                       double *f, double *jac)
{
    int np = rtd_fit_n_params(m);
    if (np < 0 || !p || n_points == 0 || (shm_nodes & 1u) || shm_nodes > FIT_SHM_MAX_NODES)
        return -EINVAL;
    uint32_t size = 0;
    if (m == RTD_FIT_GAUSS_2D) {
        size = (uint32_t)lround(sqrt((double)n_points));
        if (size * size != n_points)
            return -EINVAL;
    }
    uint32_t nodes = 0;
    double cn[FIT_SHM_MAX_NODES / 2];
    if (m == RTD_FIT_SHM_1D) {
        nodes = fit_shm_nodes_pick(shm_nodes, p[2], p[3], 0);
        fit_shm_half_nodes(nodes, cn);
    }
    double *buf = malloc(sizeof(double) * n_points * (size_t)(np + 1));
    if (!buf)
        return -ENOMEM;
    double *ff = buf, *jj = buf + n_points;
    model_eval_d((int)m, n_points, size, p, nodes, cn, ff, jj);
    for (uint32_t i = 0; i < n_points; i++) {
        if (f)
            f[i] = ff[i];
        if (jac)
            for (int k = 0; k < np; k++)
                jac[(size_t)i * (size_t)np + (size_t)k] = jj[(size_t)k * n_points + i];
    }
    free(buf);
    return 0;
}
