/* SPDX-License-Identifier: MIT */
/*
 * What the CUDA backend's translation units share: the device probe (cached,
 * thread-safe), error conversion (a CUDA error is logged once where it happens
 * and becomes -EIO), and the Gauss-Chebyshev node table.
 */
#ifndef RTD_CUDA_INTERNAL_H
#define RTD_CUDA_INTERNAL_H

#include <cuda_runtime.h>
#include <stddef.h>

/* 0 when device 0 is usable (and current on this thread), else -ENODEV. */
int rtd_cuda_ensure_device(void);

/* Log the failed call with CUDA's message; returns -EIO (-ENOMEM for allocation failures). */
int rtd_cuda_err(cudaError_t e, const char *what);

#define RTD_CUDA_TRY(call)                                                                         \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return rtd_cuda_err(e_, #call);                                                        \
    } while (0)

/* Gauss-Chebyshev nodes for n in [1, RTD_CUDA_MAX_NODES], as float, computed in double. */
void rtd_cuda_cheb_nodes(float *c, int n);

#endif
