/* SPDX-License-Identifier: MIT */
/*
 * gen_shm_frames FRAMES.u16 TRUTH.f64 [--frames N (4)] [--seed S (22)] [--photon-gradient 0|1]:
 * write the
 * oscillating-ion frames of shm_frames.h (raw little-endian u16, [frame, row, col])
 * and their truth ([ion, 8] float64: frame, x, y, peak, sigma, A, photons,
 * background), so that `rtdaq fit-frames --analysis shm` and the scipy reference
 * pipeline (tools/shm_reference.py) run on exactly the frames the C tests use.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shm_frames.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: gen_shm_frames FRAMES.u16 TRUTH.f64 [--frames N] [--seed S] "
                        "[--photon-gradient 0|1]\n");
        return 2;
    }
    long nf = 4;
    unsigned long long seed = 22;
    int pg = 0;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--frames"))
            nf = strtol(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--seed"))
            seed = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--photon-gradient"))
            pg = atoi(argv[i + 1]) != 0;
        else {
            fprintf(stderr, "gen_shm_frames: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (nf < 1 || nf > 10000) {
        fprintf(stderr, "gen_shm_frames: --frames must be 1..10000\n");
        return 2;
    }
    FILE *ff = fopen(argv[1], "wb"), *ft = fopen(argv[2], "wb");
    if (!ff || !ft) {
        fprintf(stderr, "gen_shm_frames: cannot create %s or %s\n", argv[1], argv[2]);
        return 1;
    }
    static uint16_t img[SHMF_W * SHMF_H];
    double truth[SHMF_IONS * SHMF_NCOLS];
    for (int f = 0; f < (int)nf; f++) {
        int n = shmf_frame(seed, f, img, truth, pg);
        if (fwrite(img, sizeof img, 1, ff) != 1 ||
            fwrite(truth, sizeof(double) * SHMF_NCOLS, (size_t)n, ft) != (size_t)n) {
            fprintf(stderr, "gen_shm_frames: write failed\n");
            return 1;
        }
    }
    if (fclose(ff) != 0 || fclose(ft) != 0) {
        fprintf(stderr, "gen_shm_frames: close failed\n");
        return 1;
    }
    return 0;
}
