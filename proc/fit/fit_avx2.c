/* SPDX-License-Identifier: MIT */
/*
 * The AVX2+FMA kernel: 8 fits per vector (fit_simd_tmpl.h). Compiled for that
 * ISA by the pragma below whatever the build's -march, and called only when
 * __builtin_cpu_supports says the CPU has it (fit.c).
 */
#pragma GCC push_options
#pragma GCC target("avx2,fma")

#include "fit_internal.h"

#include <immintrin.h>

#define W           8
#define VSQRT(v)    ((vf)_mm256_sqrt_ps((__m256)(v)))
#define VMASK(m)    ((unsigned)_mm256_movemask_ps((__m256)(m)))
#define VRCP(v)     ((vf)_mm256_rcp_ps((__m256)(v)))
#define KERNEL_NAME kernel_avx2
#include "fit_simd_tmpl.h"

int fit_kernel_avx2(const struct fit_job *j, size_t begin, size_t end)
{
    /* flush denormals to zero: far Gaussian tails must not take the slow path */
    unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040u);
    int rc = kernel_avx2(j, begin, end);
    _mm_setcsr(csr);
    return rc;
}

#pragma GCC pop_options
