/* SPDX-License-Identifier: MIT */
/*
 * `rtdaq stat` end to end: segments made here (a ring with a reliable and a
 * monitor consumer, a group, a stats segment with counters and a histogram)
 * must show up in the real binary's --json and text output.
 */
#include <criterion/criterion.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rtd_shm.h"

static char inst[32];

static void setup(void)
{
    snprintf(inst, sizeof inst, "stat%d", (int)getpid());
}

static void teardown(void)
{
    rtd_shm_cleanup(inst, 1);
}

TestSuite(stat, .init = setup, .fini = teardown);

/* Run rtdaq stat with args; returns the exit code and the output in buf. */
static int run_stat(const char *args, char *buf, size_t cap)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s/tools/rtdaq stat %s 2>&1", RTD_BIN_DIR, args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(buf, 1, cap - 1, p);
    buf[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(stat, an_empty_instance_exits_zero_and_says_so)
{
    static char out[4096];
    char args[64];
    snprintf(args, sizeof args, "--instance %s", inst);
    cr_assert_eq(run_stat(args, out, sizeof out), 0);
    cr_assert(strstr(out, "nothing"), "%s", out);
    snprintf(args, sizeof args, "--instance %s --json", inst);
    cr_assert_eq(run_stat(args, out, sizeof out), 0);
    json_error_t e;
    json_t *root = json_loads(out, 0, &e);
    cr_assert_not_null(root, "%s: %s", e.text, out);
    cr_assert_eq(json_array_size(json_object_get(root, "rings")), 0);
    json_decref(root);
}

Test(stat, bad_usage_exits_two)
{
    static char out[4096];
    cr_assert_eq(run_stat("--frobnicate", out, sizeof out), 2);
    cr_assert_eq(run_stat("--instance bad/name", out, sizeof out), 2);
}

Test(stat, json_shows_rings_consumers_groups_and_counters)
{
    struct rtd_ring_config cfg = {.kind = RTD_RING_FRAME,
                                  .slot_payload = 4096,
                                  .slot_count = 8,
                                  .overflow = RTD_OVERFLOW_DROP_NEWEST};
    struct rtd_ring *r;
    cr_assert_eq(rtd_ring_create(&r, inst, "frames", &cfg), 0);
    struct rtd_consumer *rel, *mon;
    cr_assert_eq(rtd_consumer_open(&rel, r, RTD_CONSUMER_RELIABLE, "writer"), 0);
    cr_assert_eq(rtd_consumer_open(&mon, r, RTD_CONSUMER_MONITOR, "preview"), 0);
    struct rtd_group *g;
    cr_assert_eq(rtd_group_join(&g, r, "fitters", "w0"), 0);
    struct rtd_frame f;
    for (int i = 0; i < 12; i++)
        if (rtd_frame_claim(r, &f) == 0)
            rtd_frame_publish(r, &f);
    struct rtd_stats *s;
    cr_assert_eq(rtd_stats_create(&s, inst, "acq", 16), 0);
    atomic_store(rtd_stats_counter(s, "packets.rx", RTD_COUNTER), 1234);
    struct rtd_hist *h = rtd_stats_hist(s, "latency.ns");
    for (int i = 0; i < 100; i++)
        rtd_hist_record(h, 5000);
    rtd_stats_set_status(s, "running");

    static char out[65536];
    char args[64];
    snprintf(args, sizeof args, "--instance %s --json", inst);
    cr_assert_eq(run_stat(args, out, sizeof out), 0);
    json_error_t e;
    json_t *root = json_loads(out, 0, &e);
    cr_assert_not_null(root, "%s: %s", e.text, out);
    json_t *rings = json_object_get(root, "rings");
    cr_assert_eq(json_array_size(rings), 1, "%s", out);
    json_t *ring = json_array_get(rings, 0);
    cr_assert_str_eq(json_string_value(json_object_get(ring, "name")), "frames");
    cr_assert_str_eq(json_string_value(json_object_get(ring, "kind")), "frame");
    cr_assert_str_eq(json_string_value(json_object_get(ring, "overflow")), "drop-newest");
    cr_assert_eq(json_integer_value(json_object_get(ring, "published")), 8);
    cr_assert_eq(json_integer_value(json_object_get(ring, "dropped")), 4);
    cr_assert(json_is_true(json_object_get(ring, "creator_alive")));
    json_t *cons = json_object_get(ring, "consumers");
    cr_assert_eq(json_array_size(cons), 3, "%s", out);
    json_t *c0 = json_array_get(cons, 0);
    cr_assert_str_eq(json_string_value(json_object_get(c0, "label")), "writer");
    cr_assert_str_eq(json_string_value(json_object_get(c0, "policy")), "reliable");
    cr_assert_eq(json_integer_value(json_object_get(c0, "lag")), 8);
    cr_assert(json_is_true(json_object_get(c0, "alive")));
    json_t *groups = json_object_get(ring, "groups");
    cr_assert_eq(json_array_size(groups), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(groups, 0), "label")),
                     "fitters");
    json_t *procs = json_object_get(root, "processes");
    cr_assert_eq(json_array_size(procs), 1);
    json_t *p = json_array_get(procs, 0);
    cr_assert_str_eq(json_string_value(json_object_get(p, "process")), "acq");
    cr_assert_str_eq(json_string_value(json_object_get(p, "status")), "running");
    json_t *ctr = json_array_get(json_object_get(p, "counters"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(ctr, "label")), "packets.rx");
    cr_assert_eq(json_integer_value(json_object_get(ctr, "value")), 1234);
    json_t *hist = json_array_get(json_object_get(p, "histograms"), 0);
    cr_assert_eq(json_integer_value(json_object_get(hist, "count")), 100);
    json_int_t p50 = json_integer_value(json_object_get(hist, "p50_ns"));
    cr_assert(p50 >= 4096 && p50 < 8192, "p50 %lld", (long long)p50);
    json_decref(root);

    /* The text form names the same things. */
    snprintf(args, sizeof args, "--instance %s", inst);
    cr_assert_eq(run_stat(args, out, sizeof out), 0);
    cr_assert(strstr(out, "ring frames") && strstr(out, "preview") && strstr(out, "packets.rx") &&
                  strstr(out, "group fitters"),
              "%s", out);

    rtd_group_leave(g);
    rtd_consumer_close(rel);
    rtd_consumer_close(mon);
    rtd_stats_close(s);
    rtd_ring_close(r);
}
