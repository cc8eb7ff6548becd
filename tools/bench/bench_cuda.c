/* SPDX-License-Identifier: MIT */
/*
 * `rtdaq-bench cuda [--json] [--fits N] [--reps R] [--frames N] [--rate HZ]
 * [--batch B] [--wait-us U] [--cpu-fits N]`: the CUDA backend.
 *
 * Cases (one JSON line each with --json):
 *  - fit_<model>_<est>: synthetic ROIs (Poisson noise, start values off the truth
 *    as a detector's would be) through rtd_fit_cuda_batch(): fits/s end to end
 *    (caller's pageable memory in and out, transfers included) and of the
 *    kernels alone, median of R runs; the same ROIs through the CPU library on
 *    all cores of this machine for the ratio.
 *  - frames_paced: 300x300 frames with 10 ions submitted at --rate (10 kHz) to
 *    the streaming frame pipeline: achieved rate, latency submit -> result and
 *    the added batching wait (median, p99, max).
 *  - frames_max: the same frames as fast as they can be submitted.
 * Exit 0 ok, 1 no usable device or a failure (the reason is printed), 2 usage.
 */
#include "bench.h"

#include "rtd_fit_cuda.h"
#include "rtd_util.h"

#if __has_include("rtd_fit.h") && __has_include("rtd_pipeline.h")
#include "rtd_fit.h"
#include "rtd_pipeline.h"
#define BENCH_CUDA_FULL 1
#else
#define BENCH_CUDA_FULL 0
#endif

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if BENCH_CUDA_FULL

struct bopts {
    int json;
    size_t fits, cpu_fits;
    int reps;
    int frames;
    double rate;
    int batch;
    uint64_t wait_ns;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static double urand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((double)(rng_state >> 11) + 0.5) / 9007199254740992.0;
}

static double grand(void)
{
    return sqrt(-2.0 * log(urand())) * cos(2.0 * M_PI * urand());
}

/* Poisson by the normal approximation (means here are >= 10), never negative. */
static float noisy(double mean)
{
    double v = mean + sqrt(mean) * grand();
    return (float)(v < 0 ? 0 : v);
}

/* n distinct ROIs of model m, then tiled to total (the GPU sees each one many times). */
static void make_rois(int model, uint32_t npts, size_t n, size_t total, float *data, float *init)
{
    int np = rtd_fit_n_params(model);
    for (size_t i = 0; i < n; i++) {
        float *d = data + i * npts, *p = init + i * (size_t)np;
        double amp = 120 * (1 + 0.6 * (urand() - 0.5)), sg = 2.0 * (1 + 0.25 * (urand() - 0.5));
        double off = 10, c = (model == RTD_FIT_GAUSS_2D ? 5.0 : (npts - 1) / 2.0);
        double x0 = c + 3 * (urand() - 0.5), y0 = c + 3 * (urand() - 0.5);
        double A = 1 + 5 * urand();
        if (model == RTD_FIT_GAUSS_2D) {
            uint32_t s = (uint32_t)lround(sqrt((double)npts));
            for (uint32_t iy = 0; iy < s; iy++)
                for (uint32_t ix = 0; ix < s; ix++) {
                    double r2 = (ix - x0) * (ix - x0) + (iy - y0) * (iy - y0);
                    d[iy * s + ix] = noisy(off + amp * exp(-0.5 * r2 / (sg * sg)));
                }
            float q[5] = {(float)(amp * 1.15), (float)(x0 + 0.3), (float)(y0 - 0.25),
                          (float)(sg * 1.1), (float)(off + 1)};
            memcpy(p, q, sizeof q);
        } else if (model == RTD_FIT_GAUSS_1D) {
            for (uint32_t k = 0; k < npts; k++)
                d[k] = noisy(off + amp * exp(-0.5 * (k - x0) * (k - x0) / (sg * sg)));
            float q[4] = {(float)(amp * 1.15), (float)(x0 + 0.3), (float)(sg * 1.1),
                          (float)(off + 1)};
            memcpy(p, q, sizeof q);
        } else {
            double ptrue[5] = {amp * 2.5, x0, A, 1.6, 50}, f[256];
            rtd_fit_model_eval(RTD_FIT_SHM_1D, ptrue, npts, 64, f, NULL);
            for (uint32_t k = 0; k < npts; k++)
                d[k] = noisy(f[k]);
            float q[5] = {(float)(amp * 2.5 * 1.1), (float)(x0 + 0.3), (float)(A * 0.8 + 0.5), 1.6f,
                          51.0f};
            memcpy(p, q, sizeof q);
        }
    }
    for (size_t i = n; i < total; i++) {
        memcpy(data + i * npts, data + (i % n) * npts, sizeof(float) * npts);
        memcpy(init + i * (size_t)np, init + (i % n) * (size_t)np, sizeof(float) * (size_t)np);
    }
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n ? v[n / 2] : 0;
}

static int bench_fits(const struct bopts *bo, const char *dev, int model, int est, uint32_t npts)
{
    const size_t n = bo->fits, ndist = 65536;
    const int np = rtd_fit_n_params(model);
    float *data = malloc(sizeof(float) * n * npts), *init = malloc(sizeof(float) * n * (size_t)np);
    float *params = malloc(sizeof(float) * n * (size_t)np);
    int32_t *states = malloc(sizeof(int32_t) * n);
    if (!data || !init || !params || !states) {
        fprintf(stderr, "rtdaq-bench cuda: out of memory for %zu fits\n", n);
        return 1;
    }
    make_rois(model, npts, n < ndist ? n : ndist, n, data, init);
    struct rtd_fit_opts o;
    rtd_fit_opts_default(&o, model, npts);
    o.estimator = est;
    double tot[32], ker[32];
    int reps = bo->reps > 32 ? 32 : bo->reps;
    size_t conv = 0;
    /* One warm-up call: allocations, module load. */
    int rc = rtd_fit_cuda_batch(&o, n < 65536 ? n : 65536, data, init, params, states, NULL, NULL);
    for (int r = 0; r < reps && rc == 0; r++) {
        struct rtd_fit_cuda_stats st;
        rc = rtd_fit_cuda_batch_stats(&o, n, data, init, params, states, NULL, NULL, &st);
        tot[r] = (double)n / st.total_s;
        ker[r] = (double)n / st.kernel_s;
    }
    if (rc) {
        fprintf(stderr, "rtdaq-bench cuda: rtd_fit_cuda_batch: %s\n", strerror(-rc));
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        conv += states[i] == 0;
    double fps = median(tot, reps), kfps = median(ker, reps);
    /* The CPU library on this machine's cores, same ROIs, for the ratio. */
    size_t nc = bo->cpu_fits < n ? bo->cpu_fits : n;
    o.threads = 0;
    uint64_t t0 = rtd_now_ns();
    rc = nc ? rtd_fit_batch(&o, nc, data, init, params, states, NULL, NULL) : 0;
    double cpu_s = (double)(rtd_now_ns() - t0) * 1e-9;
    double cfps = nc && rc == 0 ? (double)nc / cpu_s : 0;
    const char *mn = rtd_fit_model_name(model), *en = est ? "mle" : "lse";
    if (bo->json)
        printf("{\"case\":\"fit_%s_%u_%s\",\"impl\":\"cuda\",\"device\":\"%s\",\"median_of\":%d,"
               "\"fits\":%zu,\"fits_per_s\":%.0f,\"kernel_fits_per_s\":%.0f,\"converged\":%.4f,"
               "\"cpu_threads\":%d,\"cpu_fits_per_s\":%.0f,\"speedup_vs_cpu\":%.1f}\n",
               mn, npts, en, dev, reps, n, fps, kfps, (double)conv / (double)n, rtd_cpu_count(),
               cfps, cfps > 0 ? fps / cfps : 0);
    else
        printf("%-10s %3u pts %s: %8.2f M fits/s end to end, %8.2f M/s kernels, %.1f %% "
               "converged; CPU (%d cores) %.3f M/s -> x%.0f\n",
               mn, npts, en, fps / 1e6, kfps / 1e6, 100.0 * (double)conv / (double)n,
               rtd_cpu_count(), cfps / 1e6, cfps > 0 ? fps / cfps : 0);
    free(data);
    free(init);
    free(params);
    free(states);
    return 0;
}

enum { FW = 300, FH = 300, NPAT = 16, NIONS = 10 };

/* Frames like the reference ones: 10 ions on a 100 ADU offset, background and read noise. */
static uint16_t *make_frames(void)
{
    uint16_t *fr = malloc(sizeof(uint16_t) * NPAT * FW * FH);
    if (!fr)
        return NULL;
    for (int f = 0; f < NPAT; f++) {
        double ix[NIONS], iy[NIONS], ia[NIONS], is[NIONS];
        for (int k = 0; k < NIONS; k++) {
            ix[k] = 20 + (k % 5) * 60 + 10 * urand();
            iy[k] = 40 + (k / 5) * 150 + 10 * urand();
            ia[k] = 60 + 80 * urand();
            is[k] = 1.8 + 0.4 * urand();
        }
        for (int y = 0; y < FH; y++)
            for (int x = 0; x < FW; x++) {
                double m = 10;
                for (int k = 0; k < NIONS; k++) {
                    double r2 = (x - ix[k]) * (x - ix[k]) + (y - iy[k]) * (y - iy[k]);
                    if (r2 < 200)
                        m += ia[k] * exp(-0.5 * r2 / (is[k] * is[k]));
                }
                double v = 100 + (double)noisy(m) + 3 * grand();
                fr[((size_t)f * FH + y) * FW + x] = (uint16_t)(v < 0 ? 0 : v > 65535 ? 65535 : v);
            }
    }
    return fr;
}

static int bench_frames(const struct bopts *bo, const char *dev, const uint16_t *frames,
                        double rate)
{
    struct rtd_pipe_config cfg;
    rtd_pipe_config_default(&cfg, RTD_PIPE_STATIC);
    struct rtd_cuda_pipe_opts po;
    rtd_cuda_pipe_opts_default(&po);
    po.batch_frames = bo->batch;
    po.max_wait_ns = bo->wait_ns;
    struct rtd_cuda_pipe *p;
    int rc = rtd_cuda_pipe_create(&p, &cfg, FW, FH, &po);
    if (rc) {
        fprintf(stderr, "rtdaq-bench cuda: rtd_cuda_pipe_create: %s\n", strerror(-rc));
        return 1;
    }
    static struct rtd_pipe_ion ions[256];
    const int n = bo->frames;
    double *lat = malloc(sizeof(double) * (size_t)n), *wait = malloc(sizeof(double) * (size_t)n);
    if (!lat || !wait)
        return 1;
    /* Warm-up: one batch through. */
    for (int i = 0; i < bo->batch; i++)
        rtd_cuda_pipe_submit(p, frames, FW, 0);
    while (rtd_cuda_pipe_pending(p))
        rtd_cuda_pipe_poll(p, NULL, ions, 256, NULL, 1);
    int sub = 0, got = 0, eagain = 0;
    long dets = 0;
    const uint64_t period = rate > 0 ? (uint64_t)(1e9 / rate) : 0;
    const uint64_t t0 = rtd_now_ns();
    while (got < n) {
        uint64_t now = rtd_now_ns();
        if (sub < n && now >= t0 + (uint64_t)sub * period) {
            rc =
                rtd_cuda_pipe_submit(p, frames + (size_t)(sub % NPAT) * FW * FH, FW, (uint64_t)sub);
            if (rc == 0)
                sub++;
            else if (rc == -EAGAIN)
                eagain++;
            else
                break;
        }
        struct rtd_cuda_frame_result res;
        int k = rtd_cuda_pipe_poll(p, &res, ions, 256, NULL, sub == n);
        if (k < 0) {
            rc = k;
            break;
        }
        if (k == 1) {
            lat[got] = (double)(res.t_done_ns - res.t_submit_ns) * 1e-3;
            wait[got] = (double)(res.t_launch_ns - res.t_submit_ns) * 1e-3;
            dets += res.n_ions;
            got++;
        }
        rc = 0;
    }
    double secs = (double)(rtd_now_ns() - t0) * 1e-9;
    rtd_cuda_pipe_destroy(p);
    if (rc) {
        fprintf(stderr, "rtdaq-bench cuda: frame pipeline: %s\n", strerror(-rc));
        return 1;
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp_d);
    qsort(wait, (size_t)n, sizeof *wait, cmp_d);
    double fps = (double)n / secs;
    const char *cn = rate > 0 ? "frames_paced" : "frames_max";
    if (bo->json)
        printf("{\"case\":\"%s\",\"impl\":\"cuda\",\"device\":\"%s\",\"median_of\":%d,"
               "\"frames\":%d,\"width\":%d,\"height\":%d,\"target_hz\":%.0f,\"frames_per_s\":%.0f,"
               "\"detections_per_frame\":%.2f,\"batch\":%d,\"max_wait_us\":%.0f,"
               "\"latency_us_median\":%.1f,\"latency_us_p99\":%.1f,\"latency_us_max\":%.1f,"
               "\"batch_wait_us_median\":%.1f,\"batch_wait_us_p99\":%.1f,"
               "\"batch_wait_us_max\":%.1f,\"eagain\":%d}\n",
               cn, dev, n, n, FW, FH, rate, fps, (double)dets / n, bo->batch,
               (double)bo->wait_ns * 1e-3, lat[n / 2], lat[n * 99 / 100], lat[n - 1], wait[n / 2],
               wait[n * 99 / 100], wait[n - 1], eagain);
    else
        printf("%-12s %dx%d, batch %d: %.0f frames/s (target %.0f), %.1f ions/frame; latency "
               "median %.0f us p99 %.0f max %.0f; batching wait median %.0f us p99 %.0f max %.0f\n",
               cn, FW, FH, bo->batch, fps, rate, (double)dets / n, lat[n / 2], lat[n * 99 / 100],
               lat[n - 1], wait[n / 2], wait[n * 99 / 100], wait[n - 1]);
    free(lat);
    free(wait);
    return 0;
}

int rtd_bench_cuda(int argc, char **argv)
{
    struct bopts bo = {0, 2u << 20, 200000, 5, 20000, 10000.0, 4, 250000};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json"))
            bo.json = 1;
        else if (!strcmp(a, "--fits") && v)
            bo.fits = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--cpu-fits") && v)
            bo.cpu_fits = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--reps") && v)
            bo.reps = atoi(argv[++i]);
        else if (!strcmp(a, "--frames") && v)
            bo.frames = atoi(argv[++i]);
        else if (!strcmp(a, "--rate") && v)
            bo.rate = atof(argv[++i]);
        else if (!strcmp(a, "--batch") && v)
            bo.batch = atoi(argv[++i]);
        else if (!strcmp(a, "--wait-us") && v)
            bo.wait_ns = (uint64_t)(atof(argv[++i]) * 1e3);
        else {
            fprintf(stderr, "usage: rtdaq-bench cuda [--json] [--fits N] [--reps R] [--cpu-fits N]"
                            " [--frames N] [--rate HZ] [--batch B] [--wait-us U]\n");
            return 2;
        }
    }
    if (bo.fits < 1 || bo.reps < 1 || bo.frames < 1 || bo.batch < 1) {
        fprintf(stderr, "rtdaq-bench cuda: --fits, --reps, --frames and --batch must be >= 1\n");
        return 2;
    }
    char why[256];
    if (!rtd_fit_cuda_available(why, sizeof why)) {
        fprintf(stderr, "rtdaq-bench cuda: no usable CUDA device: %s\n", why);
        return 1;
    }
    char dev[256];
    rtd_fit_cuda_device_name(dev, sizeof dev);
    if (!bo.json)
        printf("device: %s\n", why);
    int rc = 0;
    rc |= bench_fits(&bo, dev, RTD_FIT_GAUSS_2D, RTD_FIT_LSE, 121);
    rc |= bench_fits(&bo, dev, RTD_FIT_GAUSS_2D, RTD_FIT_MLE, 121);
    rc |= bench_fits(&bo, dev, RTD_FIT_GAUSS_1D, RTD_FIT_LSE, 32);
    rc |= bench_fits(&bo, dev, RTD_FIT_SHM_1D, RTD_FIT_LSE, 48);
    uint16_t *frames = make_frames();
    if (!frames)
        return 1;
    rc |= bench_frames(&bo, dev, frames, bo.rate);
    rc |= bench_frames(&bo, dev, frames, 0);
    free(frames);
    return rc ? 1 : 0;
}

#else

int rtd_bench_cuda(int argc, char **argv)
{
    char why[256];
    rtd_fit_cuda_available(why, sizeof why);
    fprintf(stderr, "rtdaq-bench cuda: built without proc/fit or proc/pipeline (%s)\n", why);
    return 1;
}

#endif
