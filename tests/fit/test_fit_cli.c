/* SPDX-License-Identifier: MIT */
/*
 * `rtdaq fit` end to end: runs the real binary on the reference data, checks
 * its JSON summary and that its PARAMS/STATES files equal the library's own
 * results, then feeds it malformed input (truncated, empty, NaN, mismatched
 * counts, a --count longer than the file) and checks for exit 2 and a message
 * naming the file and the problem. A plain program (exit 0 pass, 1 fail) so it
 * also runs under ASan and TSan; every run uses --threads 1.
 */
#include "rtd_fit.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define RTDAQ RTD_BIN_DIR "/tools/rtdaq"
#define DATA  RTD_TEST_DATA "/fits/"

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static char dir[256];

/* Run a shell command line, capture stdout+stderr into out; returns the exit status. */
static int run(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof(cmd) - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void spit(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(buf, 1, len, f);
        fclose(f);
    }
}

/* The CLI's result equals the library's, and its JSON has the promised fields. */
static void good_run(const char *model, enum rtd_fit_model m, const char *ds, uint32_t pts,
                     const char *est)
{
    char out[8192];
    int rc = run(out, sizeof(out),
                 "%s fit --model %s --points %u --in %s%s_data.f32 --init %s%s_init.f32 "
                 "--out %s/p.f32 --states %s/s.i32 --iters %s/i.i32 --estimator %s --threads 1 "
                 "--json",
                 RTDAQ, model, pts, DATA, ds, DATA, ds, dir, dir, dir, est);
    CHECK(rc == 0, "%s %s: exit %d: %s", model, est, rc, out);
    const char *keys[] = {"\"fits\":1000",  "\"seconds\":",        "\"fits_per_s\":",
                          "\"converged\":", "\"backend\":\"cpu\"", "\"isa\":"};
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
        CHECK(strstr(out, keys[k]), "%s: json lacks %s: %s", model, keys[k], out);
    CHECK(strchr(out, '\n') == strrchr(out, '\n'), "more than one line: %s", out);

    int np = rtd_fit_n_params(m);
    char path[512];
    size_t dl, il, pl, sl;
    snprintf(path, sizeof(path), "%s%s_data.f32", DATA, ds);
    float *data = slurp(path, &dl);
    snprintf(path, sizeof(path), "%s%s_init.f32", DATA, ds);
    float *init = slurp(path, &il);
    snprintf(path, sizeof(path), "%s/p.f32", dir);
    float *cli = slurp(path, &pl);
    snprintf(path, sizeof(path), "%s/s.i32", dir);
    int32_t *cst = slurp(path, &sl);
    CHECK(data && init && cli && cst, "missing files");
    if (data && init && cli && cst) {
        CHECK(pl == 1000u * (size_t)np * 4u, "params file %zu bytes", pl);
        CHECK(sl == 4000, "states file %zu bytes", sl);
        float *lib = calloc(1000u * (size_t)np, sizeof(float));
        int32_t st[1000];
        struct rtd_fit_opts o;
        rtd_fit_opts_default(&o, m, pts);
        o.estimator = strcmp(est, "mle") ? RTD_FIT_LSE : RTD_FIT_MLE;
        o.threads = 1;
        CHECK(rtd_fit_batch(&o, 1000, data, init, lib, st, NULL, NULL) == 0, "library fit");
        CHECK(memcmp(lib, cli, pl) == 0, "%s %s: CLI params differ from the library's", model, est);
        CHECK(memcmp(st, cst, sl) == 0, "%s %s: CLI states differ from the library's", model, est);
        free(lib);
    }
    free(data);
    free(init);
    free(cli);
    free(cst);
}

/* A malformed input: exit 2 and a message containing each of the needles. */
static void bad_run(const char *what, const char *in, const char *init, const char *extra,
                    const char *needle1, const char *needle2)
{
    char out[8192];
    int rc = run(out, sizeof(out),
                 "%s fit --model gauss2d --points 121 --in %s --init %s --out %s/bad.f32 "
                 "--threads 1 %s",
                 RTDAQ, in, init, dir, extra);
    CHECK(rc == 2, "%s: exit %d (want 2): %s", what, rc, out);
    CHECK(strstr(out, needle1), "%s: message lacks '%s': %s", what, needle1, out);
    CHECK(!needle2 || strstr(out, needle2), "%s: message lacks '%s': %s", what, needle2, out);
    char path[512];
    snprintf(path, sizeof(path), "%s/bad.f32", dir);
    CHECK(access(path, F_OK) != 0, "%s: an output file was written", what);
}

int main(void)
{
    if (access(RTDAQ, X_OK) != 0) {
        fprintf(stderr, "SKIP: %s not built\n", RTDAQ);
        return 77;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/rtd_fit_cli_%d", tmp ? tmp : "/tmp", (int)getpid());
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s", dir);
    if (system(cmd) != 0)
        return 1;

    good_run("gauss2d", RTD_FIT_GAUSS_2D, "gauss2d_11x11", 121, "lse");
    good_run("gauss1d", RTD_FIT_GAUSS_1D, "gauss1d_32", 32, "mle");
    good_run("shm1d", RTD_FIT_SHM_1D, "shm1d_48", 48, "lse");

    /* malformed inputs, each derived from the real files */
    char path[512], trunc[512], empty[512], nan[512], short_init[512];
    size_t dl, il;
    snprintf(path, sizeof(path), "%sgauss2d_11x11_data.f32", DATA);
    float *data = slurp(path, &dl);
    snprintf(path, sizeof(path), "%sgauss2d_11x11_init.f32", DATA);
    float *init = slurp(path, &il);
    if (!data || !init)
        return 1;
    snprintf(trunc, sizeof(trunc), "%s/trunc.f32", dir);
    spit(trunc, data, dl - 100); /* cut mid-row */
    snprintf(empty, sizeof(empty), "%s/empty.f32", dir);
    spit(empty, data, 0);
    snprintf(nan, sizeof(nan), "%s/nan.f32", dir);
    data[121 * 7 + 3] = NAN;
    spit(nan, data, dl);
    snprintf(short_init, sizeof(short_init), "%s/short_init.f32", dir);
    spit(short_init, init, il - 5 * 4); /* 999 rows */
    char data_path[512], init_path[512];
    snprintf(data_path, sizeof(data_path), "%sgauss2d_11x11_data.f32", DATA);
    snprintf(init_path, sizeof(init_path), "%sgauss2d_11x11_init.f32", DATA);

    bad_run("truncated data", trunc, init_path, "", trunc, "not a multiple");
    bad_run("empty data", empty, init_path, "", empty, "empty");
    bad_run("NaN in data", nan, init_path, "", nan, "NaN");
    bad_run("init one row short", data_path, short_init, "", short_init, "999");
    bad_run("count beyond the file", data_path, init_path, "--count 1001", data_path,
            "shorter than declared");
    bad_run("missing file", "/nonexistent/x.f32", init_path, "", "/nonexistent/x.f32", NULL);
    bad_run("wrong points for the model", data_path, init_path, "--points 120", "square", NULL);

    /* --backend auto names the backend it chose; --help is not an error */
    char outb[8192];
    int rcb = run(outb, sizeof(outb),
                  "%s fit --model gauss1d --points 32 --in %sgauss1d_32_data.f32 --init "
                  "%sgauss1d_32_init.f32 --out %s/p.f32 --backend auto --threads 1 --json",
                  RTDAQ, DATA, DATA, dir);
    CHECK(rcb == 0 && (strstr(outb, "\"backend\":\"cpu\"") || strstr(outb, "\"backend\":\"cuda\"")),
          "--backend auto: exit %d: %s", rcb, outb);
    rcb = run(outb, sizeof(outb), "%s fit --help", RTDAQ);
    CHECK(rcb == 0 && strstr(outb, "--model"), "--help: exit %d: %s", rcb, outb);

    /* --allow-nan fits the rest and marks the NaN fit as bad input */
    char out[8192];
    int rc = run(out, sizeof(out),
                 "%s fit --model gauss2d --points 121 --in %s --init %s --out %s/p.f32 --states "
                 "%s/s.i32 --allow-nan --threads 1 --json",
                 RTDAQ, nan, init_path, dir, dir);
    CHECK(rc == 0 && strstr(out, "\"bad_input\":1"), "--allow-nan: exit %d: %s", rc, out);
    snprintf(path, sizeof(path), "%s/s.i32", dir);
    size_t sl;
    int32_t *st = slurp(path, &sl);
    CHECK(st && sl == 4000 && st[7] == RTD_FIT_BAD_INPUT && st[6] == 0, "--allow-nan states");
    free(st);

    free(data);
    free(init);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        failures++;
    if (failures)
        fprintf(stderr, "%d failures\n", failures);
    else
        printf("rtdaq fit CLI: all checks passed\n");
    return failures ? 1 : 0;
}
