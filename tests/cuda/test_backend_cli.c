/* SPDX-License-Identifier: MIT */
/*
 * --backend cpu|cuda|auto on the real `rtdaq fit-frames` and `rtdaq-proc`
 * binaries. Without a usable GPU: cuda is refused (exit 2, the reason named),
 * auto falls back and says "cpu", bogus values are usage errors, and the daemon
 * with auto runs with its backend_cuda gauge at 0. With a GPU: fit-frames on
 * tests/data/frames gives the CPU's detections, centres within 1e-3 px for
 * ions not flagged OVERLAP, and the daemon's gauge reads 1. Plain C (runs
 * under the sanitizer presets, where the CUDA library is the stub).
 */
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rtd_shm.h"

#define RTDAQ  RTD_BIN_DIR "/tools/rtdaq"
#define PROC   RTD_BIN_DIR "/proc/daemon/rtdaq-proc"
#define FRAMES RTD_TEST_DATA "/frames/frames_300_u16.bin"
#define NCOLS  19 /* rtdaq fit-frames --out: 19 float64 per ion (docs/proc.md) */

static int failed;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failed = 1;                                                                            \
        }                                                                                          \
    } while (0)

/* Run a shell command line, stdout and stderr into out; the exit status (or -1). */
static int run(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static double *load_rows(const char *path, size_t *nrows)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    double *d = malloc((size_t)len + 8);
    if (d && fread(d, 1, (size_t)len, f) != (size_t)len) {
        free(d);
        d = NULL;
    }
    fclose(f);
    *nrows = (size_t)len / (NCOLS * sizeof(double));
    return d;
}

/* GPU vs CPU on the reference frames (static analysis, frames 0-14). */
static void compare_gpu_cpu(const char *dir)
{
    char out[8192], a[512], b[512];
    snprintf(a, sizeof a, "%s/cpu.f64", dir);
    snprintf(b, sizeof b, "%s/cuda.f64", dir);
    int rc = run(out, sizeof out,
                 "'%s' fit-frames --in '%s' --width 300 --height 300 --count 15 --backend cpu "
                 "--out '%s' --json",
                 RTDAQ, FRAMES, a);
    CHECK(rc == 0, "cpu run: %s", out);
    rc = run(out, sizeof out,
             "'%s' fit-frames --in '%s' --width 300 --height 300 --count 15 --backend cuda "
             "--out '%s' --json",
             RTDAQ, FRAMES, b);
    CHECK(rc == 0 && strstr(out, "\"backend\":\"cuda\""), "cuda run: %s", out);
    size_t na = 0, nb = 0;
    double *ra = load_rows(a, &na), *rb = load_rows(b, &nb);
    CHECK(ra && rb && na > 100, "outputs %zu / %zu rows", na, nb);
    if (!ra || !rb) {
        free(ra);
        free(rb);
        return;
    }
    size_t compared = 0, matched = 0;
    double worst = 0;
    for (size_t i = 0; i < na; i++) {
        const double *x = ra + i * NCOLS;
        if (((int)x[11]) & 2) /* RTD_ION_OVERLAP: de-blending differs by design */
            continue;
        compared++;
        const double *best = NULL;
        double bd = 1.0;
        for (size_t j = 0; j < nb; j++) {
            const double *y = rb + j * NCOLS;
            double d = hypot(y[1] - x[1], y[2] - x[2]);
            if (y[0] == x[0] && d < bd) {
                bd = d;
                best = y;
            }
        }
        if (!best)
            continue;
        double e = fmax(fabs(best[1] - x[1]), fabs(best[2] - x[2]));
        if (x[6] == 0 && best[6] == 0 && e > worst)
            worst = e;
        if (best[6] == x[6] && (x[6] != 0 || e <= 1e-3))
            matched++;
    }
    printf("gpu vs cpu: %zu non-overlapping ions, %zu matched, worst centre %.2e px\n", compared,
           matched, worst);
    CHECK(compared > 100 && matched == compared, "%zu of %zu matched", matched, compared);
    CHECK(worst <= 1e-3, "worst centre difference %.3e px", worst);
    free(ra);
    free(rb);
}

static void no_gpu_checks(void)
{
    char out[8192];
    int rc = run(out, sizeof out,
                 "'%s' fit-frames --in '%s' --width 300 --height 300 --count 2 --backend cuda "
                 "--json",
                 RTDAQ, FRAMES);
    CHECK(rc == 2, "fit-frames --backend cuda without a GPU: exit %d, want 2: %s", rc, out);
    CHECK(strstr(out, "no usable CUDA device: ") && strlen(strstr(out, "device: ")) > 12,
          "no reason given: %s", out);
    rc = run(out, sizeof out, "'%s' --instance bkt%d --backend cuda --cpu -1 --duration 5", PROC,
             (int)getpid());
    CHECK(rc == 2, "rtdaq-proc --backend cuda without a GPU: exit %d, want 2: %s", rc, out);
    CHECK(strstr(out, "no usable CUDA device: "), "no reason given: %s", out);
}

static void gauge_cb(const char *label, enum rtd_counter_kind kind, uint64_t value, void *arg)
{
    (void)kind;
    if (!strcmp(label, "backend_cuda"))
        *(int64_t *)arg = (int64_t)value;
}

int main(void)
{
    char out[8192];
    struct stat sb;
    if (stat(RTDAQ, &sb) < 0 || stat(PROC, &sb) < 0) {
        printf("skip: rtdaq or rtdaq-proc not built\n");
        return 77;
    }
    /* Usage errors and syntax-only checks first: they never touch a device. */
    int rc =
        run(out, sizeof out, "'%s' fit-frames --in '%s' --width 300 --height 300 --backend bogus",
            RTDAQ, FRAMES);
    CHECK(rc == 2 && strstr(out, "--backend"), "bogus: exit %d: %s", rc, out);
    rc = run(out, sizeof out, "'%s' --backend bogus --check-config", PROC);
    CHECK(rc == 2 && strstr(out, "--backend"), "proc bogus: exit %d: %s", rc, out);
    rc = run(out, sizeof out, "'%s' --backend cuda --check-config", PROC);
    CHECK(rc == 0 && strstr(out, "config ok"), "proc --check-config: exit %d: %s", rc, out);

    /* auto says which backend it took; that decides which half of the test runs. */
    rc = run(out, sizeof out,
             "'%s' fit-frames --in '%s' --width 300 --height 300 --count 3 --backend auto --json",
             RTDAQ, FRAMES);
    CHECK(rc == 0, "auto: exit %d: %s", rc, out);
    const int gpu = strstr(out, "\"backend\":\"cuda\"") != NULL;
    CHECK(gpu || strstr(out, "\"backend\":\"cpu\""), "auto names no backend: %s", out);
    printf("auto chose %s\n", gpu ? "cuda" : "cpu");

    /* The daemon with auto: the gauge says which backend its fit worker runs. */
    char inst[32];
    snprintf(inst, sizeof inst, "bka%d", (int)getpid());
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' --instance %s --backend auto --cpu -1 --duration 3", PROC,
             inst);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL, "popen rtdaq-proc");
    int64_t gauge = -1;
    for (int t = 0; p && t < 250 && gauge < 0; t++) {
        usleep(10000);
        struct rtd_stats_view *v;
        if (rtd_stats_open(&v, inst, "proc.w0") < 0)
            continue;
        int64_t val = -1;
        rtd_stats_view_foreach(v, gauge_cb, &val);
        rtd_stats_view_close(v);
        gauge = val;
    }
    if (p) {
        rc = pclose(p);
        CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "rtdaq-proc --backend auto: status %d", rc);
    }
    CHECK(gauge == gpu, "backend_cuda gauge %lld, want %d", (long long)gauge, gpu);

    if (gpu) {
        const char *tmp = getenv("TMPDIR");
        char tdir[512];
        snprintf(tdir, sizeof tdir, "%s/rtd_backend_XXXXXX", tmp && *tmp ? tmp : "/tmp");
        char *d = mkdtemp(tdir);
        CHECK(d != NULL, "mkdtemp");
        if (d) {
            compare_gpu_cpu(d);
            char rm[600];
            snprintf(rm, sizeof rm, "rm -rf '%s'", d);
            if (system(rm) != 0)
                fprintf(stderr, "could not remove %s\n", d);
        }
    } else {
        no_gpu_checks();
    }
    if (failed)
        return 1;
    printf("ok (%s)\n", gpu ? "GPU: compared with the CPU" : "no GPU: refusal checked");
    return 0;
}
