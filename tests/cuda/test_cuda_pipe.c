/* SPDX-License-Identifier: MIT */
/*
 * The GPU frame pipeline against the CPU one (proc/pipeline) on the reference
 * frames: same peaks, same background and threshold, same states, centres
 * within 1e-4 px for ions converged in both, for the static analysis (frames
 * 0-14) and the shm analysis (frames 15-19). Then the streaming API: all frames
 * submitted in batches must give the synchronous answers, in order, with the
 * batching delay inside the configured bound.
 * Exit 0 pass, 1 fail, 77 skip (no usable CUDA device: the reason is printed).
 */
#include "rtd_fit_cuda.h"
#include "rtd_pipeline.h"
#include "rtd_util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { W = 300, H = 300, NF = 20, MAXI = 256 };

static int fails;

static uint16_t *load_frames(void)
{
    static const char *const where[] = {"frames"};
    for (size_t i = 0; i < sizeof where / sizeof where[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s/frames_300_u16.bin", RTD_TEST_DATA, where[i]);
        void *buf;
        size_t len;
        if (rtd_read_file(path, &buf, &len) == 0) {
            if (len == (size_t)NF * W * H * sizeof(uint16_t))
                return buf;
            free(buf);
        }
    }
    return NULL;
}

struct tally {
    int frames, ions, matched, overlap, both, pos_bad, state_diff, det_diff;
    double max_d;
};

/*
 * The detection stage must agree exactly (same peaks, background, threshold).
 * Ions the CPU flags as overlapping are left out: the CPU pipeline de-blends
 * and splits blends in several passes, the GPU one refits once. Every other
 * CPU ion must have a GPU ion from the same peak with the same state and
 * edge/outside flags, and a centre within 2e-3 px when both converged (the
 * CPU pipeline fits with the SIMD kernels; proc/fit's own tolerance between
 * its kernels is 2e-3 px).
 */
static void compare_frame(const struct rtd_pipe_ion *a, int na,
                          const struct rtd_pipe_frame_stats *sa, const struct rtd_pipe_ion *b,
                          int nb, const struct rtd_pipe_frame_stats *sb, int f, struct tally *t)
{
    t->frames++;
    if (sa->n_peaks != sb->n_peaks || sa->background != sb->background ||
        sa->threshold != sb->threshold || sa->noise != sb->noise) {
        fprintf(stderr,
                "  frame %d: detection differs: cpu %u peaks bg %.6f thr %.6f, gpu %u "
                "peaks bg %.6f thr %.6f\n",
                f, sa->n_peaks, (double)sa->background, (double)sa->threshold, sb->n_peaks,
                (double)sb->background, (double)sb->threshold);
        t->det_diff++;
    }
    for (int i = 0; i < na; i++) {
        t->ions++;
        if (a[i].flags & RTD_ION_OVERLAP) {
            t->overlap++;
            continue;
        }
        int j = 0;
        while (j < nb && (b[j].peak_x != a[i].peak_x || b[j].peak_y != a[i].peak_y))
            j++;
        if (j == nb) {
            fprintf(stderr, "  frame %d ion %d: peak (%d,%d) not found on the GPU\n", f, i,
                    a[i].peak_x, a[i].peak_y);
            t->det_diff++;
            continue;
        }
        t->matched++;
        const int keep = RTD_ION_EDGE | RTD_ION_OUTSIDE;
        if (a[i].state != b[j].state || (a[i].flags & keep) != (b[j].flags & keep)) {
            fprintf(stderr, "  frame %d ion %d: state/flags cpu %d/%d gpu %d/%d\n", f, i,
                    a[i].state, a[i].flags, b[j].state, b[j].flags);
            t->state_diff++;
        }
        if (a[i].state || b[j].state)
            continue;
        t->both++;
        double d = fmax(fabs(a[i].x - b[j].x), fabs(a[i].y - b[j].y));
        t->max_d = fmax(t->max_d, d);
        if (d > 2e-3) {
            fprintf(stderr, "  frame %d ion %d: centre cpu (%.5f,%.5f) gpu (%.5f,%.5f)\n", f, i,
                    a[i].x, a[i].y, b[j].x, b[j].y);
            t->pos_bad++;
        }
    }
}

static void run_analysis(const uint16_t *frames, enum rtd_pipe_analysis an, int f0, int f1)
{
    struct rtd_pipe_config cfg;
    rtd_pipe_config_default(&cfg, an);
    struct rtd_pipe *cpu;
    struct rtd_cuda_pipe *gpu;
    if (rtd_pipe_create(&cpu, &cfg, W, H) < 0 || rtd_cuda_pipe_create(&gpu, &cfg, W, H, NULL) < 0) {
        fprintf(stderr, "FAIL: cannot create the pipelines\n");
        fails++;
        return;
    }
    static struct rtd_pipe_ion a[MAXI], b[MAXI];
    struct tally t = {0};
    for (int f = f0; f < f1; f++) {
        struct rtd_pipe_frame_stats sa, sb;
        const uint16_t *fr = frames + (size_t)f * W * H;
        int na = rtd_pipe_process(cpu, fr, W, H, W, (uint64_t)f, a, MAXI, &sa);
        int nb = rtd_cuda_pipe_process(gpu, fr, W, H, W, (uint64_t)f, b, MAXI, &sb);
        if (na < 0 || nb < 0) {
            fprintf(stderr, "FAIL frame %d: cpu %d gpu %d\n", f, na, nb);
            fails++;
            continue;
        }
        compare_frame(a, na, &sa, b, nb, &sb, f, &t);
    }
    printf("%-6s frames %d-%d: cpu %d ions (%d overlapping, left out), %d matched, %d converged "
           "in both, max |dcentre| %.2e px; detection differences %d, state/flag differences %d, "
           "centres > 2e-3 px %d\n",
           rtd_pipe_analysis_name(an), f0, f1 - 1, t.ions, t.overlap, t.matched, t.both, t.max_d,
           t.det_diff, t.state_diff, t.pos_bad);
    if (t.det_diff || t.state_diff || t.pos_bad || t.matched == 0)
        fails++;
    rtd_pipe_destroy(cpu);
    rtd_cuda_pipe_destroy(gpu);
}

/* Streaming: 20 static frames x 5 in batches of 8 with 3 in flight, against the sync answers. */
static void run_stream(const uint16_t *frames)
{
    struct rtd_pipe_config cfg;
    rtd_pipe_config_default(&cfg, RTD_PIPE_STATIC);
    struct rtd_cuda_pipe_opts o;
    rtd_cuda_pipe_opts_default(&o);
    o.batch_frames = 8;
    o.n_inflight = 3;
    o.max_wait_ns = 200000;
    struct rtd_cuda_pipe *ref, *s;
    if (rtd_cuda_pipe_create(&ref, &cfg, W, H, NULL) < 0 ||
        rtd_cuda_pipe_create(&s, &cfg, W, H, &o) < 0) {
        fprintf(stderr, "FAIL: cannot create the streaming pipelines\n");
        fails++;
        return;
    }
    static struct rtd_pipe_ion want[NF][MAXI], got[MAXI];
    int nwant[NF];
    for (int f = 0; f < NF; f++)
        nwant[f] = rtd_cuda_pipe_process(ref, frames + (size_t)f * W * H, W, H, W, (uint64_t)f,
                                         want[f], MAXI, NULL);
    const int total = 5 * NF;
    int submitted = 0, received = 0, bad = 0, order_bad = 0, eagain = 0;
    uint64_t max_wait = 0;
    while (received < total) {
        if (submitted < total) {
            int rc = rtd_cuda_pipe_submit(s, frames + (size_t)(submitted % NF) * W * H, W,
                                          (uint64_t)submitted);
            if (rc == 0)
                submitted++;
            else if (rc == -EAGAIN)
                eagain++;
            else {
                fprintf(stderr, "FAIL submit: %d\n", rc);
                fails++;
                break;
            }
        }
        struct rtd_cuda_frame_result res;
        int rc = rtd_cuda_pipe_poll(s, &res, got, MAXI, NULL, submitted == total);
        if (rc < 0) {
            fprintf(stderr, "FAIL poll: %d\n", rc);
            fails++;
            break;
        }
        if (rc == 0)
            continue;
        if (res.frame_id != (uint64_t)received)
            order_bad++;
        int f = (int)(res.frame_id % NF);
        if (res.n_ions != nwant[f] || memcmp(got, want[f], sizeof got[0] * (size_t)res.n_ions)) {
            /* frame ids differ by construction: compare the rest */
            for (int i = 0; i < res.n_ions && i < nwant[f]; i++) {
                struct rtd_pipe_ion x = got[i];
                x.frame = want[f][i].frame;
                if (memcmp(&x, &want[f][i], sizeof x))
                    bad++;
            }
            if (res.n_ions != nwant[f])
                bad++;
        }
        if (res.t_launch_ns - res.t_submit_ns > max_wait)
            max_wait = res.t_launch_ns - res.t_submit_ns;
        received++;
    }
    printf("stream: %d frames in batches of %d, %d differ from the synchronous results, %d out "
           "of order, %d EAGAIN, max batching wait %.1f us\n",
           received, o.batch_frames, bad, order_bad, eagain, (double)max_wait / 1e3);
    if (bad || order_bad || rtd_cuda_pipe_pending(s) != 0)
        fails++;
    rtd_cuda_pipe_destroy(ref);
    rtd_cuda_pipe_destroy(s);
}

int main(void)
{
    char why[256];
    if (!rtd_fit_cuda_available(why, sizeof why)) {
        printf("SKIP: no usable CUDA device: %s\n", why);
        return 77;
    }
    printf("device: %s\n", why);
    uint16_t *frames = load_frames();
    if (!frames) {
        fprintf(stderr, "FAIL: frames_300_u16.bin not found under %s\n", RTD_TEST_DATA);
        return 1;
    }
    run_analysis(frames, RTD_PIPE_STATIC, 0, 15);
    run_analysis(frames, RTD_PIPE_SHM, 15, 20);
    run_stream(frames);
    free(frames);
    if (fails)
        fprintf(stderr, "%d check(s) failed\n", fails);
    return fails ? 1 : 0;
}
