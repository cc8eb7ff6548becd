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

/*
 * The positive Gauss-Chebyshev nodes c_j = cos((j - 1/2) pi / N), j = 1..N/2, of every even
 * N up to 256, N's at offset k(k-1)/2 (k = N/2), as float computed in double (as proc/fit).
 */
#define RTD_CUDA_NODE_TABLE (128 * 129 / 2)
void rtd_cuda_node_table(float *tab);

#endif
