/* SPDX-License-Identifier: MIT */
/*
 * A subscriber receives stats within two intervals of rtdaq-ctl's start, with
 * every documented field, and the rates it reports match what a producer
 * (this test: its own stats segment, bumped from a thread at a known rate)
 * really did. Also: busy %, latency percentiles, ring gauges and consumer lag.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "ctl_test.h"
#include "rtd_shm.h"

static atomic_int stop_flag;
static _Atomic uint64_t *c_rx, *c_busy, *g_depth;
static struct rtd_hist *h_lat;

/* 200 events per ms (200 k/s) and 50 % busy, for as long as the test runs. */
static void *producer(void *arg)
{
    uint64_t t0 = rtd_now_ns(), done = 0;
    while (!atomic_load(&stop_flag)) {
        uint64_t now = rtd_now_ns();
        uint64_t want = (now - t0) / 1000000ull * 200;
        if (want > done) {
            atomic_fetch_add_explicit(c_rx, want - done, memory_order_relaxed);
            done = want;
        }
        atomic_store_explicit(c_busy, (now - t0) / 2, memory_order_relaxed);
        atomic_store_explicit(g_depth, 42, memory_order_relaxed);
        rtd_hist_record(h_lat, 3000); /* bucket [2048, 4096) */
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return arg;
}

static const char *fields[] = {"schema",   "version",  "abi",      "instance",        "topic",
                               "process",  "worker",   "seq",      "time_ns",         "interval_s",
                               "pid",      "alive",    "uptime_s", "heartbeat_age_s", "status",
                               "current",  "counters", "rates",    "gauges",          "latency",
                               "busy_pct", "rings"};

int main(void)
{
    char inst[32];
    snprintf(inst, sizeof inst, "tstat%d", (int)getpid());
    struct rtd_stats *st = NULL;
    struct rtd_ring *ring = NULL;
    struct rtd_consumer *lagger = NULL;
    struct t_ctl t = {0};
    void *ctx = zmq_ctx_new(), *sub = NULL;
    pthread_t th;
    int th_started = 0;
    json_t *m = NULL, *m2 = NULL;

    int rc = rtd_stats_create(&st, inst, "sim.w3", 32);
    REQUIRE(rc == 0, "stats create: %d", rc);
    c_rx = rtd_stats_counter(st, "packets.rx", RTD_COUNTER);
    c_busy = rtd_stats_counter(st, "busy_ns", RTD_COUNTER);
    g_depth = rtd_stats_counter(st, "queue.depth", RTD_GAUGE);
    h_lat = rtd_stats_hist(st, "latency.e2e");
    REQUIRE(c_rx && c_busy && g_depth && h_lat, "counters");
    rtd_stats_set_status(st, "frame 17");
    struct rtd_ring_config cfg = {.kind = RTD_RING_FRAME,
                                  .slot_payload = 4096,
                                  .slot_count = 16,
                                  .overflow = RTD_OVERFLOW_DROP_NEWEST};
    rc = rtd_ring_create(&ring, inst, "frames", &cfg);
    REQUIRE(rc == 0, "ring create: %d", rc);
    /* A reliable consumer that never reads: lag 5 of 16 after 5 frames. */
    rc = rtd_consumer_open(&lagger, ring, RTD_CONSUMER_RELIABLE, "lagger");
    REQUIRE(rc == 0, "consumer: %d", rc);
    for (int i = 0; i < 5; i++) {
        struct rtd_frame f;
        REQUIRE(rtd_frame_claim(ring, &f) == 0, "claim");
        f.hdr->len = 16;
        rtd_frame_publish(ring, &f);
    }
    pthread_create(&th, NULL, producer, NULL);
    th_started = 1;

    int port = t_port_base();
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    sub = t_sub(ctx, ep, "stats.");
    uint64_t t_start = rtd_now_ns();
    rc = t_ctl_start(&t, inst, port, "--interval-ms", "300", (char *)NULL);
    REQUIRE(rc == 0, "rtdaq-ctl did not start: %d", rc);

    /* Within two intervals of the start (plus start-up of the process). */
    m = t_recv_topic(sub, "stats.sim.w3", 2 * 300 + 400, NULL);
    REQUIRE(m, "no stats.sim.w3 message within two intervals");
    double first_s = (double)(rtd_now_ns() - t_start) / 1e9;
    printf("first stats.sim.w3 after %.3f s\n", first_s);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        CHECK(json_object_get(m, fields[i]), "field %s missing", fields[i]);
    CHECK(!strcmp(json_string_value(json_object_get(m, "process")), "sim"), "process");
    CHECK(!strcmp(json_string_value(json_object_get(m, "worker")), "w3"), "worker");
    CHECK(json_integer_value(json_object_get(m, "version")) == 1, "version");
    CHECK(json_integer_value(json_object_get(m, "pid")) == getpid(), "pid");
    CHECK(!strcmp(json_string_value(json_object_get(m, "status")), "frame 17"), "status");
    json_t *lat = json_object_get(json_object_get(m, "latency"), "latency.e2e");
    CHECK(lat, "latency.e2e missing");
    static const char *lf[] = {"count", "p50_ns", "p99_ns", "p999_ns", "max_ns"};
    for (int i = 0; i < 5; i++)
        CHECK(json_object_get(lat, lf[i]), "latency field %s", lf[i]);
    double p50 = (double)json_integer_value(json_object_get(lat, "p50_ns"));
    CHECK(p50 >= 2048 && p50 < 4096, "p50 %g not in the recorded bucket", p50);
    CHECK(json_integer_value(json_object_get(json_object_get(m, "gauges"), "queue.depth")) == 42,
          "gauge");
    json_t *rings = json_object_get(m, "rings");
    CHECK(json_array_size(rings) == 1 &&
              !strcmp(json_string_value(json_array_get(rings, 0)), "frames"),
          "the process's ring is listed");

    /* Rates: compare with the counter deltas between two later messages. */
    json_decref(m);
    m = t_recv_topic(sub, "stats.sim.w3", 1000, NULL);
    m2 = t_recv_topic(sub, "stats.sim.w3", 1000, NULL);
    REQUIRE(m && m2, "later messages");
    double v1 =
        (double)json_integer_value(json_object_get(json_object_get(m, "counters"), "packets.rx"));
    double v2 =
        (double)json_integer_value(json_object_get(json_object_get(m2, "counters"), "packets.rx"));
    double dt = (double)(json_integer_value(json_object_get(m2, "time_ns")) -
                         json_integer_value(json_object_get(m, "time_ns"))) /
                1e9;
    double rate = json_number_value(json_object_get(json_object_get(m2, "rates"), "packets.rx"));
    double interval = json_number_value(json_object_get(m2, "interval_s"));
    printf("rate reported %.0f/s, from deltas %.0f/s, nominal 200000/s, interval %.3f s\n", rate,
           (v2 - v1) / dt, interval);
    CHECK(interval > 0.2 && interval < 0.45, "interval_s %g for a 300 ms interval", interval);
    CHECK(fabs(rate - (v2 - v1) / dt) < 0.1 * rate, "reported rate %g vs deltas %g", rate,
          (v2 - v1) / dt);
    CHECK(rate > 0.6 * 200000 && rate < 1.1 * 200000, "rate %g vs nominal 200000", rate);
    double busy = json_number_value(json_object_get(m2, "busy_pct"));
    CHECK(busy > 35 && busy < 65, "busy_pct %g, expected ~50", busy);
    CHECK(json_integer_value(json_object_get(m2, "seq")) >
              json_integer_value(json_object_get(m, "seq")),
          "seq increases");

    /* Ring gauges on stats.rings. */
    json_decref(m);
    m = t_recv_topic(sub, "stats.rings", 1000, NULL);
    REQUIRE(m, "stats.rings");
    json_t *r0 = json_array_get(json_object_get(m, "rings"), 0);
    REQUIRE(r0, "a ring in stats.rings");
    CHECK(!strcmp(json_string_value(json_object_get(r0, "name")), "frames"), "ring name");
    CHECK(json_integer_value(json_object_get(r0, "published")) == 5, "published");
    CHECK(fabs(json_number_value(json_object_get(r0, "fill")) - 5.0 / 16) < 1e-9, "fill %g",
          json_number_value(json_object_get(r0, "fill")));
    json_t *cons = json_object_get(r0, "consumers");
    int found = 0;
    for (size_t i = 0; i < json_array_size(cons); i++) {
        json_t *c = json_array_get(cons, i);
        if (!strcmp(json_string_value(json_object_get(c, "label")), "lagger")) {
            found = 1;
            CHECK(json_integer_value(json_object_get(c, "lag")) == 5, "lag");
            CHECK(!strcmp(json_string_value(json_object_get(c, "policy")), "reliable"), "policy");
        }
    }
    CHECK(found, "consumer 'lagger' listed");
    CHECK(t_ctl_stop(&t) == 0, "rtdaq-ctl exit status");
out:
    json_decref(m);
    json_decref(m2);
    t_ctl_stop(&t);
    atomic_store(&stop_flag, 1);
    if (th_started)
        pthread_join(th, NULL);
    if (sub)
        zmq_close(sub);
    zmq_ctx_term(ctx);
    if (lagger)
        rtd_consumer_close(lagger);
    if (ring)
        rtd_ring_close(ring);
    if (st)
        rtd_stats_close(st);
    printf("%s\n", t_failed ? "FAILED" : "ok");
    return t_failed ? 1 : 0;
}
