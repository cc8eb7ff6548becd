/* SPDX-License-Identifier: MIT */
/*
 * `rtdaq wavelet cwt|icwt|signif|wct|wct-signif|wisdom`: PyCWT-compatible wavelet analysis of
 * raw little-endian float64 series. Outputs are raw arrays named as in the reference manifest
 * (tests/data/wavelet/manifest.json) with a ".bin" suffix, e.g. wave.bin (complex, interleaved
 * re/im, rows x N), scales.bin, WCT.bin, described by a manifest.json beside them (name, file,
 * dtype, shape, parameters). One human line on stdout, or one JSON line with --json; a
 * progress bar with ETA on stderr when it is a terminal. The transform's rows are computed in
 * blocks into two buffers mapped once and written by a second thread while the next block
 * computes, so a one-shot run neither faults in nor holds the whole rows x N array; FFT plans
 * come from the wisdom cache (rtd_wavelet_wisdom_auto). docs/wavelet.md.
 */
#include "rtdaq_cli.h"
#include "rtd_util.h"
#include "rtd_wavelet.h"

#include <errno.h>
#include <fcntl.h>
#include <fftw3.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "usage: rtdaq wavelet <cwt|icwt|signif|wct|wct-signif|wisdom> [options]\n"
    "  --in FILE            series, raw little-endian float64 (wct/wct-signif: first series)\n"
    "  --in2 FILE           second series (wct, wct-signif)\n"
    "  --out-dir DIR        where the raw float64 outputs go (created; default .)\n"
    "  --dt X               sampling interval (default 1)\n"
    "  --dj X               scale resolution in octaves (default 1/12)\n"
    "  --s0 X               smallest scale (default 2 dt / flambda, as PyCWT)\n"
    "  --J N                number of scales - 1 (default round(log2(N dt / s0) / dj))\n"
    "  --mother M           morlet[:f0] | paul[:m] | dog[:m] (default morlet:6)\n"
    "  --threads T          OpenMP threads (default 1; wct-signif: all)\n"
    "  --wisdom FILE        also load FFTW wisdom from FILE (if present) and save it back\n"
    "  --measure            measure the FFT plans again and refresh the wisdom cache\n"
    "                       (plans come from ~/.cache/rtdaq/fftw-wisdom; RTDAQ_WISDOM=off)\n"
    "  --precision P        cwt: double (complex128, default) or single (float32\n"
    "                       transforms, complex64 wave; accuracy in docs/wavelet.md)\n"
    "  --json               one JSON summary line on stdout (else one human line)\n"
    "  --quiet              no summary line, no progress bar\n"
    " icwt:   --wave FILE --scales FILE  invert a stored transform (else cwt of --in first)\n"
    " signif: --alpha A --variance V --significance-level P (0.95) --sigma-test 0|1|2\n"
    "         --dof FILE (test 1: n_a per scale; default N - scales) --dof S1,S2 (test 2)\n"
    "         --band P1,P2 (test 2 by Fourier period, P1 <= P < P2)\n"
    " wct:    --no-normalize, --sig (also Monte Carlo sig95)\n"
    " wct-signif / wct --sig: --mc N (300) --seed S (0) --al1 A --al2 B (default ar1 of inputs)\n"
    "         levels are cached by everything that determines them (~/.cache/rtdaq/signif);\n"
    "         --no-cache computes them again\n"
    "         --n N (surrogate J default from N when no --in), --mc-float (float32 FFTs)\n"
    " wisdom: --sizes N1,N2,... (default 64..65536, powers of two) --out-dir DIR: measure\n"
    "         the plans rtdaq uses for those FFT lengths into DIR/fftw-wisdom[f]\n"
    " PyCWT's bugs are reproduced unless fixed: --fix-all or --fix-paul-psi0 --fix-paul-rows\n"
    "   --fix-rednoise --fix-global-theor --fix-mc-lastscale --fix-mc-ar1\n";

struct wv_opts {
    const char *in, *in2, *out_dir, *wisdom, *wave, *scales_file, *dof_file, *mother, *sizes;
    double dt, dj, s0, alpha, variance, level, al1, al2;
    double dof2[2], band[2];
    int J, threads, json, normalize, sig, mc, sigma_test, have_dof2, have_band, quiet, measure,
        no_cache, single;
    long n_override;
    uint64_t seed;
    unsigned flags;
};

enum {
    O_IN = 256,
    O_IN2,
    O_OUT,
    O_DT,
    O_DJ,
    O_S0,
    O_J,
    O_MOTHER,
    O_THREADS,
    O_WISDOM,
    O_MEASURE,
    O_JSON,
    O_WAVE,
    O_SCALES,
    O_ALPHA,
    O_VAR,
    O_LEVEL,
    O_SIGMA,
    O_DOF,
    O_BAND,
    O_NONORM,
    O_SIG,
    O_MC,
    O_SEED,
    O_AL1,
    O_AL2,
    O_N,
    O_FIXALL,
    O_FIX_PSI0,
    O_FIX_ROWS,
    O_FIX_RED,
    O_FIX_GT,
    O_FIX_LAST,
    O_FIX_AR1,
    O_COMPAT,
    O_MCFLOAT,
    O_QUIET,
    O_SIZES,
    O_NOCACHE,
    O_PRECISION,
    O_HELP
};

static const struct option longopts[] = {
    {"in", required_argument, 0, O_IN},
    {"in2", required_argument, 0, O_IN2},
    {"out-dir", required_argument, 0, O_OUT},
    {"dt", required_argument, 0, O_DT},
    {"dj", required_argument, 0, O_DJ},
    {"s0", required_argument, 0, O_S0},
    {"J", required_argument, 0, O_J},
    {"mother", required_argument, 0, O_MOTHER},
    {"threads", required_argument, 0, O_THREADS},
    {"wisdom", required_argument, 0, O_WISDOM},
    {"measure", no_argument, 0, O_MEASURE},
    {"json", no_argument, 0, O_JSON},
    {"wave", required_argument, 0, O_WAVE},
    {"scales", required_argument, 0, O_SCALES},
    {"alpha", required_argument, 0, O_ALPHA},
    {"variance", required_argument, 0, O_VAR},
    {"significance-level", required_argument, 0, O_LEVEL},
    {"sigma-test", required_argument, 0, O_SIGMA},
    {"dof", required_argument, 0, O_DOF},
    {"band", required_argument, 0, O_BAND},
    {"no-normalize", no_argument, 0, O_NONORM},
    {"sig", no_argument, 0, O_SIG},
    {"mc", required_argument, 0, O_MC},
    {"seed", required_argument, 0, O_SEED},
    {"al1", required_argument, 0, O_AL1},
    {"al2", required_argument, 0, O_AL2},
    {"n", required_argument, 0, O_N},
    {"fix-all", no_argument, 0, O_FIXALL},
    {"fix-paul-psi0", no_argument, 0, O_FIX_PSI0},
    {"fix-paul-rows", no_argument, 0, O_FIX_ROWS},
    {"fix-rednoise", no_argument, 0, O_FIX_RED},
    {"fix-global-theor", no_argument, 0, O_FIX_GT},
    {"fix-mc-lastscale", no_argument, 0, O_FIX_LAST},
    {"fix-mc-ar1", no_argument, 0, O_FIX_AR1},
    {"pycwt-compat", no_argument, 0, O_COMPAT},
    {"mc-float", no_argument, 0, O_MCFLOAT},
    {"quiet", no_argument, 0, O_QUIET},
    {"sizes", required_argument, 0, O_SIZES},
    {"no-cache", no_argument, 0, O_NOCACHE},
    {"precision", required_argument, 0, O_PRECISION},
    {"help", no_argument, 0, O_HELP},
    {0, 0, 0, 0},
};

static int parse_double(const char *name, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) {
        fprintf(stderr, "rtdaq wavelet: --%s '%s' is not a finite number\n", name, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_long(const char *name, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "rtdaq wavelet: --%s '%s' must be an integer in [%ld, %ld]\n", name, s, lo,
                hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_pair(const char *name, const char *s, double out[2])
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    char *comma = strchr(buf, ',');
    if (!comma) {
        fprintf(stderr, "rtdaq wavelet: --%s wants two numbers A,B\n", name);
        return -1;
    }
    *comma = 0;
    if (parse_double(name, buf, &out[0]) || parse_double(name, comma + 1, &out[1]))
        return -1;
    return 0;
}

/* Read a float64 series; every failure is reported here and means exit 2. */
static double *load_series(const char *opt, const char *path, size_t *n, int check_finite)
{
    void *buf;
    size_t len;
    int rc = rtd_read_file(path, &buf, &len);
    if (rc) {
        fprintf(stderr, "rtdaq wavelet: --%s %s: %s\n", opt, path, strerror(-rc));
        return NULL;
    }
    if (len == 0) {
        fprintf(stderr, "rtdaq wavelet: --%s %s is empty\n", opt, path);
        free(buf);
        return NULL;
    }
    if (len % 8) {
        fprintf(
            stderr,
            "rtdaq wavelet: --%s %s has %zu bytes, not a multiple of 8 (raw float64 expected)\n",
            opt, path, len);
        free(buf);
        return NULL;
    }
    double *x = buf;
    *n = len / 8;
    if (check_finite)
        for (size_t i = 0; i < *n; i++)
            if (!isfinite(x[i])) {
                fprintf(stderr, "rtdaq wavelet: --%s %s: sample %zu is %s\n", opt, path, i,
                        isnan(x[i]) ? "NaN" : "infinite");
                free(buf);
                return NULL;
            }
    return x;
}

/*
 * Every output is registered with its dtype and shape, for manifest.json and the summary.
 * The command is single-threaded apart from the block writer, which touches none of this.
 */
struct wv_output {
    char name[32];
    const char *dtype;
    size_t dim[2];
    int ndim;
};
static struct wv_output outs[32];
static int nouts;
static char jbuf[8192]; /* the JSON fields of the summary (without braces) */
static size_t jlen;
static uint64_t t_start;

__attribute__((format(printf, 1, 2))) static void jprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(jbuf + jlen, sizeof jbuf - jlen, fmt, ap);
    va_end(ap);
    if (k > 0)
        jlen = jlen + (size_t)k < sizeof jbuf ? jlen + (size_t)k : sizeof jbuf - 1;
}

static size_t dtype_size(const char *dtype)
{
    return !strcmp(dtype, "complex128") ? 16 : !strcmp(dtype, "complex64") ? 8 : 8;
}

static void out_path(const struct wv_opts *o, const char *name, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s.bin", o->out_dir, name);
}

static void register_out(const char *name, const char *dtype, size_t d0, size_t d1)
{
    if (nouts >= (int)(sizeof outs / sizeof outs[0]))
        return;
    struct wv_output *w = &outs[nouts++];
    snprintf(w->name, sizeof w->name, "%s", name);
    w->dtype = dtype;
    w->dim[0] = d0;
    w->dim[1] = d1;
    w->ndim = d1 ? 2 : 1;
}

/* Write a whole array (d1 == 0: 1-D of d0 elements) and register it. */
static int write_arr(const struct wv_opts *o, const char *name, const char *dtype, size_t d0,
                     size_t d1, const void *data)
{
    char path[4096];
    out_path(o, name, path, sizeof path);
    size_t bytes = d0 * (d1 ? d1 : 1) * dtype_size(dtype);
    int rc = rtd_write_file(path, data, bytes);
    if (rc) {
        fprintf(stderr, "rtdaq wavelet: writing %s: %s\n", path, strerror(-rc));
        return rc;
    }
    register_out(name, dtype, d0, d1);
    return 0;
}

static int write_out(const struct wv_opts *o, const char *name, const double *data, size_t count)
{
    return write_arr(o, name, "float64", count, 0, data);
}

/* ---- progress bar: stderr, only on a terminal, only once a run has taken 0.5 s ---- */
struct progress {
    int on, shown;
    uint64_t t0, last, after;
    const char *what;
};

static void progress_init(struct progress *pg, const struct wv_opts *o, const char *what)
{
    pg->on = !o->quiet && !o->json && isatty(STDERR_FILENO);
    pg->shown = 0;
    pg->t0 = pg->last = rtd_now_ns();
    pg->what = what;
    /* RTDAQ_PROGRESS_AFTER: seconds before the bar appears (0.5; tests use 0). */
    const char *e = getenv("RTDAQ_PROGRESS_AFTER");
    double after = e && *e ? atof(e) : 0.5;
    pg->after = after > 0 ? (uint64_t)(after * 1e9) : 0;
}

static void progress_show(struct progress *pg, double done, double total)
{
    if (!pg->on || total <= 0)
        return;
    uint64_t now = rtd_now_ns();
    if (now - pg->t0 < pg->after || (pg->shown && now - pg->last < 100000000ull))
        return;
    pg->shown = 1;
    pg->last = now;
    double f = done / total, el = (double)(now - pg->t0) * 1e-9;
    char bar[31];
    int k = (int)(f * 30);
    for (int i = 0; i < 30; i++)
        bar[i] = i < k ? '#' : '.';
    bar[30] = 0;
    if (f > 0)
        fprintf(stderr, "\r%s [%s] %3.0f%%  %.1f s, ETA %.1f s  ", pg->what, bar, 100 * f, el,
                el * (1 - f) / f);
    else
        fprintf(stderr, "\r%s [%s] %3.0f%%  %.1f s  ", pg->what, bar, 0.0, el);
}

static void progress_end(struct progress *pg)
{
    if (pg->on && pg->shown)
        fprintf(stderr, "\r%*s\r", 79, "");
}

/*
 * Block writer: the rows of one block go to the file from a second thread while the next
 * block computes into the other buffer. slot_busy[i] is set by the computing thread when a
 * block is handed over and cleared by the writer once written (both under mu).
 */
struct block_writer {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int fd, stop, err;
    int busy[2];
    const void *buf[2];
    size_t len[2];
    int next; /* the slot the writer takes next */
};

static void *writer_main(void *arg)
{
    struct block_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->busy[w->next] && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->busy[w->next])
            break;
        int i = w->next;
        const char *b = w->buf[i];
        size_t len = w->len[i], off = 0;
        int err = w->err;
        pthread_mutex_unlock(&w->mu);
        while (!err && off < len) {
            ssize_t k = write(w->fd, b + off, len - off);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                err = k < 0 ? errno : EIO;
            else
                off += (size_t)k;
        }
        pthread_mutex_lock(&w->mu);
        w->err = err;
        w->busy[i] = 0;
        w->next ^= 1;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/*
 * Compute every row of the cwt of x in blocks; each finished block goes to sink (if any) in
 * row order and to the file name.bin (if name). Rows exist only in the two block buffers.
 */
typedef void (*row_sink)(void *ctx, size_t j, const double complex *row, size_t n);

static int stream_rows(const struct wv_opts *o, struct rtd_cwt_plan *p, const double *x,
                       const char *name, row_sink sink, void *ctx, const char *what)
{
    size_t n = rtd_cwt_n(p), rows = rtd_cwt_nscales(p);
    /* --precision single (cwt only, no sink): complex64 rows from float32 transforms. */
    int single = o->single && !sink;
    size_t row_bytes = n * (single ? sizeof(float complex) : sizeof(double complex));
    size_t B = ((size_t)4 << 20) / row_bytes;
    if (B < (size_t)(2 * o->threads))
        B = (size_t)(2 * o->threads);
    if (B > rows)
        B = rows;
    if (B < 1)
        B = 1;
    void *buf[2] = {fftw_malloc(B * row_bytes), fftw_malloc(B * row_bytes)};
    struct block_writer w = {.fd = -1};
    int rc = 0, started = 0;
    char path[4096];
    if (!buf[0] || !buf[1]) {
        rc = -ENOMEM;
        goto out;
    }
    /* Fault the two buffers in now, once (the FFTs would otherwise take every fault). */
    memset(buf[0], 0, B * row_bytes);
    memset(buf[1], 0, B * row_bytes);
    if ((rc = rtd_cwt_load(p, x)))
        goto out;
    if (name) {
        out_path(o, name, path, sizeof path);
        /* No O_TRUNC: a rerun overwrites the old file's blocks in place and trims it to size
         * at the end. Truncating first frees ~190 MB of blocks only to allocate them again,
         * which on ext4 (discard, replace-by-truncate flush) costs more than the transform. */
        w.fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (w.fd < 0) {
            rc = -errno;
            fprintf(stderr, "rtdaq wavelet: writing %s: %s\n", path, strerror(errno));
            goto out;
        }
        pthread_mutex_init(&w.mu, NULL);
        pthread_cond_init(&w.cv, NULL);
        if (pthread_create(&w.th, NULL, writer_main, &w)) {
            rc = -EAGAIN;
            goto out;
        }
        started = 1;
    }
    struct progress pg;
    progress_init(&pg, o, what);
    for (size_t j0 = 0, blk = 0; j0 < rows; j0 += B, blk++) {
        size_t j1 = j0 + B < rows ? j0 + B : rows;
        int i = (int)(blk & 1);
        if (started) {
            pthread_mutex_lock(&w.mu);
            while (w.busy[i])
                pthread_cond_wait(&w.cv, &w.mu);
            int err = w.err;
            pthread_mutex_unlock(&w.mu);
            if (err) {
                rc = -err;
                fprintf(stderr, "rtdaq wavelet: writing %s: %s\n", path, strerror(err));
                break;
            }
        }
        if (single) {
            rtd_cwt_execute_rows_f(p, j0, j1, buf[i]);
        } else {
            rtd_cwt_execute_rows(p, j0, j1, buf[i]);
            const double complex *rb = buf[i];
            if (sink)
                for (size_t j = j0; j < j1; j++)
                    sink(ctx, j, rb + (j - j0) * n, n);
        }
        if (started) {
            pthread_mutex_lock(&w.mu);
            w.buf[i] = buf[i];
            w.len[i] = (j1 - j0) * row_bytes;
            w.busy[i] = 1;
            pthread_cond_broadcast(&w.cv);
            pthread_mutex_unlock(&w.mu);
        }
        progress_show(&pg, (double)j1, (double)rows);
    }
    progress_end(&pg);
out:
    if (started) {
        pthread_mutex_lock(&w.mu);
        w.stop = 1;
        pthread_cond_broadcast(&w.cv);
        pthread_mutex_unlock(&w.mu);
        pthread_join(w.th, NULL);
        if (!rc && w.err) {
            rc = -w.err;
            fprintf(stderr, "rtdaq wavelet: writing %s: %s\n", path, strerror(w.err));
        }
        pthread_mutex_destroy(&w.mu);
        pthread_cond_destroy(&w.cv);
    }
    if (w.fd >= 0 && !rc && ftruncate(w.fd, (off_t)(rows * row_bytes))) {
        rc = -errno;
        fprintf(stderr, "rtdaq wavelet: writing %s: %s\n", path, strerror(errno));
    }
    if (w.fd >= 0 && close(w.fd) && !rc) {
        rc = -errno;
        fprintf(stderr, "rtdaq wavelet: writing %s: %s\n", path, strerror(errno));
    }
    if (!rc && name)
        register_out(name, single ? "complex64" : "complex128", rows, n);
    fftw_free(buf[0]);
    fftw_free(buf[1]);
    return rc;
}

static void json_wisdom(void)
{
    struct rtd_wisdom_stats ws;
    rtd_wavelet_wisdom_stats(&ws);
    jprintf(",\"wisdom\":{\"enabled\":%s,\"file\":\"%s\",\"plans_from_wisdom\":%lu,"
            "\"plans_measured\":%lu,\"saved\":%lu,\"ignored_files\":%d}",
            ws.enabled ? "true" : "false", ws.user_path, ws.planned_from_wisdom,
            ws.planned_measured, ws.saves, ws.corrupt);
}

static void human_size(double bytes, char *out, size_t cap)
{
    const char *u[] = {"B", "kB", "MB", "GB", "TB"};
    int i = 0;
    while (bytes >= 1000 && i < 4) {
        bytes /= 1000;
        i++;
    }
    snprintf(out, cap, i ? "%.3g %s" : "%.0f %s", bytes, u[i]);
}

/*
 * Write manifest.json (what the outputs are) and print the summary: the JSON line with
 * --json, else one line for a person (human, which names what was computed).
 */
static int finish(const struct wv_opts *o, const char *human)
{
    json_wisdom();
    double total = (double)(rtd_now_ns() - t_start) * 1e-9;
    jprintf(",\"seconds_total\":%.6f", total);
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.json", o->out_dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "rtdaq wavelet: writing %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(f, "{\"format\":\"rtdaq-wavelet-outputs\",\"version\":1,\"byte_order\":\"little\",");
    fprintf(f,
            "\"array_order\":\"C (row-major: [scale][time])\",\"parameters\":{%s},\n"
            "\"outputs\":[",
            jbuf);
    double bytes = 0;
    for (int i = 0; i < nouts; i++) {
        const struct wv_output *w = &outs[i];
        fprintf(f, "%s\n  {\"name\":\"%s\",\"file\":\"%s.bin\",\"dtype\":\"%s\",\"shape\":[%zu",
                i ? "," : "", w->name, w->name, w->dtype, w->dim[0]);
        if (w->ndim == 2)
            fprintf(f, ",%zu", w->dim[1]);
        fprintf(f, "]}");
        bytes += (double)(w->dim[0] * (w->ndim == 2 ? w->dim[1] : 1) * dtype_size(w->dtype));
    }
    fprintf(f, "\n]}\n");
    if (fclose(f)) {
        fprintf(stderr, "rtdaq wavelet: writing %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (o->json) {
        printf("{%s,\"manifest\":\"%s\",\"outputs\":[", jbuf, path);
        for (int i = 0; i < nouts; i++)
            printf("%s\"%s\"", i ? "," : "", outs[i].name);
        printf("]}\n");
    } else if (!o->quiet) {
        char sz[32];
        human_size(bytes, sz, sizeof sz);
        printf("%s -> %s/ (%d files, %s, manifest.json) in %.2f s\n", human, o->out_dir, nouts, sz,
               total);
    }
    return 0;
}

static void json_common(const struct wv_opts *o, const char *cmd, double secs,
                        const struct rtd_cwt_plan *p)
{
    jprintf("\"cmd\":\"%s\",\"seconds\":%.6f,\"threads\":%d", cmd, secs, o->threads);
    if (p)
        jprintf(",\"n\":%zu,\"padded\":%zu,\"J\":%d,\"nscales\":%zu,\"dt\":%.17g,\"dj\":%.17g,"
                "\"s0\":%.17g,\"mother\":\"%s\"",
                rtd_cwt_n(p), rtd_cwt_padded(p), rtd_cwt_J(p), rtd_cwt_nscales(p), rtd_cwt_dt(p),
                rtd_cwt_dj(p), rtd_cwt_s0(p), rtd_cwt_mother(p)->name);
    jprintf(",\"flags\":%u", o->flags);
}

static int make_cwt(const struct wv_opts *o, const struct rtd_mother *m, size_t n,
                    struct rtd_cwt_plan **p)
{
    /* One execution per plan here: kernels are evaluated per row, not tabulated. */
    int rc =
        rtd_cwt_plan_create(p, n, o->dt, o->dj, o->s0, o->J, m,
                            o->flags | RTD_WAVELET_ONESHOT | (o->single ? RTD_WAVELET_SINGLE : 0));
    if (rc) {
        fprintf(stderr,
                "rtdaq wavelet: cannot plan a cwt of %zu samples (dt %g, dj %g, J %d): %s\n", n,
                o->dt, o->dj, o->J, strerror(-rc));
        return rc;
    }
    rc = rtd_cwt_plan_set_threads(*p, o->threads);
    return rc;
}

static int cmd_cwt(const struct wv_opts *o, const struct rtd_mother *m)
{
    size_t n;
    double *x = load_series("in", o->in, &n, 1);
    if (!x)
        return RTD_EXIT_USAGE;
    struct rtd_cwt_plan *p = NULL;
    double complex *fft = NULL;
    double *fq = NULL;
    int ret = RTD_EXIT_USAGE;
    uint64_t tp = rtd_now_ns();
    if (make_cwt(o, m, n, &p))
        goto out;
    double secs_plan = (double)(rtd_now_ns() - tp) * 1e-9;
    ret = RTD_EXIT_FAIL;
    size_t rows = rtd_cwt_nscales(p), k = rtd_cwt_padded(p) / 2 - 1;
    fft = malloc((k ? k : 1) * sizeof(*fft));
    fq = malloc((k ? k : 1) * sizeof(*fq));
    if (!fft || !fq)
        goto out;
    uint64_t t0 = rtd_now_ns();
    if (stream_rows(o, p, x, "wave", NULL, NULL, "cwt"))
        goto out;
    double secs = (double)(rtd_now_ns() - t0) * 1e-9;
    rtd_cwt_fft(p, x, fft, fq);
    if (write_out(o, "scales", rtd_cwt_scales(p), rows) ||
        write_out(o, "freqs", rtd_cwt_freqs(p), rows) || write_out(o, "coi", rtd_cwt_coi(p), n) ||
        write_arr(o, "fft", "complex128", k, 0, fft) || write_out(o, "fftfreqs", fq, k))
        goto out;
    json_common(o, "cwt", secs, p);
    jprintf(",\"seconds_plan\":%.6f,\"precision\":\"%s\"", secs_plan,
            o->single ? "single" : "double");
    char human[256];
    snprintf(human, sizeof human, "cwt of %zu samples, %zu scales (%s, s0 %g, dj %g, dt %g%s)", n,
             rows, m->name, rtd_cwt_s0(p), rtd_cwt_dj(p), rtd_cwt_dt(p),
             o->single ? ", float32" : "");
    if (finish(o, human))
        goto out;
    ret = RTD_EXIT_OK;
out:
    rtd_cwt_plan_destroy(p);
    free(x);
    free(fft);
    free(fq);
    return ret;
}

struct icwt_acc {
    double *sum;
    const double *scales;
};

static void icwt_sink(void *ctx, size_t j, const double complex *row, size_t n)
{
    struct icwt_acc *a = ctx;
    double rs = sqrt(a->scales[j]);
    for (size_t t = 0; t < n; t++)
        a->sum[t] += creal(row[t]) / rs;
}

static int cmd_icwt(const struct wv_opts *o, const struct rtd_mother *m)
{
    int ret = RTD_EXIT_USAGE;
    double *x = NULL, *scales = NULL, *out = NULL, *wd = NULL;
    double complex *wave = NULL;
    struct rtd_cwt_plan *p = NULL;
    size_t n = 0, rows = 0;
    double dt = o->dt, dj = o->dj > 0 ? o->dj : 1.0 / 12;
    uint64_t t0 = rtd_now_ns();
    if (o->wave) {
        size_t nw;
        if (!o->scales_file) {
            fprintf(stderr, "rtdaq wavelet icwt: --wave needs --scales\n");
            goto out;
        }
        if (!(wd = load_series("wave", o->wave, &nw, 1)) ||
            !(scales = load_series("scales", o->scales_file, &rows, 1)))
            goto out;
        if (nw % (2 * rows)) {
            fprintf(stderr,
                    "rtdaq wavelet icwt: --wave holds %zu doubles, not 2 x %zu scales x N\n", nw,
                    rows);
            goto out;
        }
        n = nw / 2 / rows;
        wave = (double complex *)wd;
        wd = NULL;
        t0 = rtd_now_ns();
    } else {
        if (!(x = load_series("in", o->in, &n, 1)))
            goto out;
        if (make_cwt(o, m, n, &p))
            goto out;
        rows = rtd_cwt_nscales(p);
        dj = rtd_cwt_dj(p);
    }
    if (m->cdelta <= 0) {
        fprintf(stderr,
                "rtdaq wavelet icwt: %s has no C_delta (PyCWT has it only for morlet:6, "
                "paul:4, dog:2, dog:6)\n",
                m->name);
        goto out;
    }
    ret = RTD_EXIT_FAIL;
    if (!(out = malloc(n * sizeof(double))))
        goto out;
    if (p) {
        /* TC98 eq. 11 summed as the rows stream by, in rtd_icwt's order (same result). */
        struct icwt_acc acc = {.sum = calloc(n, sizeof(double)), .scales = rtd_cwt_scales(p)};
        t0 = rtd_now_ns();
        if (!acc.sum || stream_rows(o, p, x, NULL, icwt_sink, &acc, "icwt")) {
            free(acc.sum);
            goto out;
        }
        double complex fac = dj * sqrt(dt) / (m->cdelta * rtd_mother_psi0(m, o->flags));
        for (size_t t = 0; t < n; t++)
            out[t] = creal(fac * acc.sum[t]);
        free(acc.sum);
    } else if (rtd_icwt(wave, scales, rows, n, dt, dj, m, o->flags, out)) {
        goto out;
    }
    double secs = (double)(rtd_now_ns() - t0) * 1e-9;
    if (write_out(o, "iwave", out, n))
        goto out;
    json_common(o, "icwt", secs, p);
    if (!p)
        jprintf(",\"n\":%zu,\"nscales\":%zu", n, rows);
    char human[256];
    snprintf(human, sizeof human, "icwt of %zu scales x %zu samples (%s)", rows, n, m->name);
    if (finish(o, human))
        goto out;
    ret = RTD_EXIT_OK;
out:
    rtd_cwt_plan_destroy(p);
    free(x);
    free(scales);
    free(out);
    free(wd);
    free(wave);
    return ret;
}

static void glbl_sink(void *ctx, size_t j, const double complex *w, size_t n)
{
    double *gp = ctx, acc = 0;
    for (size_t t = 0; t < n; t++)
        acc += creal(w[t]) * creal(w[t]) + cimag(w[t]) * cimag(w[t]);
    gp[j] = acc / (double)n;
}

static int cmd_signif(const struct wv_opts *o, const struct rtd_mother *m)
{
    size_t n;
    double *x = load_series("in", o->in, &n, 1);
    if (!x)
        return RTD_EXIT_USAGE;
    int ret = RTD_EXIT_USAGE;
    struct rtd_cwt_plan *p = NULL;
    double *sig = NULL, *th = NULL, *dof = NULL, *gp = NULL, *dofs = NULL;
    if (make_cwt(o, m, n, &p))
        goto out;
    size_t rows = rtd_cwt_nscales(p);
    const double *sc = rtd_cwt_scales(p);
    double alpha = o->alpha, var = o->variance;
    uint64_t t0 = rtd_now_ns();
    if (isnan(alpha) && rtd_wavelet_ar1(x, n, &alpha, NULL, NULL)) {
        fprintf(stderr, "rtdaq wavelet signif: the lag-1 estimate of --in has no solution "
                        "(D <= 0); pass --alpha\n");
        goto out;
    }
    if (isnan(var)) {
        double mean = 0, v = 0;
        for (size_t i = 0; i < n; i++)
            mean += x[i];
        mean /= (double)n;
        for (size_t i = 0; i < n; i++)
            v += (x[i] - mean) * (x[i] - mean);
        double sd = sqrt(v / (double)n);
        var = sd * sd;
    }
    ret = RTD_EXIT_FAIL;
    sig = malloc(rows * sizeof(double));
    th = malloc(rows * sizeof(double));
    gp = calloc(rows, sizeof(double));
    dof = malloc(rows * sizeof(double));
    if (!sig || !th || !gp || !dof)
        goto out;
    size_t ndof = rows;
    if (o->dof_file) {
        dofs = load_series("dof", o->dof_file, &ndof, 1);
        if (!dofs || ndof != rows) {
            if (dofs)
                fprintf(stderr, "rtdaq wavelet signif: --dof has %zu values, %zu scales\n", ndof,
                        rows);
            ret = RTD_EXIT_USAGE;
            goto out;
        }
        memcpy(dof, dofs, rows * sizeof(double));
    } else {
        /* The tutorial's dof = N - scales (mixes samples and time units: PyCWT issue #36). */
        for (size_t j = 0; j < rows; j++)
            dof[j] = (double)n - sc[j];
    }
    int rc;
    if (o->sigma_test == 2 || o->have_band || o->have_dof2) {
        double s12[2];
        if (o->have_dof2) {
            s12[0] = o->dof2[0];
            s12[1] = o->dof2[1];
        } else if (o->have_band) {
            long first = -1, last = -1;
            for (size_t j = 0; j < rows; j++) {
                double per = m->flambda * sc[j];
                if (per >= o->band[0] && per < o->band[1]) {
                    if (first < 0)
                        first = (long)j;
                    last = (long)j;
                }
            }
            if (first < 0) {
                fprintf(stderr, "rtdaq wavelet signif: no scale has a period in [%g, %g)\n",
                        o->band[0], o->band[1]);
                ret = RTD_EXIT_USAGE;
                goto out;
            }
            s12[0] = sc[first];
            s12[1] = sc[last];
        } else {
            fprintf(stderr, "rtdaq wavelet signif: --sigma-test 2 needs --dof S1,S2 or --band\n");
            ret = RTD_EXIT_USAGE;
            goto out;
        }
        double s, t;
        rc = rtd_wavelet_significance(NULL, 0, var, o->dt, sc, rows, 2, alpha, o->level, s12, 2, m,
                                      o->flags, &s, &t);
        if (rc) {
            fprintf(stderr, "rtdaq wavelet signif: scale-averaged test: %s\n", strerror(-rc));
            ret = RTD_EXIT_USAGE;
            goto out;
        }
        double secs = (double)(rtd_now_ns() - t0) * 1e-9;
        if (write_out(o, "savg_signif", &s, 1) || write_out(o, "savg_theor", &t, 1))
            goto out;
        json_common(o, "signif", secs, p);
        jprintf(",\"sigma_test\":2,\"alpha\":%.17g,\"variance\":%.17g,\"s1\":%.17g,"
                "\"s2\":%.17g,\"scale_avg_signif\":%.17g,\"scale_avg_theor\":%.17g",
                alpha, var, s12[0], s12[1], s, t);
        char human[256];
        snprintf(human, sizeof human,
                 "scale-averaged significance, scales %g..%g: level %.6g, theory %.6g", s12[0],
                 s12[1], s, t);
        if (finish(o, human))
            goto out;
        ret = RTD_EXIT_OK;
        goto out;
    }
    int do0 = o->sigma_test < 0 || o->sigma_test == 0;
    int do1 = o->sigma_test == 1 || (o->sigma_test < 0 && m->gamma > 0);
    if (o->sigma_test < 0 && !do1)
        fprintf(stderr, "rtdaq wavelet signif: %s has no gamma in PyCWT: global test skipped\n",
                m->name);
    if (do0) {
        rc = rtd_wavelet_significance(NULL, 0, var, o->dt, sc, rows, 0, alpha, o->level, NULL, 0, m,
                                      o->flags, sig, th);
        if (rc || write_out(o, "signif", sig, rows) || write_out(o, "fft_theor", th, rows))
            goto out;
        /* The same call with the signal array, which is where PyCWT's bug #26 lives. */
        rc = rtd_wavelet_significance(x, n, 0, o->dt, sc, rows, 0,
                                      isnan(o->alpha) ? (double)NAN : alpha, o->level, NULL, 0, m,
                                      o->flags, sig, th);
        if (rc || write_out(o, "signif_arrayinput", sig, rows) ||
            write_out(o, "fft_theor_arrayinput", th, rows))
            goto out;
    }
    if (do1) {
        rc = rtd_wavelet_significance(NULL, 0, var, o->dt, sc, rows, 1, alpha, o->level, dof, rows,
                                      m, o->flags, sig, th);
        if (rc) {
            fprintf(stderr, "rtdaq wavelet signif: global test needs gamma (PyCWT has it only for "
                            "morlet:6, paul:4, dog:2, dog:6)\n");
            ret = RTD_EXIT_USAGE;
            goto out;
        }
        if (stream_rows(o, p, x, NULL, glbl_sink, gp, "signif"))
            goto out;
        if (write_out(o, o->sigma_test == 1 ? "signif" : "glbl_signif", sig, rows) ||
            write_out(o, "glbl_power", gp, rows))
            goto out;
    }
    double secs = (double)(rtd_now_ns() - t0) * 1e-9;
    json_common(o, "signif", secs, p);
    jprintf(",\"sigma_test\":%d,\"alpha\":%.17g,\"variance\":%.17g,\"significance_level\":%g",
            o->sigma_test, alpha, var, o->level);
    char human[256];
    snprintf(human, sizeof human,
             "red-noise significance (alpha %.4g, variance %.4g, level %g) "
             "for %zu scales",
             alpha, var, o->level, rows);
    if (finish(o, human))
        goto out;
    ret = RTD_EXIT_OK;
out:
    rtd_cwt_plan_destroy(p);
    free(x);
    free(sig);
    free(th);
    free(gp);
    free(dof);
    free(dofs);
    return ret;
}

static void mc_progress_cb(void *ctx, int done, int total)
{
    progress_show(ctx, done, total);
}

static int run_mc(const struct wv_opts *o, const struct rtd_mother *m, double al1, double al2,
                  double s0, int J, double *sig95, double *counts, double *nout, int *from_cache)
{
    struct rtd_wct_signif_opts so = {.level = o->level,
                                     .mc_count = o->mc,
                                     .seed = o->seed,
                                     .nthreads = o->threads,
                                     .flags = o->flags};
    struct progress pg;
    progress_init(&pg, o, "wct-signif");
    rtd_wavelet_set_progress(mc_progress_cb, &pg);
    int rc = o->no_cache
                 ? rtd_wct_significance(al1, al2, o->dt, o->dj, s0, J, m, &so, sig95, counts, nout)
                 : rtd_wct_significance_cached(al1, al2, o->dt, o->dj, s0, J, m, &so, sig95, counts,
                                               nout, from_cache);
    rtd_wavelet_set_progress(NULL, NULL);
    progress_end(&pg);
    if (rc)
        fprintf(stderr, "rtdaq wavelet: Monte Carlo significance failed: %s\n", strerror(-rc));
    return rc;
}

static int cmd_wct(const struct wv_opts *o, const struct rtd_mother *m, int signif_only)
{
    size_t n1 = 0, n2 = 0, n = 0;
    double *y1 = NULL, *y2 = NULL, *wct = NULL, *awct = NULL, *sig95 = NULL, *counts = NULL,
           *nout = NULL, *scales = NULL;
    struct rtd_wct_plan *p = NULL;
    int ret = RTD_EXIT_USAGE;
    if (m->kind != RTD_MOTHER_MORLET || m->dj0 <= 0) {
        fprintf(stderr, "rtdaq wavelet: wct needs --mother morlet:6 (PyCWT smooths only Morlet "
                        "with f0 = 6)\n");
        return RTD_EXIT_USAGE;
    }
    if (o->in || !signif_only) {
        if (!o->in || !o->in2) {
            fprintf(stderr, "rtdaq wavelet: %s needs --in and --in2\n",
                    signif_only ? "wct-signif" : "wct");
            return RTD_EXIT_USAGE;
        }
        if (!(y1 = load_series("in", o->in, &n1, 1)) || !(y2 = load_series("in2", o->in2, &n2, 1)))
            goto out;
        if (n1 != n2) {
            fprintf(stderr,
                    "rtdaq wavelet: --in has %zu samples but --in2 has %zu: lengths must "
                    "match\n",
                    n1, n2);
            goto out;
        }
        n = n1;
    } else if (o->n_override > 0) {
        n = (size_t)o->n_override;
    } else if (o->J < 0) {
        fprintf(stderr, "rtdaq wavelet wct-signif: give --in/--in2, --n or --J\n");
        goto out;
    }
    double al1 = o->al1, al2 = o->al2;
    if ((o->sig || signif_only) && (isnan(al1) || isnan(al2))) {
        if (!y1) {
            fprintf(stderr, "rtdaq wavelet wct-signif: without --in/--in2 give --al1 and --al2\n");
            goto out;
        }
        if ((isnan(al1) && rtd_wavelet_ar1(y1, n, &al1, NULL, NULL)) ||
            (isnan(al2) && rtd_wavelet_ar1(y2, n, &al2, NULL, NULL))) {
            fprintf(stderr, "rtdaq wavelet: lag-1 estimate failed; pass --al1/--al2\n");
            goto out;
        }
    }
    double s0 = o->s0 > 0 ? o->s0 : rtd_cwt_default_s0(o->dt, m);
    double dj = o->dj > 0 ? o->dj : 1.0 / 12;
    int J = o->J >= 0 ? o->J : rtd_cwt_default_J(n, o->dt, dj, s0);
    if (J < 0 || !(o->dt > 0)) {
        fprintf(stderr, "rtdaq wavelet: no scales for these parameters\n");
        goto out;
    }
    size_t rows = (size_t)J + 1;
    ret = RTD_EXIT_FAIL;
    uint64_t t0 = rtd_now_ns();
    double secs_wct = 0, secs_mc = 0;
    int from_cache = 0;
    if (!signif_only) {
        int rc = rtd_wct_plan_create(&p, n, o->dt, dj, s0, J, m, o->flags);
        if (rc) {
            fprintf(stderr, "rtdaq wavelet wct: cannot plan %zu samples: %s\n", n, strerror(-rc));
            ret = RTD_EXIT_USAGE;
            goto out;
        }
        if (rtd_wct_plan_set_threads(p, o->threads))
            goto out;
        rows = rtd_cwt_nscales(rtd_wct_cwt(p));
        wct = malloc(rows * n * sizeof(double));
        awct = malloc(rows * n * sizeof(double));
        if (!wct || !awct)
            goto out;
        t0 = rtd_now_ns();
        rc = rtd_wct_execute(p, y1, y2, o->normalize, wct, awct);
        if (rc) {
            fprintf(stderr, "rtdaq wavelet wct: %s\n",
                    rc == -EDOM ? "a series is constant (zero variance)" : strerror(-rc));
            ret = RTD_EXIT_USAGE;
            goto out;
        }
        secs_wct = (double)(rtd_now_ns() - t0) * 1e-9;
        const struct rtd_cwt_plan *c = rtd_wct_cwt(p);
        if (write_arr(o, "WCT", "float64", rows, n, wct) ||
            write_arr(o, "aWCT", "float64", rows, n, awct) ||
            write_out(o, "coi", rtd_cwt_coi(c), n) ||
            write_out(o, "freq", rtd_cwt_freqs(c), rows) ||
            write_out(o, "scales", rtd_cwt_scales(c), rows))
            goto out;
    }
    if (o->sig || signif_only) {
        sig95 = malloc(rows * sizeof(double));
        counts = malloc(rows * 1000 * sizeof(double));
        nout = malloc(rows * sizeof(double));
        scales = malloc(rows * sizeof(double));
        if (!sig95 || !counts || !nout || !scales)
            goto out;
        uint64_t t1 = rtd_now_ns();
        if (run_mc(o, m, al1, al2, s0, J, sig95, counts, nout, &from_cache))
            goto out;
        secs_mc = (double)(rtd_now_ns() - t1) * 1e-9;
        for (size_t j = 0; j < rows; j++)
            scales[j] = s0 * pow(2, (double)j * dj);
        if (write_out(o, "sig95", sig95, rows) ||
            write_arr(o, "counts", "float64", rows, 1000, counts) ||
            write_out(o, "n_outside_coi", nout, rows) ||
            (signif_only && write_out(o, "scales", scales, rows)))
            goto out;
    }
    json_common(o, signif_only ? "wct-signif" : "wct", secs_wct + secs_mc,
                p ? rtd_wct_cwt(p) : NULL);
    if (!p)
        jprintf(",\"J\":%d,\"nscales\":%zu,\"dt\":%.17g,\"dj\":%.17g,\"s0\":%.17g,"
                "\"mother\":\"%s\"",
                J, rows, o->dt, dj, s0, m->name);
    if (o->sig || signif_only)
        jprintf(",\"mc_count\":%d,\"seed\":%llu,\"al1\":%.17g,\"al2\":%.17g,"
                "\"significance_level\":%g,\"surrogate_length\":%.0f,\"seconds_mc\":%.6f,"
                "\"from_cache\":%s",
                o->mc, (unsigned long long)o->seed, al1, al2, o->level,
                ceil(s0 * pow(2, J * dj) / o->dt * 6), secs_mc, from_cache ? "true" : "false");
    if (!signif_only)
        jprintf(",\"normalize\":%s,\"seconds_wct\":%.6f", o->normalize ? "true" : "false",
                secs_wct);
    char human[256];
    if (signif_only)
        snprintf(human, sizeof human,
                 "wct significance, %d surrogate pairs of %.0f samples (al1 %.4g, al2 %.4g, seed "
                 "%llu), %zu scales%s",
                 o->mc, ceil(s0 * pow(2, J * dj) / o->dt * 6), al1, al2,
                 (unsigned long long)o->seed, rows, from_cache ? ", levels from the cache" : "");
    else
        snprintf(human, sizeof human, "wct of 2 x %zu samples, %zu scales%s", n, rows,
                 !o->sig      ? ""
                 : from_cache ? " with Monte Carlo significance (from the cache)"
                              : " with Monte Carlo significance");
    if (finish(o, human))
        goto out;
    ret = RTD_EXIT_OK;
out:
    rtd_wct_plan_destroy(p);
    free(y1);
    free(y2);
    free(wct);
    free(awct);
    free(sig95);
    free(counts);
    free(nout);
    free(scales);
    return ret;
}

/* `rtdaq wavelet wisdom`: measure the plans for a list of FFT lengths ahead of time. */
static int cmd_wisdom(const struct wv_opts *o, int out_given)
{
    size_t sizes[64], ns = 0;
    if (o->sizes) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", o->sizes);
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
            long v;
            if (parse_long("sizes", tok, 2, 1l << 26, &v))
                return RTD_EXIT_USAGE;
            if (ns < 64)
                sizes[ns++] = rtd_cwt_padded_len((size_t)v);
        }
    } else {
        for (size_t m = 64; m <= 65536; m *= 2)
            sizes[ns++] = m;
    }
    /* Into the user's cache, or (--out-dir) into a file of its own, e.g. the package's. */
    rtd_wavelet_wisdom_auto((o->measure ? RTD_WISDOM_REFRESH : 0) |
                            (out_given ? RTD_WISDOM_READONLY : 0));
    struct progress pg;
    progress_init(&pg, o, "wisdom");
    for (size_t i = 0; i < ns; i++) {
        int rc = rtd_wavelet_wisdom_prepare(sizes[i]);
        if (rc) {
            fprintf(stderr, "rtdaq wavelet wisdom: planning length %zu: %s\n", sizes[i],
                    strerror(-rc));
            return RTD_EXIT_FAIL;
        }
        progress_show(&pg, (double)(i + 1), (double)ns);
    }
    progress_end(&pg);
    if (out_given) {
        int rc = rtd_wavelet_wisdom_export_dir(o->out_dir);
        if (rc) {
            fprintf(stderr, "rtdaq wavelet wisdom: writing %s/fftw-wisdom: %s\n", o->out_dir,
                    strerror(-rc));
            return RTD_EXIT_FAIL;
        }
    }
    struct rtd_wisdom_stats ws;
    rtd_wavelet_wisdom_stats(&ws);
    const char *where = out_given ? o->out_dir : ws.user_path;
    if (o->json)
        printf("{\"cmd\":\"wisdom\",\"sizes\":%zu,\"plans_measured\":%lu,"
               "\"plans_from_wisdom\":%lu,\"file\":\"%s\",\"seconds_total\":%.6f}\n",
               ns, ws.planned_measured, ws.planned_from_wisdom, where,
               (double)(rtd_now_ns() - t_start) * 1e-9);
    else if (!o->quiet)
        printf("FFTW wisdom for %zu lengths (%zu..%zu): %lu plans measured, %lu already known "
               "-> %s in %.1f s\n",
               ns, sizes[0], sizes[ns - 1], ws.planned_measured, ws.planned_from_wisdom, where,
               (double)(rtd_now_ns() - t_start) * 1e-9);
    return RTD_EXIT_OK;
}

int rtd_cmd_wavelet(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? RTD_EXIT_USAGE : RTD_EXIT_OK;
    }
    const char *sub = argv[1];
    struct wv_opts o = {.out_dir = ".",
                        .mother = "morlet:6",
                        .dt = 1,
                        .dj = 1.0 / 12,
                        .s0 = -1,
                        .J = -1,
                        .threads = 1,
                        .normalize = 1,
                        .mc = 300,
                        .sigma_test = -1,
                        .alpha = NAN,
                        .variance = NAN,
                        .level = 0.95,
                        .al1 = NAN,
                        .al2 = NAN};
    int threads_given = 0, out_given = 0;
    long lv;
    t_start = rtd_now_ns();
    optind = 1;
    opterr = 1;
    int c;
    while ((c = getopt_long(argc - 1, argv + 1, "", longopts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case O_IN:
            o.in = optarg;
            break;
        case O_IN2:
            o.in2 = optarg;
            break;
        case O_OUT:
            o.out_dir = optarg;
            out_given = 1;
            break;
        case O_DT:
            bad = parse_double("dt", optarg, &o.dt);
            if (!bad && !(o.dt > 0)) {
                fprintf(stderr, "rtdaq wavelet: --dt must be positive (got %s)\n", optarg);
                bad = 1;
            }
            break;
        case O_DJ:
            bad = parse_double("dj", optarg, &o.dj);
            if (!bad && !(o.dj > 0)) {
                fprintf(stderr, "rtdaq wavelet: --dj must be positive (got %s)\n", optarg);
                bad = 1;
            }
            break;
        case O_S0:
            bad = parse_double("s0", optarg, &o.s0);
            break;
        case O_J:
            bad = parse_long("J", optarg, -1, 10000, &lv);
            o.J = (int)lv;
            break;
        case O_MOTHER:
            o.mother = optarg;
            break;
        case O_THREADS:
            bad = parse_long("threads", optarg, 1, 1024, &lv);
            o.threads = (int)lv;
            threads_given = 1;
            break;
        case O_WISDOM:
            o.wisdom = optarg;
            break;
        case O_MEASURE:
            o.flags |= RTD_WAVELET_MEASURE;
            o.measure = 1;
            break;
        case O_QUIET:
            o.quiet = 1;
            break;
        case O_SIZES:
            o.sizes = optarg;
            break;
        case O_NOCACHE:
            o.no_cache = 1;
            break;
        case O_PRECISION:
            if (!strcmp(optarg, "single") || !strcmp(optarg, "double")) {
                o.single = !strcmp(optarg, "single");
            } else {
                fprintf(stderr, "rtdaq wavelet: --precision must be single or double (got %s)\n",
                        optarg);
                bad = 1;
            }
            break;
        case O_JSON:
            o.json = 1;
            break;
        case O_WAVE:
            o.wave = optarg;
            break;
        case O_SCALES:
            o.scales_file = optarg;
            break;
        case O_ALPHA:
            bad = parse_double("alpha", optarg, &o.alpha);
            break;
        case O_VAR:
            bad = parse_double("variance", optarg, &o.variance);
            break;
        case O_LEVEL:
            bad = parse_double("significance-level", optarg, &o.level);
            if (!bad && !(o.level > 0 && o.level < 1)) {
                fprintf(stderr, "rtdaq wavelet: --significance-level must be in (0, 1)\n");
                bad = 1;
            }
            break;
        case O_SIGMA:
            bad = parse_long("sigma-test", optarg, 0, 2, &lv);
            o.sigma_test = (int)lv;
            break;
        case O_DOF:
            if (strchr(optarg, ',')) {
                bad = parse_pair("dof", optarg, o.dof2);
                o.have_dof2 = 1;
            } else {
                o.dof_file = optarg;
            }
            break;
        case O_BAND:
            bad = parse_pair("band", optarg, o.band);
            o.have_band = 1;
            break;
        case O_NONORM:
            o.normalize = 0;
            break;
        case O_SIG:
            o.sig = 1;
            break;
        case O_MC:
            bad = parse_long("mc", optarg, 1, 100000000, &lv);
            o.mc = (int)lv;
            break;
        case O_SEED:
            bad = parse_long("seed", optarg, 0, 0x7fffffffffffffffl, &lv);
            o.seed = (uint64_t)lv;
            break;
        case O_AL1:
            bad = parse_double("al1", optarg, &o.al1);
            break;
        case O_AL2:
            bad = parse_double("al2", optarg, &o.al2);
            break;
        case O_N:
            bad = parse_long("n", optarg, 2, 1l << 30, &o.n_override);
            break;
        case O_FIXALL:
            o.flags |= RTD_WAVELET_FIX_ALL;
            break;
        case O_FIX_PSI0:
            o.flags |= RTD_WAVELET_FIX_PAUL_PSI0;
            break;
        case O_FIX_ROWS:
            o.flags |= RTD_WAVELET_FIX_PAUL_ROWS;
            break;
        case O_FIX_RED:
            o.flags |= RTD_WAVELET_FIX_REDNOISE;
            break;
        case O_FIX_GT:
            o.flags |= RTD_WAVELET_FIX_GLOBAL_THEOR;
            break;
        case O_FIX_LAST:
            o.flags |= RTD_WAVELET_FIX_MC_LASTSCALE;
            break;
        case O_FIX_AR1:
            o.flags |= RTD_WAVELET_FIX_MC_AR1;
            break;
        case O_COMPAT:
            o.flags &= RTD_WAVELET_MEASURE | RTD_WAVELET_MC_FLOAT;
            break;
        case O_MCFLOAT:
            o.flags |= RTD_WAVELET_MC_FLOAT;
            break;
        case O_HELP:
            fputs(usage, stdout);
            return RTD_EXIT_OK;
        default:
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "see: rtdaq wavelet --help\n");
            return RTD_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "rtdaq wavelet: unexpected argument '%s'\n", argv[optind + 1]);
        return RTD_EXIT_USAGE;
    }
    struct rtd_mother m;
    if (rtd_mother_parse(&m, o.mother)) {
        fprintf(stderr,
                "rtdaq wavelet: unknown mother wavelet '%s' (morlet[:f0], paul[:m], dog[:m])\n",
                o.mother);
        return RTD_EXIT_USAGE;
    }
    int is_mc = !strcmp(sub, "wct-signif");
    if (is_mc && !threads_given)
        o.threads = rtd_cpu_count();
    if (!strcmp(sub, "wisdom"))
        return cmd_wisdom(&o, out_given);
    if (strcmp(sub, "cwt") && strcmp(sub, "icwt") && strcmp(sub, "signif") && strcmp(sub, "wct") &&
        !is_mc) {
        fprintf(stderr, "rtdaq wavelet: unknown sub-command '%s'\n%s", sub, usage);
        return RTD_EXIT_USAGE;
    }
    if (!o.in && !is_mc && !(o.wave && !strcmp(sub, "icwt"))) {
        fprintf(stderr, "rtdaq wavelet %s: --in FILE is required\n", sub);
        return RTD_EXIT_USAGE;
    }
    if (mkdir(o.out_dir, 0755) && errno != EEXIST) {
        fprintf(stderr, "rtdaq wavelet: cannot create --out-dir %s: %s\n", o.out_dir,
                strerror(errno));
        return RTD_EXIT_FAIL;
    }
    /* The wisdom cache first (a corrupt file is warned about and ignored), then --wisdom. */
    rtd_wavelet_wisdom_auto(o.measure ? RTD_WISDOM_REFRESH : 0);
    if (o.wisdom)
        rtd_wavelet_wisdom_load(o.wisdom); /* a missing file is fine: it is written below */
    int ret;
    if (!strcmp(sub, "cwt"))
        ret = cmd_cwt(&o, &m);
    else if (!strcmp(sub, "icwt"))
        ret = cmd_icwt(&o, &m);
    else if (!strcmp(sub, "signif"))
        ret = cmd_signif(&o, &m);
    else
        ret = cmd_wct(&o, &m, is_mc);
    if (o.wisdom && ret == RTD_EXIT_OK && rtd_wavelet_wisdom_save(o.wisdom))
        fprintf(stderr, "rtdaq wavelet: could not save wisdom to %s\n", o.wisdom);
    return ret;
}
