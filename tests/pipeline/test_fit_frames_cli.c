/* SPDX-License-Identifier: MIT */
/*
 * `rtdaq fit-frames` as a user runs it: the real binary on the reference
 * frames (JSON summary and the float64 detections file) and on malformed
 * inputs, each of which must exit 2 with a message naming the file and the
 * problem.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rtd_util.h"
#include "shm_frames.h"

#define RTDAQ  RTD_BIN_DIR "/tools/rtdaq"
#define FRAMES RTD_TEST_DATA "/frames/frames_300_u16.bin"
#define TRUTH  RTD_TEST_DATA "/frames/frames_300_truth_ions.f64"
#define NCOLS  19

/*
 * Match every detection row of `det` (n rows) to the truth of its frame ([t, 8] rows: frame,
 * x, y, amp, sigma, A, ...): counts truths found within r px, detections matching none, and
 * the squared errors of x, y and (col 8) A.
 */
struct match {
    int truth, found, false_pos;
    double se[3];
};

static void match_rows(const double *det, size_t n, const double *truth, size_t nt, int tcols,
                       int f0, int f1, double r, int quiet, struct match *m)
{
    memset(m, 0, sizeof *m);
    int *used = calloc(n ? n : 1, sizeof(int));
    cr_assert_not_null(used);
    for (size_t t = 0; t < nt; t++) {
        const double *tr = truth + t * (size_t)tcols;
        if (tr[0] < f0 || tr[0] >= f1)
            continue;
        m->truth++;
        long best = -1;
        double bd = r;
        for (size_t i = 0; i < n; i++) {
            const double *d = det + i * NCOLS;
            if (d[0] != tr[0])
                continue;
            double dd = hypot(d[1] - tr[1], d[2] - tr[2]);
            if (dd < bd) {
                bd = dd;
                best = (long)i;
            }
        }
        if (best < 0) {
            if (!quiet)
                cr_log_error("frame %.0f: ion at (%.2f, %.2f) not in the output", tr[0], tr[1],
                             tr[2]);
            continue;
        }
        used[best] = 1;
        m->found++;
        const double *d = det + (size_t)best * NCOLS;
        m->se[0] += pow(d[1] - tr[1], 2);
        m->se[1] += pow(d[2] - tr[2], 2);
        m->se[2] += pow(d[8] - tr[5], 2);
    }
    for (size_t i = 0; i < n; i++)
        m->false_pos += !used[i];
    free(used);
}

static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rtd_ff_%d", (int)getpid());
    mkdir(tmpdir, 0700);
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        cr_log_warn("could not remove %s", tmpdir);
}

/* Run the command line, capture stdout+stderr into out; returns the exit code. */
static int run(const char *args, char *out, size_t cap)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s fit-frames %s 2>&1", RTDAQ, args);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = 0;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void write_bytes(const char *path, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    for (size_t i = 0; i < n; i++)
        fputc(100, f);
    fclose(f);
}

TestSuite(fit_frames_cli, .init = setup, .fini = teardown);

Test(fit_frames_cli, reference_frames_give_the_json_summary_and_the_detections_file)
{
    char out[4096], args[1024], det[300];
    snprintf(det, sizeof det, "%s/det.f64", tmpdir);
    snprintf(args, sizeof args, "--in %s --width 300 --height 300 --count 15 --out %s --json",
             FRAMES, det);
    int rc = run(args, out, sizeof out);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, out);
    cr_expect(strstr(out, "\"frames\":15") != NULL, "%s", out);
    cr_expect(strstr(out, "\"detections\":150") != NULL, "%s", out);
    cr_expect(strstr(out, "\"ms_per_frame\":") != NULL, "%s", out);
    struct stat sb;
    cr_assert_eq(stat(det, &sb), 0);
    cr_expect_eq(sb.st_size, 150 * 19 * 8, "detections file %lld bytes", (long long)sb.st_size);
    /* Columns: frame, x, y, amp, sigma, offset, state, ... */
    double *d;
    size_t len;
    cr_assert_eq(rtd_read_file(det, (void **)&d, &len), 0);
    for (int r = 0; r < 150; r++) {
        cr_expect(d[r * NCOLS] >= 0 && d[r * NCOLS] < 15);
        cr_expect(d[r * NCOLS + 4] > 1.0 && d[r * NCOLS + 4] < 3.5, "sigma %g", d[r * NCOLS + 4]);
        cr_expect(d[r * NCOLS + 5] > 90 && d[r * NCOLS + 5] < 130, "offset %g", d[r * NCOLS + 5]);
        cr_expect_eq(d[r * NCOLS + 6], 0, "state");
    }
    /* Every true ion at its place: x and y RMSE within 10 % of docs/proc.md's 0.0656 / 0.0630. */
    double *t;
    size_t tlen;
    cr_assert_eq(rtd_read_file(TRUTH, (void **)&t, &tlen), 0);
    struct match m;
    match_rows(d, 150, t, tlen / (8 * sizeof(double)), 8, 0, 15, 0.5, 0, &m);
    cr_expect_eq(m.truth, 150);
    cr_expect_eq(m.found, 150, "found %d of %d within 0.5 px", m.found, m.truth);
    cr_expect_eq(m.false_pos, 0);
    const double rx = sqrt(m.se[0] / m.found), ry = sqrt(m.se[1] / m.found);
    cr_expect_leq(rx, 1.10 * 0.0656, "x RMSE %.4f px", rx);
    cr_expect_leq(ry, 1.10 * 0.0630, "y RMSE %.4f px", ry);
    free(t);
    free(d);
    rc = run("--columns", out, sizeof out);
    cr_expect_eq(rc, 0);
    cr_expect(strstr(out, "0 frame") && strstr(out, "6 state"), "%s", out);
}

/*
 * The reference frames' oscillating ions (15-19): all 40 at their place, x and y RMSE within
 * 10 % of docs/proc.md's (0.0820 / 0.1315 px), A within 0.3 px RMS of the truth (measured
 * 0.163 px).
 */
Test(fit_frames_cli, shm_analysis_finds_the_reference_oscillating_ions_at_their_place)
{
    char out[4096], args[1024], det[300];
    snprintf(det, sizeof det, "%s/shm.f64", tmpdir);
    snprintf(args, sizeof args,
             "--in %s --width 300 --height 300 --first 15 --count 5 --analysis shm --out %s --json",
             FRAMES, det);
    int rc = run(args, out, sizeof out);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, out);
    cr_expect(strstr(out, "\"detections\":40") != NULL, "%s", out);
    double *d, *t;
    size_t len, tlen;
    cr_assert_eq(rtd_read_file(det, (void **)&d, &len), 0);
    cr_assert_eq(rtd_read_file(TRUTH, (void **)&t, &tlen), 0);
    struct match m;
    match_rows(d, len / (NCOLS * sizeof(double)), t, tlen / (8 * sizeof(double)), 8, 15, 20, 1.0, 0,
               &m);
    cr_expect_eq(m.truth, 40);
    cr_expect_eq(m.found, 40, "found %d of %d within 1 px", m.found, m.truth);
    cr_expect_eq(m.false_pos, 0);
    const double rx = sqrt(m.se[0] / m.found), ry = sqrt(m.se[1] / m.found);
    const double rA = sqrt(m.se[2] / m.found);
    cr_log_info("shm reference frames: RMSE x %.4f y %.4f A %.4f px", rx, ry, rA);
    cr_expect_leq(rx, 1.10 * 0.0820, "x RMSE %.4f px", rx);
    cr_expect_leq(ry, 1.10 * 0.1315, "y RMSE %.4f px", ry);
    cr_expect_leq(rA, 0.3, "A RMSE %.4f px", rA);
    free(d);
    free(t);
}

/*
 * The frames, written here (shm_frames.h) and read by the real binary with its
 * defaults: 28 of 28 ions, none false, A within 0.5 px RMS, an A_err column; and the same
 * frames with the old flat background find fewer (the gradient hides them).
 */
Test(fit_frames_cli, shm_defaults_find_the_oscillating_ions_on_a_gradient)
{
    char out[4096], args[1024], frames[300], det[300];
    snprintf(frames, sizeof frames, "%s/shm.u16", tmpdir);
    snprintf(det, sizeof det, "%s/shm.f64", tmpdir);
    static uint16_t img[SHMF_W * SHMF_H];
    double truth[4 * SHMF_IONS * SHMF_NCOLS];
    FILE *f = fopen(frames, "wb");
    cr_assert_not_null(f);
    int nt = 0;
    for (int k = 0; k < 4; k++) {
        nt += shmf_frame(22, k, img, truth + (size_t)nt * SHMF_NCOLS, 0);
        cr_assert_eq(fwrite(img, sizeof img, 1, f), 1u);
    }
    fclose(f);
    snprintf(args, sizeof args, "--in %s --width 300 --height 300 --analysis shm --out %s --json",
             frames, det);
    int rc = run(args, out, sizeof out);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, out);
    cr_expect(strstr(out, "\"columns\":19") != NULL, "%s", out);
    double *d;
    size_t len;
    cr_assert_eq(rtd_read_file(det, (void **)&d, &len), 0);
    const size_t n = len / (NCOLS * sizeof(double));
    struct match m;
    match_rows(d, n, truth, (size_t)nt, SHMF_NCOLS, 0, 4, 3.0, 0, &m);
    cr_expect_eq(m.found, 28, "found %d of 28", m.found);
    cr_expect_eq(m.false_pos, 0);
    const double rA = sqrt(m.se[2] / (m.found ? m.found : 1));
    cr_expect_leq(rA, 0.5, "A RMSE %.3f px", rA);
    int with_err = 0;
    for (size_t i = 0; i < n; i++)
        with_err += d[i * NCOLS + 18] > 0 && d[i * NCOLS + 18] < 5;
    cr_expect_geq(with_err, 24, "A_err given for %d of %zu", with_err, n);
    free(d);
    snprintf(args, sizeof args,
             "--in %s --width 300 --height 300 --analysis shm --background flat --out %s --json",
             frames, det);
    rc = run(args, out, sizeof out);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, out);
    cr_assert_eq(rtd_read_file(det, (void **)&d, &len), 0);
    match_rows(d, len / (NCOLS * sizeof(double)), truth, (size_t)nt, SHMF_NCOLS, 0, 4, 3.0, 1, &m);
    cr_expect_lt(m.found, 28, "flat background found %d of 28", m.found);
    free(d);
}

Test(fit_frames_cli, a_size_that_is_not_whole_frames_is_an_error_naming_the_file)
{
    char out[4096], args[1024], bad[300];
    snprintf(bad, sizeof bad, "%s/odd.u16", tmpdir);
    write_bytes(bad, 300 * 300 * 2 * 2 + 7);
    snprintf(args, sizeof args, "--in %s --width 300 --height 300", bad);
    int rc = run(args, out, sizeof out);
    cr_expect_eq(rc, 2, "exit %d: %s", rc, out);
    cr_expect(strstr(out, bad) != NULL, "%s", out);
    cr_expect(strstr(out, "not a multiple") != NULL, "%s", out);
}

Test(fit_frames_cli, a_file_shorter_than_the_count_is_an_error)
{
    char out[4096], args[1024];
    snprintf(args, sizeof args, "--in %s --width 300 --height 300 --count 30", FRAMES);
    int rc = run(args, out, sizeof out);
    cr_expect_eq(rc, 2, "exit %d: %s", rc, out);
    cr_expect(strstr(out, "frames_300_u16.bin") != NULL, "%s", out);
    cr_expect(strstr(out, "shorter") != NULL, "%s", out);
}

Test(fit_frames_cli, an_empty_or_missing_file_is_an_error)
{
    char out[4096], args[1024], empty[300];
    snprintf(empty, sizeof empty, "%s/empty.u16", tmpdir);
    write_bytes(empty, 0);
    snprintf(args, sizeof args, "--in %s --width 300 --height 300", empty);
    int rc = run(args, out, sizeof out);
    cr_expect_eq(rc, 2, "exit %d: %s", rc, out);
    cr_expect(strstr(out, "empty") != NULL, "%s", out);
    snprintf(args, sizeof args, "--in %s/nope.u16 --width 300 --height 300", tmpdir);
    rc = run(args, out, sizeof out);
    cr_expect_eq(rc, 2, "exit %d: %s", rc, out);
    cr_expect(strstr(out, "nope.u16") != NULL, "%s", out);
}

Test(fit_frames_cli, bad_geometry_and_options_are_usage_errors)
{
    char out[4096], args[1024];
    const char *cases[] = {
        "--width 0 --height 300",
        "--width abc --height 300",
        "--width 300",
        "--width 300 --height 300 --analysis wobble",
        "--width 5 --height 5",
        "--width 300 --height 300 --roi-size 11x13",
        "--width 300 --height 300 --k -1",
        "--width 300 --height 300 --analysis shm --max-amplitude 30",
        "--width 300 --height 300 --analysis shm --max-amplitude x",
        "--width 300 --height 300 --background wobble",
        "--width 300 --height 300 --bg-block 3",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(args, sizeof args, "--in %s %s", FRAMES, cases[i]);
        int rc = run(args, out, sizeof out);
        cr_expect_eq(rc, 2, "'%s': exit %d: %s", cases[i], rc, out);
        cr_expect(strlen(out) > 0, "'%s': no message", cases[i]);
    }
}
