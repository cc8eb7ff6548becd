/* SPDX-License-Identifier: MIT */
/*
 * rtdaq-proc: the processor daemon. A supervisor process creates each
 * worker's stats segment and results ring, forks the workers (one process
 * per core, pinned), restarts any that dies, and on SIGINT/SIGTERM stops
 * them and unlinks what it created. Fit workers share the frames ring as one
 * consumer group (each frame to exactly one worker; a killed worker's frame
 * is re-offered by the group or counted lost_dead); wavelet workers read the
 * packets ring and split the clients between them.
 *
 * Shape: parse -> create segments -> fork workers -> supervise -> stop workers
 * -> cleanup ladder in reverse order.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc_internal.h"
#include "rtd_config.h"
#include "rtd_procd.h"
#include "rtd_fit_cuda.h"
#include "rtd_util.h"
#include "rtd_wavelet.h"

volatile sig_atomic_t proc_stop;
volatile sig_atomic_t proc_orphaned;

/* A worker whose supervisor died (PR_SET_PDEATHSIG): stop, but do not leave the group. */
static void on_orphaned(int sig)
{
    (void)sig;
    proc_orphaned = 1;
    proc_stop = 1;
}
static char **volatile proc_argv;

void rtd_proc_request_stop(void)
{
    proc_stop = 1;
}

static const char usage[] =
    "usage: rtdaq-proc [options]\n"
    "  --instance NAME        shared-memory instance (default $RTDAQ_INSTANCE or 'default')\n"
    "  --cpu N                core of the first worker (next workers on the next cores;\n"
    "                         default 1 when there are 2+ cores, -1 = do not pin)\n"
    "  --workers N|auto       worker processes (auto = cores minus the ingest core, >= 1)\n"
    "  --worker-id K          id of the first worker (names results.w<K>, stats.proc.w<K>)\n"
    "  --fifo PRIO            SCHED_FIFO priority for workers (0 = off; warns if denied)\n"
    "  --mlock                mlockall in the workers (warns if denied)\n"
    "  --mode fits|wavelet|both  frame fits, streaming wavelets, or both (+1 wavelet worker)\n"
    "  --analysis static|shm  GAUSS_2D per ion, or GAUSS_1D(x) + SHM_1D(y) profiles\n"
    "  --duration S           stop after S seconds (0 = until SIGINT/SIGTERM)\n"
    "  --frames-ring NAME     (default frames)   --packets-ring NAME (default packets)\n"
    "  --group NAME           consumer group on the frames ring (default proc)\n"
    "  --results-bytes N      bytes of each results ring (power of two, default 4194304)\n"
    "  --poll-us N            busy-poll this long before sleeping on the ring (default 200)\n"
    " frame pipeline (as rtdaq fit-frames): --threshold T --k K --radius R|RX,RY\n"
    "  --roi-size S|WxH --blur S|SX,SY --sigma S --roi-window X0,X1,Y0,Y1 --estimator lse|mle\n"
    "  --bin 1|2 --max-ions N --no-deblend\n"
    "  --backend cpu|cuda|auto  frame pipeline on the CPU (default) or the GPU; auto = CUDA\n"
    "                         when a device is usable (and then 1 fit worker unless --workers)\n"
    "  --cuda-batch N         frames per GPU launch (default 4, 1..8)\n"
    "  --cuda-wait-us U       launch a partial batch after U us (default 250)\n"
    " streaming wavelets: --window N (samples, 1024) --hop N (256) --dt S (1e-3) --dj D (0.125)\n"
    "  --mother morlet:6|paul:4|dog:2 --bands LO:HI,... (periods in units of dt's time unit)\n"
    "  --channels ID,... (clients to analyse; default all) --pairs A-B,... (coherence)\n"
    "  --max-clients N (64) --reliable (gate acq instead of monitoring the packets ring)\n"
    "  --log-level N          syslog level (default 6)\n";

enum {
    O_INSTANCE = 1,
    O_CPU,
    O_WORKERS,
    O_WID,
    O_FIFO,
    O_MLOCK,
    O_MODE,
    O_ANALYSIS,
    O_DURATION,
    O_FRING,
    O_PRING,
    O_GROUP,
    O_RBYTES,
    O_POLL,
    O_THR,
    O_K,
    O_RADIUS,
    O_ROI,
    O_BLUR,
    O_SIGMA,
    O_RWIN,
    O_EST,
    O_BIN,
    O_MAXIONS,
    O_NODEBLEND,
    O_WINDOW,
    O_HOP,
    O_DT,
    O_DJ,
    O_MOTHER,
    O_BANDS,
    O_CHANNELS,
    O_PAIRS,
    O_MAXCLIENTS,
    O_RELIABLE,
    O_LOGLEVEL,
    O_HELP,
    O_CHECK,
    O_BACKEND,
    O_CUDA_BATCH,
    O_CUDA_WAIT,
};

static const struct option long_opts[] = {
    {"instance", required_argument, 0, O_INSTANCE},
    {"cpu", required_argument, 0, O_CPU},
    {"workers", required_argument, 0, O_WORKERS},
    {"worker-id", required_argument, 0, O_WID},
    {"fifo", required_argument, 0, O_FIFO},
    {"mlock", no_argument, 0, O_MLOCK},
    {"mode", required_argument, 0, O_MODE},
    {"analysis", required_argument, 0, O_ANALYSIS},
    {"duration", required_argument, 0, O_DURATION},
    {"frames-ring", required_argument, 0, O_FRING},
    {"packets-ring", required_argument, 0, O_PRING},
    {"group", required_argument, 0, O_GROUP},
    {"results-bytes", required_argument, 0, O_RBYTES},
    {"poll-us", required_argument, 0, O_POLL},
    {"threshold", required_argument, 0, O_THR},
    {"k", required_argument, 0, O_K},
    {"radius", required_argument, 0, O_RADIUS},
    {"roi-size", required_argument, 0, O_ROI},
    {"blur", required_argument, 0, O_BLUR},
    {"sigma", required_argument, 0, O_SIGMA},
    {"roi-window", required_argument, 0, O_RWIN},
    {"estimator", required_argument, 0, O_EST},
    {"bin", required_argument, 0, O_BIN},
    {"max-ions", required_argument, 0, O_MAXIONS},
    {"no-deblend", no_argument, 0, O_NODEBLEND},
    {"window", required_argument, 0, O_WINDOW},
    {"hop", required_argument, 0, O_HOP},
    {"dt", required_argument, 0, O_DT},
    {"dj", required_argument, 0, O_DJ},
    {"mother", required_argument, 0, O_MOTHER},
    {"bands", required_argument, 0, O_BANDS},
    {"channels", required_argument, 0, O_CHANNELS},
    {"pairs", required_argument, 0, O_PAIRS},
    {"max-clients", required_argument, 0, O_MAXCLIENTS},
    {"reliable", no_argument, 0, O_RELIABLE},
    {"log-level", required_argument, 0, O_LOGLEVEL},
    {"help", no_argument, 0, O_HELP},
    {"check-config", no_argument, 0, O_CHECK},
    {"backend", required_argument, 0, O_BACKEND},
    {"cuda-batch", required_argument, 0, O_CUDA_BATCH},
    {"cuda-wait-us", required_argument, 0, O_CUDA_WAIT},
    {0, 0, 0, 0},
};

static int bad(const char *opt, const char *val, const char *want)
{
    fprintf(stderr, "rtdaq-proc: --%s '%s': %s\n", opt, val, want);
    return -EINVAL;
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_num(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v))
        return -EINVAL;
    *out = v;
    return 0;
}

/* "A" or "A<sep>B" (sep ',' or 'x') as two ints. */
static int parse_ipair(const char *s, int *a, int *b)
{
    char *end;
    long x = strtol(s, &end, 10), y;
    if (end == s)
        return -EINVAL;
    y = x;
    if (*end == ',' || *end == 'x') {
        const char *t = end + 1;
        y = strtol(t, &end, 10);
        if (end == t)
            return -EINVAL;
    }
    if (*end || x < 0 || y < 0 || x > 4096 || y > 4096)
        return -EINVAL;
    *a = (int)x;
    *b = (int)y;
    return 0;
}

static int parse_fpair(const char *s, float *a, float *b)
{
    char *end;
    double x = strtod(s, &end), y;
    if (end == s)
        return -EINVAL;
    y = x;
    if (*end == ',') {
        const char *t = end + 1;
        y = strtod(t, &end);
        if (end == t)
            return -EINVAL;
    }
    if (*end || !isfinite(x) || !isfinite(y))
        return -EINVAL;
    *a = (float)x;
    *b = (float)y;
    return 0;
}

static int parse_bands(struct proc_opts *o, const char *s)
{
    o->n_bands = 0;
    const char *p = s;
    while (*p) {
        char *end;
        double lo = strtod(p, &end);
        if (end == p || *end != ':')
            return -EINVAL;
        p = end + 1;
        double hi = strtod(p, &end);
        if (end == p || !(lo > 0) || !(hi > lo) || o->n_bands == PROC_MAX_BANDS)
            return -EINVAL;
        o->band_lo[o->n_bands] = lo;
        o->band_hi[o->n_bands++] = hi;
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            return -EINVAL;
    }
    return o->n_bands > 0 ? 0 : -EINVAL;
}

static int parse_u32_list(const char *s, uint32_t *out, int cap, int *n)
{
    *n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p || errno || v > UINT32_MAX || *n == cap)
            return -EINVAL;
        out[(*n)++] = (uint32_t)v;
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            return -EINVAL;
    }
    return *n > 0 ? 0 : -EINVAL;
}

static int parse_pairs(struct proc_opts *o, const char *s)
{
    o->n_pairs = 0;
    const char *p = s;
    while (*p) {
        char *end;
        unsigned long a = strtoul(p, &end, 10);
        if (end == p || *end != '-')
            return -EINVAL;
        p = end + 1;
        unsigned long b = strtoul(p, &end, 10);
        if (end == p || a > UINT32_MAX || b > UINT32_MAX || a == b || o->n_pairs == PROC_MAX_PAIRS)
            return -EINVAL;
        o->pair_a[o->n_pairs] = (uint32_t)a;
        o->pair_b[o->n_pairs++] = (uint32_t)b;
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            return -EINVAL;
    }
    return o->n_pairs > 0 ? 0 : -EINVAL;
}

/* Returns 0, 1 (--help printed: exit 0) or -EINVAL (message printed: exit 2). */
static int parse_args(int argc, char **argv, struct proc_opts *o, int *check_only)
{
    memset(o, 0, sizeof *o);
    o->cpu = -2; /* default chosen from the core count below */
    o->mode = PROC_ROLE_FITS;
    o->frames_ring = "frames";
    o->packets_ring = "packets";
    o->group = "proc";
    o->results_bytes = 4u << 20;
    o->poll_us = 200;
    o->log_level = RTD_LOG_INFO;
    o->window = 1024;
    o->hop = 256;
    o->dt = 1e-3;
    o->dj = 0.125;
    o->mother = "morlet:6";
    o->max_clients = 64;
    o->backend = PROC_BACKEND_CPU;
    o->cuda_batch = 4;
    o->cuda_wait_ns = 250000;
    enum rtd_pipe_analysis an = RTD_PIPE_STATIC;
    /* Pipeline options apply on top of the analysis' defaults, so they wait for the loop's end. */
    const char *pv[O_CHECK + 1] = {0};
    int nodeblend = 0, c;
    long v;
    double d;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        switch (c) {
        case O_INSTANCE:
            o->instance = optarg;
            break;
        case O_CPU:
            if (parse_int(optarg, -1, 4095, &v) < 0)
                return bad("cpu", optarg, "expected a core number or -1");
            o->cpu = (int)v;
            break;
        case O_WORKERS:
            if (!strcmp(optarg, "auto"))
                o->workers = 0;
            else if (parse_int(optarg, 1, PROC_MAX_WORKERS - 1, &v) < 0)
                return bad("workers", optarg, "expected auto or 1..15");
            else
                o->workers = (int)v;
            break;
        case O_WID:
            if (parse_int(optarg, 0, 9999, &v) < 0)
                return bad("worker-id", optarg, "expected 0..9999");
            o->worker_id = (int)v;
            break;
        case O_FIFO:
            if (parse_int(optarg, 0, 99, &v) < 0)
                return bad("fifo", optarg, "expected a priority 0..99");
            o->fifo = (int)v;
            break;
        case O_MLOCK:
            o->mlock = 1;
            break;
        case O_MODE:
            if (!strcmp(optarg, "fits"))
                o->mode = PROC_ROLE_FITS;
            else if (!strcmp(optarg, "wavelet"))
                o->mode = PROC_ROLE_WAVELET;
            else if (!strcmp(optarg, "both"))
                o->mode = PROC_ROLE_FITS | PROC_ROLE_WAVELET;
            else
                return bad("mode", optarg, "expected fits, wavelet or both");
            break;
        case O_ANALYSIS:
            if (rtd_pipe_analysis_parse(optarg, &an) < 0)
                return bad("analysis", optarg, "expected static or shm");
            break;
        case O_DURATION:
            if (parse_num(optarg, &d) < 0 || d < 0)
                return bad("duration", optarg, "expected seconds >= 0");
            o->duration = d;
            break;
        case O_FRING:
            o->frames_ring = optarg;
            break;
        case O_PRING:
            o->packets_ring = optarg;
            break;
        case O_GROUP:
            o->group = optarg;
            break;
        case O_RBYTES:
            if (parse_int(optarg, 65536, 1L << 30, &v) < 0 || (v & (v - 1)))
                return bad("results-bytes", optarg, "expected a power of two, 64 KiB .. 1 GiB");
            o->results_bytes = (uint64_t)v;
            break;
        case O_POLL:
            if (parse_int(optarg, 0, 1000000, &v) < 0)
                return bad("poll-us", optarg, "expected 0..1000000");
            o->poll_us = (int)v;
            break;
        case O_NODEBLEND:
            nodeblend = 1;
            break;
        case O_WINDOW:
            if (parse_int(optarg, 16, 1 << 20, &v) < 0)
                return bad("window", optarg, "expected 16 .. 1048576 samples");
            o->window = (int)v;
            break;
        case O_HOP:
            if (parse_int(optarg, 1, 1 << 20, &v) < 0)
                return bad("hop", optarg, "expected 1 .. 1048576 samples");
            o->hop = (int)v;
            break;
        case O_DT:
            if (parse_num(optarg, &d) < 0 || !(d > 0))
                return bad("dt", optarg, "expected a sample interval > 0");
            o->dt = d;
            break;
        case O_DJ:
            if (parse_num(optarg, &d) < 0 || !(d > 0) || d > 1)
                return bad("dj", optarg, "expected 0 < dj <= 1");
            o->dj = d;
            break;
        case O_MOTHER:
            o->mother = optarg;
            break;
        case O_BANDS:
            if (parse_bands(o, optarg) < 0)
                return bad("bands", optarg, "expected LO:HI[,LO:HI...] with 0 < LO < HI");
            break;
        case O_CHANNELS:
            if (parse_u32_list(optarg, o->channels, PROC_MAX_CHANNELS, &o->n_channels) < 0)
                return bad("channels", optarg, "expected client ids ID[,ID...]");
            break;
        case O_PAIRS:
            if (parse_pairs(o, optarg) < 0)
                return bad("pairs", optarg, "expected A-B[,A-B...] of two different clients");
            break;
        case O_MAXCLIENTS:
            if (parse_int(optarg, 1, 65536, &v) < 0)
                return bad("max-clients", optarg, "expected 1..65536");
            o->max_clients = (int)v;
            break;
        case O_RELIABLE:
            o->reliable = 1;
            break;
        case O_LOGLEVEL:
            if (parse_int(optarg, 0, 7, &v) < 0)
                return bad("log-level", optarg, "expected 0..7");
            o->log_level = (int)v;
            break;
        case O_HELP:
            fputs(usage, stdout);
            return 1;
        case O_CHECK:
            *check_only = 1;
            break;
        case O_BACKEND:
            if (!strcmp(optarg, "cpu"))
                o->backend = PROC_BACKEND_CPU;
            else if (!strcmp(optarg, "cuda"))
                o->backend = PROC_BACKEND_CUDA;
            else if (!strcmp(optarg, "auto"))
                o->backend = PROC_BACKEND_AUTO;
            else
                return bad("backend", optarg, "expected cpu, cuda or auto");
            break;
        case O_CUDA_BATCH:
            if (parse_int(optarg, 1, 8, &v) < 0)
                return bad("cuda-batch", optarg, "expected 1..8 frames");
            o->cuda_batch = (int)v;
            break;
        case O_CUDA_WAIT:
            if (parse_int(optarg, 0, 100000, &v) < 0)
                return bad("cuda-wait-us", optarg, "expected 0..100000 us");
            o->cuda_wait_ns = (uint64_t)v * 1000u;
            break;
        case O_THR:
        case O_K:
        case O_RADIUS:
        case O_ROI:
        case O_BLUR:
        case O_SIGMA:
        case O_RWIN:
        case O_EST:
        case O_BIN:
        case O_MAXIONS:
            pv[c] = optarg;
            break;
        default:
            fputs(usage, stderr);
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rtdaq-proc: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    struct rtd_pipe_config *pc = &o->pipe;
    rtd_pipe_config_default(pc, an);
    float fa, fb;
    int ia, ib;
    if (pv[O_THR] && (parse_fpair(pv[O_THR], &fa, &fb) < 0 || !(fa > 0)))
        return bad("threshold", pv[O_THR], "expected a number > 0 (ADU)");
    if (pv[O_THR])
        pc->threshold = fa;
    if (pv[O_K] && (parse_fpair(pv[O_K], &fa, &fb) < 0 || !(fa > 0)))
        return bad("k", pv[O_K], "expected a number > 0");
    if (pv[O_K])
        pc->k = fa;
    if (pv[O_RADIUS]) {
        if (parse_ipair(pv[O_RADIUS], &ia, &ib) < 0)
            return bad("radius", pv[O_RADIUS], "expected R or RX,RY");
        pc->radius_x = ia;
        pc->radius_y = ib;
    }
    if (pv[O_ROI]) {
        if (parse_ipair(pv[O_ROI], &ia, &ib) < 0)
            return bad("roi-size", pv[O_ROI], "expected S or WxH");
        pc->roi_w = ia;
        pc->roi_h = ib;
    }
    if (pv[O_BLUR]) {
        if (parse_fpair(pv[O_BLUR], &fa, &fb) < 0)
            return bad("blur", pv[O_BLUR], "expected S or SX,SY");
        pc->blur_x = fa;
        pc->blur_y = fb;
    }
    if (pv[O_SIGMA]) {
        if (parse_fpair(pv[O_SIGMA], &fa, &fb) < 0)
            return bad("sigma", pv[O_SIGMA], "expected a number");
        pc->sigma_guess = fa;
    }
    if (pv[O_RWIN] && sscanf(pv[O_RWIN], "%d,%d,%d,%d", &pc->xstart, &pc->xfinish, &pc->ystart,
                             &pc->yfinish) != 4)
        return bad("roi-window", pv[O_RWIN], "expected X0,X1,Y0,Y1");
    if (pv[O_EST]) {
        if (!strcmp(pv[O_EST], "lse"))
            pc->estimator = 0;
        else if (!strcmp(pv[O_EST], "mle"))
            pc->estimator = 1;
        else
            return bad("estimator", pv[O_EST], "expected lse or mle");
    }
    if (pv[O_BIN]) {
        if (parse_int(pv[O_BIN], 1, 2, &v) < 0)
            return bad("bin", pv[O_BIN], "expected 1 or 2");
        pc->bin = (int)v;
    }
    if (pv[O_MAXIONS]) {
        if (parse_int(pv[O_MAXIONS], 1, 4096, &v) < 0)
            return bad("max-ions", pv[O_MAXIONS], "expected 1..4096");
        pc->max_ions = (int)v;
    }
    if (nodeblend)
        pc->deblend = 0;
    char why[160];
    if (rtd_pipe_config_check(pc, why, sizeof why) < 0) {
        fprintf(stderr, "rtdaq-proc: %s\n", why);
        return -EINVAL;
    }
    if (o->hop > o->window) {
        fprintf(stderr, "rtdaq-proc: --hop %d is longer than --window %d\n", o->hop, o->window);
        return -EINVAL;
    }
    if (o->n_bands == 0) {
        /* Octave bands from 2 samples up to half the window: one value per band per hop. */
        for (double lo = 2 * o->dt; lo * 2 <= o->window * o->dt / 2 && o->n_bands < PROC_MAX_BANDS;
             lo *= 2) {
            o->band_lo[o->n_bands] = lo;
            o->band_hi[o->n_bands++] = 2 * lo;
        }
    }
    return 0;
}

/*
 * rtd_fit_cuda_available() in a short-lived child: CUDA must not be initialised
 * in the supervisor, whose forked workers could then not use the device. 1
 * usable, 0 not (why says why), -errno when the probe itself failed.
 */
static int cuda_probe(char *why, size_t cap)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        snprintf(why, cap, "probe: pipe: %s", strerror(errno));
        return -errno;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        snprintf(why, cap, "probe: fork: %s", strerror(e));
        return -e;
    }
    if (pid == 0) {
        char buf[257];
        close(fds[0]);
        buf[0] = rtd_fit_cuda_available(buf + 1, sizeof buf - 1) > 0 ? '1' : '0';
        size_t len = 1 + strnlen(buf + 1, sizeof buf - 2);
        ssize_t wr = write(fds[1], buf, len);
        _exit(wr == (ssize_t)len ? 0 : 1);
    }
    close(fds[1]);
    char buf[257];
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fds[0], buf + got, sizeof buf - 1 - got);
        if (r > 0 && (got += (size_t)r) < sizeof buf - 1)
            continue;
        if (r < 0 && errno == EINTR)
            continue;
        break;
    }
    close(fds[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    buf[got] = 0;
    if (got == 0) {
        snprintf(why, cap, "the CUDA probe process died (status %d)", st);
        return -EIO;
    }
    snprintf(why, cap, "%s", buf + 1);
    return buf[0] == '1';
}

static int worker_setup(const struct proc_opts *o, struct proc_worker *w)
{
    char name[RTD_PROCESS_MAX];
    snprintf(name, sizeof name, "proc.w%d", w->id);
    int rc = rtd_stats_create(&w->stats, o->instance, name, 64);
    if (rc < 0) {
        rtd_log(RTD_LOG_ERR, "stats segment %s: %s", name, strerror(-rc));
        return rc;
    }
    struct proc_counters *c = &w->c;
    struct rtd_stats *s = w->stats;
    c->pid = rtd_stats_counter(s, "pid", RTD_GAUGE);
    c->cpu = rtd_stats_counter(s, "cpu", RTD_GAUGE);
    c->rt = rtd_stats_counter(s, "realtime", RTD_GAUGE);
    c->restarts = rtd_stats_counter(s, "restarts", RTD_COUNTER);
    c->busy_ns = rtd_stats_counter(s, "busy_ns", RTD_COUNTER);
    c->dropped = rtd_stats_counter(s, "results.dropped", RTD_COUNTER);
    if (w->role == PROC_ROLE_FITS) {
        c->backend_cuda = rtd_stats_counter(s, "backend_cuda", RTD_GAUGE);
        c->batch = rtd_stats_hist(s, "latency.batch");
        c->processed = rtd_stats_counter(s, "frames.processed", RTD_COUNTER);
        c->ions = rtd_stats_counter(s, "ions.found", RTD_COUNTER);
        c->converged = rtd_stats_counter(s, "fits.converged", RTD_COUNTER);
        c->failed = rtd_stats_counter(s, "fits.failed", RTD_COUNTER);
        c->skipped = rtd_stats_counter(s, "frames.skipped", RTD_COUNTER);
        c->partial = rtd_stats_counter(s, "frames.partial", RTD_COUNTER);
        c->truncated = rtd_stats_counter(s, "frames.truncated", RTD_COUNTER);
        c->cur_frame = rtd_stats_counter(s, "frame.current", RTD_GAUGE);
        c->cur_seq = rtd_stats_counter(s, "frame.seq", RTD_GAUGE);
        c->latency = rtd_stats_hist(s, "latency");
        c->pipeline = rtd_stats_hist(s, "pipeline");
    } else {
        c->packets = rtd_stats_counter(s, "packets.seen", RTD_COUNTER);
        c->samples = rtd_stats_counter(s, "samples", RTD_COUNTER);
        c->clients = rtd_stats_counter(s, "clients", RTD_GAUGE);
        c->hops = rtd_stats_counter(s, "hops", RTD_COUNTER);
        c->cwts = rtd_stats_counter(s, "cwt.computed", RTD_COUNTER);
        c->cohs = rtd_stats_counter(s, "coherence.computed", RTD_COUNTER);
        c->lapped = rtd_stats_counter(s, "packets.lapped", RTD_COUNTER);
        c->latency = rtd_stats_hist(s, "latency");
        c->pipeline = rtd_stats_hist(s, "cwt");
    }
    /* Every pointer is checked once here so the workers never test for NULL. */
    _Atomic uint64_t **all[] = {
        &c->pid,       &c->cpu,       &c->rt,        &c->restarts, &c->busy_ns,     &c->dropped,
        &c->processed, &c->ions,      &c->converged, &c->failed,   &c->skipped,     &c->partial,
        &c->truncated, &c->cur_frame, &c->cur_seq,   &c->packets,  &c->samples,     &c->clients,
        &c->hops,      &c->cwts,      &c->cohs,      &c->lapped,   &c->backend_cuda};
    static _Atomic uint64_t sink[32]; /* unused counters of the other role */
    size_t k = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!*all[i])
            *all[i] = &sink[k++ % 32];
    if (!c->latency || !c->pipeline || (w->role == PROC_ROLE_FITS && !c->batch)) {
        rtd_log(RTD_LOG_ERR, "stats segment %s: histogram table full", name);
        return -ENOSPC;
    }
    atomic_store_explicit(c->backend_cuda,
                          (uint64_t)(w->role == PROC_ROLE_FITS && o->backend == PROC_BACKEND_CUDA),
                          memory_order_relaxed);
    snprintf(w->ring_name, sizeof w->ring_name, "%s.w%d",
             w->role == PROC_ROLE_FITS ? "results" : "wavelet", w->id);
    struct rtd_ring_config rc_cfg = {
        .kind = RTD_RING_PACKET,
        .data_bytes = o->results_bytes,
        .overflow = RTD_OVERFLOW_DROP_NEWEST, /* never let a slow reader stall the fits */
        .mlock = o->mlock,
    };
    rc = rtd_ring_create(&w->ring, o->instance, w->ring_name, &rc_cfg);
    if (rc < 0) {
        rtd_log(RTD_LOG_ERR, "results ring %s: %s", w->ring_name, strerror(-rc));
        return rc;
    }
    rtd_stats_set_status(s, "starting");
    return 0;
}

struct worker_thread_arg {
    const struct proc_opts *o;
    struct proc_worker *w;
    int n_wavelet, wl_index;
};

static void *worker_thread(void *arg)
{
    struct worker_thread_arg *a = arg;
    char pname[16];
    snprintf(pname, sizeof pname, "proc.w%d", a->w->id);
    prctl(PR_SET_NAME, pname);
    int rc = a->w->role == PROC_ROLE_FITS
                 ? proc_worker_fits(a->o, a->w)
                 : proc_worker_wavelet(a->o, a->w, a->n_wavelet, a->wl_index);
    if (rc < 0)
        rtd_log(RTD_LOG_ERR, "worker thread %d ended: %s", a->w->id, strerror(-rc));
    free(a);
    return NULL;
}

/* In-process mode (rtdaq run --single): a thread per worker, never restarted. */
static int worker_start_thread(const struct proc_opts *o, struct proc_worker *ws, int idx,
                               int n_wavelet)
{
    struct proc_worker *w = &ws[idx];
    struct worker_thread_arg *a = malloc(sizeof *a);
    if (!a)
        return -ENOMEM;
    *a = (struct worker_thread_arg){o, w, n_wavelet, 0};
    for (int i = 0; i < idx; i++)
        a->wl_index += ws[i].role == PROC_ROLE_WAVELET;
    int rc = pthread_create(&w->thread, NULL, worker_thread, a);
    if (rc) {
        free(a);
        rtd_log(RTD_LOG_ERR, "worker thread %d: %s", w->id, strerror(rc));
        return -rc;
    }
    w->threaded = 1;
    w->pid = getpid(); /* "running": the supervisor loop never restarts it */
    w->started_ns = rtd_now_ns();
    return 0;
}

static pid_t worker_start(const struct proc_opts *o, struct proc_worker *ws, int n, int idx,
                          int n_wavelet)
{
    struct proc_worker *w = &ws[idx];
    pid_t pid = fork();
    if (pid < 0) {
        rtd_log(RTD_LOG_ERR, "fork worker %d: %s", w->id, strerror(errno));
        return -1;
    }
    if (pid > 0) {
        w->pid = pid;
        w->started_ns = rtd_now_ns();
        return pid;
    }
    /*
     * Child: stop with the supervisor; own signal handling; never touch the creator handles.
     * A supervisor that dies (SIGKILL, crash) is a failure, not a stop: its workers end
     * without leaving the frames group, so the group outlives them, and the frames
     * published until the restarted workers join are counted in lost_dead instead of
     * vanishing with a group that a clean leave of its last member would free.
     */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_orphaned;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);
    prctl(PR_SET_PDEATHSIG, SIGUSR2);
    if (getppid() == 1)
        _exit(0);
    char pname[32];
    snprintf(pname, sizeof pname, "rtdaq-proc.w%d", w->id);
    prctl(PR_SET_NAME, pname);
    rtd_log_init(pname, o->log_level);
    int rc;
    if (w->role == PROC_ROLE_FITS) {
        rc = proc_worker_fits(o, w);
    } else {
        int wl_index = 0;
        for (int i = 0; i < idx; i++)
            wl_index += ws[i].role == PROC_ROLE_WAVELET;
        rc = proc_worker_wavelet(o, w, n_wavelet, wl_index);
    }
    (void)n;
    _exit(rc < 0 ? 1 : 0);
}

static uint64_t sum_counter(const struct proc_worker *ws, int n, size_t off)
{
    uint64_t s = 0;
    for (int i = 0; i < n; i++) {
        _Atomic uint64_t *const *p =
            (_Atomic uint64_t *const *)(const void *)((const char *)&ws[i].c + off);
        s += atomic_load_explicit(*p, memory_order_relaxed);
    }
    return s;
}

int rtd_proc_main(int argc, char **argv, int threads)
{
    char err[256];
    int check_only = 0;
    if (rtd_config_argv("proc", long_opts, &argc, &argv, err, sizeof err) < 0) {
        fprintf(stderr, "rtdaq-proc: %s\n", err);
        return 2;
    }
    proc_argv = argv; /* lives until exit (rtd_config_argv's contract); reachable for LSan */
    struct proc_opts o;
    int rc = parse_args(argc, argv, &o, &check_only);
    if (rc == 1)
        return 0;
    if (rc < 0)
        return 2;
    o.instance = rtd_instance_name(o.instance);
    char segname[128];
    if (rtd_shm_name(segname, sizeof segname, o.instance, "stats.proc")) {
        fprintf(stderr, "rtdaq-proc: --instance '%s': invalid name ([A-Za-z0-9_-], 1..%d)\n",
                o.instance, RTD_INSTANCE_MAX);
        return 2;
    }
    if (check_only || rtd_config_check_only()) {
        printf("config ok\n");
        return 0;
    }
    char cuda_why[256] = "";
    if ((o.mode & PROC_ROLE_FITS) && o.backend != PROC_BACKEND_CPU) {
        const int usable = cuda_probe(cuda_why, sizeof cuda_why) > 0;
        if (!usable && o.backend == PROC_BACKEND_CUDA) {
            fprintf(stderr, "rtdaq-proc: --backend cuda: no usable CUDA device: %s\n", cuda_why);
            return 2;
        }
        o.backend = usable ? PROC_BACKEND_CUDA : PROC_BACKEND_CPU;
        /* One GPU worker keeps up with 10 kHz; more would only share the device. */
        if (usable && o.workers == 0)
            o.workers = 1;
    } else if (!(o.mode & PROC_ROLE_FITS)) {
        o.backend = PROC_BACKEND_CPU;
    }
    if (o.mode & PROC_ROLE_WAVELET) {
        /* Check the wavelet set-up here: a worker that cannot plan would only restart forever. */
        struct rtd_mother m;
        struct rtd_cwt_plan *plan = NULL;
        if (rtd_mother_parse(&m, o.mother) < 0) {
            fprintf(stderr, "rtdaq-proc: --mother '%s': expected morlet:F0, paul:M or dog:M\n",
                    o.mother);
            return 2;
        }
        if (o.n_pairs > 0 && m.kind != RTD_MOTHER_MORLET) {
            fprintf(stderr, "rtdaq-proc: --pairs (coherence) needs --mother morlet:6\n");
            return 2;
        }
        rc = rtd_cwt_plan_create(&plan, (size_t)o.window, o.dt, o.dj, 0, -1, &m, 0);
        if (rc < 0) {
            fprintf(stderr, "rtdaq-proc: cannot plan a cwt of --window %d, --dt %g, --dj %g: %s\n",
                    o.window, o.dt, o.dj, strerror(-rc));
            return 2;
        }
        rtd_cwt_plan_destroy(plan);
    }
    if (!threads)
        rtd_log_init("rtdaq-proc", o.log_level);
    const int ncpu = rtd_cpu_count();
    if (o.cpu == -2)
        o.cpu = ncpu > 1 ? rtd_pick_cpu(-1, 1) : -1;

    /* Workers: fit workers share frames; wavelet workers split the clients. */
    int n_fit = 0, n_wl = 0;
    int n = o.workers > 0 ? o.workers : (ncpu - 1 > 1 ? ncpu - 1 : 1);
    if (o.mode == PROC_ROLE_FITS)
        n_fit = n;
    else if (o.mode == PROC_ROLE_WAVELET)
        n_wl = n;
    else {
        n_fit = n;
        n_wl = 1;
    }
    const int total = n_fit + n_wl;
    if (total > PROC_MAX_WORKERS) {
        fprintf(stderr, "rtdaq-proc: at most %d workers\n", PROC_MAX_WORKERS);
        return 2;
    }
    struct proc_worker ws[PROC_MAX_WORKERS];
    memset(ws, 0, sizeof ws);
    struct rtd_stats *sup = NULL;
    _Atomic uint64_t *c_restarts = NULL, *c_running = NULL;
    int ret = 1, started = 0;

    char supname[RTD_PROCESS_MAX];
    if (o.worker_id)
        snprintf(supname, sizeof supname, "proc.s%d", o.worker_id);
    else
        snprintf(supname, sizeof supname, "proc");
    rc = rtd_stats_create(&sup, o.instance, supname, 16);
    if (rc < 0) {
        rtd_log(RTD_LOG_ERR, "stats segment %s: %s", supname, strerror(-rc));
        goto cleanup;
    }
    c_restarts = rtd_stats_counter(sup, "workers.restarts", RTD_COUNTER);
    c_running = rtd_stats_counter(sup, "workers.running", RTD_GAUGE);
    if (!c_restarts || !c_running)
        goto cleanup;
    for (int i = 0; i < total; i++) {
        struct proc_worker *w = &ws[i];
        w->index = i;
        w->id = o.worker_id + i;
        w->role = i < n_fit ? PROC_ROLE_FITS : PROC_ROLE_WAVELET;
        w->cpu = o.cpu >= 0 ? rtd_pick_cpu(o.cpu, i) : -1;
        if (worker_setup(&o, w) < 0)
            goto cleanup;
    }
    for (int i = 0; i < total; i++) {
        if (threads ? worker_start_thread(&o, ws, i, n_wl) < 0
                    : worker_start(&o, ws, total, i, n_wl) < 0)
            goto cleanup;
        started++;
    }
    atomic_store_explicit(c_running, (uint64_t)total, memory_order_relaxed);
    rtd_log(RTD_LOG_INFO,
            "instance %s: %d fit worker(s), %d wavelet worker(s), analysis %s, backend %s%s%s%s",
            o.instance, n_fit, n_wl, rtd_pipe_analysis_name(o.pipe.analysis),
            o.backend == PROC_BACKEND_CUDA ? "cuda" : "cpu", cuda_why[0] ? " (" : "", cuda_why,
            cuda_why[0] ? ")" : "");
    rtd_sd_ready();
    rtd_stats_set_status(sup, "running");

    const uint64_t t0 = rtd_now_ns();
    uint64_t last_status = 0;
    while (!proc_stop) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        int status;
        pid_t pid;
        while (!threads && (pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (int i = 0; i < total; i++) {
                if (ws[i].pid != pid)
                    continue;
                ws[i].pid = 0;
                if (proc_stop)
                    break;
                if (WIFSIGNALED(status))
                    rtd_log(RTD_LOG_WARN, "worker %d (pid %d) killed by signal %d: restarting",
                            ws[i].id, (int)pid, WTERMSIG(status));
                else
                    rtd_log(RTD_LOG_WARN, "worker %d (pid %d) exited with %d: restarting", ws[i].id,
                            (int)pid, WEXITSTATUS(status));
                /* A worker that keeps dying at once is restarted at most once a second. */
                if (rtd_now_ns() - ws[i].started_ns < 1000000000ull)
                    ws[i].quick_deaths++;
                else
                    ws[i].quick_deaths = 0;
                atomic_fetch_add_explicit(c_restarts, 1, memory_order_relaxed);
                atomic_fetch_add_explicit(ws[i].c.restarts, 1, memory_order_relaxed);
            }
        }
        int running = 0;
        for (int i = 0; i < total && !proc_stop; i++) {
            if (ws[i].pid == 0 &&
                (ws[i].quick_deaths < 3 || rtd_now_ns() - ws[i].started_ns > 1000000000ull))
                worker_start(&o, ws, total, i, n_wl);
            running += ws[i].pid > 0;
        }
        atomic_store_explicit(c_running, (uint64_t)running, memory_order_relaxed);
        rtd_stats_heartbeat(sup);
        rtd_sd_watchdog();
        const uint64_t now = rtd_now_ns();
        if (now - last_status > 1000000000ull) {
            last_status = now;
            uint64_t frames = sum_counter(ws, total, offsetof(struct proc_counters, processed));
            uint64_t ions = sum_counter(ws, total, offsetof(struct proc_counters, ions));
            rtd_sd_status("%d/%d workers, %" PRIu64 " frames, %" PRIu64 " ions", running, total,
                          frames, ions);
        }
        if (o.duration > 0 && (double)(now - t0) / 1e9 >= o.duration)
            break;
    }
    ret = 0;

cleanup:
    rtd_sd_stopping();
    if (threads) {
        /* The worker threads watch the same flag as this loop. */
        proc_stop = 1;
        for (int i = 0; i < total; i++)
            if (ws[i].threaded) {
                pthread_join(ws[i].thread, NULL);
                ws[i].threaded = 0;
                ws[i].pid = 0;
            }
    }
    /* Stop the workers: SIGTERM, then SIGKILL whoever is still there after 5 s. */
    for (int i = 0; i < total; i++)
        if (ws[i].pid > 0)
            kill(ws[i].pid, SIGTERM);
    const uint64_t t_stop = rtd_now_ns();
    for (;;) {
        int alive = 0;
        for (int i = 0; i < total; i++) {
            if (ws[i].pid <= 0)
                continue;
            int status;
            pid_t r = waitpid(ws[i].pid, &status, WNOHANG);
            if (r == ws[i].pid || (r < 0 && errno == ECHILD))
                ws[i].pid = 0;
            else
                alive++;
        }
        if (!alive)
            break;
        if (rtd_now_ns() - t_stop > 5000000000ull) {
            for (int i = 0; i < total; i++)
                if (ws[i].pid > 0) {
                    rtd_log(RTD_LOG_WARN, "worker %d did not stop: SIGKILL", ws[i].id);
                    kill(ws[i].pid, SIGKILL);
                    waitpid(ws[i].pid, NULL, 0);
                    ws[i].pid = 0;
                }
            break;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (int i = total - 1; i >= 0; i--) {
        if (ws[i].ring)
            rtd_ring_close(ws[i].ring);
        if (ws[i].stats)
            rtd_stats_close(ws[i].stats);
    }
    if (sup)
        rtd_stats_close(sup);
    (void)started;
    return ret;
}
