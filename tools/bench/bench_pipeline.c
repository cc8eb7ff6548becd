/* SPDX-License-Identifier: MIT */
/*
 * `rtdaq-bench pipeline [--json] [--runs N] [--frames F] [--ions K] [--size WxH] [--cpu C]`:
 * the frame pipeline (proc/pipeline: detection + fits of every ion) per frame
 * on one core, against the old handler's Numba/scipy figure measured on this
 * kind of machine (7.6 ms for a 300x300 frame with 10 ions). Frames are made
 * here like the reference data (pixel-integrated spots, sigma 1.8-2.2 px,
 * 60-140 peak photons, 10 photons/px background, ADU offset 100, read noise
 * 3 ADU, shot noise). Cases run interleaved in each run, so their ratio is
 * measured under the same machine load; each run reports the median frame
 * time, and the figure is the median of the runs (min-max of runs alongside).
 * "cpu us" is the same median in thread CPU time, which leaves out the time
 * other processes preempted the core (a shared machine's main noise).
 */
#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rtd_fit.h"
#include "rtd_pipeline.h"
#include "rtd_util.h"

#define BASELINE_US 7600.0 /* Numba/scipy, detection + fits, 300x300, 10 ions (issue 4) */

static uint64_t bp_rng = 0x243f6a8885a308d3ull;

static double bp_uniform(void)
{
    bp_rng ^= bp_rng << 13;
    bp_rng ^= bp_rng >> 7;
    bp_rng ^= bp_rng << 17;
    return ((double)(bp_rng >> 11) + 0.5) / 9007199254740992.0;
}

static double bp_normal(void)
{
    return sqrt(-2.0 * log(bp_uniform())) * cos(6.283185307179586 * bp_uniform());
}

static double bp_frac(double c, double x0, double s)
{
    return 0.5 * (erf((c + 0.5 - x0) / (M_SQRT2 * s)) - erf((c - 0.5 - x0) / (M_SQRT2 * s)));
}

/* One frame with `ions` ions at least 12 px apart and 8 px from the edges. */
static void bp_frame(uint16_t *img, int w, int h, int ions, int shm)
{
    double ix[64], iy[64], amp[64], sg[64], A[64];
    int n = 0;
    for (int tries = 0; n < ions && n < 64 && tries < 10000; tries++) {
        double x = 8 + bp_uniform() * (w - 16),
               y = (shm ? 16 : 8) + bp_uniform() * (h - (shm ? 32 : 16));
        int ok = 1;
        for (int j = 0; j < n; j++)
            ok &= hypot(x - ix[j], y - iy[j]) > (shm ? 24 : 12);
        if (!ok)
            continue;
        ix[n] = x;
        iy[n] = y;
        amp[n] = 60 + 80 * bp_uniform();
        sg[n] = 1.8 + 0.4 * bp_uniform();
        A[n] = shm ? 2 + 4 * bp_uniform() : 0;
        n++;
    }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double m = 10.0;
            for (int i = 0; i < n; i++) {
                if (fabs(x - ix[i]) > 10 || fabs(y - iy[i]) > 10 + A[i])
                    continue;
                double ph = amp[i] * 2 * M_PI * sg[i] * sg[i], fy = 0;
                if (A[i] > 0) {
                    for (int k = 0; k < 16; k++)
                        fy += bp_frac(y, iy[i] + A[i] * cos((k + 0.5) * M_PI / 16), sg[i]) / 16;
                } else {
                    fy = bp_frac(y, iy[i], sg[i]);
                }
                m += ph * bp_frac(x, ix[i], sg[i]) * fy;
            }
            double v = 100 + m + sqrt(m) * bp_normal() + 3 * bp_normal();
            img[(size_t)y * (size_t)w + (size_t)x] =
                (uint16_t)(v < 0 ? 0 : (v > 65535 ? 65535 : lrint(v)));
        }
}

/* Thread CPU time: what the frame cost this core, without the time others preempted it. */
static uint64_t bp_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct bp_case {
    const char *name, *impl;
    struct rtd_pipe_config cfg;
    struct rtd_pipe *p;
    const uint16_t *frames;
    int nframes;
    double *run_us, *run_det, *run_fit, *run_cpu, ions;
};

int rtd_bench_pipeline(int argc, char **argv)
{
    int json = 0, runs = 7, nframes = 64, ions = 10, w = 300, h = 300, cpu = -1;
    static const struct option opts[] = {
        {"json", no_argument, 0, 'j'},         {"runs", required_argument, 0, 'r'},
        {"frames", required_argument, 0, 'f'}, {"ions", required_argument, 0, 'i'},
        {"size", required_argument, 0, 's'},   {"cpu", required_argument, 0, 'c'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            json = 1;
            break;
        case 'r':
            runs = atoi(optarg);
            break;
        case 'f':
            nframes = atoi(optarg);
            break;
        case 'i':
            ions = atoi(optarg);
            break;
        case 's':
            if (sscanf(optarg, "%dx%d", &w, &h) != 2)
                w = h = 0;
            break;
        case 'c':
            cpu = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: rtdaq-bench pipeline [--json] [--runs N (7)] [--frames F (64)] "
                            "[--ions K (10)] [--size WxH (300x300)] [--cpu C]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (runs < 1 || runs > 1000 || nframes < 1 || nframes > 100000 || ions < 0 || ions > 64 ||
        w < 64 || h < 64 || w > 4096 || h > 4096) {
        fprintf(stderr, "rtdaq-bench pipeline: bad option value\n");
        return 2;
    }
    if (cpu >= 0 && rtd_pin_cpu(cpu) < 0)
        fprintf(stderr, "rtdaq-bench pipeline: could not pin to cpu %d\n", cpu);
    const size_t fpx = (size_t)w * (size_t)h;
    uint16_t *st_frames = malloc(fpx * sizeof(uint16_t) * (size_t)nframes);
    uint16_t *shm_frames = malloc(fpx * sizeof(uint16_t) * (size_t)nframes);
    struct rtd_pipe_ion *out = malloc(sizeof *out * 4096);
    uint64_t *t = malloc(sizeof *t * (size_t)nframes * 4);
    if (!st_frames || !shm_frames || !out || !t) {
        fprintf(stderr, "rtdaq-bench pipeline: out of memory\n");
        return 1;
    }
    for (int f = 0; f < nframes; f++) {
        bp_frame(st_frames + (size_t)f * fpx, w, h, ions, 0);
        bp_frame(shm_frames + (size_t)f * fpx, w, h, ions, 1);
    }

    /* Cases, interleaved in every run: the default, full-resolution detection, shm analysis. */
    struct bp_case cs[3];
    memset(cs, 0, sizeof cs);
    const int ncase = 3;
    rtd_pipe_config_default(&cs[0].cfg, RTD_PIPE_STATIC);
    cs[0].name = "pipeline_static";
    cs[0].impl = "bin2";
    cs[0].frames = st_frames;
    rtd_pipe_config_default(&cs[1].cfg, RTD_PIPE_STATIC);
    cs[1].cfg.bin = 1;
    cs[1].name = "pipeline_static";
    cs[1].impl = "bin1";
    cs[1].frames = st_frames;
    rtd_pipe_config_default(&cs[2].cfg, RTD_PIPE_SHM);
    cs[2].name = "pipeline_shm";
    cs[2].impl = "bin2";
    cs[2].frames = shm_frames;
    int ret = 1;
    for (int k = 0; k < ncase; k++) {
        cs[k].nframes = nframes;
        cs[k].run_us = calloc((size_t)runs, sizeof(double));
        cs[k].run_det = calloc((size_t)runs, sizeof(double));
        cs[k].run_fit = calloc((size_t)runs, sizeof(double));
        cs[k].run_cpu = calloc((size_t)runs, sizeof(double));
        int rc = rtd_pipe_create(&cs[k].p, &cs[k].cfg, w, h);
        if (rc < 0 || !cs[k].run_us || !cs[k].run_det || !cs[k].run_fit || !cs[k].run_cpu) {
            fprintf(stderr, "rtdaq-bench pipeline: create: %s\n", strerror(rc < 0 ? -rc : ENOMEM));
            goto out;
        }
        /* Warm-up: page in the frames and the scratch, train the branch predictors. */
        for (int f = 0; f < nframes; f++)
            rtd_pipe_process(cs[k].p, cs[k].frames + (size_t)f * fpx, w, h, (size_t)w, 0, out, 4096,
                             NULL);
    }
    for (int r = 0; r < runs; r++) {
        for (int k = 0; k < ncase; k++) {
            struct bp_case *b = &cs[k];
            uint64_t nions = 0;
            for (int f = 0; f < nframes; f++) {
                struct rtd_pipe_frame_stats st;
                const uint64_t c0 = bp_cpu_ns();
                int n = rtd_pipe_process(b->p, b->frames + (size_t)f * fpx, w, h, (size_t)w,
                                         (uint64_t)f, out, 4096, &st);
                t[3 * nframes + f] = bp_cpu_ns() - c0;
                if (n < 0) {
                    fprintf(stderr, "rtdaq-bench pipeline: process: %s\n", strerror(-n));
                    goto out;
                }
                nions += (uint64_t)n;
                t[f] = st.t_total_ns;
                t[nframes + f] = st.t_detect_ns;
                t[2 * nframes + f] = st.t_fit_ns;
            }
            for (int q = 0; q < 4; q++)
                qsort(t + (size_t)q * (size_t)nframes, (size_t)nframes, sizeof *t, cmp_u64);
            b->run_us[r] = (double)t[nframes / 2] / 1e3;
            b->run_det[r] = (double)t[nframes + nframes / 2] / 1e3;
            b->run_fit[r] = (double)t[2 * nframes + nframes / 2] / 1e3;
            b->run_cpu[r] = (double)t[3 * nframes + nframes / 2] / 1e3;
            b->ions = (double)nions / nframes;
        }
    }
    const char *isa = rtd_fit_isa_name(rtd_fit_isa_detect());
    if (!json)
        printf("%-16s %-5s %10s %17s %8s %9s %9s %8s %10s %9s\n", "case", "impl", "us/frame",
               "(min-max of runs)", "cpu us", "detect", "fits", "ions", "frames/s", "vs 7.6ms");
    for (int k = 0; k < ncase; k++) {
        struct bp_case *b = &cs[k];
        qsort(b->run_us, (size_t)runs, sizeof(double), cmp_d);
        qsort(b->run_det, (size_t)runs, sizeof(double), cmp_d);
        qsort(b->run_fit, (size_t)runs, sizeof(double), cmp_d);
        qsort(b->run_cpu, (size_t)runs, sizeof(double), cmp_d);
        double med = b->run_us[runs / 2];
        if (json)
            printf("{\"case\":\"%s_%dx%d_%dions\",\"impl\":\"%s\",\"median_of\":%d,"
                   "\"frames_per_run\":%d,\"us_per_frame\":%.2f,\"us_min\":%.2f,\"us_max\":%.2f,"
                   "\"cpu_us_per_frame\":%.2f,\"detect_us\":%.2f,\"fit_us\":%.2f,\"ions_per_"
                   "frame\":%.2f,"
                   "\"frames_per_s\":%.0f,\"baseline\":\"numba_scipy\",\"baseline_us\":%.0f,"
                   "\"speedup\":%.1f,\"fit_isa\":\"%s\",\"cores\":1}\n",
                   b->name, w, h, ions, b->impl, runs, nframes, med, b->run_us[0],
                   b->run_us[runs - 1], b->run_cpu[runs / 2], b->run_det[runs / 2],
                   b->run_fit[runs / 2], b->ions, 1e6 / med, BASELINE_US, BASELINE_US / med, isa);
        else
            printf("%-16s %-5s %10.1f %8.1f - %-7.1f %8.1f %9.1f %9.1f %8.1f %10.0f %8.0fx\n",
                   b->name, b->impl, med, b->run_us[0], b->run_us[runs - 1], b->run_cpu[runs / 2],
                   b->run_det[runs / 2], b->run_fit[runs / 2], b->ions, 1e6 / med,
                   BASELINE_US / med);
    }
    if (!json)
        printf("(%dx%d frames, %d ions, median of %d runs x %d frames, one core, fits: %s)\n", w, h,
               ions, runs, nframes, isa);
    ret = 0;
out:
    for (int k = 0; k < ncase; k++) {
        rtd_pipe_destroy(cs[k].p);
        free(cs[k].run_us);
        free(cs[k].run_det);
        free(cs[k].run_fit);
        free(cs[k].run_cpu);
    }
    free(st_frames);
    free(shm_frames);
    free(out);
    free(t);
    return ret;
}
