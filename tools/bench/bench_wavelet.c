/* SPDX-License-Identifier: MIT */
/* Placeholder until this benchmark lands. */
#include "bench.h"
#include <stdio.h>

int rtd_bench_wavelet(int argc, char **argv)
{
    fprintf(stderr, "rtdaq-bench wavelet: not built yet\n");
    return 1;
}
