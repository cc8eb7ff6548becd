/* SPDX-License-Identifier: MIT */
/*
 * Camera frames over UDP: `rtdaq sim frames` streams 256x256 u16 frames as
 * rtd_wire_frag datagrams to rtdaq-acq, this process reads the "frames" ring.
 * In order and out of order (fragments reversed) every frame arrives whole and
 * bit-exact; frames missing a fragment are dropped and counted (--partial drop)
 * or delivered flagged RTD_FRAME_PARTIAL (--partial deliver). Then the
 * synthetic camera: geometry and ground truth present, ids in sequence but for
 * jumps that frames.dropped accounts for; and acq stopped (SIGSTOP) for 300 ms
 * mid-run: the frames the camera would have exposed meanwhile are counted as
 * dropped, exactly as many as the ids jump.
 */
#include "acq_test.h"
#include "rtd_synth.h"
#include "rtd_wire.h"

#define W 256
#define H 256

struct got {
    uint64_t frames, partial, bad_pixels, bad_hdr;
    uint64_t last_id;
};

static void drain(struct rtd_consumer *c, struct got *g, const struct rtd_synth *ref,
                  uint64_t first_id)
{
    struct rtd_frame f;
    while (rtd_frame_peek(c, &f) == 0) {
        const struct rtd_frame_hdr *h = f.hdr;
        if (h->width != W || h->height != H || h->pixfmt != RTD_PIXFMT_MONO16 ||
            h->len != W * H * 2 || h->type != RTD_ACQ_FRAME_MONO16 || h->ts_real_ns == 0)
            g->bad_hdr++;
        if (h->flags & RTD_FRAME_PARTIAL)
            g->partial++;
        else if (memcmp(f.data, rtd_synth_frame(ref, h->frame_id - first_id), W * H * 2))
            g->bad_pixels++;
        g->last_id = h->frame_id;
        g->frames++;
        rtd_frame_release(c);
    }
}

static void stream(const char *inst, struct rtd_consumer *c, struct got *g,
                   const struct rtd_synth *ref, int fport, uint64_t first_id, char *extra,
                   char *extra_arg, uint64_t expect)
{
    char ps[16], fid[32];
    snprintf(ps, sizeof ps, "%d", fport);
    snprintf(fid, sizeof fid, "%llu", (unsigned long long)first_id);
    char *argv[] = {CLI_BIN, "sim",        "frames", "--width", "256",     "--height",
                    "256",   "--count",    "40",     "--rate",  "400",     "--port",
                    ps,      "--first-id", fid,      extra,     extra_arg, NULL};
    if (!extra)
        argv[15] = NULL;
    pid_t sim = t_spawn(argv, "/dev/null");
    for (;;) {
        drain(c, g, ref, first_id);
        if (waitpid(sim, NULL, WNOHANG) == sim)
            break;
        t_sleep_ms(1);
    }
    /* Polled, not timed: a loaded host may hold the last fragments (or, for a partial last
     * frame, the reassembly timeout) back for a while. A little extra catches surplus frames. */
    for (int i = 0; i < 600 && g->frames < expect; i++) {
        t_sleep_ms(10);
        drain(c, g, ref, first_id);
    }
    t_sleep_ms(50);
    drain(c, g, ref, first_id);
    (void)inst;
}

static pid_t start_acq(char *inst, int port, char *partial)
{
    char ps[16], fs[16];
    snprintf(ps, sizeof ps, "%d", 0);
    snprintf(fs, sizeof fs, "%d", port);
    char *argv[] = {ACQ_BIN, "--instance",    inst,  "--packet-port", ps,      "--frame-port",
                    fs,      "--source",      "udp", "--width",       "256",   "--height",
                    "256",   "--frame-slots", "64",  "--partial",     partial, "--frame-timeout-ms",
                    "1000",  "--duration",    "60",  "--quiet",       NULL};
    pid_t pid = t_spawn(argv, NULL);
    if (pid < 0 || t_wait_acq(inst, pid, 10000))
        exit(1);
    return pid;
}

static void stop_acq(pid_t pid)
{
    kill(pid, SIGTERM);
    CHECK(t_wait(pid, 10000) == 0, "rtdaq-acq did not stop cleanly");
}

int main(void)
{
    struct rtd_synth ref; /* the same bank the simulator renders */
    if (rtd_synth_init(&ref, W, H, 10, 16, 777))
        return 1;
    char inst[48];
    t_instance(inst, sizeof inst, "f");
    int fport = t_port(4);
    pid_t acq = start_acq(inst, fport, "drop");
    struct rtd_ring *ring;
    struct rtd_consumer *c;
    if (rtd_ring_attach(&ring, inst, "frames") ||
        rtd_consumer_open(&c, ring, RTD_CONSUMER_RELIABLE, "test"))
        return 1;
    struct got g = {0};
    stream(inst, c, &g, &ref, fport, 0, NULL, NULL, 40);
    CHECK(g.frames == 40 && g.bad_pixels == 0 && g.bad_hdr == 0,
          "in order: %llu frames, %llu bad pixels, %llu bad headers", (unsigned long long)g.frames,
          (unsigned long long)g.bad_pixels, (unsigned long long)g.bad_hdr);
    memset(&g, 0, sizeof g);
    stream(inst, c, &g, &ref, fport, 100, "--reorder", NULL, 40);
    CHECK(g.frames == 40 && g.bad_pixels == 0, "reversed fragments: %llu frames, %llu bad",
          (unsigned long long)g.frames, (unsigned long long)g.bad_pixels);
    memset(&g, 0, sizeof g);
    stream(inst, c, &g, &ref, fport, 200, "--drop-every", "4", 30);
    CHECK(g.frames == 30 && g.partial == 0 && g.bad_pixels == 0,
          "partial drop: %llu frames delivered (want 30), %llu partial",
          (unsigned long long)g.frames, (unsigned long long)g.partial);
    uint64_t part = t_counter_wait(inst, "frames.partial", 10, 5000);
    CHECK(part == 10, "frames.partial %llu, want 10", (unsigned long long)part);
    CHECK(t_counter(inst, "frames.dropped") == 10, "frames.dropped %llu",
          (unsigned long long)t_counter(inst, "frames.dropped"));
    CHECK(t_counter(inst, "frames.timeout") >= 1, "the last partial frame did not time out");
    CHECK(t_counter(inst, "frames.rx") == 110, "frames.rx %llu",
          (unsigned long long)t_counter(inst, "frames.rx"));
    rtd_consumer_close(c);
    rtd_ring_close(ring);
    stop_acq(acq);

    /* --partial deliver: the same stream, incomplete frames flagged. */
    t_instance(inst, sizeof inst, "g");
    acq = start_acq(inst, fport + 1, "deliver");
    if (rtd_ring_attach(&ring, inst, "frames") ||
        rtd_consumer_open(&c, ring, RTD_CONSUMER_RELIABLE, "test"))
        return 1;
    memset(&g, 0, sizeof g);
    stream(inst, c, &g, &ref, fport + 1, 0, "--drop-every", "4", 40);
    CHECK(g.frames == 40 && g.partial == 10 && g.bad_pixels == 0,
          "partial deliver: %llu frames, %llu flagged partial (want 40, 10)",
          (unsigned long long)g.frames, (unsigned long long)g.partial);
    rtd_consumer_close(c);
    rtd_ring_close(ring);
    stop_acq(acq);

    /* Synthetic camera straight into the ring. */
    t_instance(inst, sizeof inst, "s");
    char *sargv[] = {ACQ_BIN,     "--instance",       inst,   "--packet-port", "0",    "--source",
                     "synthetic", "--synthetic-rate", "2000", "--frames",      "1000", "--duration",
                     "60",        "--quiet",          NULL};
    acq = t_spawn(sargv, NULL);
    if (acq < 0 || t_wait_acq(inst, acq, 10000))
        return 1;
    if (rtd_ring_attach(&ring, inst, "frames") ||
        rtd_consumer_open(&c, ring, RTD_CONSUMER_RELIABLE, "test"))
        return 1;
    uint64_t n = 0, bad = 0, jumped = 0, prev = UINT64_MAX;
    for (int waited = 0; waited < 8000 && n < 1000;) {
        struct rtd_frame f;
        if (rtd_frame_peek(c, &f)) {
            t_sleep_ms(2);
            waited += 2;
            continue;
        }
        struct rtd_synth_truth t;
        memcpy(&t, f.data + 300 * 300 * 2, sizeof t);
        if (f.hdr->width != 300 || f.hdr->height != 300 || f.hdr->pixfmt != RTD_PIXFMT_MONO16 ||
            t.magic != RTD_SYNTH_TRUTH_MAGIC || t.n_ions != 10 ||
            (prev != UINT64_MAX && f.hdr->frame_id <= prev))
            bad++;
        /* A host stall of this process makes the camera skip (and count) frames. */
        if (prev != UINT64_MAX && f.hdr->frame_id > prev + 1)
            jumped += f.hdr->frame_id - prev - 1;
        prev = f.hdr->frame_id;
        n++;
        rtd_frame_release(c);
    }
    /* The consumer attached after the camera started: it sees the tail of the 1000. */
    uint64_t rx = t_counter_wait(inst, "frames.rx", 1000, 10000);
    CHECK(rx == 1000, "synthetic: frames.rx %llu, want 1000", (unsigned long long)rx);
    CHECK(n > 0 && bad == 0, "synthetic: %llu frames read, %llu bad", (unsigned long long)n,
          (unsigned long long)bad);
    CHECK(jumped <= t_counter(inst, "frames.dropped"), "synthetic: ids jump by %llu, dropped %llu",
          (unsigned long long)jumped, (unsigned long long)t_counter(inst, "frames.dropped"));
    rtd_consumer_close(c);
    rtd_ring_close(ring);
    stop_acq(acq);

    /*
     * The synthetic camera while acq is stopped for 300 ms: 600 frames at 2 kHz, of which its
     * buffer (186 frames: the 32 MiB of acq's UDP camera socket, in 300x300 frames) are
     * delivered late and the rest dropped. The camera stops after 1200 published frames, so
     * the counts settle; every frame id up to the last one was published or counted dropped
     * (in the stall, or for a full ring if this reader fell behind, as under TSan).
     */
    enum { STALL_FRAMES = 1200 };
    t_instance(inst, sizeof inst, "z");
    char *stall_argv[] = {
        ACQ_BIN,     "--instance",       inst,   "--packet-port", "0",    "--source",
        "synthetic", "--synthetic-rate", "2000", "--frames",      "1200", "--frame-slots",
        "1024",      "--duration",       "60",   "--quiet",       NULL};
    acq = t_spawn(stall_argv, NULL);
    if (acq < 0 || t_wait_acq(inst, acq, 10000))
        return 1;
    if (rtd_ring_attach(&ring, inst, "frames") ||
        rtd_consumer_open(&c, ring, RTD_CONSUMER_RELIABLE, "test"))
        return 1;
    uint64_t seen = 0, last_id = 0;
    int stopped = 0;
    for (int idle = 0; idle < 3000;) {
        struct rtd_frame f;
        if (rtd_frame_peek(c, &f) == 0) {
            last_id = f.hdr->frame_id;
            seen++;
            rtd_frame_release(c);
            idle = 0;
            continue;
        }
        if (!stopped && seen >= 200) {
            kill(acq, SIGSTOP);
            t_sleep_ms(300);
            kill(acq, SIGCONT);
            stopped = 1;
        }
        /* Done when the camera has published all its frames and this reader has the last. */
        if (stopped && t_counter(inst, "frames.rx") == STALL_FRAMES &&
            rtd_frame_peek(c, &f) == -EAGAIN)
            break;
        t_sleep_ms(1);
        idle++;
    }
    t_sleep_ms(250); /* acq's counters reach shared memory every 100 ms */
    uint64_t dropped = t_counter(inst, "frames.dropped");
    rx = t_counter(inst, "frames.rx");
    CHECK(stopped && rx == STALL_FRAMES && dropped >= 300,
          "stall: %llu frames published (want %d), %llu counted dropped after 300 ms stopped at "
          "2 kHz (want >= 300)",
          (unsigned long long)rx, STALL_FRAMES, (unsigned long long)dropped);
    CHECK(last_id + 1 == rx + dropped,
          "stall: frame ids 0..%llu = published %llu + dropped %llu, none unaccounted",
          (unsigned long long)last_id, (unsigned long long)rx, (unsigned long long)dropped);
    rtd_consumer_close(c);
    rtd_ring_close(ring);
    stop_acq(acq);
    rtd_synth_free(&ref);
    printf("%s\n", t_failures ? "FAIL" : "ok");
    return t_failures ? 1 : 0;
}
