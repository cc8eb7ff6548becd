/* SPDX-License-Identifier: MIT */
/*
 * The sampler: everything rtdaq-web knows about the running system, read from
 * shared memory the way `rtdaq stat` and ctl read it, never the hot path's way.
 *
 * - Stats segments ("stats.<process>") are mapped read-only and walked four
 *   times a second into one snapshot, rendered twice: the JSON of
 *   /api/v1/counters (and the page's stats message) and the Prometheus text of
 *   /metrics. Rates are over the last second; latency percentiles both since
 *   start and over the last 10 s (difference of histogram snapshots).
 * - While at least one page is connected, and only then: the "frames" ring is
 *   followed as a monitor (it never gates acq; a frame overwritten while we
 *   copied it is thrown away and counted), skipping to the newest frame when a
 *   page may take one; the results rings ("results.w<k>", "wavelet.w<k>") are
 *   drained as monitors into a table of recent frames' ions (every record is
 *   copied out, then validated), so a frame goes out with its own fits.
 *   Ions get stable ids by nearest-neighbour tracking; traces are sampled at
 *   50 Hz.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "rtd_results.h"
#include "rtd_shm.h"
#include "rtd_util.h"
#include "rtd_wire.h"
#include "web_internal.h"

#define MAX_VIEWS    32
#define MAX_RES      32
#define MAX_IONS     64
#define FTAB         1024 /* recent frames whose ions are kept (~100 ms at 10 kHz) */
#define MAX_TRACKS   64
#define HWIN         11 /* one histogram snapshot a second: a 10 s window */
#define MAX_HKEYS    32
#define TRACE_NS     20000000ull  /* a trace point every 20 ms */
#define STATS_NS     250000000ull /* snapshots and the page's stats message */
#define SCAN_NS      1000000000ull
#define FIT_WAIT_NS  150000000ull /* a frame waits this long for its fits, at most */
#define DRAIN_BUDGET 65536

struct cnt {
    char label[RTD_STATS_LABEL_MAX];
    int kind;
    uint64_t v;
};
struct hst {
    char label[RTD_STATS_LABEL_MAX];
    uint64_t b[RTD_HIST_BUCKETS];
};
struct psnap {
    char name[RTD_PROCESS_MAX];
    int32_t pid;
    int alive;
    char status[RTD_STATUS_MAX];
    double hb_age_s, cpu_pct;
    struct cnt *c;
    size_t n, cap;
    struct hst h[8];
    int nh;
};
struct view {
    int used, seen;
    char name[RTD_PROCESS_MAX];
    struct rtd_stats_view *v;
    uint64_t cpu_ticks, cpu_at_ns;
    double cpu_pct;
};
struct snap {
    uint64_t t_ns;
    struct psnap p[MAX_VIEWS];
    int np;
};
struct res_follow {
    int used, seen, wavelet;
    char name[RTD_RING_NAME_MAX + 1];
    struct rtd_ring *ring;
    struct rtd_consumer *cons;
    struct rtd_res_ion ion[MAX_IONS];
    int n;
    uint64_t ions_seq, lapped_seen;
};
struct ftab {
    uint64_t seq; /* UINT64_MAX: empty */
    struct rtd_res_frame fr;
    int n;
    struct rtd_res_ion ion[MAX_IONS];
};
struct track {
    int id;
    float x, y;
    uint64_t seen_ns;
};
struct hwin {
    char key[RTD_PROCESS_MAX + RTD_STATS_LABEL_MAX + 2];
    uint64_t b[HWIN][RTD_HIST_BUCKETS];
    uint64_t t[HWIN];
};

struct web_live {
    struct web *w;
    uint64_t next_scan_ns, next_snap_ns;
    struct view views[MAX_VIEWS];
    struct snap cur, prev; /* prev: at least 1 s older than cur, for rates */
    struct hwin hw[MAX_HKEYS];
    int nhw;
    uint64_t hw_sec;
    /* frames */
    struct rtd_ring *fring;
    struct rtd_consumer *fcons;
    uint64_t next_pos; /* position of the next frame the monitor reads (skip to the newest) */
    uint64_t flapped_seen;
    int pending;
    uint64_t p_seq, p_id, p_ts_real, p_copied_ns;
    uint32_t p_w, p_h, p_flags;
    uint16_t *pix;
    size_t pix_cap;
    struct rtd_synth_truth truth;
    int have_truth;
    uint8_t *msg[2]; /* the frame message in u16 and in u8 */
    size_t msg_cap[2];
    uint16_t *bin16;
    size_t bin_cap;
    uint32_t hist16[4096]; /* 16-ADU bins, for the u8 encoding's low percentile */
    /* results */
    struct res_follow res[MAX_RES];
    struct ftab *tab;
    struct track tracks[MAX_TRACKS];
    int ntracks, next_track;
    uint64_t last_trace_ns;
    json_t *traces, *wav;
    /* frames ring geometry for the snapshot (read-only attach, kept while it lives) */
    struct rtd_ring *fring_ro;
};

/* ---- stats segments ------------------------------------------------------------------------- */

static void on_seg(const char *ring, void *arg)
{
    struct web_live *l = arg;
    if (strncmp(ring, "stats.", 6))
        return;
    const char *proc = ring + 6;
    struct view *free_v = NULL;
    for (int i = 0; i < MAX_VIEWS; i++) {
        if (l->views[i].used && !strcmp(l->views[i].name, proc)) {
            l->views[i].seen = 1;
            return;
        }
        if (!l->views[i].used && !free_v)
            free_v = &l->views[i];
    }
    if (!free_v || strlen(proc) >= RTD_PROCESS_MAX)
        return;
    struct rtd_stats_view *v;
    if (rtd_stats_open(&v, l->w->o.instance, proc))
        return; /* not ready yet, or gone: next scan */
    memset(free_v, 0, sizeof *free_v);
    free_v->used = free_v->seen = 1;
    free_v->v = v;
    snprintf(free_v->name, sizeof free_v->name, "%s", proc);
}

static void on_ring(const char *ring, void *arg)
{
    struct web_live *l = arg;
    int wavelet = !strncmp(ring, "wavelet.", 8);
    if (strncmp(ring, "results.", 8) && !wavelet)
        return;
    struct res_follow *free_f = NULL;
    for (int i = 0; i < MAX_RES; i++) {
        if (l->res[i].used && !strcmp(l->res[i].name, ring)) {
            l->res[i].seen = 1;
            return;
        }
        if (!l->res[i].used && !free_f)
            free_f = &l->res[i];
    }
    if (!free_f || strlen(ring) > RTD_RING_NAME_MAX)
        return;
    struct rtd_ring *r;
    if (rtd_ring_attach(&r, l->w->o.instance, ring))
        return;
    struct rtd_consumer *c;
    if (rtd_consumer_open(&c, r, RTD_CONSUMER_MONITOR, "web")) {
        rtd_ring_close(r);
        return;
    }
    memset(free_f, 0, sizeof *free_f);
    free_f->used = free_f->seen = 1;
    free_f->wavelet = wavelet;
    free_f->ring = r;
    free_f->cons = c;
    snprintf(free_f->name, sizeof free_f->name, "%s", ring);
}

static void unfollow(struct res_follow *f)
{
    rtd_consumer_close(f->cons);
    rtd_ring_close(f->ring);
    memset(f, 0, sizeof *f);
}

static int ring_gone(struct rtd_ring *r)
{
    const struct rtd_ring_hdr *h = rtd_ring_header(r);
    return atomic_load_explicit(&h->state, memory_order_acquire) != RTD_STATE_READY ||
           !rtd_shm_pid_alive(h->creator_pid);
}

static void frames_close(struct web_live *l)
{
    if (l->fcons)
        rtd_consumer_close(l->fcons);
    if (l->fring)
        rtd_ring_close(l->fring);
    l->fcons = NULL;
    l->next_pos = 0;
    l->fring = NULL;
    l->pending = 0;
}

static void rescan(struct web_live *l)
{
    int watching = atomic_load_explicit(&l->w->ws_count, memory_order_relaxed) > 0;
    for (int i = 0; i < MAX_VIEWS; i++)
        l->views[i].seen = 0;
    for (int i = 0; i < MAX_RES; i++)
        l->res[i].seen = 0;
    rtd_shm_list(l->w->o.instance, on_seg, l);
    if (watching)
        rtd_shm_list(l->w->o.instance, on_ring, l);
    for (int i = 0; i < MAX_VIEWS; i++) {
        struct view *v = &l->views[i];
        if (!v->used)
            continue;
        const struct rtd_stats_hdr *h = rtd_stats_view_header(v->v);
        if (!v->seen || !rtd_shm_pid_alive(h->pid)) {
            rtd_stats_view_close(v->v);
            memset(v, 0, sizeof *v);
        }
    }
    for (int i = 0; i < MAX_RES; i++)
        if (l->res[i].used && (!watching || !l->res[i].seen || ring_gone(l->res[i].ring)))
            unfollow(&l->res[i]);
    if (l->fring && (!watching || ring_gone(l->fring)))
        frames_close(l);
    if (watching && !l->fring) {
        if (!rtd_ring_attach(&l->fring, l->w->o.instance, "frames")) {
            if (ring_gone(l->fring) ||
                rtd_consumer_open(&l->fcons, l->fring, RTD_CONSUMER_MONITOR, "web")) {
                rtd_ring_close(l->fring);
                l->fring = NULL;
                l->fcons = NULL;
            } else
                l->flapped_seen = rtd_consumer_lapped(l->fcons);
        } else
            l->fring = NULL;
    }
    if (l->fring_ro && ring_gone(l->fring_ro)) {
        rtd_ring_close(l->fring_ro);
        l->fring_ro = NULL;
    }
    if (!l->fring_ro && rtd_ring_attach_readonly(&l->fring_ro, l->w->o.instance, "frames"))
        l->fring_ro = NULL;
}

/* utime + stime of a process in clock ticks (/proc/<pid>/stat fields 14 and 15). */
static int proc_ticks(int32_t pid, uint64_t *ticks)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p)
        return -EINVAL;
    unsigned long long ut, st;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -EINVAL;
    *ticks = ut + st;
    return 0;
}

static void add_cnt(const char *label, enum rtd_counter_kind kind, uint64_t value, void *arg)
{
    struct psnap *p = arg;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        struct cnt *c = realloc(p->c, cap * sizeof *c);
        if (!c)
            return;
        p->c = c;
        p->cap = cap;
    }
    struct cnt *c = &p->c[p->n++];
    snprintf(c->label, sizeof c->label, "%s", label);
    c->kind = kind;
    c->v = value;
}

static void add_hist(const char *label, const uint64_t *b, void *arg)
{
    struct psnap *p = arg;
    if (p->nh >= (int)(sizeof p->h / sizeof p->h[0]))
        return;
    snprintf(p->h[p->nh].label, sizeof p->h[p->nh].label, "%s", label);
    memcpy(p->h[p->nh].b, b, sizeof p->h[p->nh].b);
    p->nh++;
}

static int find_c(const struct psnap *p, const char *label, uint64_t *v);

static void snap_take(struct web_live *l, struct snap *s, uint64_t now)
{
    s->t_ns = now;
    s->np = 0;
    long hz = sysconf(_SC_CLK_TCK);
    for (int i = 0; i < MAX_VIEWS; i++) {
        struct view *v = &l->views[i];
        if (!v->used)
            continue;
        struct psnap *p = &s->p[s->np++];
        const struct rtd_stats_hdr *h = rtd_stats_view_header(v->v);
        snprintf(p->name, sizeof p->name, "%s", v->name);
        p->pid = h->pid;
        p->alive = rtd_shm_pid_alive(h->pid);
        if (rtd_stats_view_status(v->v, p->status, sizeof p->status))
            p->status[0] = 0;
        uint64_t hb = atomic_load_explicit(&h->heartbeat_ns, memory_order_relaxed);
        p->hb_age_s = hb && now > hb ? (double)(now - hb) / 1e9 : 0;
        p->n = 0;
        p->nh = 0;
        rtd_stats_view_foreach(v->v, add_cnt, p);
        rtd_stats_view_foreach_hist(v->v, add_hist, p);
        /* A worker's segment is created by its supervisor: its own pid is the "pid" gauge. */
        uint64_t own;
        if (find_c(p, "pid", &own) && own > 0 && own < INT32_MAX && own != (uint64_t)p->pid) {
            p->pid = (int32_t)own;
            p->alive = rtd_shm_pid_alive(p->pid);
        }
        uint64_t t;
        if (!proc_ticks(p->pid, &t)) {
            if (v->cpu_at_ns && now > v->cpu_at_ns + 500000000ull) {
                v->cpu_pct = 100.0 * (double)(t - v->cpu_ticks) / (double)hz /
                             ((double)(now - v->cpu_at_ns) / 1e9);
                v->cpu_ticks = t;
                v->cpu_at_ns = now;
            } else if (!v->cpu_at_ns) {
                v->cpu_ticks = t;
                v->cpu_at_ns = now;
            }
        }
        p->cpu_pct = v->cpu_pct;
    }
}

static void snap_free(struct snap *s)
{
    for (int i = 0; i < MAX_VIEWS; i++)
        free(s->p[i].c);
    memset(s, 0, sizeof *s);
}

/* Deep copy (the counter arrays), so prev stays valid while cur is retaken. */
static void snap_copy(struct snap *dst, const struct snap *src)
{
    for (int i = 0; i < src->np; i++) {
        struct cnt *keep = dst->p[i].c;
        size_t keep_cap = dst->p[i].cap;
        dst->p[i] = src->p[i];
        dst->p[i].c = keep;
        dst->p[i].cap = keep_cap;
        if (keep_cap < src->p[i].n) {
            struct cnt *c = realloc(keep, src->p[i].n * sizeof *c);
            if (!c) {
                dst->p[i].n = 0;
                continue;
            }
            dst->p[i].c = c;
            dst->p[i].cap = src->p[i].n;
        }
        memcpy(dst->p[i].c, src->p[i].c, src->p[i].n * sizeof *src->p[i].c);
    }
    dst->np = src->np;
    dst->t_ns = src->t_ns;
}

static const struct psnap *find_p(const struct snap *s, const char *name)
{
    for (int i = 0; i < s->np; i++)
        if (!strcmp(s->p[i].name, name))
            return &s->p[i];
    return NULL;
}

static int find_c(const struct psnap *p, const char *label, uint64_t *v)
{
    if (!p)
        return 0;
    for (size_t i = 0; i < p->n; i++)
        if (!strcmp(p->c[i].label, label)) {
            *v = p->c[i].v;
            return 1;
        }
    return 0;
}

static uint64_t get_c(const struct snap *s, const char *proc, const char *label)
{
    uint64_t v = 0;
    find_c(find_p(s, proc), label, &v);
    return v;
}

/* Sum of a counter over every process whose name starts with prefix ("proc.w"). */
static uint64_t sum_c(const struct snap *s, const char *prefix, const char *label)
{
    uint64_t t = 0, v;
    for (int i = 0; i < s->np; i++)
        if (!strncmp(s->p[i].name, prefix, strlen(prefix)) && find_c(&s->p[i], label, &v))
            t += v;
    return t;
}

/* The 10 s window of a histogram: current buckets minus those of the oldest snapshot kept. */
static void hist_window(struct web_live *l, const char *proc, const struct hst *h, uint64_t now,
                        uint64_t *out)
{
    char key[sizeof l->hw[0].key];
    snprintf(key, sizeof key, "%s/%s", proc, h->label);
    struct hwin *hw = NULL;
    for (int i = 0; i < l->nhw; i++)
        if (!strcmp(l->hw[i].key, key))
            hw = &l->hw[i];
    if (!hw && l->nhw < MAX_HKEYS) {
        hw = &l->hw[l->nhw++];
        memset(hw, 0, sizeof *hw);
        snprintf(hw->key, sizeof hw->key, "%s", key);
    }
    memcpy(out, h->b, sizeof h->b);
    if (!hw)
        return;
    uint64_t sec = now / 1000000000ull;
    int slot = (int)(sec % HWIN);
    if (hw->t[slot] != sec) {
        memcpy(hw->b[slot], h->b, sizeof h->b);
        hw->t[slot] = sec;
    }
    /* Oldest snapshot within the window (up to 10 s old). */
    int best = -1;
    for (int i = 0; i < HWIN; i++)
        if (hw->t[i] && hw->t[i] + HWIN - 1 >= sec && (best < 0 || hw->t[i] < hw->t[best]))
            best = i;
    if (best < 0 || hw->t[best] == sec)
        return;
    for (int k = 0; k < RTD_HIST_BUCKETS; k++)
        out[k] = h->b[k] >= hw->b[best][k] ? h->b[k] - hw->b[best][k] : 0;
}

static uint64_t hist_count(const uint64_t *b)
{
    uint64_t n = 0;
    for (int k = 0; k < RTD_HIST_BUCKETS; k++)
        n += b[k];
    return n;
}

static json_t *hist_json(const uint64_t *b)
{
    return json_pack("{s:I, s:f, s:f, s:f}", "count", (json_int_t)hist_count(b), "p50_us",
                     (double)rtd_hist_percentile(b, 0.5) / 1e3, "p99_us",
                     (double)rtd_hist_percentile(b, 0.99) / 1e3, "p999_us",
                     (double)rtd_hist_percentile(b, 0.999) / 1e3);
}

/* Fill of the frames ring: frames published that the slowest reliable cursor has not consumed. */
static json_t *frames_ring_json(struct web_live *l)
{
    if (!l->fring_ro)
        return json_null();
    const struct rtd_ring_hdr *h = rtd_ring_header(l->fring_ro);
    uint64_t pub = atomic_load_explicit(&h->published, memory_order_acquire);
    uint64_t fill = 0, lost = 0;
    for (int i = 0; i < RTD_MAX_CONSUMERS; i++) {
        const struct rtd_consumer_slot *c = &h->consumers[i];
        if (atomic_load_explicit(&c->state, memory_order_acquire) != RTD_CSLOT_ACTIVE ||
            c->policy != RTD_CONSUMER_RELIABLE)
            continue;
        uint64_t cur = atomic_load_explicit(&c->cursor, memory_order_relaxed);
        if (pub >= cur && pub - cur > fill)
            fill = pub - cur;
    }
    for (int g = 0; g < RTD_MAX_GROUPS; g++)
        if (atomic_load_explicit(&h->groups[g].state, memory_order_relaxed) == RTD_GROUP_ACTIVE)
            lost += atomic_load_explicit(&h->groups[g].lost_dead, memory_order_relaxed);
    return json_pack("{s:I, s:I, s:I, s:I, s:f, s:I}", "published",
                     (json_int_t)atomic_load_explicit(&h->published_records, memory_order_relaxed),
                     "dropped", (json_int_t)atomic_load_explicit(&h->dropped, memory_order_relaxed),
                     "slots", (json_int_t)h->slot_count, "fill", (json_int_t)fill, "fill_ratio",
                     h->slot_count ? (double)fill / h->slot_count : 0.0, "lost_dead",
                     (json_int_t)lost);
}

static int is_client_label(const char *label)
{
    return !strncmp(label, "client.", 7);
}

/* The JSON of /api/v1/counters (full) or of the page's stats message (without per-client). */
static json_t *counters_json(struct web_live *l, int full)
{
    const struct snap *s = &l->cur, *p0 = &l->prev;
    double dt = p0->t_ns && s->t_ns > p0->t_ns ? (double)(s->t_ns - p0->t_ns) / 1e9 : 0;
    json_t *procs = json_array();
    for (int i = 0; i < s->np; i++) {
        const struct psnap *p = &s->p[i];
        const struct psnap *q = find_p(p0, p->name);
        json_t *cs = json_object(), *rs = json_object(), *hs = json_object();
        size_t clients = 0;
        for (size_t k = 0; k < p->n; k++) {
            const struct cnt *c = &p->c[k];
            if (is_client_label(c->label)) {
                clients++;
                if (!full)
                    continue;
            }
            json_object_set_new(cs, c->label, json_integer((json_int_t)c->v));
            uint64_t pv;
            if (c->kind == RTD_COUNTER && dt > 0 && find_c(q, c->label, &pv) && c->v >= pv &&
                !is_client_label(c->label))
                json_object_set_new(rs, c->label, json_real((double)(c->v - pv) / dt));
        }
        for (int k = 0; k < p->nh; k++) {
            uint64_t win[RTD_HIST_BUCKETS];
            hist_window(l, p->name, &p->h[k], s->t_ns, win);
            json_t *hj = hist_json(p->h[k].b);
            json_object_set_new(hj, "window_10s", hist_json(win));
            json_object_set_new(hs, p->h[k].label, hj);
        }
        json_array_append_new(procs,
                              json_pack("{s:s, s:i, s:b, s:s, s:f, s:f, s:o, s:o, s:o, s:I}",
                                        "process", p->name, "pid", (int)p->pid, "alive", p->alive,
                                        "status", p->status, "heartbeat_age_s", p->hb_age_s,
                                        "cpu_percent", p->cpu_pct, "counters", cs, "rates", rs,
                                        "latency", hs, "client_counters", (json_int_t)clients));
    }
    /* The accounting of docs/operate.md, from the same counters `rtdaq stat` shows. */
    uint64_t processed = sum_c(s, "proc.w", "frames.processed");
    /* acq's frames.dropped is every frame lost before the ring; ring.frames_dropped is the
     * part a full ring refused; frames the rate limit skipped are counted apart. */
    uint64_t d_all = get_c(s, "acq", "frames.dropped");
    uint64_t d_ring = get_c(s, "acq", "ring.frames_dropped");
    uint64_t d_rate = get_c(s, "acq", "frames.rate_limited");
    json_t *frames =
        json_pack("{s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I}, s:o}", "received",
                  (json_int_t)get_c(s, "acq", "frames.rx"), "processed", (json_int_t)processed,
                  "dropped", "total", (json_int_t)(d_all + d_rate), "ring_full", (json_int_t)d_ring,
                  "camera_skip", (json_int_t)(d_all >= d_ring ? d_all - d_ring : 0), "rate_limit",
                  (json_int_t)d_rate, "incomplete_timeout",
                  (json_int_t)get_c(s, "acq", "frames.timeout"), "ring", frames_ring_json(l));
    json_t *rates = json_object();
    if (dt > 0) {
        const char *rk[][3] = {{"frames_per_s", "acq", "frames.rx"},
                               {"packets_per_s", "acq", "packets.rx"}};
        for (size_t k = 0; k < sizeof rk / sizeof rk[0]; k++) {
            uint64_t a = get_c(s, rk[k][1], rk[k][2]), b = get_c(p0, rk[k][1], rk[k][2]);
            json_object_set_new(rates, rk[k][0], json_real(a >= b ? (double)(a - b) / dt : 0));
        }
        uint64_t pa = processed, pb = sum_c(p0, "proc.w", "frames.processed");
        uint64_t fa = sum_c(s, "proc.w", "fits.converged"),
                 fb = sum_c(p0, "proc.w", "fits.converged");
        json_object_set_new(rates, "processed_per_s",
                            json_real(pa >= pb ? (double)(pa - pb) / dt : 0));
        json_object_set_new(rates, "fits_per_s", json_real(fa >= fb ? (double)(fa - fb) / dt : 0));
    }
    json_t *rec =
        json_pack("{s:I, s:I, s:I}", "records", (json_int_t)get_c(s, "acq", "record.records"),
                  "dropped", (json_int_t)get_c(s, "acq", "record.dropped"), "bytes",
                  (json_int_t)get_c(s, "acq", "record.bytes"));
    return json_pack("{s:b, s:s, s:I, s:o, s:o, s:o, s:o}", "ok", 1, "instance", l->w->o.instance,
                     "time_ns", (json_int_t)rtd_realtime_ns(), "frames", frames, "rates", rates,
                     "recording", rec, "processes", procs);
}

/* ---- Prometheus text exposition ------------------------------------------------------------- */

struct mline {
    char name[160];
    char labels[200];
    int type; /* 0 counter, 1 gauge */
    double v;
};

static void metric_name(char *out, size_t cap, const char *prefix, const char *label,
                        const char *suffix)
{
    size_t o = (size_t)snprintf(out, cap, "rtdaq_%s_", prefix);
    for (const char *p = label; *p && o + 1 < cap; p++)
        out[o++] =
            (char)((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')
                       ? *p
                       : '_');
    out[o < cap ? o : cap - 1] = 0;
    snprintf(out + strlen(out), cap - strlen(out), "%s", suffix);
}

static int mline_cmp(const void *a, const void *b)
{
    return strcmp(((const struct mline *)a)->name, ((const struct mline *)b)->name);
}

struct mbuf {
    char *s;
    size_t len, cap;
};

static void mprintf(struct mbuf *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mprintf(struct mbuf *m, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(m->s ? m->s + m->len : NULL, m->s ? m->cap - m->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (m->s && m->len + (size_t)n < m->cap) {
            m->len += (size_t)n;
            return;
        }
        size_t cap = m->cap ? m->cap * 2 : 65536;
        while (cap < m->len + (size_t)n + 1)
            cap *= 2;
        char *s = realloc(m->s, cap);
        if (!s)
            return;
        m->s = s;
        m->cap = cap;
    }
}

/* "proc.w0" -> prefix "proc", labels process="proc.w0",worker="w0"; "acq" -> "acq". */
static void split_process(const char *name, char *prefix, size_t pcap, char *labels, size_t lcap)
{
    const char *dot = strchr(name, '.');
    size_t n = dot ? (size_t)(dot - name) : strlen(name);
    snprintf(prefix, pcap, "%.*s", (int)n, name);
    for (char *p = prefix; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
            *p = '_';
    if (dot)
        snprintf(labels, lcap, "process=\"%s\",worker=\"%s\"", name, dot + 1);
    else
        snprintf(labels, lcap, "process=\"%s\"", name);
}

static char *metrics_text(struct web_live *l, size_t *len)
{
    const struct snap *s = &l->cur;
    size_t n = 0, cap = 256;
    struct mline *ml = malloc(cap * sizeof *ml);
    if (!ml)
        return NULL;
#define PUSH(...)                                                                                  \
    do {                                                                                           \
        if (n == cap) {                                                                            \
            struct mline *t = realloc(ml, 2 * cap * sizeof *ml);                                   \
            if (!t)                                                                                \
                break;                                                                             \
            ml = t;                                                                                \
            cap *= 2;                                                                              \
        }                                                                                          \
        ml[n++] = (__VA_ARGS__);                                                                   \
    } while (0)
    for (int i = 0; i < s->np; i++) {
        const struct psnap *p = &s->p[i];
        char prefix[RTD_PROCESS_MAX], plabels[120];
        split_process(p->name, prefix, sizeof prefix, plabels, sizeof plabels);
        struct mline m = {.type = 1, .v = p->alive};
        snprintf(m.name, sizeof m.name, "rtdaq_up");
        snprintf(m.labels, sizeof m.labels, "%s", plabels);
        PUSH(m);
        snprintf(m.name, sizeof m.name, "rtdaq_process_cpu_ratio");
        m.v = p->cpu_pct / 100.0;
        PUSH(m);
        snprintf(m.name, sizeof m.name, "rtdaq_heartbeat_age_seconds");
        m.v = p->hb_age_s;
        PUSH(m);
        for (size_t k = 0; k < p->n; k++) {
            const struct cnt *c = &p->c[k];
            m.type = c->kind == RTD_COUNTER ? 0 : 1;
            m.v = (double)c->v;
            unsigned id;
            char what[RTD_STATS_LABEL_MAX];
            if (sscanf(c->label, "client.%u.%47s", &id, what) == 2) {
                char sub[RTD_STATS_LABEL_MAX + 8];
                snprintf(sub, sizeof sub, "client.%s", what);
                metric_name(m.name, sizeof m.name, prefix, sub, m.type ? "" : "_total");
                snprintf(m.labels, sizeof m.labels, "%s,client=\"%u\"", plabels, id);
            } else {
                metric_name(m.name, sizeof m.name, prefix, c->label, m.type ? "" : "_total");
                snprintf(m.labels, sizeof m.labels, "%s", plabels);
            }
            PUSH(m);
        }
    }
    /* Frames by outcome, named as the accounting in docs/operate.md names them: acq's
     * frames.dropped is every drop before the ring, ring.frames_dropped the full-ring part. */
    {
        uint64_t all = get_c(s, "acq", "frames.dropped");
        uint64_t ring = get_c(s, "acq", "ring.frames_dropped");
        struct {
            const char *reason;
            uint64_t v;
        } drops[] = {{"camera_skip", all >= ring ? all - ring : 0},
                     {"ring_full", ring},
                     {"rate_limit", get_c(s, "acq", "frames.rate_limited")}};
        for (size_t k = 0; k < sizeof drops / sizeof drops[0]; k++) {
            struct mline m = {.type = 0, .v = (double)drops[k].v};
            snprintf(m.name, sizeof m.name, "rtdaq_frames_dropped_total");
            snprintf(m.labels, sizeof m.labels, "reason=\"%s\"", drops[k].reason);
            PUSH(m);
        }
    }
    {
        struct mline m = {.type = 0, .v = (double)sum_c(s, "proc.w", "frames.processed")};
        snprintf(m.name, sizeof m.name, "rtdaq_frames_processed_total");
        PUSH(m);
        m.v = (double)get_c(s, "acq", "frames.rx");
        snprintf(m.name, sizeof m.name, "rtdaq_frames_received_total");
        PUSH(m);
    }
    if (l->fring_ro) {
        json_t *fr = frames_ring_json(l);
        struct mline m = {.type = 1};
        snprintf(m.labels, sizeof m.labels, "ring=\"frames\"");
        snprintf(m.name, sizeof m.name, "rtdaq_ring_fill_ratio");
        m.v = json_real_value(json_object_get(fr, "fill_ratio"));
        PUSH(m);
        snprintf(m.name, sizeof m.name, "rtdaq_ring_slots");
        m.v = (double)json_integer_value(json_object_get(fr, "slots"));
        PUSH(m);
        m.type = 0;
        snprintf(m.name, sizeof m.name, "rtdaq_ring_published_total");
        m.v = (double)json_integer_value(json_object_get(fr, "published"));
        PUSH(m);
        snprintf(m.name, sizeof m.name, "rtdaq_frames_lost_total");
        m.labels[0] = 0;
        m.v = (double)json_integer_value(json_object_get(fr, "lost_dead"));
        PUSH(m);
        json_decref(fr);
    }
#undef PUSH
    qsort(ml, n, sizeof *ml, mline_cmp);
    struct mbuf mb = {0};
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || strcmp(ml[i].name, ml[i - 1].name)) {
            /* One type per name: a label that is a counter in one process and a gauge in
             * another gets its own name by the _total suffix. */
            mprintf(&mb, "# TYPE %s %s\n", ml[i].name, ml[i].type ? "gauge" : "counter");
        }
        if (ml[i].labels[0])
            mprintf(&mb, "%s{%s} %.17g\n", ml[i].name, ml[i].labels, ml[i].v);
        else
            mprintf(&mb, "%s %.17g\n", ml[i].name, ml[i].v);
    }
    free(ml);
    /* Histograms: log2 buckets of ns as cumulative le buckets in seconds, one family per
     * name across processes. The sum is estimated from bucket midpoints (the segments keep
     * counts only). */
    struct hline {
        char name[160], labels[120];
        const uint64_t *b;
    } hl[MAX_VIEWS * 8];
    size_t nhl = 0;
    for (int i = 0; i < s->np; i++) {
        const struct psnap *p = &s->p[i];
        char prefix[RTD_PROCESS_MAX];
        for (int k = 0; k < p->nh && nhl < sizeof hl / sizeof hl[0]; k++, nhl++) {
            split_process(p->name, prefix, sizeof prefix, hl[nhl].labels, sizeof hl[nhl].labels);
            metric_name(hl[nhl].name, sizeof hl[nhl].name, prefix, p->h[k].label, "_seconds");
            hl[nhl].b = p->h[k].b;
        }
    }
    qsort(hl, nhl, sizeof hl[0], (int (*)(const void *, const void *))strcmp);
    for (size_t i = 0; i < nhl; i++) {
        const char *name = hl[i].name, *plabels = hl[i].labels;
        const uint64_t *b = hl[i].b;
        if (i == 0 || strcmp(name, hl[i - 1].name))
            mprintf(&mb, "# TYPE %s histogram\n", name);
        int top = 0;
        for (int k = 0; k < RTD_HIST_BUCKETS; k++)
            if (b[k])
                top = k;
        uint64_t cum = 0;
        double sum = 0;
        for (int k = 0; k <= top + 1 && k < RTD_HIST_BUCKETS; k++) {
            cum += b[k];
            sum += (double)b[k] * ldexp(1.5, k) / 1e9;
            mprintf(&mb, "%s_bucket{%s,le=\"%.9g\"} %llu\n", name, plabels, ldexp(1.0, k + 1) / 1e9,
                    (unsigned long long)cum);
        }
        for (int k = top + 2; k < RTD_HIST_BUCKETS; k++)
            cum += b[k];
        mprintf(&mb, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, plabels, (unsigned long long)cum);
        mprintf(&mb, "%s_sum{%s} %.9g\n", name, plabels, sum);
        mprintf(&mb, "%s_count{%s} %llu\n", name, plabels, (unsigned long long)cum);
    }
    *len = mb.len;
    return mb.s;
}

/* ---- results -------------------------------------------------------------------------------- */

static int track_match(struct web_live *l, float x, float y, int update, uint64_t now)
{
    int best = -1;
    float bd = 9.0f; /* within 3 px */
    for (int i = 0; i < l->ntracks; i++) {
        float dx = l->tracks[i].x - x, dy = l->tracks[i].y - y, d = dx * dx + dy * dy;
        if (d < bd) {
            bd = d;
            best = i;
        }
    }
    if (best >= 0) {
        if (update) {
            l->tracks[best].x = x;
            l->tracks[best].y = y;
            l->tracks[best].seen_ns = now;
        }
        return l->tracks[best].id;
    }
    if (!update)
        return -1;
    int slot = l->ntracks < MAX_TRACKS ? l->ntracks++ : -1;
    if (slot < 0) { /* replace the longest unseen */
        slot = 0;
        for (int i = 1; i < MAX_TRACKS; i++)
            if (l->tracks[i].seen_ns < l->tracks[slot].seen_ns)
                slot = i;
    }
    l->tracks[slot] = (struct track){.id = l->next_track++, .x = x, .y = y, .seen_ns = now};
    return l->tracks[slot].id;
}

static void frame_done(struct web_live *l, struct res_follow *f, const struct rtd_res_frame *fr,
                       uint64_t now)
{
    int n = f->n && f->ions_seq == fr->frame_seq ? f->n : 0;
    struct ftab *t = &l->tab[fr->frame_seq % FTAB];
    t->seq = fr->frame_seq;
    t->fr = *fr;
    t->n = n;
    memcpy(t->ion, f->ion, (size_t)n * sizeof f->ion[0]);
    f->n = 0;
    if (now - l->last_trace_ns < TRACE_NS || !l->traces)
        return;
    l->last_trace_ns = now;
    for (int i = 0; i < l->ntracks; i++) /* forget ions gone for 2 s */
        if (now - l->tracks[i].seen_ns > 2000000000ull)
            l->tracks[i--] = l->tracks[--l->ntracks];
    json_t *ions = json_array();
    for (int i = 0; i < n; i++) {
        const struct rtd_res_ion *io = &t->ion[i];
        if (io->state != 0)
            continue;
        int id = track_match(l, io->x, io->y, 1, now);
        json_array_append_new(ions,
                              json_pack("[i, f, f, f, f, f]", id, (double)io->x, (double)io->y,
                                        (double)io->amp, (double)io->sigma, (double)io->A));
    }
    json_array_append_new(l->traces, json_pack("{s:f, s:i, s:o}", "t", (double)fr->ts_real_ns / 1e6,
                                               "analysis", fr->analysis, "ions", ions));
}

static void wavelet_rec(struct web_live *l, const struct rtd_pkt_hdr *h, const void *p)
{
    if (!l->wav || json_array_size(l->wav) > 2000)
        return;
    json_t *v = json_array();
    if (h->type == RTD_RES_WPOWER && h->len >= sizeof(struct rtd_res_wpower)) {
        const struct rtd_res_wpower *r = p;
        if (h->len < sizeof *r + r->n_bands * sizeof(double)) {
            json_decref(v);
            return;
        }
        const double *b = (const double *)(r + 1);
        for (int i = 0; i < r->n_bands; i++)
            json_array_append_new(v, json_real(b[i]));
        json_array_append_new(l->wav, json_pack("{s:s, s:i, s:f, s:f, s:o}", "kind", "power",
                                                "client", (int)r->client, "t",
                                                (double)r->last_ts_ns / 1e6, "dt", r->dt, "v", v));
    } else if (h->type == RTD_RES_WCOH && h->len >= sizeof(struct rtd_res_wcoh)) {
        const struct rtd_res_wcoh *r = p;
        if (h->len < sizeof *r + r->n_bands * sizeof(double)) {
            json_decref(v);
            return;
        }
        const double *b = (const double *)(r + 1);
        for (int i = 0; i < r->n_bands; i++)
            json_array_append_new(v, json_real(b[i]));
        json_array_append_new(l->wav,
                              json_pack("{s:s, s:[i,i], s:f, s:f, s:o}", "kind", "coherence",
                                        "clients", (int)r->client_a, (int)r->client_b, "t",
                                        (double)r->last_ts_ns / 1e6, "dt", r->dt, "v", v));
    } else
        json_decref(v);
}

/* Copy-out read of every new record; a record overwritten while we copied it is discarded. */
static void drain(struct web_live *l, struct res_follow *f, uint64_t now)
{
    union {
        struct rtd_pkt_hdr h;
        uint8_t b[sizeof(struct rtd_pkt_hdr) + 8192];
    } rec;
    int got = 0;
    for (int k = 0; k < DRAIN_BUDGET; k++) {
        /* shm's copy-out read: a record overwritten before or during the copy is discarded
         * and counted in the consumer's lapped count, never returned torn. */
        int rc = rtd_pkt_copy(f->cons, rec.b, sizeof rec.b, NULL);
        if (rc < 0)
            break;
        got = 1;
        uint32_t len = (uint32_t)rc;
        rec.h.len = len;
        web_count(l->w, W_RESULTS_READ, 1);
        const void *p = rec.b + sizeof rec.h;
        if (rec.h.type == RTD_RES_ION && len >= sizeof(struct rtd_res_ion)) {
            const struct rtd_res_ion *io = p;
            if (f->n && io->frame_seq != f->ions_seq)
                f->n = 0; /* the previous frame's summary was lapped */
            if (f->n < MAX_IONS)
                f->ion[f->n++] = *io;
            f->ions_seq = io->frame_seq;
        } else if (rec.h.type == RTD_RES_FRAME && len >= sizeof(struct rtd_res_frame)) {
            struct rtd_res_frame fr;
            memcpy(&fr, p, sizeof fr);
            frame_done(l, f, &fr, now);
        } else
            wavelet_rec(l, &rec.h, p);
    }
    if (got)
        rtd_pkt_release(f->cons);
    uint64_t lap = rtd_consumer_lapped(f->cons);
    if (lap != f->lapped_seen) {
        web_count(l->w, W_RESULTS_LAPPED, lap - f->lapped_seen);
        f->lapped_seen = lap;
    }
}

/* ---- frames --------------------------------------------------------------------------------- */

/* Skip to the newest published frame and copy it out; 1 when a good copy is pending. */
static int grab_frame(struct web_live *l, uint64_t now)
{
    const struct rtd_ring_hdr *rh = rtd_ring_header(l->fring);
    uint32_t payload = rh->slot_payload;
    if ((size_t)payload > l->pix_cap * 2) {
        uint16_t *b = realloc(l->pix, ((size_t)payload + 1) / 2 * sizeof *b);
        if (!b)
            return 0;
        l->pix = b;
        l->pix_cap = ((size_t)payload + 1) / 2;
    }
    /*
     * Skip to the newest frame by copying only descriptors (cheap), then copy the newest
     * one whole: shm's copy-out read checks the slot after the copy, so a frame overwritten
     * meanwhile is discarded (counted lapped), never shown torn.
     */
    struct rtd_frame_hdr fh;
    int rc;
    for (;;) {
        uint64_t pub = atomic_load_explicit(&rh->published, memory_order_acquire);
        if (l->next_pos + 1 >= pub)
            break;
        rc = rtd_frame_copy(l->fcons, &fh, NULL, 0, NULL);
        if (rc < 0)
            return 0;
        l->next_pos = fh.seq + 1;
        web_count(l->w, W_FRAMES_SKIPPED, 1);
    }
    uint64_t lapped = 0;
    rc = rtd_frame_copy_slot(l->fcons, &fh, l->pix, l->pix_cap * 2, &lapped);
    if (lapped)
        web_count(l->w, W_FRAMES_TORN, lapped);
    if (rc < 0)
        return 0;
    l->next_pos = fh.seq + 1;
    uint32_t w = fh.width, h = fh.height, fmt = fh.pixfmt, len = fh.len;
    uint64_t seq = fh.seq, id = fh.frame_id, ts = fh.ts_real_ns;
    uint32_t flags = fh.flags;
    int ok = fmt == RTD_PIXFMT_MONO16 && w && h && w <= 16384 && h <= 16384 &&
             (uint64_t)w * h * 2 <= len && len <= payload && (uint64_t)w * h * 2 <= (uint64_t)rc;
    size_t toff = ((size_t)w * h * 2 + 7) & ~(size_t)7;
    l->have_truth = 0;
    if (ok && toff + sizeof l->truth <= (size_t)rc) {
        memcpy(&l->truth, (const uint8_t *)l->pix + toff, sizeof l->truth);
        l->have_truth = l->truth.magic == RTD_SYNTH_TRUTH_MAGIC && l->truth.n_ions <= 64;
    }
    if (!ok)
        return 0;
    web_count(l->w, W_FRAMES_COPIED, 1);
    l->pending = 1;
    l->p_seq = seq;
    l->p_id = id;
    l->p_ts_real = ts;
    l->p_w = w;
    l->p_h = h;
    l->p_flags = flags;
    l->p_copied_ns = now;
    return 1;
}

static int any_results(const struct web_live *l)
{
    for (int i = 0; i < MAX_RES; i++)
        if (l->res[i].used && !l->res[i].wavelet)
            return 1;
    return 0;
}

/* Message: "RTWF", u32 JSON length, JSON, zero padding to 8, then bw*bh u16 pixels. */
static void send_frame(struct web_live *l, const struct ftab *t, uint64_t now)
{
    uint32_t w = l->p_w, h = l->p_h;
    uint32_t md = (uint32_t)l->w->o.max_dim, bin = 1;
    while (w / bin > md || h / bin > md)
        bin++;
    uint32_t bw = w / bin, bh = h / bin;
    json_t *fits = json_null();
    if (t) {
        json_t *ions = json_array();
        for (int i = 0; i < t->n; i++) {
            const struct rtd_res_ion *io = &t->ion[i];
            json_array_append_new(
                ions,
                json_pack("{s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:i, s:i, s:i}", "id",
                          track_match(l, io->x, io->y, 0, now), "index", io->index, "x",
                          (double)io->x, "y", (double)io->y, "amp", (double)io->amp, "sigma",
                          (double)io->sigma, "sigma_y", (double)io->sigma_y, "A", (double)io->A,
                          "offset", (double)io->offset, "chi2", (double)io->chi2, "state",
                          io->state, "flags", io->flags, "iters", (int)io->iters));
        }
        fits =
            json_pack("{s:i, s:i, s:f, s:f, s:f, s:i, s:i, s:f, s:i, s:o}", "n_ions",
                      (int)t->fr.n_ions, "n_peaks", (int)t->fr.n_peaks, "background",
                      (double)t->fr.background, "noise", (double)t->fr.noise, "threshold",
                      (double)t->fr.threshold, "worker", t->fr.worker, "analysis", t->fr.analysis,
                      "latency_us", (double)(t->fr.done_mono_ns - t->fr.ts_mono_ns) / 1e3, "flags",
                      (int)t->fr.flags, "ions", ions);
    }
    json_t *truth = json_null();
    if (l->have_truth) {
        truth = json_array();
        for (uint32_t i = 0; i < l->truth.n_ions; i++)
            json_array_append_new(
                truth, json_pack("[f, f]", (double)l->truth.ion[i].x, (double)l->truth.ion[i].y));
    }
    json_t *hdr = json_pack("{s:s, s:I, s:I, s:I, s:i, s:i, s:i, s:i, s:i, s:b, s:o, s:o}", "type",
                            "frame", "seq", (json_int_t)l->p_seq, "id", (json_int_t)l->p_id,
                            "ts_ms", (json_int_t)(l->p_ts_real / 1000000), "w", (int)w, "h", (int)h,
                            "bw", (int)bw, "bh", (int)bh, "bin", (int)bin, "partial",
                            (l->p_flags & RTD_FRAME_PARTIAL) != 0, "fits", fits, "truth", truth);
    /* Bin once into u16, then two encodings: "u16" exact, "u8" scaled from the 0.5th
     * percentile to the maximum (half the bytes; the page picks one per connection). */
    size_t np = (size_t)bw * bh;
    if (np > l->bin_cap) {
        uint16_t *b = realloc(l->bin16, np * sizeof *b);
        if (!b) {
            json_decref(hdr);
            return;
        }
        l->bin16 = b;
        l->bin_cap = np;
    }
    for (uint32_t y = 0; y < bh; y++)
        for (uint32_t x = 0; x < bw; x++) {
            uint32_t acc = 0;
            for (uint32_t j = 0; j < bin; j++)
                for (uint32_t i = 0; i < bin; i++)
                    acc += l->pix[(size_t)(y * bin + j) * w + x * bin + i];
            l->bin16[(size_t)y * bw + x] = (uint16_t)(acc / (bin * bin));
        }
    memset(l->hist16, 0, sizeof l->hist16);
    uint16_t hi = 0;
    for (size_t i = 0; i < np; i++) {
        l->hist16[l->bin16[i] >> 4]++;
        if (l->bin16[i] > hi)
            hi = l->bin16[i];
    }
    uint32_t lo = 0;
    for (size_t cum = 0; lo < 4096 && (cum += l->hist16[lo]) < np / 200; lo++) {
    }
    lo <<= 4;
    if (lo >= hi)
        lo = hi ? hi - 1u : 0;
    size_t len[2] = {0, 0};
    for (int e = 0; e < 2; e++) {
        int u8 = e == 1;
        json_object_set_new(hdr, "enc", json_string(u8 ? "u8" : "u16"));
        json_object_set_new(hdr, "lo", json_integer(u8 ? (json_int_t)lo : 0));
        json_object_set_new(hdr, "hi", json_integer(u8 ? (json_int_t)hi : 65535));
        char *js = json_dumps(hdr, JSON_COMPACT);
        if (!js)
            break;
        size_t jl = strlen(js), off = (8 + jl + 7) & ~(size_t)7;
        size_t total = off + np * (u8 ? 1 : 2);
        if (total > l->msg_cap[e]) {
            uint8_t *m = realloc(l->msg[e], total);
            if (!m) {
                free(js);
                break;
            }
            l->msg[e] = m;
            l->msg_cap[e] = total;
        }
        uint8_t *m = l->msg[e];
        memcpy(m, "RTWF", 4);
        uint32_t jl32 = (uint32_t)jl;
        memcpy(m + 4, &jl32, 4);
        memcpy(m + 8, js, jl);
        memset(m + 8 + jl, ' ', off - 8 - jl);
        free(js);
        if (u8) {
            double k = 255.0 / (double)(hi - lo);
            for (size_t i = 0; i < np; i++) {
                double v = ((double)l->bin16[i] - (double)lo) * k + 0.5;
                m[off + i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        } else
            memcpy(m + off, l->bin16, np * 2);
        len[e] = total;
    }
    json_decref(hdr);
    if (len[0] && len[1])
        web_ws_broadcast_frame(l->w, l->msg[0], len[0], l->msg[1], len[1], now);
}

/* ---- the tick ------------------------------------------------------------------------------- */

static void publish_snapshots(struct web_live *l, uint64_t now)
{
    snap_take(l, &l->cur, now);
    json_t *full = counters_json(l, 1);
    char *js = json_dumps(full, JSON_COMPACT);
    json_decref(full);
    size_t mlen = 0;
    char *mt = metrics_text(l, &mlen);
    pthread_mutex_lock(&l->w->snap_lock);
    free(l->w->snap_json);
    free(l->w->snap_metrics);
    l->w->snap_json = js;
    l->w->snap_metrics = mt;
    l->w->snap_metrics_len = mlen;
    pthread_mutex_unlock(&l->w->snap_lock);
    if (atomic_load_explicit(&l->w->ws_count, memory_order_relaxed) > 0) {
        json_t *msg = counters_json(l, 0);
        json_object_set_new(msg, "type", json_string("stats"));
        json_object_set(msg, "traces", l->traces);
        json_object_set(msg, "wavelet", l->wav);
        char *s = json_dumps(msg, JSON_COMPACT);
        json_decref(msg);
        if (s) {
            web_ws_broadcast_text(l->w, s, strlen(s));
            free(s);
        }
        json_array_clear(l->traces);
        json_array_clear(l->wav);
    }
    if (!l->prev.t_ns || now - l->prev.t_ns >= 1000000000ull)
        snap_copy(&l->prev, &l->cur);
}

void web_live_tick(struct web_live *l, uint64_t now)
{
    if (now >= l->next_scan_ns) {
        rescan(l);
        l->next_scan_ns = now + SCAN_NS;
    }
    for (int i = 0; i < MAX_RES; i++)
        if (l->res[i].used)
            drain(l, &l->res[i], now);
    if (l->fcons) {
        uint64_t lap = rtd_consumer_lapped(l->fcons);
        if (lap != l->flapped_seen) {
            web_count(l->w, W_FRAMES_SKIPPED, lap - l->flapped_seen);
            l->flapped_seen = lap;
        }
        if (l->pending) {
            const struct ftab *t = &l->tab[l->p_seq % FTAB];
            int have = t->seq == l->p_seq;
            if (have || !any_results(l) || now - l->p_copied_ns > FIT_WAIT_NS) {
                send_frame(l, have ? t : NULL, now);
                l->pending = 0;
            }
        }
        if (!l->pending && web_ws_want_frame(l->w, now))
            grab_frame(l, now);
    }
    if (now >= l->next_snap_ns) {
        publish_snapshots(l, now);
        l->next_snap_ns = now + STATS_NS;
    }
}

int web_live_init(struct web_live **out, struct web *w)
{
    struct web_live *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->w = w;
    l->tab = malloc(FTAB * sizeof *l->tab);
    l->traces = json_array();
    l->wav = json_array();
    if (!l->tab || !l->traces || !l->wav) {
        web_live_free(l);
        return -ENOMEM;
    }
    for (int i = 0; i < FTAB; i++)
        l->tab[i].seq = UINT64_MAX;
    *out = l;
    return 0;
}

void web_live_free(struct web_live *l)
{
    if (!l)
        return;
    for (int i = 0; i < MAX_RES; i++)
        if (l->res[i].used)
            unfollow(&l->res[i]);
    frames_close(l);
    if (l->fring_ro)
        rtd_ring_close(l->fring_ro);
    for (int i = 0; i < MAX_VIEWS; i++)
        if (l->views[i].used)
            rtd_stats_view_close(l->views[i].v);
    snap_free(&l->cur);
    snap_free(&l->prev);
    json_decref(l->traces);
    json_decref(l->wav);
    free(l->tab);
    free(l->pix);
    free(l->msg[0]);
    free(l->msg[1]);
    free(l->bin16);
    free(l);
}

char *web_live_counters_json(struct web *w)
{
    pthread_mutex_lock(&w->snap_lock);
    char *s = w->snap_json ? strdup(w->snap_json) : NULL;
    pthread_mutex_unlock(&w->snap_lock);
    return s;
}

char *web_live_metrics_text(struct web *w, size_t *len)
{
    pthread_mutex_lock(&w->snap_lock);
    char *s = NULL;
    if (w->snap_metrics) {
        s = malloc(w->snap_metrics_len + 1);
        if (s) {
            memcpy(s, w->snap_metrics, w->snap_metrics_len);
            s[w->snap_metrics_len] = 0;
            *len = w->snap_metrics_len;
        }
    }
    pthread_mutex_unlock(&w->snap_lock);
    return s;
}
