/* SPDX-License-Identifier: MIT */
/*
 * The CUDA backend when the build has no nvcc (or a sanitizer preset turned CUDA
 * off): every entry point exists so callers link unchanged, and says why no GPU
 * can be used. Choosing the backend is a run-time decision of the caller.
 */
#include "rtd_fit_cuda.h"

#include <errno.h>
#include <stdio.h>

static const char no_cuda_why[] = "built without CUDA (no nvcc at configure time, RTD_CUDA=OFF "
                                  "or a sanitizer build)";

int rtd_fit_cuda_available(char *why, size_t cap)
{
    if (why && cap)
        snprintf(why, cap, "%s", no_cuda_why);
    return 0;
}

int rtd_fit_cuda_device_name(char *buf, size_t cap)
{
    if (buf && cap)
        snprintf(buf, cap, "%s", no_cuda_why);
    return -ENODEV;
}

int rtd_fit_cuda_batch(const struct rtd_fit_opts *o, size_t n_fits, const float *data,
                       const float *init, float *params, int32_t *states, int32_t *iters,
                       float *chi2)
{
    return -ENODEV;
}

int rtd_fit_cuda_batch_stats(const struct rtd_fit_opts *o, size_t n_fits, const float *data,
                             const float *init, float *params, int32_t *states, int32_t *iters,
                             float *chi2, struct rtd_fit_cuda_stats *st)
{
    return -ENODEV;
}
