/* SPDX-License-Identifier: MIT */
/* `rtdaq-bench`: dispatch to the benchmark groups. */
#include "bench.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
        const char *what;
    } groups[] = {
        {"ring", rtd_bench_ring, "shared-memory rings vs ZeroMQ ipc and memcpy"},
        {"acq", rtd_bench_acq, "io_uring packet/frame ingest vs a plain epoll reader"},
        {"fit", rtd_bench_fit, "SIMD LM fits and the frame pipeline vs scalar"},
        {"pipeline", rtd_bench_pipeline, "frame pipeline: detection + fits per frame"},
        {"wavelet", rtd_bench_wavelet, "cwt/wct/wct-signif vs bare FFTW"},
        {"cuda", rtd_bench_cuda, "CUDA fits and frame pipeline (needs a GPU)"},
    };
    if (argc >= 2)
        for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
            if (!strcmp(argv[1], groups[i].name))
                return groups[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "usage: rtdaq-bench <group> [--json] [options]\n");
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
        fprintf(stderr, "  %-8s %s\n", groups[i].name, groups[i].what);
    return 2;
}
