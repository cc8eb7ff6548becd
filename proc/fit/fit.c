/* SPDX-License-Identifier: MIT */
/*
 * The public face of proc/fit: option defaults and validation, model and ISA
 * names, run-time ISA selection (__builtin_cpu_supports), and rtd_fit_batch(),
 * which cuts a batch into chunks and spreads them over OpenMP threads. The
 * numerical work is in the kernels (fit_scalar.c, fit_avx2.c, fit_avx512.c).
 */
#include "fit_internal.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <string.h>
#include <strings.h>

/* Fits per OpenMP work item: large enough to amortise scratch set-up, small for balance. */
#define FIT_CHUNK 512

void rtd_fit_opts_default(struct rtd_fit_opts *o, enum rtd_fit_model m, uint32_t n_points)
{
    memset(o, 0, sizeof(*o));
    o->model = m;
    o->estimator = RTD_FIT_LSE;
    o->n_points = n_points;
    /*
     * Gpufit's defaults, except for SHM_1D: its A and sigma are nearly degenerate,
     * so a 1e-4 relative chi2 change is reached 0.01-0.03 px short of the optimum in
     * ~12 % of the refdata fits; 1e-6 (and room for the extra iterations) gets
     * 99.7 % within 1e-3 px.
     */
    o->max_iter = m == RTD_FIT_SHM_1D ? 50 : 25;
    o->tol = m == RTD_FIT_SHM_1D ? 1e-6f : 1e-4f;
    o->shm_nodes = 0;
    o->fixed = 0;
    o->threads = 0;
    o->isa = RTD_FIT_ISA_AUTO;
}

int rtd_fit_n_params(enum rtd_fit_model m)
{
    switch (m) {
    case RTD_FIT_GAUSS_1D:
    case RTD_FIT_SHM_LEGACY:
        return 4;
    case RTD_FIT_GAUSS_2D:
    case RTD_FIT_SHM_1D:
        return 5;
    }
    return -EINVAL;
}

static const char *const model_names[RTD_FIT_N_MODELS] = {"gauss1d", "gauss2d", "shm1d",
                                                          "shm-legacy"};
static const char *const model_alt[RTD_FIT_N_MODELS] = {"GAUSS_1D", "GAUSS_2D", "SHM_1D",
                                                        "SHM_LEGACY"};

const char *rtd_fit_model_name(enum rtd_fit_model m)
{
    return (unsigned)m < RTD_FIT_N_MODELS ? model_names[m] : NULL;
}

int rtd_fit_model_parse(const char *name)
{
    if (!name)
        return -EINVAL;
    for (int m = 0; m < RTD_FIT_N_MODELS; m++)
        if (!strcmp(name, model_names[m]) || !strcasecmp(name, model_alt[m]))
            return m;
    return -EINVAL;
}

static const char *const isa_names[] = {"auto", "scalar", "avx2", "avx512", "ref64"};

const char *rtd_fit_isa_name(int isa)
{
    return isa >= 0 && isa <= RTD_FIT_ISA_REF64 ? isa_names[isa] : "?";
}

int rtd_fit_isa_parse(const char *name)
{
    if (!name)
        return -EINVAL;
    for (int i = 0; i <= RTD_FIT_ISA_REF64; i++)
        if (!strcasecmp(name, isa_names[i]))
            return i;
    return -EINVAL;
}

int rtd_fit_isa_lanes(int isa)
{
    return isa == RTD_FIT_ISA_AVX2 ? 8 : isa == RTD_FIT_ISA_AVX512 ? 16 : 1;
}

int rtd_fit_isa_supported(int isa)
{
    switch (isa) {
    case RTD_FIT_ISA_AUTO:
    case RTD_FIT_ISA_SCALAR:
    case RTD_FIT_ISA_REF64:
        return 1;
    case RTD_FIT_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case RTD_FIT_ISA_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
    }
    return 0;
}

int rtd_fit_isa_detect(void)
{
    if (rtd_fit_isa_supported(RTD_FIT_ISA_AVX512))
        return RTD_FIT_ISA_AVX512;
    if (rtd_fit_isa_supported(RTD_FIT_ISA_AVX2))
        return RTD_FIT_ISA_AVX2;
    return RTD_FIT_ISA_SCALAR;
}

uint32_t rtd_fit_shm_nodes_auto(double A, double sigma)
{
    return fit_shm_nodes_for(A, sigma);
}

typedef int (*fit_kernel_fn)(const struct fit_job *, size_t, size_t);

static fit_kernel_fn kernel_for(int isa)
{
    switch (isa) {
    case RTD_FIT_ISA_AVX2:
        return fit_kernel_avx2;
    case RTD_FIT_ISA_AVX512:
        return fit_kernel_avx512;
    case RTD_FIT_ISA_REF64:
        return fit_kernel_ref64;
    default:
        return fit_kernel_scalar;
    }
}

int rtd_fit_batch(const struct rtd_fit_opts *o, size_t n_fits, const float *data, const float *init,
                  float *params, int32_t *states, int32_t *iters, float *chi2)
{
    if (!o)
        return -EINVAL;
    int np = rtd_fit_n_params(o->model);
    if (np < 0 || (o->estimator != RTD_FIT_LSE && o->estimator != RTD_FIT_MLE))
        return -EINVAL;
    if (o->n_points < (uint32_t)np || (o->shm_nodes & 1u) || o->shm_nodes > FIT_SHM_MAX_NODES)
        return -EINVAL;
    if (!(o->tol >= 0.0f) || o->threads < 0)
        return -EINVAL;
    struct rtd_fit_opts def;
    rtd_fit_opts_default(&def, o->model, o->n_points);
    struct fit_job j = {
        .model = (int)o->model,
        .estimator = (int)o->estimator,
        .np = np,
        .n_points = o->n_points,
        .max_iter = o->max_iter,
        .tol = o->tol,
        .shm_nodes = o->shm_nodes,
        .fixed = o->fixed & ((1u << np) - 1u),
        .data = data,
        .init = init,
        .params = params,
        .states = states,
        .iters = iters,
        .chi2 = chi2,
    };
    if (!j.max_iter)
        j.max_iter = def.max_iter;
    if (!(j.tol > 0.0f))
        j.tol = def.tol;
    if (o->model == RTD_FIT_GAUSS_2D) {
        j.size = (uint32_t)lround(sqrt((double)o->n_points));
        if (j.size * j.size != o->n_points)
            return -EINVAL;
    }
    if (n_fits == 0)
        return 0;
    if (!data || !init || !params)
        return -EINVAL;
    int isa = o->isa;
    if (isa < RTD_FIT_ISA_AUTO || isa > RTD_FIT_ISA_REF64)
        return -EINVAL;
    if (isa == RTD_FIT_ISA_AUTO)
        isa = rtd_fit_isa_detect();
    else if (!rtd_fit_isa_supported(isa))
        return -ENOTSUP;
    fit_kernel_fn kern = kernel_for(isa);

    size_t n_chunks = (n_fits + FIT_CHUNK - 1) / FIT_CHUNK;
    if (o->threads == 1 || n_chunks == 1)
        return kern(&j, 0, n_fits);

    int nthr = o->threads > 0 ? o->threads : omp_get_max_threads();
    if ((size_t)nthr > n_chunks)
        nthr = (int)n_chunks;
    int rc = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthr) reduction(min : rc)
    for (size_t c = 0; c < n_chunks; c++) {
        size_t b = c * FIT_CHUNK;
        size_t e = b + FIT_CHUNK < n_fits ? b + FIT_CHUNK : n_fits;
        int r = kern(&j, b, e);
        if (r < rc)
            rc = r;
    }
    return rc;
}
