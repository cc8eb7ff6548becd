/* SPDX-License-Identifier: MIT */
/*
 * The AVX-512 kernel: 16 fits per vector (fit_simd_tmpl.h). Compiled for that
 * ISA by the pragma below whatever the build's -march, and called only when
 * __builtin_cpu_supports says the CPU has it (fit.c).
 */
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,fma")

#include "fit_internal.h"

#include <immintrin.h>

#define W           16
#define VSQRT(v)    ((vf)_mm512_sqrt_ps((__m512)(v)))
#define VMASK(m)    ((unsigned)_mm512_movepi32_mask((__m512i)(m)))
#define VRCP(v)     ((vf)_mm512_rcp14_ps((__m512)(v)))
#define KERNEL_NAME kernel_avx512
#include "fit_simd_tmpl.h"

int fit_kernel_avx512(const struct fit_job *j, size_t begin, size_t end)
{
    /* flush denormals to zero: far Gaussian tails must not take the slow path */
    unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040u);
    int rc = kernel_avx512(j, begin, end);
    _mm_setcsr(csr);
    return rc;
}

#pragma GCC pop_options
