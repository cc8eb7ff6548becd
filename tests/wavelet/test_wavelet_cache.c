/* SPDX-License-Identifier: MIT */
/*
 * `rtdaq wavelet` as a one-shot user runs it: the FFTW wisdom cache (created on the first
 * run, reused by the next, a corrupt file ignored with a warning and replaced, --measure
 * refreshing it, RTDAQ_WISDOM=off writing nothing, concurrent writers keeping each other's
 * plans), manifest.json against the files it describes, the streamed block output against
 * the library's rtd_cwt_execute, the one-line summary, and the progress bar on a terminal
 * (a pseudo-terminal) but not elsewhere, and the cache of Monte Carlo significance levels. Each run
 * gets a private XDG_CACHE_HOME. Plain program: exit 0 pass, 1 fail, 77 skip.
 */
#include "rtd_wavelet.h"
#include "wv_ref.h"

#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define RTDAQ RTD_BIN_DIR "/tools/rtdaq"

/* libgomp is not instrumented: under ThreadSanitizer an OpenMP team reports false races and
 * runs minutes, so the multi-threaded run uses one thread there (the blocks are the same). */
#ifdef __SANITIZE_THREAD__
#define MT_THREADS "1"
#else
#define MT_THREADS "2"
#endif

static int failures;
static char dir[256], cache[300];

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static void child_env(void)
{
    setenv("XDG_CACHE_HOME", cache, 1);
    unsetenv("RTDAQ_WISDOM_DIR");
    unsetenv("RTDAQ_WISDOM");
    /* No package file: what the cache holds is only what these runs saved. */
    setenv("RTDAQ_WISDOM_SYSTEM_DIR", "/nonexistent-rtdaq-wisdom", 1);
}

static pid_t spawn(const char *const *args, const char *tag)
{
    char out[512], err[512];
    snprintf(out, sizeof out, "%s/%s.stdout", dir, tag);
    snprintf(err, sizeof err, "%s/%s.stderr", dir, tag);
    pid_t pid = fork();
    if (pid == 0) {
        child_env();
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo < 0 || fe < 0)
            _exit(127);
        dup2(fo, 1);
        dup2(fe, 2);
        char *const *av;
        memcpy(&av, &args, sizeof av); /* execv's prototype predates const */
        execv(RTDAQ, av);
        _exit(127);
    }
    return pid;
}

static int reap(pid_t pid)
{
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int run(const char *const *args)
{
    return reap(spawn(args, "run"));
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)(n > 0 ? n : 0) + 1);
    size_t got = fread(b, 1, (size_t)(n > 0 ? n : 0), f);
    b[got] = 0;
    fclose(f);
    if (len)
        *len = got;
    return b;
}

static char *tagged(const char *tag, const char *ext)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.%s", dir, tag, ext);
    return slurp(path, NULL);
}

/* The "wisdom" object of the --json line of the last run (tag "run"). */
static json_t *last_json(void)
{
    char *s = tagged("run", "stdout");
    json_t *j = s ? json_loads(s, 0, NULL) : NULL;
    free(s);
    return j;
}

static long wisdom_field(json_t *j, const char *key)
{
    json_t *w = json_object_get(j, "wisdom");
    json_t *v = w ? json_object_get(w, key) : NULL;
    return json_is_integer(v) ? (long)json_integer_value(v) : -1;
}

static void write_series(const char *path, size_t n, unsigned seed)
{
    double *x = malloc(n * sizeof(double));
    uint64_t s = 0x9E3779B97F4A7C15ull * (seed + 1);
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = sin((double)i / 7.0) + (double)(s >> 11) * 0x1.0p-53 - 0.5;
    }
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(x, sizeof(double), n, f);
        fclose(f);
    }
    free(x);
}

static double *read_doubles(const char *path, size_t *n)
{
    size_t len;
    char *b = slurp(path, &len);
    *n = b ? len / 8 : 0;
    return (double *)b;
}

static int file_size(const char *path, long *size)
{
    struct stat st;
    if (stat(path, &st))
        return -1;
    *size = (long)st.st_size;
    return 0;
}

/* Largest |a - b| / max(|b|, 1e-300 + tiny floor) over n, as a multiple of 1e-9. */
static double worst(const double *a, const double *b, size_t n)
{
    size_t at;
    return wv_worst(a, b, n, &at);
}

/* The library's own cwt of the series in path (stored kernels, one thread). */
static double complex *library_cwt(const char *path, double s0, size_t *rows, size_t *n)
{
    double *x = read_doubles(path, n);
    struct rtd_mother m;
    rtd_mother_init(&m, RTD_MOTHER_MORLET, 6);
    struct rtd_cwt_plan *p;
    if (!x || rtd_cwt_plan_create(&p, *n, 1, 1.0 / 12, s0, -1, &m, 0)) {
        free(x);
        return NULL;
    }
    *rows = rtd_cwt_nscales(p);
    double complex *w = malloc(*rows * *n * sizeof(double complex));
    if (rtd_cwt_execute(p, x, w)) {
        free(w);
        w = NULL;
    }
    rtd_cwt_plan_destroy(p);
    free(x);
    return w;
}

static void compare_wave(const char *out, const double complex *ref, size_t count, const char *what)
{
    char path[600];
    snprintf(path, sizeof path, "%s/wave.bin", out);
    size_t n;
    double *got = read_doubles(path, &n);
    CHECK(got && n == 2 * count, "%s: wave.bin has %zu doubles, want %zu", what, n, 2 * count);
    if (got && n == 2 * count) {
        double w = worst(got, (const double *)ref, n);
        CHECK(w <= 1, "%s: wave differs from the library by %g x 1e-9 relative", what, w);
    }
    free(got);
}

/* manifest.json lists exactly `names`, each file's size is shape x dtype, n matches. */
static void check_manifest(const char *out, const char *const *names, size_t n_expect)
{
    char path[600];
    snprintf(path, sizeof path, "%s/manifest.json", out);
    json_error_t err;
    json_t *m = json_load_file(path, 0, &err);
    CHECK(m, "%s: not JSON (%s)", path, err.text);
    if (!m)
        return;
    json_t *outs = json_object_get(m, "outputs"), *par = json_object_get(m, "parameters");
    CHECK(json_is_array(outs) && json_is_object(par), "%s: no outputs/parameters", path);
    CHECK(json_integer_value(json_object_get(par, "n")) == (json_int_t)n_expect,
          "%s: parameters.n is not %zu", path, n_expect);
    size_t k = 0;
    for (; names[k]; k++) {
        json_t *e = json_array_get(outs, k);
        const char *nm = json_string_value(json_object_get(e, "name"));
        const char *file = json_string_value(json_object_get(e, "file"));
        const char *dt = json_string_value(json_object_get(e, "dtype"));
        json_t *shape = json_object_get(e, "shape");
        CHECK(nm && !strcmp(nm, names[k]), "%s: output %zu is %s, want %s", path, k,
              nm ? nm : "(none)", names[k]);
        if (!nm || !file || !dt || !json_is_array(shape))
            continue;
        long elems = 1;
        for (size_t d = 0; d < json_array_size(shape); d++)
            elems *= (long)json_integer_value(json_array_get(shape, d));
        long esize = !strcmp(dt, "complex128")                            ? 16
                     : !strcmp(dt, "float64") || !strcmp(dt, "complex64") ? 8
                                                                          : -1;
        char fp[700];
        snprintf(fp, sizeof fp, "%s/%s", out, file);
        long sz = -1;
        CHECK(file_size(fp, &sz) == 0 && sz == elems * esize,
              "%s: %s is %ld bytes, manifest says %ld x %s", path, file, sz, elems, dt);
    }
    CHECK(json_array_size(outs) == k, "%s: %zu outputs listed, want %zu", path,
          json_array_size(outs), k);
    json_decref(m);
}

static void rm_cache(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache);
    if (system(cmd))
        fprintf(stderr, "could not clear %s\n", cache);
}

/* Run args in a pseudo-terminal (stdin, stdout, stderr); everything it printed. */
static char *run_in_pty(const char *const *args, int *rc)
{
    int master;
    pid_t pid = forkpty(&master, NULL, NULL, NULL);
    if (pid == 0) {
        child_env();
        setenv("RTDAQ_PROGRESS_AFTER", "0", 1);
        char *const *av;
        memcpy(&av, &args, sizeof av);
        execv(RTDAQ, av);
        _exit(127);
    }
    if (pid < 0) {
        *rc = -1;
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        struct pollfd pf = {.fd = master, .events = POLLIN};
        if (poll(&pf, 1, 60000) <= 0)
            break;
        ssize_t k = read(master, buf + len, cap - len);
        if (k <= 0)
            break; /* EIO once the child has exited and closed the terminal */
        len += (size_t)k;
        if (len == cap)
            len = 0; /* only the text matters, keep reading */
    }
    buf[len] = 0;
    close(master);
    *rc = reap(pid);
    return buf;
}

int main(void)
{
    if (access(RTDAQ, X_OK)) {
        fprintf(stderr, "SKIP: %s not built\n", RTDAQ);
        return 77;
    }
    snprintf(dir, sizeof dir, "/tmp/rtd-wavelet-cache-%d-XXXXXX", (int)getpid());
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(cache, sizeof cache, "%s/xdg", dir);
    char wis[400], x[400], xl[400], out[400], y1[400], y2[400];
    snprintf(wis, sizeof wis, "%s/rtdaq/fftw-wisdom", cache);
    snprintf(x, sizeof x, "%s/x4096.f64", dir);
    snprintf(xl, sizeof xl, "%s/x40000.f64", dir);
    snprintf(y1, sizeof y1, "%s/y1.f64", dir);
    snprintf(y2, sizeof y2, "%s/y2.f64", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    write_series(x, 4096, 1);
    write_series(xl, 40000, 2);
    write_series(y1, 1000, 3);
    write_series(y2, 1000, 4);
    size_t rows, n;
    double complex *ref = library_cwt(x, 2, &rows, &n);
    CHECK(ref, "library cwt failed");
    if (!ref)
        return 1;
    const char *cwt[] = {RTDAQ, "wavelet",   "cwt", "--in",   x,   "--s0",
                         "2",   "--out-dir", out,   "--json", NULL};
    long sz = 0;

    /* 1. A cold cache: plans are measured, the file is written. */
    rm_cache();
    CHECK(run(cwt) == 0, "cold cwt failed: %s", tagged("run", "stderr"));
    json_t *j = last_json();
    CHECK(j, "cold run: no JSON line");
    CHECK(wisdom_field(j, "plans_measured") >= 2 && wisdom_field(j, "saved") >= 1,
          "cold run: measured %ld, saved %ld", wisdom_field(j, "plans_measured"),
          wisdom_field(j, "saved"));
    json_decref(j);
    CHECK(file_size(wis, &sz) == 0 && sz > 0, "no wisdom file at %s after the first run", wis);
    compare_wave(out, ref, rows * n, "cold run");

    /* 2. Warm: every plan comes from the file, nothing is measured again. */
    CHECK(run(cwt) == 0, "warm cwt failed: %s", tagged("run", "stderr"));
    j = last_json();
    CHECK(wisdom_field(j, "plans_measured") == 0 && wisdom_field(j, "plans_from_wisdom") >= 2,
          "warm run: measured %ld, from wisdom %ld", wisdom_field(j, "plans_measured"),
          wisdom_field(j, "plans_from_wisdom"));
    json_decref(j);
    compare_wave(out, ref, rows * n, "warm run");

    /* 3. A corrupt file: a warning, the same numbers, and a good file afterwards. */
    FILE *f = fopen(wis, "w");
    if (f) {
        fputs("(fftw-3.3.10 fftw_wisdom #x garbage ((((", f);
        fclose(f);
    }
    CHECK(run(cwt) == 0, "cwt with a corrupt wisdom file failed: %s", tagged("run", "stderr"));
    char *err = tagged("run", "stderr");
    CHECK(err && strstr(err, "ignoring FFTW wisdom file"), "no warning about the corrupt file: %s",
          err ? err : "");
    free(err);
    j = last_json();
    CHECK(wisdom_field(j, "ignored_files") == 1, "corrupt file not counted");
    json_decref(j);
    compare_wave(out, ref, rows * n, "corrupt-wisdom run");
    CHECK(run(cwt) == 0, "cwt after the corrupt file failed");
    j = last_json();
    CHECK(wisdom_field(j, "ignored_files") == 0 && wisdom_field(j, "plans_measured") == 0,
          "the corrupt file was not replaced: ignored %ld, measured %ld",
          wisdom_field(j, "ignored_files"), wisdom_field(j, "plans_measured"));
    json_decref(j);

    /* 4. --measure re-measures although the cache has the plans. */
    const char *meas[] = {RTDAQ, "wavelet",   "cwt", "--in",   x,           "--s0",
                          "2",   "--out-dir", out,   "--json", "--measure", NULL};
    CHECK(run(meas) == 0, "cwt --measure failed");
    j = last_json();
    CHECK(wisdom_field(j, "plans_measured") >= 2, "--measure did not measure (%ld)",
          wisdom_field(j, "plans_measured"));
    json_decref(j);
    compare_wave(out, ref, rows * n, "--measure run");

    /* 5. RTDAQ_WISDOM=off: no file. */
    rm_cache();
    setenv("RTDAQ_WISDOM", "off", 1);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("XDG_CACHE_HOME", cache, 1);
        int fo = open("/dev/null", O_WRONLY);
        dup2(fo, 1);
        char *const *av;
        const char *const *cav = cwt;
        memcpy(&av, &cav, sizeof av);
        execv(RTDAQ, av);
        _exit(127);
    }
    unsetenv("RTDAQ_WISDOM");
    CHECK(reap(pid) == 0, "cwt with RTDAQ_WISDOM=off failed");
    CHECK(access(wis, F_OK) != 0, "RTDAQ_WISDOM=off still wrote %s", wis);

    /* 6. Four processes planning different lengths at once into one empty cache: afterwards
     * each length is known (a writer that replaced the file without merging would lose the
     * others'). */
    rm_cache();
    const size_t lens[4] = {300, 600, 1200, 2400};
    char in4[4][400], out4[4][400], tag[4][16];
    pid_t pids[4];
    for (int i = 0; i < 4; i++) {
        snprintf(in4[i], sizeof in4[i], "%s/c%d.f64", dir, i);
        snprintf(out4[i], sizeof out4[i], "%s/c%d", dir, i);
        snprintf(tag[i], sizeof tag[i], "c%d", i);
        write_series(in4[i], lens[i], (unsigned)i + 10);
    }
    for (int i = 0; i < 4; i++) {
        const char *a[] = {RTDAQ, "wavelet", "cwt", "--in", in4[i], "--out-dir", out4[i], NULL};
        pids[i] = spawn(a, tag[i]);
    }
    for (int i = 0; i < 4; i++)
        CHECK(reap(pids[i]) == 0, "concurrent run %d failed: %s", i, tagged(tag[i], "stderr"));
    for (int i = 0; i < 4; i++) {
        const char *a[] = {RTDAQ,       "wavelet", "cwt",    "--in", in4[i],
                           "--out-dir", out4[i],   "--json", NULL};
        CHECK(run(a) == 0, "rerun %d failed", i);
        j = last_json();
        CHECK(wisdom_field(j, "plans_measured") == 0,
              "length %zu: its plans were lost from the shared cache (measured %ld again)", lens[i],
              wisdom_field(j, "plans_measured"));
        json_decref(j);
    }

    /* 7. manifest.json describes the files (cwt and wct). */
    CHECK(run(cwt) == 0, "cwt failed");
    const char *cwt_names[] = {"wave", "scales", "freqs", "coi", "fft", "fftfreqs", NULL};
    check_manifest(out, cwt_names, 4096);
    char wout[400];
    snprintf(wout, sizeof wout, "%s/wct", dir);
    const char *wct[] = {RTDAQ, "wavelet", "wct", "--in", y1, "--in2", y2, "--out-dir", wout, NULL};
    CHECK(run(wct) == 0, "wct failed: %s", tagged("run", "stderr"));
    const char *wct_names[] = {"WCT", "aWCT", "coi", "freq", "scales", NULL};
    check_manifest(wout, wct_names, 1000);

    /* 8. Without --json: one human line naming what was done; nothing on stderr (no tty). */
    const char *human[] = {RTDAQ, "wavelet", "cwt", "--in", x, "--s0", "2", "--out-dir", out, NULL};
    CHECK(run(human) == 0, "cwt failed");
    char *so = tagged("run", "stdout"), *se = tagged("run", "stderr");
    CHECK(so && strstr(so, "cwt of 4096 samples") && strstr(so, "manifest.json") &&
              strchr(so, '\n') == so + strlen(so) - 1,
          "summary is not one line naming the run: '%s'", so ? so : "");
    CHECK(se && !*se, "stderr is not empty without a terminal: '%s'", se ? se : "");
    free(so);
    free(se);

    /* 9. Padded length, many blocks, two threads: the streamed file equals the library's
     * transform, and icwt / global power computed from the stream equal theirs. */
    size_t rl, nl;
    double complex *refl = library_cwt(xl, 2, &rl, &nl);
    const char *big[] = {RTDAQ, "wavelet",   "cwt", "--in",      xl,         "--s0",
                         "2",   "--out-dir", out,   "--threads", MT_THREADS, NULL};
    CHECK(refl && run(big) == 0, "cwt N=40000 failed");
    if (refl) {
        compare_wave(out, refl, rl * nl, "N=40000 two threads");
        struct rtd_mother m;
        rtd_mother_init(&m, RTD_MOTHER_MORLET, 6);
        double *scales = malloc(rl * sizeof(double)), *iw = malloc(nl * sizeof(double));
        for (size_t k = 0; k < rl; k++)
            scales[k] = 2 * pow(2, (double)k / 12);
        rtd_icwt(refl, scales, rl, nl, 1, 1.0 / 12, &m, 0, iw);
        const char *ic[] = {RTDAQ, "wavelet",   "icwt", "--in",      xl,         "--s0",
                            "2",   "--out-dir", out,    "--threads", MT_THREADS, NULL};
        CHECK(run(ic) == 0, "icwt N=40000 failed");
        char ip[500];
        snprintf(ip, sizeof ip, "%s/iwave.bin", out);
        size_t ni;
        double *got = read_doubles(ip, &ni);
        CHECK(got && ni == nl && worst(got, iw, nl) <= 1, "streamed icwt differs from rtd_icwt");
        free(got);
        free(iw);
        free(scales);
    }
    free(refl);

    /* 10. On a terminal, a long run shows a progress bar with an ETA. */
    const char *prog[] = {RTDAQ, "wavelet", "cwt", "--in", xl, "--s0", "2", "--out-dir", out, NULL};
    int rc;
    char *tty = run_in_pty(prog, &rc);
    CHECK(rc == 0 && tty && strstr(tty, "ETA") && strstr(tty, "cwt ["),
          "no progress bar on a terminal (exit %d): '%s'", rc, tty ? tty : "");
    free(tty);

    /* 12. --precision single: complex64 rows within 1e-5 of each row's peak of the float64
     * transform (measured: 9e-7), declared as complex64 in the manifest. */
    const char *single[] = {RTDAQ, "wavelet",   "cwt", "--in",        x,        "--s0",
                            "2",   "--out-dir", out,   "--precision", "single", NULL};
    CHECK(run(single) == 0, "cwt --precision single failed: %s", tagged("run", "stderr"));
    {
        char wp[600];
        snprintf(wp, sizeof wp, "%s/wave.bin", out);
        size_t nb;
        char *raw = slurp(wp, &nb);
        CHECK(raw && nb == rows * n * sizeof(float complex), "single: wave.bin is %zu bytes", nb);
        if (raw && nb == rows * n * sizeof(float complex)) {
            const float complex *wf = (const float complex *)raw;
            double worst_rel = 0;
            for (size_t r = 0; r < rows; r++) {
                double peak = 0, e = 0;
                for (size_t t = 0; t < n; t++) {
                    peak = fmax(peak, cabs(ref[r * n + t]));
                    e = fmax(e, cabs((double complex)wf[r * n + t] - ref[r * n + t]));
                }
                worst_rel = fmax(worst_rel, e / peak);
            }
            CHECK(worst_rel <= 1e-5, "single: error %g of the row peak", worst_rel);
        }
        free(raw);
        const char *single_names[] = {"wave", "scales", "freqs", "coi", "fft", "fftfreqs", NULL};
        check_manifest(out, single_names, 4096);
        char mp[600];
        snprintf(mp, sizeof mp, "%s/manifest.json", out);
        char *man = slurp(mp, NULL);
        CHECK(man && strstr(man, "\"dtype\":\"complex64\""), "single: manifest lacks complex64");
        free(man);
    }

    /* 11. Significance levels come from the cache on a repeat, identical; another seed or
     * --no-cache computes; a damaged entry is a miss, not a wrong answer. */
    char mout[400], sig_first[500], sig_path[500];
    snprintf(mout, sizeof mout, "%s/mc", dir);
    snprintf(sig_path, sizeof sig_path, "%s/sig95.bin", mout);
    const char *mc[] = {RTDAQ,       "wavelet",  "wct-signif", "--al1",     "0.43", "--al2",
                        "0.5",       "--s0",     "2",          "--J",       "40",   "--mc",
                        "6",         "--seed",   "5",          "--out-dir", mout,   "--json",
                        "--threads", MT_THREADS, NULL,         NULL};
    double *first = NULL, *again = NULL;
    size_t nf = 0, na = 0;
    int fc[5];
    for (int k = 0; k < 5; k++) {
        if (k == 2)
            mc[14] = "6"; /* another seed */
        if (k == 3)
            mc[20] = "--no-cache";
        if (k == 4) {
            mc[14] = "5";
            mc[20] = NULL;
            /* damage the entry of seed 5: truncate every cached file */
            char cmd[600];
            snprintf(cmd, sizeof cmd,
                     "for f in '%s'/rtdaq/signif/*.bin; do truncate -s 100 \"$f\"; done", cache);
            CHECK(system(cmd) == 0, "could not damage the cache");
        }
        CHECK(run(mc) == 0, "wct-signif run %d failed: %s", k, tagged("run", "stderr"));
        j = last_json();
        fc[k] = json_is_true(json_object_get(j, "from_cache"));
        json_decref(j);
        if (k == 0)
            first = read_doubles(sig_path, &nf);
        if (k == 1 || k == 4) {
            free(again);
            again = read_doubles(sig_path, &na);
            CHECK(first && again && nf == 41 && na == nf &&
                      !memcmp(first, again, nf * sizeof(double)),
                  "run %d: cached sig95 differs from the computed one", k);
        }
    }
    snprintf(sig_first, sizeof sig_first, "%d%d%d%d%d", fc[0], fc[1], fc[2], fc[3], fc[4]);
    CHECK(!strcmp(sig_first, "01000"),
          "from_cache per run was %s, want 01000 (computed, cached, "
          "new seed, --no-cache, damaged entry)",
          sig_first);
    free(first);
    free(again);

    free(ref);
    if (!failures) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd))
            fprintf(stderr, "could not remove %s\n", dir);
        printf("test_wavelet_cache: all passed\n");
        return 0;
    }
    fprintf(stderr, "test_wavelet_cache: %d failures (outputs kept in %s)\n", failures, dir);
    return 1;
}
