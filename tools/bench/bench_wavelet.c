/* SPDX-License-Identifier: MIT */
/*
 * `rtdaq-bench wavelet`: the inputs (cwt N=1024/16384/65536, wct N=1024/4096,
 * wct-signif N=1024 mc=300) with every baseline run beside them in the same run:
 * - rtd_wavelet warm: plans made before timing, the transform alone, on 1..T threads;
 * - bare FFTW: J+1 inverse c2c FFTs of the padded length into a rows x M array (cwt's floor);
 * - NumPy: PyCWT's algorithm with numpy.fft (tools/bench/pycwt_numpy.py under
 *   /usr/bin/python3; skipped with a message where numpy is missing). Its Monte Carlo loop is
 *   timed on a few pairs and scaled to mc (labelled "projected");
 * - the `rtdaq wavelet` CLI as a user runs it: the whole process (start, read, plan, compute,
 *   write, manifest), with an empty wisdom cache (cold) and then a filled one (warm).
 * Medians of --runs runs with min-max. --json: one JSON object per case and thread count.
 */
#include "bench.h"
#include "rtd_util.h"
#include "rtd_wavelet.h"

#include <errno.h>
#include <fcntl.h>
#include <fftw3.h>
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct bench_opts {
    int json, runs, mc, threads_max, numpy, cli, numpy_pairs, cli_runs;
    unsigned flags;
    const char *wisdom, *python;
    char tmp[512];     /* scratch directory: inputs, CLI outputs, the CLI's wisdom cache */
    char rtdaq[4096];  /* the rtdaq binary beside this one */
    char script[4096]; /* pycwt_numpy.py */
};

struct stats {
    double med, min, max;
    int n;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static struct stats summarise(double *t, int n)
{
    struct stats s = {NAN, NAN, NAN, n};
    if (n < 1)
        return s;
    qsort(t, (size_t)n, sizeof(double), cmp_double);
    s.med = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    s.min = t[0];
    s.max = t[n - 1];
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
static void baseline_fftw(size_t M, size_t rows, int threads, int runs, unsigned flags,
                          struct stats *st)
{
    fftw_complex *in = fftw_malloc(M * sizeof(fftw_complex));
    fftw_complex *out = fftw_malloc(rows * M * sizeof(fftw_complex));
    fftw_plan p = fftw_plan_dft_1d((int)M, in, out, FFTW_BACKWARD,
                                   (flags & RTD_WAVELET_MEASURE) ? FFTW_MEASURE : FFTW_ESTIMATE);
    for (size_t k = 0; k < M; k++)
        in[k] = CMPLX((double)(k % 7) - 3, (double)(k % 5));
    memset(out, 0, rows * M * sizeof(fftw_complex));
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
}

/* ---- NumPy baseline ---- */
static int numpy_run(const struct bench_opts *o, const char *cas, size_t n, int runs, int mc,
                     struct stats *st, double *first)
{
    st->n = 0;
    if (!o->numpy)
        return -1;
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' '%s' %s %zu %d %d", o->python, o->script, cas, n, runs, mc);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    char line[65536];
    int got = fgets(line, sizeof line, f) != NULL;
    int rc = pclose(f);
    if (!got || rc) {
        fprintf(stderr, "rtdaq-bench wavelet: NumPy baseline '%s' failed (exit %d)\n", cmd, rc);
        return -1;
    }
    json_error_t err;
    json_t *j = json_loads(line, 0, &err);
    json_t *ts = j ? json_object_get(j, "times_s") : NULL;
    if (!json_is_array(ts) || !json_array_size(ts)) {
        json_decref(j);
        return -1;
    }
    size_t k = json_array_size(ts);
    double *t = malloc(k * sizeof(double));
    for (size_t i = 0; i < k; i++)
        t[i] = json_number_value(json_array_get(ts, i));
    *st = summarise(t, (int)k);
    *first = json_number_value(json_object_get(j, "first_call_s"));
    free(t);
    json_decref(j);
    return 0;
}

/* ---- the CLI as a whole process ---- */
static int rm_cache(const struct bench_opts *o)
{
    const char *names[] = {"fftw-wisdom", "fftw-wisdomf", "fftw-wisdom.lock", "fftw-wisdomf.lock"};
    char p[1024];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/cache/rtdaq/%s", o->tmp, names[i]);
        if (unlink(p) && errno != ENOENT)
            return -errno;
    }
    return 0;
}

/*
 * Run rtdaq with args (NULL-terminated, after "rtdaq"): wall seconds (-1 on failure), and the
 * CPU seconds (user + system, all threads) in *cpu: on a shared machine the CPU time is the
 * figure that other people's load does not inflate.
 */
static double run_cli(const struct bench_opts *o, const char *const *args, double *cpu)
{
    char cache[600], sys[600];
    snprintf(cache, sizeof cache, "%s/cache", o->tmp);
    snprintf(sys, sizeof sys, "%s/no-system-wisdom", o->tmp);
    const char *av[40];
    int k = 0;
    av[k++] = o->rtdaq;
    while (*args && k < 38)
        av[k++] = *args++;
    av[k] = NULL;
    uint64_t t0 = rtd_now_ns();
    pid_t pid = fork();
    if (pid == 0) {
        /* A private cache, and no package file: "cold" means nothing planned anywhere. */
        setenv("XDG_CACHE_HOME", cache, 1);
        setenv("RTDAQ_WISDOM_SYSTEM_DIR", sys, 1);
        unsetenv("RTDAQ_WISDOM_DIR");
        unsetenv("RTDAQ_WISDOM");
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0)
            dup2(fd, 1);
        char *const *argv;
        const char *const *cav = av;
        memcpy(&argv, &cav, sizeof argv); /* execv's prototype predates const */
        execv(o->rtdaq, argv);
        _exit(127);
    }
    int st;
    struct rusage ru;
    if (pid < 0 || wait4(pid, &st, 0, &ru) < 0)
        return -1;
    double wall = (double)(rtd_now_ns() - t0) * 1e-9;
    *cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        fprintf(stderr, "rtdaq-bench wavelet: %s %s failed (status %d)\n", o->rtdaq, av[1], st);
        return -1;
    }
    return wall;
}

/* cold: every run starts with an empty cache; warm: the cache the cold runs filled. */
static int cli_case(const struct bench_opts *o, const char *const *args, struct stats *cold,
                    struct stats *warm, struct stats *warm_cpu)
{
    cold->n = warm->n = warm_cpu->n = 0;
    if (!o->cli)
        return -1;
    int runs = o->cli_runs;
    double *tc = malloc((size_t)runs * sizeof(double)), *tw = malloc((size_t)runs * sizeof(double));
    double *cw = malloc((size_t)runs * sizeof(double)), cpu;
    int rc = 0;
    for (int r = 0; r < runs && !rc; r++) {
        rm_cache(o);
        if ((tc[r] = run_cli(o, args, &cpu)) < 0)
            rc = -1;
    }
    for (int r = 0; r < runs && !rc; r++)
        if ((tw[r] = run_cli(o, args, &cw[r])) < 0)
            rc = -1;
    if (!rc) {
        *cold = summarise(tc, runs);
        *warm = summarise(tw, runs);
        *warm_cpu = summarise(cw, runs);
    }
    free(tc);
    free(tw);
    free(cw);
    return rc;
}

static int write_series(const struct bench_opts *o, const char *name, size_t n, unsigned seed,
                        char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", o->tmp, name);
    double *x = malloc(n * sizeof(double));
    if (!x)
        return -ENOMEM;
    make_signal(x, n, seed);
    int rc = rtd_write_file(path, x, n * sizeof(double));
    free(x);
    return rc;
}

/* ---- report ---- */
struct row {
    const char *cas;
    size_t n;
    int J, threads, mc;
    struct stats lib, fftw, np, cli_cold, cli_warm, cli_warm_cpu;
    double plan_s, np_first;
    double cli_cached;     /* > 0: a repeated wct-signif answered from the level cache */
    int np_projected_from; /* > 0: NumPy timed on this many pairs, scaled to mc */
};

static void jstats(const char *key, const struct stats *s)
{
    if (s->n)
        printf(",\"%s_median_s\":%.6g,\"%s_min_s\":%.6g,\"%s_max_s\":%.6g,\"%s_runs\":%d", key,
               s->med, key, s->min, key, s->max, key, s->n);
}

static void report(const struct bench_opts *o, const struct row *r)
{
    if (o->json) {
        printf("{\"case\":\"%s\",\"impl\":\"rtd_wavelet\",\"n\":%zu,\"J\":%d,\"threads\":%d,"
               "\"median_s\":%.6g,\"min_s\":%.6g,\"max_s\":%.6g,\"median_of\":%d,\"plan_s\":%.6g,"
               "\"rate_per_s\":%.6g",
               r->cas, r->n, r->J, r->threads, r->lib.med, r->lib.min, r->lib.max, r->lib.n,
               r->plan_s, 1 / r->lib.med);
        if (r->mc)
            printf(",\"mc_count\":%d", r->mc);
        jstats("baseline_fftw", &r->fftw);
        if (r->fftw.n)
            printf(",\"ratio_vs_fftw\":%.4g", r->lib.med / r->fftw.med);
        jstats("numpy", &r->np);
        if (r->np.n) {
            printf(",\"numpy_first_call_s\":%.6g,\"speedup_vs_numpy\":%.4g", r->np_first,
                   r->np.med / r->lib.med);
            if (r->np_projected_from)
                printf(",\"numpy_projected_from_pairs\":%d", r->np_projected_from);
        }
        jstats("cli_cold", &r->cli_cold);
        jstats("cli_warm", &r->cli_warm);
        jstats("cli_warm_cpu", &r->cli_warm_cpu);
        if (r->cli_warm.n)
            printf(",\"cli_warm_vs_library\":%.4g", r->cli_warm.med / r->lib.med);
        if (r->cli_cached > 0)
            printf(",\"cli_from_cache_s\":%.6g", r->cli_cached);
        printf("}\n");
    } else {
        printf("%-14s n=%-6zu J=%-3d thr=%d  rtd %9.2f ms [%.2f-%.2f]", r->cas, r->n, r->J,
               r->threads, r->lib.med * 1e3, r->lib.min * 1e3, r->lib.max * 1e3);
        if (r->fftw.n)
            printf("  fftw %8.2f ms (x%.2f)", r->fftw.med * 1e3, r->lib.med / r->fftw.med);
        if (r->np.n)
            printf("  numpy %9.1f ms%s (%.1fx)", r->np.med * 1e3,
                   r->np_projected_from ? " proj" : "", r->np.med / r->lib.med);
        if (r->cli_warm.n)
            printf("  CLI cold %.0f ms [%.0f-%.0f], warm %.0f ms [%.0f-%.0f] (x%.2f of rtd; "
                   "CPU %.0f ms)",
                   r->cli_cold.med * 1e3, r->cli_cold.min * 1e3, r->cli_cold.max * 1e3,
                   r->cli_warm.med * 1e3, r->cli_warm.min * 1e3, r->cli_warm.max * 1e3,
                   r->cli_warm.med / r->lib.med, r->cli_warm_cpu.med * 1e3);
        if (r->cli_cached > 0)
            printf("  repeated (level cache) %.0f ms", r->cli_cached * 1e3);
        printf("\n");
    }
    fflush(stdout);
}

static int bench_cwt(const struct bench_opts *o, size_t n)
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
    struct row r = {.cas = "cwt", .n = n, .J = rtd_cwt_J(p)};
    r.plan_s = (double)(rtd_now_ns() - t0) * 1e-9;
    size_t rows = rtd_cwt_nscales(p);
    double complex *wave = fftw_malloc(rows * n * sizeof(double complex));
    double *t = malloc((size_t)o->runs * sizeof(double));
    struct stats np = {0};
    double np_first = 0;
    numpy_run(o, "cwt", n, o->runs, 0, &np, &np_first);
    char in[700], out[700], th[16];
    snprintf(out, sizeof out, "%s/out", o->tmp);
    int have_in = write_series(o, "x.f64", n, 1, in, sizeof in) == 0;
    for (int thr = 1; thr <= o->threads_max; thr++) {
        rtd_cwt_plan_set_threads(p, thr);
        rtd_cwt_execute(p, x, wave); /* warm-up: page faults of wave */
        for (int k = 0; k < o->runs; k++) {
            uint64_t a = rtd_now_ns();
            rtd_cwt_execute(p, x, wave);
            t[k] = (double)(rtd_now_ns() - a) * 1e-9;
        }
        r.threads = thr;
        r.lib = summarise(t, o->runs);
        baseline_fftw(rtd_cwt_padded(p), rows, thr, o->runs, o->flags, &r.fftw);
        r.np = np;
        r.np_first = np_first;
        snprintf(th, sizeof th, "%d", thr);
        const char *args[] = {"wavelet", "cwt", "--in",      in, "--out-dir", out,
                              "--s0",    "2",   "--threads", th, "--quiet",   NULL};
        if (have_in)
            cli_case(o, args, &r.cli_cold, &r.cli_warm, &r.cli_warm_cpu);
        report(o, &r);
    }
    free(t);
    fftw_free(wave);
    rtd_cwt_plan_destroy(p);
    free(x);
    return 0;
}

static int bench_wct(const struct bench_opts *o, size_t n)
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
    const struct rtd_cwt_plan *c = rtd_wct_cwt(p);
    struct row r = {.cas = "wct", .n = n, .J = rtd_cwt_J(c)};
    r.plan_s = (double)(rtd_now_ns() - t0) * 1e-9;
    size_t rows = rtd_cwt_nscales(c);
    double *wct = malloc(rows * n * sizeof(double)), *awct = malloc(rows * n * sizeof(double));
    double *t = malloc((size_t)o->runs * sizeof(double));
    struct stats np = {0};
    double np_first = 0;
    numpy_run(o, "wct", n, o->runs, 0, &np, &np_first);
    char in1[700], in2[700], out[700], th[16];
    snprintf(out, sizeof out, "%s/out", o->tmp);
    int have_in = write_series(o, "y1.f64", n, 2, in1, sizeof in1) == 0 &&
                  write_series(o, "y2.f64", n, 3, in2, sizeof in2) == 0;
    for (int thr = 1; thr <= o->threads_max; thr++) {
        rtd_wct_plan_set_threads(p, thr);
        rtd_wct_execute(p, y1, y2, 1, wct, awct);
        for (int k = 0; k < o->runs; k++) {
            uint64_t a = rtd_now_ns();
            rtd_wct_execute(p, y1, y2, 1, wct, awct);
            t[k] = (double)(rtd_now_ns() - a) * 1e-9;
        }
        r.threads = thr;
        r.lib = summarise(t, o->runs);
        baseline_fftw(rtd_cwt_padded(c), rows, thr, o->runs, o->flags, &r.fftw);
        r.np = np;
        r.np_first = np_first;
        snprintf(th, sizeof th, "%d", thr);
        const char *args[] = {"wavelet", "wct", "--in",      in1, "--in2",   in2, "--out-dir", out,
                              "--s0",    "2",   "--threads", th,  "--quiet", NULL};
        if (have_in)
            cli_case(o, args, &r.cli_cold, &r.cli_warm, &r.cli_warm_cpu);
        report(o, &r);
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
    struct stats np = {0};
    double np_first = 0;
    /* PyCWT's loop takes seconds per pair: time a few and scale to mc (labelled). */
    if (numpy_run(o, "wct-signif", 1024, 1, o->numpy_pairs, &np, &np_first) == 0) {
        double f = (double)o->mc / o->numpy_pairs;
        np.med *= f;
        np.min *= f;
        np.max *= f;
        np_first *= f;
    }
    char out[700], th[16], mc[16];
    snprintf(out, sizeof out, "%s/out", o->tmp);
    snprintf(mc, sizeof mc, "%d", o->mc);
    for (int v = 0; v < 2 * o->threads_max; v++) {
        int thr = v % o->threads_max + 1, fl = v >= o->threads_max;
        struct rtd_wct_signif_opts so = {.level = 0.95,
                                         .mc_count = o->mc,
                                         .seed = 0,
                                         .nthreads = thr,
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
        struct row r = {.cas = fl ? "wct-signif-f32" : "wct-signif",
                        .n = 1024,
                        .J = 108,
                        .threads = thr,
                        .mc = o->mc};
        r.lib = summarise(t, runs);
        r.np = np;
        r.np_first = np_first;
        r.np_projected_from = np.n ? o->numpy_pairs : 0;
        snprintf(th, sizeof th, "%d", thr);
        /* --no-cache: the levels computed every time; then once more through the cache. */
        const char *args[] = {"wavelet", "wct-signif", "--al1",
                              "0.434",   "--al2",      "0.508",
                              "--s0",    "2",          "--J",
                              "108",     "--mc",       mc,
                              "--seed",  "0",          "--threads",
                              th,        "--out-dir",  out,
                              "--quiet", "--no-cache", fl ? "--mc-float" : NULL,
                              NULL};
        struct bench_opts o1 = *o;
        o1.cli_runs = runs < 2 ? runs : 2;
        cli_case(&o1, args, &r.cli_cold, &r.cli_warm, &r.cli_warm_cpu);
        if (o->cli) {
            args[19] = fl ? "--mc-float" : NULL;
            args[20] = NULL;
            double cpu;
            if (run_cli(o, args, &cpu) >= 0) /* fills the cache (if not yet) */
                r.cli_cached = run_cli(o, args, &cpu);
        }
        report(o, &r);
    }
    free(t);
    return 0;
}

/* Find the rtdaq binary (beside this one) and the NumPy script (env, source tree, install). */
static void locate(struct bench_opts *o)
{
    char exe[4096];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[k > 0 ? k : 0] = 0;
    char *dir = dirname(exe);
    snprintf(o->rtdaq, sizeof o->rtdaq, "%s/rtdaq", dir);
    const char *env = getenv("RTDAQ_BENCH_PYCWT");
    char src[4096];
    snprintf(src, sizeof src, "%s", __FILE__);
    const char *cand[3] = {env, NULL, NULL};
    char c1[4096], c2[4096];
    snprintf(c1, sizeof c1, "%s/pycwt_numpy.py", dirname(src));
    snprintf(c2, sizeof c2, "%s/../share/rtdaq/pycwt_numpy.py", dir);
    cand[1] = c1;
    cand[2] = c2;
    o->script[0] = 0;
    for (int i = 0; i < 3; i++)
        if (cand[i] && access(cand[i], R_OK) == 0) {
            snprintf(o->script, sizeof o->script, "%s", cand[i]);
            break;
        }
}

int rtd_bench_wavelet(int argc, char **argv)
{
    struct bench_opts o = {.runs = 5,
                           .mc = 300,
                           .threads_max = 2,
                           .flags = RTD_WAVELET_MEASURE,
                           .numpy = 1,
                           .cli = 1,
                           .numpy_pairs = 2,
                           .cli_runs = 0,
                           .python = "/usr/bin/python3"};
    int only_fast = 0;
    static const struct option lo[] = {{"json", no_argument, 0, 'j'},
                                       {"runs", required_argument, 0, 'r'},
                                       {"mc", required_argument, 0, 'm'},
                                       {"threads", required_argument, 0, 't'},
                                       {"estimate", no_argument, 0, 'e'},
                                       {"wisdom", required_argument, 0, 'w'},
                                       {"no-mc", no_argument, 0, 'n'},
                                       {"no-numpy", no_argument, 0, 'N'},
                                       {"no-cli", no_argument, 0, 'C'},
                                       {"cli-runs", required_argument, 0, 'c'},
                                       {"numpy-pairs", required_argument, 0, 'p'},
                                       {"python", required_argument, 0, 'P'},
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
        case 'N':
            o.numpy = 0;
            break;
        case 'C':
            o.cli = 0;
            break;
        case 'c':
            o.cli_runs = atoi(optarg);
            break;
        case 'p':
            o.numpy_pairs = atoi(optarg);
            break;
        case 'P':
            o.python = optarg;
            break;
        default:
            fprintf(stderr,
                    "usage: rtdaq-bench wavelet [--json] [--runs N (5)] [--mc N (300)] "
                    "[--threads MAX (2)] [--estimate] [--wisdom FILE] [--no-mc] [--no-numpy] "
                    "[--no-cli] [--cli-runs N (= runs, at most 3)] [--numpy-pairs K (2)] "
                    "[--python PATH (/usr/bin/python3)]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (o.runs < 1 || o.mc < 1 || o.threads_max < 1 || o.numpy_pairs < 1 || o.cli_runs < 0) {
        fprintf(stderr, "rtdaq-bench wavelet: --runs, --mc, --threads and --numpy-pairs must be "
                        ">= 1\n");
        return 2;
    }
    if (!o.cli_runs)
        o.cli_runs = o.runs < 3 ? o.runs : 3;
    locate(&o);
    if (o.numpy) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy' 2>/dev/null", o.python);
        if (!o.script[0]) {
            fprintf(stderr, "rtdaq-bench wavelet: pycwt_numpy.py not found (set "
                            "RTDAQ_BENCH_PYCWT): NumPy baseline skipped\n");
            o.numpy = 0;
        } else if (system(cmd) != 0) {
            fprintf(stderr,
                    "rtdaq-bench wavelet: %s cannot import numpy (Debian: apt-get install "
                    "python3-numpy): NumPy baseline skipped\n",
                    o.python);
            o.numpy = 0;
        }
    }
    if (o.cli && access(o.rtdaq, X_OK)) {
        fprintf(stderr, "rtdaq-bench wavelet: no rtdaq binary at %s: CLI column skipped\n",
                o.rtdaq);
        o.cli = 0;
    }
    const char *td = getenv("TMPDIR");
    snprintf(o.tmp, sizeof o.tmp, "%s/rtdaq-bench-wavelet.XXXXXX", td && *td ? td : "/tmp");
    if (!mkdtemp(o.tmp)) {
        fprintf(stderr, "rtdaq-bench wavelet: mkdtemp %s: %s\n", o.tmp, strerror(errno));
        return 1;
    }
    if (o.wisdom)
        rtd_wavelet_wisdom_load(o.wisdom);
    int rc = 0;
    rc |= bench_cwt(&o, 1024);
    rc |= bench_cwt(&o, 16384);
    rc |= bench_cwt(&o, 65536);
    rc |= bench_wct(&o, 1024);
    rc |= bench_wct(&o, 4096);
    if (!only_fast)
        rc |= bench_mc(&o);
    if (o.wisdom)
        rtd_wavelet_wisdom_save(o.wisdom);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", o.tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "rtdaq-bench wavelet: could not remove %s\n", o.tmp);
    return rc ? 1 : 0;
}
