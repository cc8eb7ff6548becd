/* SPDX-License-Identifier: MIT */
/*
 * Topic "stats.<process>[.<worker>]": once per interval, every stats segment
 * of the instance becomes one JSON message with counters, per-second rates
 * over the interval, gauges, latency percentiles, busy %, liveness and the
 * rings the process created. Topic "stats.rings" carries every ring. The
 * segments are found by listing /dev/shm each interval, so processes that
 * start or stop later are picked up without configuration.
 *
 * Everything here reads shared memory written by other processes: counters
 * are relaxed snapshots, the status text is read under its seqlock, and a
 * segment whose creator died is reported with "alive": false until it is
 * removed.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_internal.h"
#include "rtd_shm.h"
#include "rtd_util.h"

/*
 * GCC refuses atomic_thread_fence under ThreadSanitizer. TSan cannot follow
 * another process anyway, and these fences only order accesses to memory
 * shared with other processes, so a TSan build uses an RMW on a private word
 * (x86 keeps the order either way).
 */
#if defined(__SANITIZE_THREAD__)
static _Atomic uint32_t stats_fence_word;
#define STATS_FENCE(order) ((void)atomic_fetch_add_explicit(&stats_fence_word, 0, order))
#else
#define STATS_FENCE(order) atomic_thread_fence(order)
#endif

#define MAX_PROCS 64
#define MAX_RINGS 64
#define MAX_SLOTS 512

struct prev_counter {
    char label[RTD_STATS_LABEL_MAX];
    uint64_t value;
};

struct prev_hist {
    char label[RTD_STATS_LABEL_MAX];
    uint64_t buckets[RTD_HIST_BUCKETS];
};

struct proc_entry {
    int used, seen;
    char name[64]; /* "acq", "proc.w0" */
    uint64_t created_mono_ns;
    uint64_t prev_ns;
    uint64_t seq; /* messages published on this process's topic */
    int n_counters, n_hists;
    struct prev_counter *counters;
    struct prev_hist *hists;
};

struct ring_entry {
    int used, seen;
    char name[64];
    struct rtd_ring *ring;
    uint64_t prev_ns, prev_records, prev_dropped;
};

struct ctl_stats_state {
    struct proc_entry procs[MAX_PROCS];
    struct ring_entry rings[MAX_RINGS];
    uint64_t rings_seq;
};

int ctl_stats_init(struct ctl *c)
{
    c->st = calloc(1, sizeof *c->st);
    return c->st ? 0 : -ENOMEM;
}

static void proc_clear(struct proc_entry *p)
{
    free(p->counters);
    free(p->hists);
    memset(p, 0, sizeof *p);
}

void ctl_stats_free(struct ctl *c)
{
    if (!c->st)
        return;
    for (int i = 0; i < MAX_PROCS; i++)
        proc_clear(&c->st->procs[i]);
    for (int i = 0; i < MAX_RINGS; i++)
        if (c->st->rings[i].ring)
            rtd_ring_close(c->st->rings[i].ring);
    free(c->st);
    c->st = NULL;
}

/* ---- rings ------------------------------------------------------------------ */

struct scan {
    struct ctl *c;
    char names[MAX_PROCS + MAX_RINGS][64];
    int is_stats[MAX_PROCS + MAX_RINGS];
    int n;
};

static void on_segment(const char *ring, void *arg)
{
    struct scan *s = arg;
    if (s->n >= MAX_PROCS + MAX_RINGS || strlen(ring) >= 64)
        return;
    if (!strcmp(ring, RTD_CTLBLOCK_RING))
        return;
    snprintf(s->names[s->n], 64, "%s", ring);
    s->is_stats[s->n] = !strncmp(ring, "stats.", 6);
    s->n++;
}

static uint64_t ring_capacity(const struct rtd_ring_hdr *h)
{
    return h->kind == RTD_RING_FRAME ? h->slot_count : h->data_bytes;
}

/* One ring as JSON: fill, rates, drops and each consumer with its lag. */
static json_t *ring_json(struct ring_entry *e, uint64_t now, int update)
{
    const struct rtd_ring_hdr *h = rtd_ring_header(e->ring);
    uint64_t pub = atomic_load_explicit(&h->published, memory_order_acquire);
    uint64_t recs = atomic_load_explicit(&h->published_records, memory_order_relaxed);
    uint64_t dropped = atomic_load_explicit(&h->dropped, memory_order_relaxed);
    uint64_t cap = ring_capacity(h);
    uint64_t min_cursor = pub;
    json_t *cons = json_array();
    for (int i = 0; i < RTD_MAX_CONSUMERS; i++) {
        const struct rtd_consumer_slot *cs = &h->consumers[i];
        uint32_t st = atomic_load_explicit(&cs->state, memory_order_acquire);
        if (st != RTD_CSLOT_ACTIVE)
            continue;
        uint64_t cur = atomic_load_explicit(&cs->cursor, memory_order_acquire);
        uint64_t hb = atomic_load_explicit(&cs->heartbeat_ns, memory_order_relaxed);
        int32_t pid = atomic_load_explicit(&cs->pid, memory_order_relaxed);
        uint64_t lag = pub > cur ? pub - cur : 0;
        if (cs->policy == RTD_CONSUMER_RELIABLE && cur < min_cursor)
            min_cursor = cur;
        char label[RTD_LABEL_MAX + 1];
        memcpy(label, cs->label, RTD_LABEL_MAX);
        label[RTD_LABEL_MAX] = 0;
        json_array_append_new(
            cons,
            json_pack(
                "{s:s, s:s, s:i, s:b, s:I, s:I, s:f, s:I, s:I, s:f, s:i}", "label", label, "policy",
                cs->policy == RTD_CONSUMER_MONITOR ? "monitor" : "reliable", "pid", (int)pid,
                "alive", pid == 0 || rtd_shm_pid_alive(pid), "cursor", (json_int_t)cur, "lag",
                (json_int_t)lag, "lag_fraction", cap ? (double)lag / (double)cap : 0.0, "lapped",
                (json_int_t)atomic_load_explicit(&cs->lapped, memory_order_relaxed), "consumed",
                (json_int_t)atomic_load_explicit(&cs->consumed, memory_order_relaxed),
                "heartbeat_age_s", hb && now > hb ? (double)(now - hb) / 1e9 : 0.0, "group",
                (int)cs->group));
    }
    uint64_t fill = pub - min_cursor;
    double dt = e->prev_ns ? (double)(now - e->prev_ns) / 1e9 : 0;
    json_t *o = json_pack(
        "{s:s, s:s, s:i, s:b, s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:o, s:o, s:o}", "name", e->name,
        "kind", h->kind == RTD_RING_FRAME ? "frame" : "packet", "producer_pid", (int)h->creator_pid,
        "alive",
        rtd_shm_pid_alive(h->creator_pid) &&
            atomic_load_explicit(&h->state, memory_order_relaxed) == RTD_STATE_READY,
        "capacity", (json_int_t)cap, "published", (json_int_t)pub, "records", (json_int_t)recs,
        "fill", cap ? (double)fill / (double)cap : 0.0, "dropped", (json_int_t)dropped, "full",
        (json_int_t)atomic_load_explicit(&h->full, memory_order_relaxed), "slot_payload",
        (json_int_t)h->slot_payload, "records_per_s",
        dt > 0 ? json_real((double)(recs - e->prev_records) / dt) : json_null(), "dropped_per_s",
        dt > 0 ? json_real((double)(dropped - e->prev_dropped) / dt) : json_null(), "consumers",
        cons);
    if (update) {
        e->prev_ns = now;
        e->prev_records = recs;
        e->prev_dropped = dropped;
    }
    return o;
}

/* Attach rings that appeared, detach rings that went away or whose creator died. */
static void rescan_rings(struct ctl *c, struct scan *s)
{
    struct ctl_stats_state *st = c->st;
    for (int i = 0; i < MAX_RINGS; i++)
        st->rings[i].seen = 0;
    for (int k = 0; k < s->n; k++) {
        if (s->is_stats[k])
            continue;
        struct ring_entry *e = NULL, *free_e = NULL;
        for (int i = 0; i < MAX_RINGS; i++) {
            if (st->rings[i].used && !strcmp(st->rings[i].name, s->names[k]))
                e = &st->rings[i];
            else if (!st->rings[i].used && !free_e)
                free_e = &st->rings[i];
        }
        if (e) {
            const struct rtd_ring_hdr *h = rtd_ring_header(e->ring);
            if (atomic_load_explicit(&h->state, memory_order_relaxed) == RTD_STATE_READY ||
                rtd_shm_pid_alive(h->creator_pid)) {
                e->seen = 1;
                continue;
            }
            rtd_ring_close(e->ring); /* replaced or closed: attach afresh below */
            memset(e, 0, sizeof *e);
            free_e = e;
        }
        if (!free_e)
            continue;
        struct rtd_ring *r;
        if (rtd_ring_attach(&r, c->instance, s->names[k]))
            continue; /* not ready yet, or not a ring: try again next interval */
        free_e->used = free_e->seen = 1;
        free_e->ring = r;
        snprintf(free_e->name, sizeof free_e->name, "%s", s->names[k]);
    }
    for (int i = 0; i < MAX_RINGS; i++)
        if (st->rings[i].used && !st->rings[i].seen) {
            rtd_ring_close(st->rings[i].ring);
            memset(&st->rings[i], 0, sizeof st->rings[i]);
        }
}

/* ---- processes -------------------------------------------------------------- */

struct walk {
    struct proc_entry *e;
    json_t *counters, *gauges, *rates, *latency;
    double dt;
    int idx;
    double busy_ns;
    int have_busy;
    struct prev_counter *next_c;
    struct prev_hist *next_h;
    int nc, nh;
};

static const struct prev_counter *find_prev_c(const struct proc_entry *e, int idx,
                                              const char *label)
{
    if (idx < e->n_counters && !strcmp(e->counters[idx].label, label))
        return &e->counters[idx];
    for (int i = 0; i < e->n_counters; i++)
        if (!strcmp(e->counters[i].label, label))
            return &e->counters[i];
    return NULL;
}

static void on_counter(const char *label, enum rtd_counter_kind kind, uint64_t value, void *arg)
{
    struct walk *w = arg;
    if (kind == RTD_GAUGE) {
        json_object_set_new(w->gauges, label, json_integer((json_int_t)value));
        return;
    }
    json_object_set_new(w->counters, label, json_integer((json_int_t)value));
    const struct prev_counter *p = find_prev_c(w->e, w->idx, label);
    uint64_t prev = p ? p->value : 0;
    double rate = w->dt > 0 && value >= prev ? (double)(value - prev) / w->dt : 0;
    json_object_set_new(w->rates, label, json_real(rate));
    size_t l = strlen(label);
    if (l >= 7 && !strcmp(label + l - 7, "busy_ns") && w->dt > 0) {
        w->busy_ns += value >= prev ? (double)(value - prev) : 0;
        w->have_busy = 1;
    }
    if (w->nc < MAX_SLOTS) {
        snprintf(w->next_c[w->nc].label, RTD_STATS_LABEL_MAX, "%s", label);
        w->next_c[w->nc].value = value;
        w->nc++;
    }
    w->idx++;
}

static uint64_t hist_max(const uint64_t *b)
{
    for (int i = RTD_HIST_BUCKETS - 1; i >= 0; i--)
        if (b[i])
            return i >= 63 ? UINT64_MAX : (2ull << i) - 1;
    return 0;
}

static void on_hist(const char *label, const uint64_t *buckets, void *arg)
{
    struct walk *w = arg;
    const uint64_t *prev = NULL;
    for (int i = 0; i < w->e->n_hists; i++)
        if (!strcmp(w->e->hists[i].label, label))
            prev = w->e->hists[i].buckets;
    uint64_t delta[RTD_HIST_BUCKETS], total = 0, dcount = 0;
    for (int i = 0; i < RTD_HIST_BUCKETS; i++) {
        uint64_t p = prev ? prev[i] : 0;
        delta[i] = buckets[i] >= p ? buckets[i] - p : 0;
        total += buckets[i];
        dcount += delta[i];
    }
    const uint64_t *use = dcount ? delta : buckets;
    json_object_set_new(w->latency, label,
                        json_pack("{s:I, s:I, s:s, s:I, s:I, s:I, s:I}", "count", (json_int_t)total,
                                  "interval_count", (json_int_t)dcount, "window",
                                  dcount ? "interval" : "all", "p50_ns",
                                  (json_int_t)rtd_hist_percentile(use, 0.5), "p99_ns",
                                  (json_int_t)rtd_hist_percentile(use, 0.99), "p999_ns",
                                  (json_int_t)rtd_hist_percentile(use, 0.999), "max_ns",
                                  (json_int_t)hist_max(use)));
    if (w->nh < MAX_SLOTS) {
        snprintf(w->next_h[w->nh].label, RTD_STATS_LABEL_MAX, "%s", label);
        memcpy(w->next_h[w->nh].buckets, buckets, sizeof delta);
        w->nh++;
    }
}

static void read_status(const struct rtd_stats_hdr *h, char *out, size_t cap)
{
    for (int tries = 0; tries < 100; tries++) {
        uint32_t s1 = atomic_load_explicit(&h->status_seq, memory_order_acquire);
        if (s1 & 1)
            continue;
        char tmp[RTD_STATUS_MAX];
        /* The text may change under us; the re-check below discards a torn copy. */
        memcpy(tmp, (const void *)h->status, sizeof tmp);
        STATS_FENCE(memory_order_acquire);
        if (atomic_load_explicit(&h->status_seq, memory_order_relaxed) == s1) {
            tmp[RTD_STATUS_MAX - 1] = 0;
            snprintf(out, cap, "%s", tmp);
            return;
        }
    }
    snprintf(out, cap, "?");
}

static struct proc_entry *proc_entry(struct ctl_stats_state *st, const char *name, uint64_t created)
{
    struct proc_entry *free_e = NULL;
    for (int i = 0; i < MAX_PROCS; i++) {
        struct proc_entry *e = &st->procs[i];
        if (e->used && !strcmp(e->name, name)) {
            if (e->created_mono_ns != created) { /* restarted: rates start afresh */
                proc_clear(e);
                free_e = e;
                break;
            }
            return e;
        }
        if (!e->used && !free_e)
            free_e = e;
    }
    if (!free_e)
        return NULL;
    free_e->used = 1;
    snprintf(free_e->name, sizeof free_e->name, "%s", name);
    free_e->created_mono_ns = created;
    return free_e;
}

/*
 * One process: build its message (update != 0 also moves the rate baselines,
 * which only the publisher does; `status` requests read without disturbing them).
 */
static json_t *process_json(struct ctl *c, const char *proc, int update, uint64_t now)
{
    struct rtd_stats_view *v;
    if (rtd_stats_open(&v, c->instance, proc))
        return NULL;
    const struct rtd_stats_hdr *h = rtd_stats_view_header(v);
    struct proc_entry *e = proc_entry(c->st, proc, h->created_mono_ns);
    if (!e) {
        rtd_stats_view_close(v);
        return NULL;
    }
    uint64_t base = e->prev_ns ? e->prev_ns : h->start_mono_ns;
    struct walk w = {e,
                     json_object(),
                     json_object(),
                     json_object(),
                     json_object(),
                     now > base ? (double)(now - base) / 1e9 : 0,
                     0,
                     0,
                     0,
                     calloc(MAX_SLOTS, sizeof(struct prev_counter)),
                     calloc(MAX_SLOTS, sizeof(struct prev_hist)),
                     0,
                     0};
    if (w.next_c && w.next_h) {
        rtd_stats_view_foreach(v, on_counter, &w);
        rtd_stats_view_foreach_hist(v, on_hist, &w);
    }
    char status[RTD_STATUS_MAX];
    read_status(h, status, sizeof status);
    uint64_t hb = atomic_load_explicit(&h->heartbeat_ns, memory_order_relaxed);
    const char *dot = strchr(proc, '.');
    char pname[64];
    snprintf(pname, sizeof pname, "%.*s", dot ? (int)(dot - proc) : (int)strlen(proc), proc);
    char topic[80];
    snprintf(topic, sizeof topic, "stats.%s", proc);
    json_t *o = json_pack(
        "{s:s, s:i, s:{s:i, s:i}, s:s, s:s, s:s, s:o, s:I, s:f, s:i, s:b, s:f, s:f, s:s, s:s}",
        "schema", "rtdaq.stats", "version", CTL_SCHEMA_VERSION, "abi", "major", h->abi_major,
        "minor", h->abi_minor, "instance", c->instance, "topic", topic, "process", pname, "worker",
        dot ? json_string(dot + 1) : json_null(), "time_ns", (json_int_t)rtd_realtime_ns(),
        "interval_s", w.dt, "pid", (int)h->pid, "alive", rtd_shm_pid_alive(h->pid), "uptime_s",
        now > h->start_mono_ns ? (double)(now - h->start_mono_ns) / 1e9 : 0.0, "heartbeat_age_s",
        hb && now > hb ? (double)(now - hb) / 1e9 : 0.0, "status", status, "current", status);
    json_object_set_new(o, "counters", w.counters);
    json_object_set_new(o, "rates", w.rates);
    json_object_set_new(o, "gauges", w.gauges);
    json_object_set_new(o, "latency", w.latency);
    json_object_set_new(o, "busy_pct",
                        w.have_busy && w.dt > 0 ? json_real(100.0 * w.busy_ns / (w.dt * 1e9))
                                                : json_null());
    json_t *rings = json_array();
    for (int i = 0; i < MAX_RINGS; i++) {
        struct ring_entry *re = &c->st->rings[i];
        if (re->used && rtd_ring_header(re->ring)->creator_pid == h->pid)
            json_array_append_new(rings, json_string(re->name));
    }
    json_object_set_new(o, "rings", rings);
    if (update && w.next_c && w.next_h) {
        free(e->counters);
        free(e->hists);
        e->counters = w.next_c;
        e->hists = w.next_h;
        e->n_counters = w.nc;
        e->n_hists = w.nh;
        e->prev_ns = now;
        json_object_set_new(o, "seq", json_integer((json_int_t)++e->seq));
    } else {
        free(w.next_c);
        free(w.next_h);
    }
    e->seen = 1;
    rtd_stats_view_close(v);
    return o;
}

void ctl_stats_publish(struct ctl *c, double interval_s)
{
    struct scan *s = calloc(1, sizeof *s);
    if (!s)
        return;
    s->c = c;
    rtd_shm_list(c->instance, on_segment, s);
    rescan_rings(c, s);
    uint64_t now = rtd_now_ns();
    for (int i = 0; i < MAX_PROCS; i++)
        c->st->procs[i].seen = 0;
    for (int k = 0; k < s->n; k++) {
        if (!s->is_stats[k])
            continue;
        json_t *o = process_json(c, s->names[k] + 6, 1, now);
        if (!o)
            continue;
        ctl_publish(c, json_string_value(json_object_get(o, "topic")), o, NULL, 0);
        json_decref(o);
    }
    /* Forget processes whose segment is gone. */
    for (int i = 0; i < MAX_PROCS; i++)
        if (c->st->procs[i].used && !c->st->procs[i].seen)
            proc_clear(&c->st->procs[i]);
    json_t *rings = json_array();
    for (int i = 0; i < MAX_RINGS; i++)
        if (c->st->rings[i].used)
            json_array_append_new(rings, ring_json(&c->st->rings[i], now, 1));
    json_t *m = json_pack("{s:s, s:i, s:s, s:s, s:I, s:I, s:f, s:o}", "schema", "rtdaq.rings",
                          "version", CTL_SCHEMA_VERSION, "instance", c->instance, "topic",
                          "stats.rings", "seq", (json_int_t)++c->st->rings_seq, "time_ns",
                          (json_int_t)rtd_realtime_ns(), "interval_s", interval_s, "rings", rings);
    ctl_publish(c, "stats.rings", m, NULL, 0);
    json_decref(m);
    free(s);
}

json_t *ctl_stats_overview(struct ctl *c)
{
    struct scan *s = calloc(1, sizeof *s);
    json_t *procs = json_array(), *rings = json_array();
    if (s) {
        rtd_shm_list(c->instance, on_segment, s);
        uint64_t now = rtd_now_ns();
        for (int k = 0; k < s->n; k++) {
            if (!s->is_stats[k])
                continue;
            json_t *o = process_json(c, s->names[k] + 6, 0, now);
            if (o)
                json_array_append_new(procs, o);
        }
        for (int i = 0; i < MAX_RINGS; i++)
            if (c->st->rings[i].used)
                json_array_append_new(rings, ring_json(&c->st->rings[i], now, 0));
        free(s);
    }
    return json_pack("{s:o, s:o}", "processes", procs, "rings", rings);
}
