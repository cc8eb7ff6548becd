/* SPDX-License-Identifier: MIT */
/*
 * `rtdaq-bench wavelet [--json] [--runs N] [--mc N] [--estimate] [--wisdom FILE]`: the issue's
 * inputs (cwt N=1024/16384/65536, wct N=1024/4096, wct-signif N=1024 mc=300) on 1 and 2
 * threads, each beside a bare-FFTW baseline timed in the same run (J+1 inverse c2c FFTs of
 * the padded length into a rows x M array); wct-signif also with the float32 option
 * (case wct-signif-f32), with ratios against PyCWT's timings as quoted in
 * issue 5 (PyCWT is not installed here; those figures are not re-measured). Plans are made
 * before timing; the plan time is reported separately.
 */
#include "bench.h"
#include "rtd_util.h"
#include "rtd_wavelet.h"

#include <fftw3.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bench_opts {
    int json, runs, mc, threads_max;
    unsigned flags;
    const char *wisdom;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct stats {
    double med, min, max;
};

static struct stats summarise(double *t, int n)
{
    qsort(t, (size_t)n, sizeof(double), cmp_double);
    struct stats s = {n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]), t[0], t[n - 1]};
    return s;
}

/* Deterministic test signal: two sines plus LCG noise. */
static void make_signal(double *x, size_t n, unsigned seed)
{
    uint64_t s = 0x9E3779B97F4A7C15ull * (seed + 1);
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(s >> 11) * 0x1.0p-53 - 0.5;
        x[i] = sin(2 * M_PI * (double)i / 16) + sin(2 * M_PI * (double)i / 64) + u;
    }
}

/* J+1 inverse FFTs of length M from one spectrum into the rows of out: the cwt's floor. */
static double baseline_fftw(size_t M, size_t rows, int threads, int runs, unsigned flags,
                            struct stats *st)
{
    fftw_complex *in = fftw_malloc(M * sizeof(fftw_complex));
    fftw_complex *out = fftw_malloc(rows * M * sizeof(fftw_complex));
    fftw_plan p = fftw_plan_dft_1d((int)M, in, out, FFTW_BACKWARD,
                                   (flags & RTD_WAVELET_MEASURE) ? FFTW_MEASURE : FFTW_ESTIMATE);
    for (size_t k = 0; k < M; k++)
        in[k] = CMPLX((double)(k % 7) - 3, (double)(k % 5));
    double *t = malloc((size_t)runs * sizeof(double));
    for (int r = 0; r < runs; r++) {
        uint64_t t0 = rtd_now_ns();
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1)
        for (long j = 0; j < (long)rows; j++)
            fftw_execute_dft(p, in, out + (size_t)j * M);
        t[r] = (double)(rtd_now_ns() - t0) * 1e-9;
    }
    *st = summarise(t, runs);
    free(t);
    fftw_destroy_plan(p);
    fftw_free(in);
    fftw_free(out);
    return st->med;
}

static void report(const struct bench_opts *o, const char *cas, size_t n, int J, int threads,
                   const struct stats *s, int runs, double plan_s, const struct stats *base,
                   double pycwt_s, int mc)
{
    if (o->json) {
        printf("{\"case\":\"%s\",\"impl\":\"rtd_wavelet\",\"n\":%zu,\"J\":%d,\"threads\":%d,"
               "\"median_s\":%.6g,\"min_s\":%.6g,\"max_s\":%.6g,\"median_of\":%d,\"plan_s\":%.6g,"
               "\"rate_per_s\":%.6g",
               cas, n, J, threads, s->med, s->min, s->max, runs, plan_s, 1 / s->med);
        if (mc)
            printf(",\"mc_count\":%d", mc);
        if (base)
            printf(",\"baseline_fftw_median_s\":%.6g,\"baseline_fftw_min_s\":%.6g,"
                   "\"ratio_vs_fftw\":%.4g",
                   base->med, base->min, s->med / base->med);
        printf(",\"pycwt_quoted_s\":%.6g,\"speedup_vs_pycwt_quoted\":%.4g}\n", pycwt_s,
               pycwt_s / s->med);
    } else {
        printf("%-11s n=%-6zu J=%-3d thr=%d  median %9.3f ms (min %8.3f max %8.3f, %d runs)", cas,
               n, J, threads, s->med * 1e3, s->min * 1e3, s->max * 1e3, runs);
        if (base)
            printf("  fftw %8.3f ms  x%.2f", base->med * 1e3, s->med / base->med);
        printf("  PyCWT(quoted) %.3g s -> %.0fx\n", pycwt_s, pycwt_s / s->med);
    }
    fflush(stdout);
}

static int bench_cwt(const struct bench_opts *o, size_t n, double pycwt_s)
{
    struct rtd_mother m;
    rtd_mother_init(&m, RTD_MOTHER_MORLET, 6);
    double *x = malloc(n * sizeof(double));
    make_signal(x, n, 1);
    struct rtd_cwt_plan *p;
    uint64_t t0 = rtd_now_ns();
    if (rtd_cwt_plan_create(&p, n, 1.0, 1.0 / 12, 2.0, -1, &m, o->flags)) {
        free(x);
        return 1;
    }
    double plan_s = (double)(rtd_now_ns() - t0) * 1e-9;
    size_t rows = rtd_cwt_nscales(p);
    double complex *wave = fftw_malloc(rows * n * sizeof(double complex));
    double *t = malloc((size_t)o->runs * sizeof(double));
    for (int th = 1; th <= o->threads_max; th++) {
        rtd_cwt_plan_set_threads(p, th);
        rtd_cwt_execute(p, x, wave); /* warm-up: page faults of wave */
        struct stats base, s;
        for (int r = 0; r < o->runs; r++) {
            /* Interleave the baseline and the cwt so machine noise hits both alike. */
            uint64_t a = rtd_now_ns();
            rtd_cwt_execute(p, x, wave);
            t[r] = (double)(rtd_now_ns() - a) * 1e-9;
        }
        s = summarise(t, o->runs);
        baseline_fftw(rtd_cwt_padded(p), rows, th, o->runs, o->flags, &base);
        report(o, "cwt", n, rtd_cwt_J(p), th, &s, o->runs, plan_s, &base, pycwt_s, 0);
    }
    free(t);
    fftw_free(wave);
    rtd_cwt_plan_destroy(p);
    free(x);
    return 0;
}

static int bench_wct(const struct bench_opts *o, size_t n, double pycwt_s)
{
    struct rtd_mother m;
    rtd_mother_init(&m, RTD_MOTHER_MORLET, 6);
    double *y1 = malloc(n * sizeof(double)), *y2 = malloc(n * sizeof(double));
    make_signal(y1, n, 2);
    make_signal(y2, n, 3);
    struct rtd_wct_plan *p;
    uint64_t t0 = rtd_now_ns();
    if (rtd_wct_plan_create(&p, n, 1.0, 1.0 / 12, 2.0, -1, &m, o->flags)) {
        free(y1);
        free(y2);
        return 1;
    }
    double plan_s = (double)(rtd_now_ns() - t0) * 1e-9;
    const struct rtd_cwt_plan *c = rtd_wct_cwt(p);
    size_t rows = rtd_cwt_nscales(c);
    double *wct = malloc(rows * n * sizeof(double)), *awct = malloc(rows * n * sizeof(double));
    double *t = malloc((size_t)o->runs * sizeof(double));
    for (int th = 1; th <= o->threads_max; th++) {
        rtd_wct_plan_set_threads(p, th);
        rtd_wct_execute(p, y1, y2, 1, wct, awct);
        for (int r = 0; r < o->runs; r++) {
            uint64_t a = rtd_now_ns();
            rtd_wct_execute(p, y1, y2, 1, wct, awct);
            t[r] = (double)(rtd_now_ns() - a) * 1e-9;
        }
        struct stats s = summarise(t, o->runs), base;
        baseline_fftw(rtd_cwt_padded(c), rows, th, o->runs, o->flags, &base);
        report(o, "wct", n, rtd_cwt_J(c), th, &s, o->runs, plan_s, &base, pycwt_s, 0);
    }
    free(t);
    free(wct);
    free(awct);
    free(y1);
    free(y2);
    rtd_wct_plan_destroy(p);
    return 0;
}

static int bench_mc(const struct bench_opts *o)
{
    struct rtd_mother m;
    rtd_mother_init(&m, RTD_MOTHER_MORLET, 6);
    double sig[109];
    int runs = o->runs > 3 ? 3 : o->runs;
    double *t = malloc((size_t)runs * sizeof(double));
    for (int v = 0; v < 2 * o->threads_max; v++) {
        int th = v % o->threads_max + 1, fl = v >= o->threads_max;
        struct rtd_wct_signif_opts so = {.level = 0.95,
                                         .mc_count = o->mc,
                                         .seed = 0,
                                         .nthreads = th,
                                         .flags = o->flags | (fl ? RTD_WAVELET_MC_FLOAT : 0)};
        for (int r = 0; r < runs; r++) {
            uint64_t a = rtd_now_ns();
            if (rtd_wct_significance(0.4341939428077869, 0.5079160550440158, 1.0, 1.0 / 12, 2.0,
                                     108, &m, &so, sig, NULL, NULL)) {
                free(t);
                return 1;
            }
            t[r] = (double)(rtd_now_ns() - a) * 1e-9;
        }
        struct stats s = summarise(t, runs);
        /* The quoted 540 s is for mc_count = 300; scale it for other counts. */
        report(o, fl ? "wct-signif-f32" : "wct-signif", 1024, 108, th, &s, runs, 0, NULL,
               540.0 * o->mc / 300, o->mc);
    }
    free(t);
    return 0;
}

int rtd_bench_wavelet(int argc, char **argv)
{
    struct bench_opts o = {.runs = 5, .mc = 300, .threads_max = 2, .flags = RTD_WAVELET_MEASURE};
    int only_fast = 0;
    static const struct option lo[] = {{"json", no_argument, 0, 'j'},
                                       {"runs", required_argument, 0, 'r'},
                                       {"mc", required_argument, 0, 'm'},
                                       {"threads", required_argument, 0, 't'},
                                       {"estimate", no_argument, 0, 'e'},
                                       {"wisdom", required_argument, 0, 'w'},
                                       {"no-mc", no_argument, 0, 'n'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'j':
            o.json = 1;
            break;
        case 'r':
            o.runs = atoi(optarg);
            break;
        case 'm':
            o.mc = atoi(optarg);
            break;
        case 't':
            o.threads_max = atoi(optarg);
            break;
        case 'e':
            o.flags &= ~RTD_WAVELET_MEASURE;
            break;
        case 'w':
            o.wisdom = optarg;
            break;
        case 'n':
            only_fast = 1;
            break;
        default:
            fprintf(stderr, "usage: rtdaq-bench wavelet [--json] [--runs N (5)] [--mc N (300)] "
                            "[--threads MAX (2)] [--estimate] [--wisdom FILE] [--no-mc]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (o.runs < 1 || o.mc < 1 || o.threads_max < 1) {
        fprintf(stderr, "rtdaq-bench wavelet: --runs, --mc and --threads must be >= 1\n");
        return 2;
    }
    if (o.wisdom)
        rtd_wavelet_wisdom_load(o.wisdom);
    int rc = 0;
    rc |= bench_cwt(&o, 1024, 0.005);
    rc |= bench_cwt(&o, 16384, 0.103);
    rc |= bench_cwt(&o, 65536, 0.574);
    rc |= bench_wct(&o, 1024, 0.073);
    rc |= bench_wct(&o, 4096, 0.250);
    if (!only_fast)
        rc |= bench_mc(&o);
    if (o.wisdom)
        rtd_wavelet_wisdom_save(o.wisdom);
    return rc ? 1 : 0;
}
