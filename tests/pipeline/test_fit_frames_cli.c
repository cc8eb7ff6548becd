/* SPDX-License-Identifier: MIT */
/*
 * `rtdaq fit-frames` as a user runs it: the real binary on the reference
 * frames (JSON summary and the float64 detections file) and on malformed
 * inputs, each of which must exit 2 with a message naming the file and the
 * problem.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rtd_util.h"

#define RTDAQ  RTD_BIN_DIR "/tools/rtdaq"
#define FRAMES RTD_TEST_DATA "/frames/frames_300_u16.bin"

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
        cr_expect(d[r * 19] >= 0 && d[r * 19] < 15);
        cr_expect(d[r * 19 + 1] > 0 && d[r * 19 + 1] < 300);
        cr_expect(d[r * 19 + 4] > 1.0 && d[r * 19 + 4] < 3.5, "sigma %g", d[r * 19 + 4]);
        cr_expect(d[r * 19 + 5] > 90 && d[r * 19 + 5] < 130, "offset %g", d[r * 19 + 5]);
    }
    free(d);
    rc = run("--columns", out, sizeof out);
    cr_expect_eq(rc, 0);
    cr_expect(strstr(out, "0 frame") && strstr(out, "6 state"), "%s", out);
}

Test(fit_frames_cli, shm_analysis_runs_on_the_oscillating_frames)
{
    char out[4096], args[1024];
    snprintf(args, sizeof args,
             "--in %s --width 300 --height 300 --first 15 --count 5 --analysis shm --json", FRAMES);
    int rc = run(args, out, sizeof out);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, out);
    cr_expect(strstr(out, "\"detections\":40") != NULL, "%s", out);
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
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(args, sizeof args, "--in %s %s", FRAMES, cases[i]);
        int rc = run(args, out, sizeof out);
        cr_expect_eq(rc, 2, "'%s': exit %d: %s", cases[i], rc, out);
        cr_expect(strlen(out) > 0, "'%s': no message", cases[i]);
    }
}
