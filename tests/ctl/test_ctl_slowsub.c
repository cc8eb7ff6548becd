/* SPDX-License-Identifier: MIT */
/*
 * A subscriber that never reads slows nothing: a producer publishes frames
 * into a ring that rtdaq-ctl forwards on topic "frames" to a stuck
 * subscriber. The producer keeps its rate and never finds the ring full (ctl
 * is a monitor), stats keep arriving on time at a second subscriber, and the
 * control socket keeps answering. With --pub-nodrop the publisher's dropped
 * counter rises instead.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "ctl_test.h"
#include "rtd_shm.h"

static atomic_int stop_flag;
static _Atomic uint64_t produced, refused;
static struct rtd_ring *ring;

/* RATE frames/s of 16 KiB for as long as the test runs. */
#define RATE (2000 / T_SLOW)
static void *producer(void *arg)
{
    uint64_t t0 = rtd_now_ns();
    while (!atomic_load(&stop_flag)) {
        uint64_t due = (rtd_now_ns() - t0) / (1000000000ull / RATE);
        while (atomic_load_explicit(&produced, memory_order_relaxed) < due) {
            struct rtd_frame f;
            if (rtd_frame_claim(ring, &f) != 0) {
                atomic_fetch_add(&refused, 1);
                break;
            }
            f.hdr->len = 16384;
            f.hdr->width = 128;
            f.hdr->height = 64;
            f.hdr->pixfmt = RTD_PIXFMT_MONO16;
            f.hdr->frame_id = atomic_load_explicit(&produced, memory_order_relaxed);
            memset(f.data, (int)(f.hdr->frame_id & 0xff), 64);
            rtd_frame_publish(ring, &f);
            atomic_fetch_add_explicit(&produced, 1, memory_order_relaxed);
        }
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return arg;
}

/* Run one ctl for `secs` with a stuck subscriber; returns 0 when every check held. */
static int phase(const char *inst, int port, int nodrop, uint64_t *dropped_out)
{
    struct t_ctl t = {0};
    void *ctx = zmq_ctx_new(), *stuck = NULL, *good = NULL;
    json_t *m = NULL, *r = NULL;
    int fails = t_failed;
    int rc = nodrop ? t_ctl_start(&t, inst, port, "--interval-ms", "200", "--frames-every", "1",
                                  "--sndhwm", "4", "--pub-nodrop", (char *)NULL)
                    : t_ctl_start(&t, inst, port, "--interval-ms", "200", "--frames-every", "1",
                                  "--sndhwm", "4", (char *)NULL);
    REQUIRE(rc == 0, "rtdaq-ctl did not start: %d", rc);
    stuck = zmq_socket(ctx, ZMQ_SUB);
    int one = 1, small = 4096, zero = 0;
    zmq_setsockopt(stuck, ZMQ_RCVHWM, &one, sizeof one);
    zmq_setsockopt(stuck, ZMQ_RCVBUF, &small, sizeof small);
    zmq_setsockopt(stuck, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(stuck, ZMQ_SUBSCRIBE, "", 0);
    zmq_connect(stuck, t.pub);
    good = t_sub(ctx, t.pub, "stats.ctl");
    uint64_t p0 = atomic_load(&produced), t0 = rtd_now_ns();
    int64_t prev_ns = 0;
    double worst_gap = 0;
    int n = 0;
    uint64_t worst_req = 0;
    while (rtd_now_ns() - t0 < (nodrop ? 1500000000ull : 2500000000ull)) {
        m = t_recv_topic(good, "stats.ctl", 300, NULL);
        if (m) {
            int64_t ts = json_integer_value(json_object_get(m, "time_ns"));
            if (prev_ns)
                worst_gap = fmax(worst_gap, (double)(ts - prev_ns) / 1e9);
            prev_ns = ts;
            n++;
            json_decref(m);
            m = NULL;
        }
        uint64_t q0 = rtd_now_ns();
        r = t_req(&t, "{\"cmd\":\"ping\"}");
        uint64_t q = rtd_now_ns() - q0;
        if (q > worst_req)
            worst_req = q;
        CHECK(t_ok(r), "ping while a subscriber is stuck");
        json_decref(r);
        r = NULL;
    }
    double secs = (double)(rtd_now_ns() - t0) / 1e9;
    double rate = (double)(atomic_load(&produced) - p0) / secs;
    r = t_req(&t, "{\"cmd\":\"status\"}");
    REQUIRE(t_ok(r), "status");
    json_t *ctl = json_object_get(r, "ctl");
    uint64_t dropped = (uint64_t)json_integer_value(json_object_get(ctl, "pub_dropped"));
    uint64_t msgs = (uint64_t)json_integer_value(json_object_get(ctl, "pub_msgs"));
    *dropped_out = dropped;
    printf("%s: producer %.0f frames/s (target %d), refused %llu; %d stats msgs, worst gap "
           "%.3f s; worst ping %.1f ms; published %llu, dropped %llu\n",
           nodrop ? "nodrop" : "default", rate, RATE, (unsigned long long)atomic_load(&refused), n,
           worst_gap, (double)worst_req / 1e6, (unsigned long long)msgs,
           (unsigned long long)dropped);
    CHECK(rate > 0.8 * RATE, "producer slowed to %.0f frames/s", rate);
    CHECK(atomic_load(&refused) == 0, "producer found the ring full");
    CHECK(worst_req < 500000000ull * T_SLOW, "control socket slow: %.1f ms",
          (double)worst_req / 1e6);
    if (!nodrop) {
        /* Lossy per subscriber: the good subscriber still gets every interval. */
        CHECK(n >= 8 / T_SLOW, "only %d stats messages in %.1f s", n, secs);
        CHECK(worst_gap < 0.45 * T_SLOW, "stats gap %.3f s for a 200 ms interval", worst_gap);
    }
    CHECK(t_ctl_stop(&t) == 0, "exit status");
out:
    json_decref(m);
    json_decref(r);
    t_ctl_stop(&t);
    if (stuck)
        zmq_close(stuck);
    if (good)
        zmq_close(good);
    zmq_ctx_term(ctx);
    return t_failed != fails;
}

int main(void)
{
    char inst[32];
    snprintf(inst, sizeof inst, "tslow%d", (int)getpid());
    struct rtd_ring_config cfg = {.kind = RTD_RING_FRAME,
                                  .slot_payload = 16384,
                                  .slot_count = 64,
                                  .overflow = RTD_OVERFLOW_DROP_NEWEST};
    int rc = rtd_ring_create(&ring, inst, "frames", &cfg);
    if (rc) {
        fprintf(stderr, "ring create: %d\n", rc);
        return 1;
    }
    pthread_t th;
    pthread_create(&th, NULL, producer, NULL);
    uint64_t d_default = 0, d_nodrop = 0;
    int port = t_port_base();
    phase(inst, port, 0, &d_default);
    phase(inst, port + 2, 1, &d_nodrop);
    CHECK(d_nodrop > 0, "--pub-nodrop counted no drops");
    atomic_store(&stop_flag, 1);
    pthread_join(th, NULL);
    rtd_ring_close(ring);
    printf("%s\n", t_failed ? "FAILED" : "ok");
    return t_failed ? 1 : 0;
}
