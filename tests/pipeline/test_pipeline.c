/* SPDX-License-Identifier: MIT */
/*
 * The frame pipeline against the reference frames (every true ion found, no
 * false positives, centre RMSE within 10 % of the reference pipeline's) and on
 * synthetic frames built here: ions at the frame edges, overlapping spots,
 * frames without ions, the analysis window and bad configurations.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rtd_pipeline.h"
#include "rtd_util.h"

#define FW 300
#define FH 300

static void *load(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/frames/%s", RTD_TEST_DATA, name);
    void *buf;
    int rc = rtd_read_file(path, &buf, len);
    cr_assert_eq(rc, 0, "read %s: %s", path, strerror(-rc));
    return buf;
}

/* ---- a small synthetic camera: pixel-integrated spots, Poisson-ish noise --- */

struct synth_ion {
    double x, y, amp, sigma;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static double rng_uniform(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((double)(rng_state >> 11) + 0.5) / 9007199254740992.0;
}

static double rng_normal(void)
{
    double u = rng_uniform(), v = rng_uniform();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static double pix_frac(double c, double x0, double s)
{
    return 0.5 * (erf((c + 0.5 - x0) / (sqrt(2.0) * s)) - erf((c - 0.5 - x0) / (sqrt(2.0) * s)));
}

/* bg photons/px + ADU offset 100 + read noise 3 ADU; noise = 0 gives the exact mean. */
static void synth(uint16_t *img, int w, int h, const struct synth_ion *ions, int n, double bg,
                  int noise)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double m = bg;
            for (int i = 0; i < n; i++) {
                const struct synth_ion *a = &ions[i];
                if (fabs(x - a->x) > 8 * a->sigma || fabs(y - a->y) > 8 * a->sigma)
                    continue;
                double photons = a->amp * 2 * M_PI * a->sigma * a->sigma;
                m += photons * pix_frac(x, a->x, a->sigma) * pix_frac(y, a->y, a->sigma);
            }
            double v = 100.0 + m;
            if (noise)
                v += sqrt(m) * rng_normal() + 3.0 * rng_normal();
            v = v < 0 ? 0 : (v > 65535 ? 65535 : v);
            img[(size_t)y * (size_t)w + (size_t)x] = (uint16_t)lrint(v);
        }
}

/* Index of the detection nearest (x, y) within r, or -1. */
static int nearest(const struct rtd_pipe_ion *d, int n, double x, double y, double r)
{
    int best = -1;
    double bd = r;
    for (int i = 0; i < n; i++) {
        double dd = hypot(d[i].x - x, d[i].y - y);
        if (dd < bd) {
            bd = dd;
            best = i;
        }
    }
    return best;
}

/* ---- reference frames ---------------------------------------------------- */

static void check_reference(enum rtd_pipe_analysis an, int f0, int f1)
{
    size_t flen, tlen;
    uint16_t *frames = load("frames_300_u16.bin", &flen);
    double *truth = load("frames_300_truth_ions.f64", &tlen);
    cr_assert_eq(flen, (size_t)20 * FW * FH * 2);
    const size_t nt = tlen / (8 * sizeof(double));

    /* The reference pipeline's centre errors on the same frames. */
    double ref_se[2] = {0, 0};
    int ref_n = 0;
    if (an == RTD_PIPE_STATIC) {
        size_t dlen;
        double *ref = load("frames_300_ref_detections_gauss2d.f64", &dlen);
        for (size_t r = 0; r < dlen / (25 * sizeof(double)); r++) {
            const double *row = ref + r * 25;
            int m = (int)row[24], k = -1;
            if (m < 0 || row[0] < f0 || row[0] >= f1)
                continue;
            for (size_t t = 0; t < nt; t++)
                if (truth[t * 8] == row[0] && k++ == m - 1) {
                    ref_se[0] += pow(row[18] - truth[t * 8 + 1], 2);
                    ref_se[1] += pow(row[19] - truth[t * 8 + 2], 2);
                    ref_n++;
                    break;
                }
        }
        free(ref);
    } else {
        size_t dlen;
        double *ref = load("frames_300_ref_detections_shm.f64", &dlen);
        for (size_t r = 0; r < dlen / (18 * sizeof(double)); r++) {
            const double *row = ref + r * 18;
            int m = (int)row[17], k = -1;
            if (m < 0 || row[0] < f0 || row[0] >= f1)
                continue;
            for (size_t t = 0; t < nt; t++)
                if (truth[t * 8] == row[0] && k++ == m - 1) {
                    ref_se[0] += pow(row[6] + row[4] - truth[t * 8 + 1], 2);
                    ref_se[1] += pow(row[11] + row[3] - truth[t * 8 + 2], 2);
                    ref_n++;
                    break;
                }
        }
        free(ref);
    }
    cr_assert_gt(ref_n, 0);

    struct rtd_pipe_config cfg;
    rtd_pipe_config_default(&cfg, an);
    struct rtd_pipe *p;
    cr_assert_eq(rtd_pipe_create(&p, &cfg, FW, FH), 0);
    struct rtd_pipe_ion ions[64];
    double se[2] = {0, 0};
    int matched = 0, missed = 0, false_pos = 0;
    for (int f = f0; f < f1; f++) {
        struct rtd_pipe_frame_stats st;
        int n = rtd_pipe_process(p, frames + (size_t)f * FW * FH, FW, FH, FW, (uint64_t)f, ions, 64,
                                 &st);
        cr_assert_geq(n, 0, "frame %d: %d", f, n);
        int used[64] = {0};
        for (size_t t = 0; t < nt; t++) {
            if ((int)truth[t * 8] != f)
                continue;
            int i = nearest(ions, n, truth[t * 8 + 1], truth[t * 8 + 2], 3.0);
            if (i < 0) {
                missed++;
                cr_log_error("frame %d: true ion at (%.2f, %.2f) not found", f, truth[t * 8 + 1],
                             truth[t * 8 + 2]);
                continue;
            }
            used[i] = 1;
            matched++;
            se[0] += pow(ions[i].x - truth[t * 8 + 1], 2);
            se[1] += pow(ions[i].y - truth[t * 8 + 2], 2);
        }
        for (int i = 0; i < n; i++)
            if (!used[i]) {
                false_pos++;
                cr_log_error("frame %d: false detection at (%.2f, %.2f)", f, ions[i].x, ions[i].y);
            }
    }
    cr_expect_eq(missed, 0, "true ions missed");
    cr_expect_eq(false_pos, 0, "false positives");
    for (int a = 0; a < 2; a++) {
        double rmse = sqrt(se[a] / matched), ref_rmse = sqrt(ref_se[a] / ref_n);
        cr_log_info("%s %c: RMSE %.4f px, reference %.4f px", rtd_pipe_analysis_name(an), "xy"[a],
                    rmse, ref_rmse);
        cr_expect_leq(rmse, 1.10 * ref_rmse, "%c RMSE %.4f vs reference %.4f", "xy"[a], rmse,
                      ref_rmse);
    }
    rtd_pipe_destroy(p);
    free(frames);
    free(truth);
}

Test(pipeline, static_reference_frames_find_every_ion_with_the_reference_accuracy)
{
    check_reference(RTD_PIPE_STATIC, 0, 15);
}

Test(pipeline, shm_reference_frames_find_every_ion_with_the_reference_accuracy)
{
    check_reference(RTD_PIPE_SHM, 15, 20);
}

/* ---- synthetic frames ------------------------------------------------------ */

static int run_synth(const struct synth_ion *truth, int nt, int noise, struct rtd_pipe_ion *ions,
                     struct rtd_pipe_config *cfg_in)
{
    static uint16_t img[FW * FH];
    synth(img, FW, FH, truth, nt, 10.0, noise);
    struct rtd_pipe_config cfg;
    if (cfg_in)
        cfg = *cfg_in;
    else
        rtd_pipe_config_default(&cfg, RTD_PIPE_STATIC);
    struct rtd_pipe *p;
    cr_assert_eq(rtd_pipe_create(&p, &cfg, FW, FH), 0);
    struct rtd_pipe_frame_stats st;
    int n = rtd_pipe_process(p, img, FW, FH, FW, 7, ions, 64, &st);
    rtd_pipe_destroy(p);
    return n;
}

Test(pipeline, ions_at_the_frame_edges_are_found_flagged_and_fitted)
{
    const struct synth_ion truth[] = {
        {2.0, 150.3, 100, 2.0},   /* left edge */
        {297.4, 60.6, 100, 2.0},  /* right edge */
        {120.2, 1.5, 100, 2.0},   /* top edge */
        {200.7, 297.8, 100, 2.0}, /* bottom edge */
        {1.6, 1.8, 120, 2.0},     /* corner */
        {150.0, 150.0, 100, 2.0}, /* one in the middle for comparison */
    };
    struct rtd_pipe_ion ions[64];
    int n = run_synth(truth, 6, 1, ions, NULL);
    cr_assert_eq(n, 6, "detections: %d", n);
    for (int t = 0; t < 6; t++) {
        int i = nearest(ions, n, truth[t].x, truth[t].y, 3.0);
        cr_assert_geq(i, 0, "ion at (%.1f, %.1f) not found", truth[t].x, truth[t].y);
        cr_expect_lt(hypot(ions[i].x - truth[t].x, ions[i].y - truth[t].y), 0.35,
                     "ion (%.1f, %.1f) fitted at (%.3f, %.3f)", truth[t].x, truth[t].y, ions[i].x,
                     ions[i].y);
        cr_expect_eq(ions[i].state, 0);
        if (t < 5)
            cr_expect(ions[i].flags & RTD_ION_EDGE, "edge ion %d not flagged", t);
        else
            cr_expect_not(ions[i].flags & RTD_ION_EDGE);
        cr_expect_geq(ions[i].roi_x0, 0);
        cr_expect_leq(ions[i].roi_x0, FW - 11);
        cr_expect_geq(ions[i].roi_y0, 0);
        cr_expect_leq(ions[i].roi_y0, FH - 11);
    }
}

Test(pipeline, overlapping_spots_are_both_found_and_deblended)
{
    /*
     * Pairs 6.5 and 7 px apart: each ion's centre lies inside the other's 11x11 ROI.
     * (Closer pairs merge in the blur, sigma_eff = 2.8 px, as in the reference pipeline.)
     */
    const struct synth_ion truth[] = {
        {100.3, 100.2, 100, 2.0},
        {106.8, 100.6, 90, 2.0},
        {200.1, 180.4, 110, 2.0},
        {204.3, 186.0, 100, 2.0},
    };
    struct rtd_pipe_ion ions[64];
    int n = run_synth(truth, 4, 0, ions, NULL);
    cr_assert_eq(n, 4, "detections: %d", n);
    for (int t = 0; t < 4; t++) {
        int i = nearest(ions, n, truth[t].x, truth[t].y, 2.5);
        cr_assert_geq(i, 0, "ion at (%.1f, %.1f) not found", truth[t].x, truth[t].y);
        cr_expect(ions[i].flags & RTD_ION_OVERLAP, "ion %d not flagged overlapping", t);
        /* Noise-free: only the neighbour's pull is left; de-blending removes most of it. */
        cr_expect_lt(hypot(ions[i].x - truth[t].x, ions[i].y - truth[t].y), 0.1,
                     "ion (%.1f, %.1f) fitted at (%.3f, %.3f)", truth[t].x, truth[t].y, ions[i].x,
                     ions[i].y);
    }
}

Test(pipeline, spots_closer_than_the_blur_resolves_are_split_from_the_residual)
{
    /* 5 px apart: one blurred peak; the single fit leaves a residual lobe that is split off. */
    const struct synth_ion truth[] = {{100.3, 100.2, 100, 2.0}, {105.3, 100.6, 90, 2.0}};
    struct rtd_pipe_ion ions[64];
    int n = run_synth(truth, 2, 0, ions, NULL);
    cr_assert_eq(n, 2, "detections: %d", n);
    for (int t = 0; t < 2; t++) {
        int i = nearest(ions, n, truth[t].x, truth[t].y, 1.0);
        cr_expect_geq(i, 0, "ion at (%.1f, %.1f) not found within 1 px", truth[t].x, truth[t].y);
    }
}

Test(pipeline, frames_without_ions_give_no_detections)
{
    struct rtd_pipe_ion ions[64];
    rng_state = 12345;
    for (int rep = 0; rep < 5; rep++)
        cr_expect_eq(run_synth(NULL, 0, 1, ions, NULL), 0, "noise-only frame %d", rep);
    cr_expect_eq(run_synth(NULL, 0, 0, ions, NULL), 0, "flat frame");

    static uint16_t zero[FW * FH], sat[FW * FH];
    for (size_t i = 0; i < FW * FH; i++)
        sat[i] = 65535;
    struct rtd_pipe_config cfg;
    rtd_pipe_config_default(&cfg, RTD_PIPE_STATIC);
    struct rtd_pipe *p;
    cr_assert_eq(rtd_pipe_create(&p, &cfg, FW, FH), 0);
    struct rtd_pipe_frame_stats st;
    cr_expect_eq(rtd_pipe_process(p, zero, FW, FH, FW, 0, ions, 64, &st), 0);
    cr_expect_eq(st.n_peaks, 0);
    cr_expect_eq(rtd_pipe_process(p, sat, FW, FH, FW, 1, ions, 64, &st), 0);
    rtd_pipe_destroy(p);
}

Test(pipeline, hot_pixels_are_not_ions)
{
    const struct synth_ion truth[] = {{150.4, 120.7, 100, 2.0}};
    static uint16_t img[FW * FH];
    synth(img, FW, FH, truth, 1, 10.0, 1);
    img[40 * FW + 40] = 65535;
    img[200 * FW + 77] = 4000;
    img[250 * FW + 260] = 900;
    img[251 * FW + 260] = 900; /* a hot pair */
    struct rtd_pipe_config cfg;
    rtd_pipe_config_default(&cfg, RTD_PIPE_STATIC);
    struct rtd_pipe *p;
    cr_assert_eq(rtd_pipe_create(&p, &cfg, FW, FH), 0);
    struct rtd_pipe_ion ions[64];
    struct rtd_pipe_frame_stats st;
    int n = rtd_pipe_process(p, img, FW, FH, FW, 0, ions, 64, &st);
    rtd_pipe_destroy(p);
    for (int i = 0; i < n; i++)
        cr_log_info("detection %d at (%.2f, %.2f) sigma %.2f amp %.1f", i, ions[i].x, ions[i].y,
                    ions[i].sigma, ions[i].amp);
    cr_assert_eq(n, 1, "detections: %d (peaks %u, rejected %u)", n, st.n_peaks, st.n_rejected);
    cr_expect_lt(hypot(ions[0].x - 150.4, ions[0].y - 120.7), 0.35);
}

Test(pipeline, the_analysis_window_limits_detection)
{
    const struct synth_ion truth[] = {{50.2, 50.4, 100, 2.0}, {250.6, 240.3, 100, 2.0}};
    struct rtd_pipe_config cfg;
    rtd_pipe_config_default(&cfg, RTD_PIPE_STATIC);
    cfg.xstart = 150;
    cfg.xfinish = 300;
    cfg.ystart = 150;
    cfg.yfinish = 300;
    struct rtd_pipe_ion ions[64];
    int n = run_synth(truth, 2, 1, ions, &cfg);
    cr_assert_eq(n, 1);
    cr_expect_lt(hypot(ions[0].x - 250.6, ions[0].y - 240.3), 0.35);
}

Test(pipeline, full_resolution_detection_agrees_with_binned)
{
    const struct synth_ion truth[] = {{60.2, 70.4, 100, 2.0}, {230.6, 140.3, 70, 1.9}};
    struct rtd_pipe_config cfg;
    rtd_pipe_config_default(&cfg, RTD_PIPE_STATIC);
    cfg.bin = 1;
    struct rtd_pipe_ion ions[64];
    int n = run_synth(truth, 2, 1, ions, &cfg);
    cr_assert_eq(n, 2);
    for (int t = 0; t < 2; t++) {
        int i = nearest(ions, n, truth[t].x, truth[t].y, 1.0);
        cr_expect_geq(i, 0);
    }
}

Test(pipeline, bad_configurations_and_geometry_are_rejected)
{
    struct rtd_pipe_config cfg;
    char why[128];
    rtd_pipe_config_default(&cfg, RTD_PIPE_STATIC);
    cfg.roi_w = 11;
    cfg.roi_h = 13;
    cr_expect_eq(rtd_pipe_config_check(&cfg, why, sizeof why), -EINVAL);
    cr_expect(strstr(why, "square") != NULL, "%s", why);
    rtd_pipe_config_default(&cfg, RTD_PIPE_STATIC);
    cfg.bin = 3;
    cr_expect_eq(rtd_pipe_config_check(&cfg, why, sizeof why), -EINVAL);
    rtd_pipe_config_default(&cfg, RTD_PIPE_STATIC);
    cfg.k = 0;
    cr_expect_eq(rtd_pipe_config_check(&cfg, why, sizeof why), -EINVAL);

    rtd_pipe_config_default(&cfg, RTD_PIPE_STATIC);
    struct rtd_pipe *p;
    cr_assert_eq(rtd_pipe_create(&p, &cfg, 64, 64), 0);
    uint16_t small[8 * 8] = {0};
    struct rtd_pipe_ion ions[4];
    cr_expect_eq(rtd_pipe_process(p, small, 8, 8, 8, 0, ions, 4, NULL), -EINVAL);
    cr_expect_eq(rtd_pipe_process(p, small, 8, 8, 4, 0, ions, 4, NULL), -EINVAL);
    /* A larger frame than the pipeline was created for grows its scratch. */
    static uint16_t big[600 * 400];
    for (size_t i = 0; i < 600 * 400; i++)
        big[i] = 110;
    cr_expect_eq(rtd_pipe_process(p, big, 600, 400, 600, 0, ions, 4, NULL), 0);
    rtd_pipe_destroy(p);
}
