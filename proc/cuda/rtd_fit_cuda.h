/* SPDX-License-Identifier: MIT */
/*
 * The optional CUDA backend: batched Levenberg-Marquardt fits (the models,
 * estimators, options and result states of proc/fit's rtd_fit_batch, one fit per
 * GPU thread as Gpufit does it) and, for the frame pipeline, a streaming context
 * that accumulates frames in pinned host buffers and runs blur, threshold, peak
 * detection and the per-ion fits for several frames per launch.
 *
 * The library always exists. Built without nvcc (or under a sanitizer preset) it
 * is a stub whose calls return -ENODEV and whose rtd_fit_cuda_available() says
 * why; callers choose the backend at run time, never at compile time. The CPU
 * library stays the reference: results here are float32 and equal it within the
 * tolerance documented in docs/cuda.md.
 *
 * Every function returns 0 (or a count) on success and -errno on failure:
 * -ENODEV no usable device (see rtd_fit_cuda_available), -EINVAL bad options,
 * -ENOMEM host or device allocation failed, -EIO a CUDA call failed at run time
 * (logged once with the CUDA error string).
 */
#ifndef RTD_FIT_CUDA_H
#define RTD_FIT_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct rtd_fit_opts; /* proc/fit/rtd_fit.h */

/*
 * 1 when a CUDA device can be used; 0 when not, with the reason written to why
 * (if why != NULL): built without nvcc, no device (cudaGetDeviceCount), or a
 * driver older than the toolkit (cudaDriverGetVersion vs cudaRuntimeGetVersion).
 * Cheap after the first call (the answer is cached).
 */
int rtd_fit_cuda_available(char *why, size_t cap);

/* Name of device 0, e.g. "NVIDIA H100 80GB HBM3". 0 or -ENODEV (buf gets the reason). */
int rtd_fit_cuda_device_name(char *buf, size_t cap);

/*
 * The GPU twin of rtd_fit_batch(): same layout (data n_fits*n_points, init and
 * params n_fits*n_params, C order), same states (0 converged, 1 max iterations,
 * 2 singular, 3 negative curvature for MLE). states, iters and chi2 may be NULL.
 * opts->threads and opts->isa are ignored. Blocks until the results are in params.
 * Large batches are cut into chunks so that transfers overlap compute.
 */
int rtd_fit_cuda_batch(const struct rtd_fit_opts *o, size_t n_fits, const float *data,
                       const float *init, float *params, int32_t *states, int32_t *iters,
                       float *chi2);

#ifdef __cplusplus
}
#endif

#endif
