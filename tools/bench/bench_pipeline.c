/* SPDX-License-Identifier: MIT */
/* Placeholder until this benchmark lands. */
#include "bench.h"
#include <stdio.h>

int rtd_bench_pipeline(int argc, char **argv)
{
    fprintf(stderr, "rtdaq-bench pipeline: not built yet\n");
    return 1;
}
