/* SPDX-License-Identifier: MIT */
/*
 * `rtdaq stat [--instance NAME] [--json]`: every ring, consumer, group and
 * counter of an instance, read straight from the shared-memory segments (no
 * daemon involved, like Aeron's AeronStat). Segments are mapped read-only.
 * --json prints one JSON object: {"instance", "rings": [...], "processes":
 * [...], "errors": [...]}. Exit 0 (also when the instance has nothing), 2 on
 * bad usage.
 */
#include "rtdaq_cli.h"
#include "rtd_shm.h"
#include "rtd_util.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEGS 256

struct seg_list {
    char names[MAX_SEGS][RTD_RING_NAME_MAX + 1];
    int n;
};

static void collect(const char *ring, void *arg)
{
    struct seg_list *l = arg;
    if (l->n < MAX_SEGS)
        snprintf(l->names[l->n++], sizeof l->names[0], "%s", ring);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(a, b);
}

static const char *kind_name(uint32_t k)
{
    return k == RTD_RING_FRAME ? "frame" : k == RTD_RING_PACKET ? "packet" : "?";
}

static const char *overflow_name(uint32_t o)
{
    return o == RTD_OVERFLOW_BLOCK ? "block" : o == RTD_OVERFLOW_DROP_NEWEST ? "drop-newest" : "?";
}

static const char *policy_name(uint32_t p)
{
    return p == RTD_CONSUMER_RELIABLE ? "reliable" : p == RTD_CONSUMER_MONITOR ? "monitor" : "?";
}

static const char *cslot_state(uint32_t s)
{
    switch (s) {
    case RTD_CSLOT_ACTIVE:
        return "active";
    case RTD_CSLOT_DEAD:
        return "dead";
    case RTD_CSLOT_CLAIMING:
        return "opening";
    default:
        return "free";
    }
}

static double age_ms(uint64_t now, uint64_t then)
{
    return then && now > then ? (double)(now - then) / 1e6 : 0.0;
}

/* Snapshot of one ring, in JSON (the text output is printed from it too). */
static json_t *ring_json(const char *name, const struct rtd_ring_hdr *h, uint64_t now)
{
    json_t *o = json_object();
    uint64_t pub = atomic_load_explicit(&h->published, memory_order_acquire);
    uint64_t cap = h->kind == RTD_RING_FRAME ? h->slot_count : h->data_bytes;
    json_object_set_new(o, "name", json_string(name));
    json_object_set_new(o, "kind", json_string(kind_name(h->kind)));
    json_object_set_new(o, "overflow", json_string(overflow_name(h->overflow)));
    if (h->kind == RTD_RING_FRAME) {
        json_object_set_new(o, "slot_count", json_integer(h->slot_count));
        json_object_set_new(o, "slot_payload", json_integer(h->slot_payload));
    } else {
        json_object_set_new(o, "data_bytes", json_integer((json_int_t)h->data_bytes));
    }
    json_object_set_new(o, "seg_bytes", json_integer((json_int_t)h->seg_bytes));
    uint32_t state = atomic_load_explicit(&h->state, memory_order_acquire);
    json_object_set_new(o, "state", json_string(state == RTD_STATE_CLOSED ? "closed" : "ready"));
    json_object_set_new(o, "creator_pid", json_integer(h->creator_pid));
    json_object_set_new(o, "creator_alive", json_boolean(rtd_shm_pid_alive(h->creator_pid)));
    int32_t ppid = atomic_load_explicit(&h->producer_pid, memory_order_relaxed);
    json_object_set_new(o, "producer_pid", json_integer(ppid));
    json_object_set_new(o, "producer_alive", json_boolean(rtd_shm_pid_alive(ppid)));
    json_object_set_new(o, "published", json_integer((json_int_t)pub));
    json_object_set_new(o, "published_records",
                        json_integer((json_int_t)atomic_load_explicit(&h->published_records,
                                                                      memory_order_relaxed)));
    json_object_set_new(
        o, "dropped",
        json_integer((json_int_t)atomic_load_explicit(&h->dropped, memory_order_relaxed)));
    json_object_set_new(
        o, "full_events",
        json_integer((json_int_t)atomic_load_explicit(&h->full, memory_order_relaxed)));

    json_t *cons = json_array();
    uint64_t min = pub;
    for (int i = 0; i < RTD_MAX_CONSUMERS; i++) {
        const struct rtd_consumer_slot *s = &h->consumers[i];
        uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);
        if (st == RTD_CSLOT_FREE)
            continue;
        uint64_t cur = atomic_load_explicit(&s->cursor, memory_order_relaxed);
        int64_t lag = (int64_t)(pub - cur);
        if (lag < 0)
            lag = 0;
        if (st == RTD_CSLOT_ACTIVE && s->policy == RTD_CONSUMER_RELIABLE &&
            (int64_t)(cur - min) < 0)
            min = cur;
        int32_t pid = atomic_load_explicit(&s->pid, memory_order_relaxed);
        json_t *c = json_object();
        json_object_set_new(c, "index", json_integer(i));
        json_object_set_new(c, "label", json_stringn(s->label, strnlen(s->label, RTD_LABEL_MAX)));
        json_object_set_new(c, "policy", json_string(policy_name(s->policy)));
        json_object_set_new(c, "state", json_string(cslot_state(st)));
        if (s->group >= 0 && s->group < RTD_MAX_GROUPS) {
            json_object_set_new(c, "group", json_integer(s->group));
        } else {
            json_object_set_new(c, "pid", json_integer(pid));
            json_object_set_new(c, "alive", json_boolean(rtd_shm_pid_alive(pid)));
        }
        json_object_set_new(c, "cursor", json_integer((json_int_t)cur));
        json_object_set_new(c, "lag", json_integer(lag));
        json_object_set_new(
            c, "lapped",
            json_integer((json_int_t)atomic_load_explicit(&s->lapped, memory_order_relaxed)));
        json_object_set_new(
            c, "consumed",
            json_integer((json_int_t)atomic_load_explicit(&s->consumed, memory_order_relaxed)));
        json_object_set_new(
            c, "reregistered",
            json_integer((json_int_t)atomic_load_explicit(&s->reregistered, memory_order_relaxed)));
        json_object_set_new(
            c, "heartbeat_age_ms",
            json_real(age_ms(now, atomic_load_explicit(&s->heartbeat_ns, memory_order_relaxed))));
        json_array_append_new(cons, c);
    }
    uint64_t fill = pub - min;
    json_object_set_new(o, "fill", json_integer((json_int_t)fill));
    json_object_set_new(o, "fill_pct", json_real(cap ? 100.0 * (double)fill / (double)cap : 0));
    json_object_set_new(o, "consumers", cons);

    json_t *groups = json_array();
    for (int gi = 0; gi < RTD_MAX_GROUPS; gi++) {
        const struct rtd_group_slot *g = &h->groups[gi];
        if (atomic_load_explicit(&g->state, memory_order_acquire) != RTD_GROUP_ACTIVE)
            continue;
        json_t *go = json_object();
        json_object_set_new(go, "index", json_integer(gi));
        json_object_set_new(go, "label", json_stringn(g->label, strnlen(g->label, RTD_LABEL_MAX)));
        json_object_set_new(
            go, "next",
            json_integer((json_int_t)atomic_load_explicit(&g->next, memory_order_relaxed)));
        json_object_set_new(
            go, "lost_dead",
            json_integer((json_int_t)atomic_load_explicit(&g->lost_dead, memory_order_relaxed)));
        json_object_set_new(
            go, "adopted",
            json_integer((json_int_t)atomic_load_explicit(&g->adopted, memory_order_relaxed)));
        json_t *mem = json_array();
        for (int mi = 0; mi < RTD_GROUP_MAX_MEMBERS; mi++) {
            const struct rtd_group_member *m = &g->members[mi];
            if (atomic_load_explicit(&m->state, memory_order_acquire) == RTD_MEMBER_FREE)
                continue;
            int32_t pid = atomic_load_explicit(&m->pid, memory_order_relaxed);
            uint64_t hold = atomic_load_explicit(&m->holding, memory_order_relaxed);
            json_t *mo = json_object();
            json_object_set_new(mo, "label",
                                json_stringn(m->label, strnlen(m->label, sizeof m->label)));
            json_object_set_new(mo, "pid", json_integer(pid));
            json_object_set_new(mo, "alive", json_boolean(rtd_shm_pid_alive(pid)));
            json_object_set_new(mo, "holding",
                                hold == RTD_GROUP_NONE ? json_null()
                                                       : json_integer((json_int_t)hold));
            json_object_set_new(
                mo, "taken",
                json_integer((json_int_t)atomic_load_explicit(&m->taken, memory_order_relaxed)));
            json_object_set_new(mo, "heartbeat_age_ms",
                                json_real(age_ms(now, atomic_load_explicit(&m->heartbeat_ns,
                                                                           memory_order_relaxed))));
            json_array_append_new(mem, mo);
        }
        json_object_set_new(go, "members", mem);
        json_array_append_new(groups, go);
    }
    json_object_set_new(o, "groups", groups);
    return o;
}

static void on_counter(const char *label, enum rtd_counter_kind kind, uint64_t value, void *arg)
{
    json_t *c = json_object();
    json_object_set_new(c, "label", json_string(label));
    json_object_set_new(c, "kind", json_string(kind == RTD_GAUGE ? "gauge" : "counter"));
    json_object_set_new(c, "value", json_integer((json_int_t)value));
    json_array_append_new(arg, c);
}

static void on_hist(const char *label, const uint64_t *b, void *arg)
{
    uint64_t count = 0;
    int top = -1;
    for (int i = 0; i < RTD_HIST_BUCKETS; i++) {
        count += b[i];
        if (b[i])
            top = i;
    }
    json_t *h = json_object();
    json_object_set_new(h, "label", json_string(label));
    json_object_set_new(h, "count", json_integer((json_int_t)count));
    json_object_set_new(h, "p50_ns", json_integer((json_int_t)rtd_hist_percentile(b, 0.50)));
    json_object_set_new(h, "p99_ns", json_integer((json_int_t)rtd_hist_percentile(b, 0.99)));
    json_object_set_new(h, "p999_ns", json_integer((json_int_t)rtd_hist_percentile(b, 0.999)));
    /* Log2 buckets: the maximum is known to its bucket's upper bound. */
    json_object_set_new(h, "max_ns",
                        json_integer(top < 0     ? 0
                                     : top >= 62 ? INT64_MAX
                                                 : (json_int_t)(1ll << (top + 1))));
    json_array_append_new(arg, h);
}

static json_t *stats_json(const struct rtd_stats_view *v, uint64_t now)
{
    const struct rtd_stats_hdr *h = rtd_stats_view_header(v);
    json_t *o = json_object();
    json_object_set_new(o, "process",
                        json_stringn(h->process, strnlen(h->process, RTD_PROCESS_MAX)));
    json_object_set_new(o, "pid", json_integer(h->pid));
    json_object_set_new(o, "alive", json_boolean(rtd_shm_pid_alive(h->pid)));
    json_object_set_new(o, "uptime_s", json_real(age_ms(now, h->start_mono_ns) / 1e3));
    json_object_set_new(
        o, "heartbeat_age_ms",
        json_real(age_ms(now, atomic_load_explicit(&h->heartbeat_ns, memory_order_relaxed))));
    char status[RTD_STATUS_MAX];
    if (rtd_stats_view_status(v, status, sizeof status) != 0)
        snprintf(status, sizeof status, "(changing)");
    json_object_set_new(o, "status", json_string(status));
    json_t *counters = json_array();
    rtd_stats_view_foreach(v, on_counter, counters);
    json_object_set_new(o, "counters", counters);
    json_t *hists = json_array();
    rtd_stats_view_foreach_hist(v, on_hist, hists);
    json_object_set_new(o, "histograms", hists);
    return o;
}

/* An rtdaq segment that is neither a ring nor stats (e.g. ctl's control block): list it. */
static bool is_foreign(const char *instance, const char *name, json_t *others, uint64_t now)
{
    struct rtd_seg_hdr id;
    if (rtd_shm_identity(instance, name, &id) != 0 || id.magic == RTD_MAGIC_RING ||
        id.magic == RTD_MAGIC_STATS)
        return false;
    char tag[9];
    memcpy(tag, &id.magic, 8);
    tag[8] = 0;
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(name));
    json_object_set_new(o, "magic", json_string(tag));
    json_object_set_new(o, "seg_bytes", json_integer((json_int_t)id.seg_bytes));
    json_object_set_new(o, "creator_pid", json_integer(id.creator_pid));
    json_object_set_new(o, "creator_alive", json_boolean(rtd_shm_pid_alive(id.creator_pid)));
    json_object_set_new(o, "age_s", json_real(age_ms(now, id.created_mono_ns) / 1e3));
    json_array_append_new(others, o);
    return true;
}

static const char *attach_error(int rc)
{
    switch (rc) {
    case -EAGAIN:
        return "not ready (creator still initialising)";
    case -EPROTO:
        return "incompatible (bad magic or ABI major)";
    case -EBADMSG:
        return "truncated";
    default:
        return strerror(-rc);
    }
}

static const char *yn(json_t *b)
{
    return json_is_true(b) ? "alive" : "DEAD";
}

static long long ji(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static double jr(json_t *o, const char *k)
{
    return json_real_value(json_object_get(o, k));
}

static const char *js(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void print_text(json_t *root)
{
    printf("instance %s\n", js(root, "instance"));
    json_t *rings = json_object_get(root, "rings"), *procs = json_object_get(root, "processes");
    json_t *errs = json_object_get(root, "errors");
    if (!json_array_size(rings) && !json_array_size(procs) && !json_array_size(errs) &&
        !json_array_size(json_object_get(root, "other_segments"))) {
        printf("  nothing: no rings or stats segments for this instance in /dev/shm\n");
        return;
    }
    size_t i, j;
    json_t *r, *c;
    json_array_foreach(rings, i, r)
    {
        printf("\nring %s: %s, overflow %s, ", js(r, "name"), js(r, "kind"), js(r, "overflow"));
        if (!strcmp(js(r, "kind"), "frame"))
            printf("%lld slots x %lld B", ji(r, "slot_count"), ji(r, "slot_payload"));
        else
            printf("%lld B of records", ji(r, "data_bytes"));
        printf(", %s\n", js(r, "state"));
        printf("  creator pid %lld (%s), producer pid %lld (%s)\n", ji(r, "creator_pid"),
               yn(json_object_get(r, "creator_alive")), ji(r, "producer_pid"),
               yn(json_object_get(r, "producer_alive")));
        printf("  published %lld (%lld records), fill %lld (%.1f%%), dropped %lld, full %lld\n",
               ji(r, "published"), ji(r, "published_records"), ji(r, "fill"), jr(r, "fill_pct"),
               ji(r, "dropped"), ji(r, "full_events"));
        json_array_foreach(json_object_get(r, "consumers"), j, c)
        {
            printf("  consumer %-2lld %-20s %-8s %-7s", ji(c, "index"), js(c, "label"),
                   js(c, "policy"), js(c, "state"));
            if (json_object_get(c, "group"))
                printf(" group %-2lld       ", ji(c, "group"));
            else
                printf(" pid %-7lld %-5s", ji(c, "pid"), yn(json_object_get(c, "alive")));
            printf(" lag %-10lld lapped %-8lld consumed %-10lld heartbeat %.0f ms ago",
                   ji(c, "lag"), ji(c, "lapped"), ji(c, "consumed"), jr(c, "heartbeat_age_ms"));
            if (ji(c, "reregistered"))
                printf(" reregistered %lld", ji(c, "reregistered"));
            printf("\n");
        }
        json_t *g;
        json_array_foreach(json_object_get(r, "groups"), j, g)
        {
            printf("  group %s: next %lld, adopted %lld, lost_dead %lld\n", js(g, "label"),
                   ji(g, "next"), ji(g, "adopted"), ji(g, "lost_dead"));
            size_t k;
            json_t *m;
            json_array_foreach(json_object_get(g, "members"), k, m)
            {
                json_t *hold = json_object_get(m, "holding");
                printf("    member %-16s pid %-7lld %-5s taken %-10lld holding ", js(m, "label"),
                       ji(m, "pid"), yn(json_object_get(m, "alive")), ji(m, "taken"));
                if (json_is_null(hold))
                    printf("-\n");
                else
                    printf("%lld\n", (long long)json_integer_value(hold));
            }
        }
    }
    json_t *p;
    json_array_foreach(procs, i, p)
    {
        printf("\nprocess %s: pid %lld (%s), up %.1f s, heartbeat %.0f ms ago, status \"%s\"\n",
               js(p, "process"), ji(p, "pid"), yn(json_object_get(p, "alive")), jr(p, "uptime_s"),
               jr(p, "heartbeat_age_ms"), js(p, "status"));
        json_array_foreach(json_object_get(p, "counters"), j, c)
            printf("  %-40s %-7s %lld\n", js(c, "label"), js(c, "kind"), ji(c, "value"));
        json_array_foreach(json_object_get(p, "histograms"), j, c)
            printf("  %-40s n %lld  p50 %lld ns  p99 %lld ns  p99.9 %lld ns  max < %lld ns\n",
                   js(c, "label"), ji(c, "count"), ji(c, "p50_ns"), ji(c, "p99_ns"),
                   ji(c, "p999_ns"), ji(c, "max_ns"));
    }
    json_array_foreach(json_object_get(root, "other_segments"), i, p)
        printf("\nsegment %s: %s, %lld B, creator pid %lld (%s)\n", js(p, "name"), js(p, "magic"),
               ji(p, "seg_bytes"), ji(p, "creator_pid"), yn(json_object_get(p, "creator_alive")));
    json_array_foreach(errs, i, p) printf("\nsegment %s: %s\n", js(p, "segment"), js(p, "error"));
}

int rtd_cmd_stat(int argc, char **argv)
{
    static const struct option opts[] = {{"instance", required_argument, NULL, 'i'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *inst_arg = NULL;
    int json = 0, o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "i:jh", opts, NULL)) != -1) {
        switch (o) {
        case 'i':
            inst_arg = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            printf("usage: rtdaq stat [--instance NAME] [--json]\n");
            return RTD_EXIT_OK;
        default:
            fprintf(stderr, "usage: rtdaq stat [--instance NAME] [--json]\n");
            return RTD_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rtdaq stat: unexpected argument '%s'\n", argv[optind]);
        return RTD_EXIT_USAGE;
    }
    const char *instance = rtd_instance_name(inst_arg);
    char probe[128];
    if (rtd_shm_name(probe, sizeof probe, instance, "x") != 0) {
        fprintf(stderr, "rtdaq stat: bad instance name '%s'\n", instance);
        return RTD_EXIT_USAGE;
    }
    static struct seg_list segs;
    segs.n = 0;
    int rc = rtd_shm_list(instance, collect, &segs);
    if (rc < 0) {
        fprintf(stderr, "rtdaq stat: cannot list /dev/shm: %s\n", strerror(-rc));
        return RTD_EXIT_FAIL;
    }
    qsort(segs.names, (size_t)segs.n, sizeof segs.names[0], cmp_name);

    uint64_t now = rtd_now_ns();
    json_t *root = json_object(), *rings = json_array(), *procs = json_array(),
           *errs = json_array(), *others = json_array();
    json_object_set_new(root, "instance", json_string(instance));
    for (int i = 0; i < segs.n; i++) {
        const char *name = segs.names[i];
        int err;
        if (!strncmp(name, "stats.", 6)) {
            struct rtd_stats_view *v;
            err = rtd_stats_open(&v, instance, name + 6);
            if (!err) {
                json_array_append_new(procs, stats_json(v, now));
                rtd_stats_view_close(v);
            }
        } else if (is_foreign(instance, name, others, now)) {
            err = 0;
        } else {
            struct rtd_ring *r;
            err = rtd_ring_attach_readonly(&r, instance, name);
            if (!err) {
                json_array_append_new(rings, ring_json(name, rtd_ring_header(r), now));
                rtd_ring_close(r);
            }
        }
        if (err) {
            json_t *e = json_object();
            json_object_set_new(e, "segment", json_string(name));
            json_object_set_new(e, "error", json_string(attach_error(err)));
            json_array_append_new(errs, e);
        }
    }
    json_object_set_new(root, "rings", rings);
    json_object_set_new(root, "processes", procs);
    json_object_set_new(root, "other_segments", others);
    json_object_set_new(root, "errors", errs);
    if (json) {
        char *s = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(6));
        if (s)
            puts(s);
        free(s);
    } else {
        print_text(root);
    }
    json_decref(root);
    return RTD_EXIT_OK;
}
