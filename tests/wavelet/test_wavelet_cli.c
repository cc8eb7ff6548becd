/* SPDX-License-Identifier: MIT */
/*
 * `rtdaq wavelet` end to end: the real binary on the public reference cases (outputs compared
 * with the PyCWT vectors to relative 1e-9), the --json summary, and the bad-input contract
 * (exit 2 with a message naming the problem). Plain program: exit 0 pass, 1 fail, 77 skip.
 */
#include "wv_ref.h"

#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define RTDAQ RTD_BIN_DIR "/tools/rtdaq"

static int failures;
static char dir[256];

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* Run rtdaq with argv (NULL-terminated); stdout and stderr go to files in dir. Exit code. */
static int run(const char *const *args)
{
    char out[512], err[512];
    snprintf(out, sizeof out, "%s/stdout.txt", dir);
    snprintf(err, sizeof err, "%s/stderr.txt", dir);
    pid_t pid = fork();
    if (pid == 0) {
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
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *slurp_text(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static double *load_out(const char *sub, const char *name, size_t *n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%s.bin", dir, sub, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    double *d = malloc(len > 0 ? (size_t)len : 1);
    *n = fread(d, 1, (size_t)len, f) / 8;
    fclose(f);
    return d;
}

static void compare(const char *sub, const char *name, const char *ref_name)
{
    size_t n, nr;
    double *got = load_out(sub, name, &n);
    double *ref = wv_load(ref_name, &nr);
    CHECK(got && ref, "%s/%s.bin or %s missing", sub, name, ref_name);
    if (got && ref) {
        CHECK(n == nr, "%s/%s: %zu values, reference %zu", sub, name, n, nr);
        size_t at = 0;
        double w = n == nr ? wv_worst(got, ref, n, &at) : (double)INFINITY;
        CHECK(w <= 1, "%s/%s: element %zu off by %g of the tolerance", sub, name, at, w);
    }
    free(got);
    free(ref);
}

static void write_bytes(const char *name, const void *p, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(p, 1, len, f);
        fclose(f);
    }
}

/* A bad invocation must exit 2 and say something containing `needle` on stderr. */
static void expect_usage(const char *needle, const char *const *args)
{
    int rc = run(args);
    const char *err = slurp_text("stderr.txt");
    CHECK(rc == 2, "%s: exit %d, want 2", needle, rc);
    CHECK(err && strstr(err, needle), "stderr lacks '%s': %s", needle, err ? err : "(none)");
}

int main(void)
{
    if (access(RTDAQ, X_OK)) {
        fprintf(stderr, "SKIP: %s not built\n", RTDAQ);
        return 77;
    }
    snprintf(dir, sizeof dir, "/tmp/rtd-wavelet-cli-%d-XXXXXX", (int)getpid());
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    /* The runs' wisdom cache goes to the test's directory, not the user's home. */
    char xdg[512];
    snprintf(xdg, sizeof xdg, "%s/xdg", dir);
    setenv("XDG_CACHE_HOME", xdg, 1);
    unsetenv("RTDAQ_WISDOM_DIR");
    char out[512], x[512], y1[512], y2[512];
    snprintf(x, sizeof x, "%sa_cwt__x.bin", WV_DATA);
    snprintf(y1, sizeof y1, "%sd_wct__y1.bin", WV_DATA);
    snprintf(y2, sizeof y2, "%sd_wct__y2.bin", WV_DATA);

    /* Case a, Morlet and Paul. */
    snprintf(out, sizeof out, "%s/cwt", dir);
    const char *cwt[] = {RTDAQ,      "wavelet",   "cwt",
                         "--in",     x,           "--dt",
                         "1",        "--dj",      "0.08333333333333333",
                         "--s0",     "2",         "--mother",
                         "morlet:6", "--out-dir", out,
                         "--json",   NULL};
    CHECK(run(cwt) == 0, "cwt failed: %s", slurp_text("stderr.txt"));
    const char *js = slurp_text("stdout.txt");
    CHECK(js && strstr(js, "\"seconds\":") && strstr(js, "\"nscales\":109"), "json: %s", js);
    compare("cwt", "wave", "a_cwt__morlet_wave.bin");
    compare("cwt", "scales", "a_cwt__morlet_scales.bin");
    compare("cwt", "freqs", "a_cwt__morlet_freqs.bin");
    compare("cwt", "coi", "a_cwt__morlet_coi.bin");
    compare("cwt", "fft", "a_cwt__morlet_fft.bin");
    compare("cwt", "fftfreqs", "a_cwt__morlet_fftfreqs.bin");

    snprintf(out, sizeof out, "%s/paul", dir);
    const char *paul[] = {RTDAQ, "wavelet",  "cwt",    "--in",      x,   "--s0",
                          "2",   "--mother", "paul:4", "--out-dir", out, NULL};
    CHECK(run(paul) == 0, "cwt paul failed");
    compare("paul", "wave", "a_cwt__paul_wave.bin");
    compare("paul", "scales", "a_cwt__paul_scales.bin");

    /* Case b. */
    snprintf(out, sizeof out, "%s/icwt", dir);
    const char *icwt[] = {RTDAQ, "wavelet",  "icwt",  "--in",      x,   "--s0",
                          "2",   "--mother", "dog:2", "--out-dir", out, NULL};
    CHECK(run(icwt) == 0, "icwt failed: %s", slurp_text("stderr.txt"));
    compare("icwt", "iwave", "b_icwt__dog2_iwave.bin");

    /* Case c. */
    snprintf(out, sizeof out, "%s/signif", dir);
    const char *sig[] = {RTDAQ,  "wavelet", "signif",    "--in", x,
                         "--s0", "2",       "--out-dir", out,    NULL};
    CHECK(run(sig) == 0, "signif failed: %s", slurp_text("stderr.txt"));
    compare("signif", "signif", "c_signif__signif.bin");
    compare("signif", "fft_theor", "c_signif__fft_theor.bin");
    compare("signif", "glbl_signif", "c_signif__glbl_signif.bin");
    compare("signif", "glbl_power", "c_signif__glbl_power.bin");
    compare("signif", "signif_arrayinput", "c_signif__signif_arrayinput.bin");
    compare("signif", "fft_theor_arrayinput", "c_signif__fft_theor_arrayinput.bin");

    /* Case d. */
    snprintf(out, sizeof out, "%s/wct", dir);
    const char *wct[] = {RTDAQ,  "wavelet", "wct",       "--in", y1,       "--in2", y2,
                         "--s0", "2",       "--out-dir", out,    "--json", NULL};
    CHECK(run(wct) == 0, "wct failed: %s", slurp_text("stderr.txt"));
    compare("wct", "WCT", "d_wct__WCT.bin");
    compare("wct", "aWCT", "d_wct__aWCT.bin");
    compare("wct", "coi", "d_wct__coi.bin");
    compare("wct", "freq", "d_wct__freq.bin");

    /* Case f's outputs and shapes, with a small surrogate count to stay quick. */
    snprintf(out, sizeof out, "%s/mc", dir);
    const char *mc[] = {RTDAQ,  "wavelet",   "wct-signif", "--al1",     "0.43", "--al2",  "0.5",
                        "--s0", "2",         "--J",        "60",        "--mc", "4",      "--seed",
                        "3",    "--threads", "1",          "--out-dir", out,    "--json", NULL};
    CHECK(run(mc) == 0, "wct-signif failed: %s", slurp_text("stderr.txt"));
    js = slurp_text("stdout.txt");
    CHECK(js && strstr(js, "\"seconds\":") && strstr(js, "\"mc_count\":4"), "json: %s", js);
    size_t n;
    double *s95 = load_out("mc", "sig95", &n);
    CHECK(s95 && n == 61 && isnan(s95[60]) && s95[0] > 0.5 && s95[0] < 1, "sig95 shape/values");
    free(s95);
    double *counts = load_out("mc", "counts", &n);
    CHECK(counts && n == 61 * 1000, "counts shape");
    free(counts);

    /* Bad input. */
    write_bytes("empty.bin", "", 0);
    double nanv[4] = {1, 2, NAN, 4};
    write_bytes("nan.bin", nanv, sizeof nanv);
    write_bytes("odd.bin", nanv, 12);
    double shortv[100] = {0};
    write_bytes("short.bin", shortv, sizeof shortv);
    char empty[512], nanf[512], odd[512], shortf[512];
    snprintf(empty, sizeof empty, "%s/empty.bin", dir);
    snprintf(nanf, sizeof nanf, "%s/nan.bin", dir);
    snprintf(odd, sizeof odd, "%s/odd.bin", dir);
    snprintf(shortf, sizeof shortf, "%s/short.bin", dir);
    snprintf(out, sizeof out, "%s/bad", dir);
    const char *b1[] = {RTDAQ, "wavelet", "cwt", "--in", empty, "--out-dir", out, NULL};
    expect_usage("is empty", b1);
    const char *b2[] = {RTDAQ, "wavelet", "cwt", "--in", nanf, "--out-dir", out, NULL};
    expect_usage("NaN", b2);
    const char *b3[] = {RTDAQ, "wavelet", "cwt", "--in", odd, "--out-dir", out, NULL};
    expect_usage("not a multiple of 8", b3);
    const char *b4[] = {RTDAQ, "wavelet", "cwt", "--in", x, "--dt", "0", "--out-dir", out, NULL};
    expect_usage("--dt must be positive", b4);
    const char *b5[] = {RTDAQ,   "wavelet", "wct",       "--in", x,
                        "--in2", shortf,    "--out-dir", out,    NULL};
    expect_usage("lengths must match", b5);
    const char *b6[] = {RTDAQ,      "wavelet", "cwt",       "--in", x,
                        "--mother", "haar",    "--out-dir", out,    NULL};
    expect_usage("unknown mother", b6);
    const char *b7[] = {RTDAQ, "wavelet",  "wct",    "--in",      y1,  "--in2",
                        y2,    "--mother", "paul:4", "--out-dir", out, NULL};
    expect_usage("wct needs --mother morlet:6", b7);
    const char *b8[] = {RTDAQ, "wavelet", "cwt", "--out-dir", out, NULL};
    expect_usage("--in FILE is required", b8);

    if (!failures) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd))
            fprintf(stderr, "could not remove %s\n", dir);
        printf("test_wavelet_cli: all passed\n");
        return 0;
    }
    fprintf(stderr, "test_wavelet_cli: %d failures (outputs kept in %s)\n", failures, dir);
    return 1;
}
