/* SPDX-License-Identifier: MIT */
/* Placeholder: the AVX2 kernel falls back to scalar float32 until the SIMD code lands. */
#include "fit_internal.h"

int fit_kernel_avx2(const struct fit_job *j, size_t begin, size_t end)
{
    return fit_kernel_scalar(j, begin, end);
}
