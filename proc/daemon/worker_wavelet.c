/* SPDX-License-Identifier: MIT */
/*
 * A streaming wavelet worker: reads the packets ring (as a monitor by
 * default, so it never slows acquisition; --reliable to gate it instead),
 * keeps the last --window samples of every client it owns, and every --hop
 * new samples of a client computes the CWT of that window with one plan made
 * at start-up (proc/wavelet), then publishes the mean scale-averaged power per
 * band (RTD_RES_WPOWER) and, for configured pairs, the mean wavelet coherence
 * per band (RTD_RES_WCOH) into this worker's ring "wavelet.w<k>".
 *
 * A packet record is struct rtd_pkt_hdr + a 24-byte prefix (client u32,
 * len u32, seq u64, ts_ns u64; acq/rtd_wire.h's struct rtd_acq_pkt) + float64
 * samples; the samples of one packet are consecutive samples of the client's
 * series. With N wavelet workers, worker i owns the clients with id % N == i
 * (and keeps the partner series its pairs need).
 */
#include <complex.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proc_internal.h"
#include "rtd_results.h"
#include "rtd_util.h"
#include "rtd_wavelet.h"

/* The packets ring's record prefix (mirrors acq/rtd_wire.h, kept local to avoid its enums). */
struct wl_pkt_prefix {
    uint32_t client;
    uint32_t len;
    uint64_t seq;
    uint64_t ts_ns;
};
_Static_assert(sizeof(struct wl_pkt_prefix) == 24, "acq packet record prefix is 24 bytes");
#define WL_REC_PACKET 1 /* RTD_ACQ_REC_PACKET */

struct wl_client {
    uint32_t id;
    int owned;      /* this worker publishes its power */
    double *buf;    /* ring of the last window samples */
    uint64_t n;     /* samples received in total */
    uint64_t since; /* samples since the last hop */
    uint64_t last_seq, last_ts;
};

struct wl_state {
    const struct proc_opts *o;
    struct proc_worker *w;
    int n_workers, index;
    struct rtd_ring *packets;
    struct rtd_consumer *cons;
    struct rtd_ring *out;
    struct rtd_mother mother;
    struct rtd_cwt_plan *plan;
    struct rtd_wct_plan *wct;
    size_t nscales;
    const double *scales;
    double complex *wave;
    double *x, *x2, *band, *coh;
    struct wl_client *clients;
    int n_clients;
    uint64_t *rec; /* monitor: the copy of the record being read (header + largest payload) */
    int scale_band[1024]; /* band of each scale, -1 none (coherence averaging) */
};

static int wants(const struct wl_state *s, uint32_t id, int *owned)
{
    const struct proc_opts *o = s->o;
    int listed = o->n_channels == 0;
    for (int i = 0; i < o->n_channels && !listed; i++)
        listed = o->channels[i] == id;
    *owned = listed && (int)(id % (uint32_t)s->n_workers) == s->index;
    if (*owned)
        return 1;
    /* Partner of a pair whose first client this worker owns. */
    for (int i = 0; i < o->n_pairs; i++)
        if (o->pair_b[i] == id && (int)(o->pair_a[i] % (uint32_t)s->n_workers) == s->index)
            return 1;
    return 0;
}

static struct wl_client *client_get(struct wl_state *s, uint32_t id)
{
    for (int i = 0; i < s->n_clients; i++)
        if (s->clients[i].id == id)
            return &s->clients[i];
    int owned;
    if (!wants(s, id, &owned) || s->n_clients == s->o->max_clients)
        return NULL;
    struct wl_client *c = &s->clients[s->n_clients];
    memset(c, 0, sizeof *c);
    c->buf = calloc((size_t)s->o->window, sizeof(double));
    if (!c->buf)
        return NULL;
    c->id = id;
    c->owned = owned;
    s->n_clients++;
    atomic_store_explicit(s->w->c.clients, (uint64_t)s->n_clients, memory_order_relaxed);
    return c;
}

static struct wl_client *client_find(struct wl_state *s, uint32_t id)
{
    for (int i = 0; i < s->n_clients; i++)
        if (s->clients[i].id == id)
            return &s->clients[i];
    return NULL;
}

/* The window, oldest sample first. */
static void linearise(const struct wl_state *s, const struct wl_client *c, double *x)
{
    const size_t W = (size_t)s->o->window;
    const size_t head = (size_t)(c->n % W); /* the oldest sample once the ring is full */
    memcpy(x, c->buf + head, (W - head) * sizeof(double));
    memcpy(x + (W - head), c->buf, head * sizeof(double));
}

static void hop(struct wl_state *s, struct wl_client *c)
{
    const struct proc_opts *o = s->o;
    const struct proc_counters *k = &s->w->c;
    const size_t W = (size_t)o->window;
    const uint64_t t0 = rtd_now_ns();
    linearise(s, c, s->x);
    int rc = rtd_cwt_execute(s->plan, s->x, s->wave);
    if (rc < 0)
        return; /* NaN/Inf samples in the window: nothing to publish for this hop */
    atomic_fetch_add_explicit(k->cwts, 1, memory_order_relaxed);
    int err = 0;
    const size_t len = sizeof(struct rtd_res_wpower) + (size_t)o->n_bands * sizeof(double);
    struct rtd_res_wpower *r = rtd_pkt_reserve(s->out, (uint32_t)len, RTD_RES_WPOWER, &err);
    if (r) {
        double *pw = (double *)(void *)(r + 1);
        for (int b = 0; b < o->n_bands; b++) {
            int used = rtd_wavelet_band_power(s->wave, s->scales, s->nscales, W, o->dt, o->dj,
                                              &s->mother, o->band_lo[b], o->band_hi[b], s->band);
            double m = 0;
            if (used > 0) {
                for (size_t t = 0; t < W; t++)
                    m += s->band[t];
                m /= (double)W;
            } else {
                m = (double)NAN; /* no scale of this plan falls in the band */
            }
            pw[b] = m;
        }
        r->client = c->id;
        r->n_bands = (uint16_t)o->n_bands;
        r->version = RTD_RES_VERSION;
        r->reserved0 = 0;
        r->last_seq = c->last_seq;
        r->last_ts_ns = c->last_ts;
        r->window = (uint32_t)o->window;
        r->hop = (uint32_t)o->hop;
        r->dt = o->dt;
        r->done_mono_ns = rtd_now_ns();
    } else {
        atomic_fetch_add_explicit(k->dropped, 1, memory_order_relaxed);
    }
    for (int i = 0; i < o->n_pairs && s->wct; i++) {
        if (o->pair_a[i] != c->id)
            continue;
        struct wl_client *b = client_find(s, o->pair_b[i]);
        if (!b || b->n < W)
            continue;
        linearise(s, b, s->x2);
        linearise(s, c, s->x);
        if (rtd_wct_execute(s->wct, s->x, s->x2, 1, s->coh, NULL) < 0)
            continue;
        atomic_fetch_add_explicit(k->cohs, 1, memory_order_relaxed);
        const size_t clen = sizeof(struct rtd_res_wcoh) + (size_t)o->n_bands * sizeof(double);
        struct rtd_res_wcoh *q = rtd_pkt_reserve(s->out, (uint32_t)clen, RTD_RES_WCOH, &err);
        if (!q) {
            atomic_fetch_add_explicit(k->dropped, 1, memory_order_relaxed);
            continue;
        }
        double *cv = (double *)(void *)(q + 1);
        const struct rtd_cwt_plan *cp = rtd_wct_cwt(s->wct);
        const size_t ns = rtd_cwt_nscales(cp);
        for (int bnd = 0; bnd < o->n_bands; bnd++) {
            double sum = 0;
            size_t cnt = 0;
            for (size_t j = 0; j < ns && j < 1024; j++) {
                if (s->scale_band[j] != bnd)
                    continue;
                for (size_t t = 0; t < W; t++)
                    sum += s->coh[j * W + t];
                cnt += W;
            }
            cv[bnd] = cnt ? sum / (double)cnt : (double)NAN;
        }
        q->client_a = c->id;
        q->client_b = b->id;
        q->n_bands = (uint16_t)o->n_bands;
        q->version = RTD_RES_VERSION;
        q->reserved0 = 0;
        q->window = (uint32_t)o->window;
        q->last_ts_ns = c->last_ts;
        q->hop = (uint32_t)o->hop;
        q->reserved1 = 0;
        q->dt = o->dt;
        q->done_mono_ns = rtd_now_ns();
    }
    rtd_pkt_publish(s->out);
    atomic_fetch_add_explicit(k->hops, 1, memory_order_relaxed);
    const uint64_t t1 = rtd_now_ns();
    rtd_hist_record(k->pipeline, t1 - t0);
    atomic_fetch_add_explicit(k->busy_ns, t1 - t0, memory_order_relaxed);
}

static void on_record(struct wl_state *s, const struct rtd_pkt_hdr *h)
{
    const struct proc_counters *k = &s->w->c;
    if (h->type != WL_REC_PACKET || h->len < sizeof(struct wl_pkt_prefix))
        return;
    struct wl_pkt_prefix pre;
    memcpy(&pre, rtd_pkt_payload(h), sizeof pre);
    atomic_fetch_add_explicit(k->packets, 1, memory_order_relaxed);
    struct wl_client *c = client_get(s, pre.client);
    if (!c)
        return;
    uint32_t bytes = pre.len;
    if (bytes > h->len - sizeof pre)
        bytes = h->len - (uint32_t)sizeof pre;
    const size_t ns = bytes / sizeof(double);
    const unsigned char *p = (const unsigned char *)rtd_pkt_payload(h) + sizeof pre;
    const size_t W = (size_t)s->o->window;
    for (size_t i = 0; i < ns; i++) {
        double v;
        memcpy(&v, p + i * sizeof v, sizeof v);
        c->buf[c->n % W] = v;
        c->n++;
        c->since++;
        c->last_seq = pre.seq;
        c->last_ts = pre.ts_ns;
        if (c->owned && c->n >= W && c->since >= (uint64_t)s->o->hop) {
            c->since = 0;
            hop(s, c);
        }
    }
    atomic_fetch_add_explicit(k->samples, ns, memory_order_relaxed);
    if (!c->owned && c->since >= W)
        c->since = 0; /* partner series only: nothing to schedule */
}

static void detach(struct wl_state *s)
{
    if (s->cons)
        rtd_consumer_close(s->cons);
    s->cons = NULL;
    if (s->packets)
        rtd_ring_close(s->packets);
    s->packets = NULL;
}

static int attach(struct wl_state *s)
{
    int rc = rtd_ring_attach(&s->packets, s->o->instance, s->o->packets_ring);
    if (rc < 0)
        return rc;
    char label[24];
    snprintf(label, sizeof label, "proc.w%d", s->w->id);
    rc = rtd_consumer_open(&s->cons, s->packets,
                           s->o->reliable ? RTD_CONSUMER_RELIABLE : RTD_CONSUMER_MONITOR, label);
    if (rc < 0) {
        rtd_log(RTD_LOG_ERR, "consumer on ring %s: %s", s->o->packets_ring, strerror(-rc));
        rtd_ring_close(s->packets);
        s->packets = NULL;
        return rc;
    }
    rtd_log(RTD_LOG_INFO, "reading ring %s (%s)", s->o->packets_ring,
            s->o->reliable ? "reliable" : "monitor");
    rtd_stats_set_status(s->w->stats, "running");
    return 0;
}

int proc_worker_wavelet(const struct proc_opts *o, struct proc_worker *w, int n_wavelet,
                        int wavelet_index)
{
    struct wl_state s;
    memset(&s, 0, sizeof s);
    s.o = o;
    s.w = w;
    s.n_workers = n_wavelet > 0 ? n_wavelet : 1;
    s.index = wavelet_index;
    const struct proc_counters *k = &w->c;
    int ret = -1, rc;
    atomic_store_explicit(k->pid, (uint64_t)getpid(), memory_order_relaxed);
    if (w->cpu >= 0 && (rc = rtd_pin_cpu(w->cpu)) < 0)
        rtd_log(RTD_LOG_WARN, "pin to cpu %d: %s (running unpinned)", w->cpu, strerror(-rc));
    atomic_store_explicit(k->cpu, (uint64_t)(int64_t)w->cpu, memory_order_relaxed);
    atomic_store_explicit(k->rt, (uint64_t)rtd_realtime_setup(o->fifo, o->mlock),
                          memory_order_relaxed);

    if ((rc = rtd_mother_parse(&s.mother, o->mother)) < 0) {
        rtd_log(RTD_LOG_ERR, "mother wavelet '%s': not known", o->mother);
        goto out;
    }
    const size_t W = (size_t)o->window;
    rc = rtd_cwt_plan_create(&s.plan, W, o->dt, o->dj, 0, -1, &s.mother, 0);
    if (rc < 0) {
        rtd_log(RTD_LOG_ERR, "cwt plan (window %d, dt %g): %s", o->window, o->dt, strerror(-rc));
        goto out;
    }
    s.nscales = rtd_cwt_nscales(s.plan);
    s.scales = rtd_cwt_scales(s.plan);
    if (o->n_pairs > 0) {
        rc = rtd_wct_plan_create(&s.wct, W, o->dt, o->dj, 0, -1, &s.mother, 0);
        if (rc < 0) {
            rtd_log(RTD_LOG_ERR, "coherence needs --mother morlet:6 (%s)", strerror(-rc));
            goto out;
        }
        /* Each scale's band, by its Fourier period (coherence is averaged per band). */
        const struct rtd_cwt_plan *cp = rtd_wct_cwt(s.wct);
        const double *sc = rtd_cwt_scales(cp);
        for (size_t j = 0; j < rtd_cwt_nscales(cp) && j < 1024; j++) {
            double period = s.mother.flambda * sc[j];
            s.scale_band[j] = -1;
            for (int b = 0; b < o->n_bands; b++)
                if (period >= o->band_lo[b] && period < o->band_hi[b])
                    s.scale_band[j] = b;
        }
    }
    s.wave = malloc(sizeof(double complex) * s.nscales * W);
    s.x = malloc(sizeof(double) * W);
    s.x2 = malloc(sizeof(double) * W);
    s.band = malloc(sizeof(double) * W);
    s.coh = o->n_pairs ? malloc(sizeof(double) * (s.nscales + 8) * W) : NULL;
    s.clients = calloc((size_t)o->max_clients, sizeof *s.clients);
    s.rec = o->reliable ? NULL : malloc(sizeof(struct rtd_pkt_hdr) + RTD_PKT_MAX_PAYLOAD);
    if (!s.wave || !s.x || !s.x2 || !s.band || !s.clients || (o->n_pairs && !s.coh) ||
        (!o->reliable && !s.rec)) {
        rtd_log(RTD_LOG_ERR, "out of memory (window %d, %zu scales)", o->window, s.nscales);
        goto out;
    }
    rc = rtd_ring_attach(&s.out, o->instance, w->ring_name);
    if (rc < 0) {
        rtd_log(RTD_LOG_ERR, "results ring %s: %s", w->ring_name, strerror(-rc));
        goto out;
    }
    rtd_stats_set_status(w->stats, "waiting for the packets ring");
    uint64_t last_beat = 0, last_try = 0, lapped0 = 0;
    while (!proc_stop) {
        const uint64_t now = rtd_now_ns();
        if (now - last_beat > 50000000ull) {
            last_beat = now;
            rtd_stats_heartbeat(w->stats);
            if (s.cons) {
                rtd_consumer_heartbeat(s.cons);
                uint64_t l = rtd_consumer_lapped(s.cons);
                atomic_fetch_add_explicit(k->lapped, l - lapped0, memory_order_relaxed);
                lapped0 = l;
            }
            /* Closed, or its producer died (acq SIGKILLed and restarted under the same name). */
            if (s.packets && rtd_ring_orphaned(s.packets)) {
                detach(&s);
                lapped0 = 0;
                rtd_stats_set_status(w->stats, "waiting for the packets ring");
            }
        }
        if (!s.packets) {
            if (now - last_try > 100000000ull) {
                last_try = now;
                attach(&s);
            }
            if (!s.packets) {
                struct timespec ts = {0, 10 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        const struct rtd_pkt_hdr *h;
        int got = 0;
        if (o->reliable) {
            while (got < 4096 && (rc = rtd_pkt_next(s.cons, &h)) == 0) {
                on_record(&s, h);
                got++;
            }
        } else {
            /* A monitor may be lapped: each record is copied out and validated before use. */
            const size_t cap = sizeof(struct rtd_pkt_hdr) + RTD_PKT_MAX_PAYLOAD;
            while (got < 4096 && (rc = rtd_pkt_copy(s.cons, s.rec, cap, NULL)) >= 0) {
                on_record(&s, (const struct rtd_pkt_hdr *)s.rec);
                got++;
            }
            rc = rc > 0 ? 0 : rc;
        }
        if (got)
            rtd_pkt_release(s.cons);
        if (rc == -EAGAIN && !got)
            rtd_consumer_wait(s.cons, 20 * 1000 * 1000);
        else if (rc != 0 && rc != -EAGAIN) {
            rtd_log(RTD_LOG_ERR, "read ring %s: %s; re-attaching", o->packets_ring, strerror(-rc));
            detach(&s);
        }
    }
    ret = 0;
out:
    rtd_stats_set_status(w->stats, "stopped");
    detach(&s);
    if (s.out)
        rtd_ring_close(s.out);
    for (int i = 0; i < s.n_clients; i++)
        free(s.clients[i].buf);
    free(s.clients);
    free(s.rec);
    free(s.wave);
    free(s.x);
    free(s.x2);
    free(s.band);
    free(s.coh);
    if (s.wct)
        rtd_wct_plan_destroy(s.wct);
    if (s.plan)
        rtd_cwt_plan_destroy(s.plan);
    return ret;
}
