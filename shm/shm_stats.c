/* SPDX-License-Identifier: MIT */
/*
 * Stats segments: one per process ("stats.<process>"), holding counters and
 * gauges with a label table, log2 histograms of ns values, a heartbeat and a
 * status line. The owning process is the only writer; readers (rtdaq stat,
 * ctl) map the segment read-only and never take a lock.
 */
#include "shm_internal.h"
#include "rtd_util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STATS_DEFAULT_HISTS 16u
#define SLOT_READY          1u

struct rtd_stats {
    struct rtd_seg seg;
    struct rtd_stats_hdr *hdr;
    struct rtd_counter_slot *counters;
    struct rtd_hist_slot *hists;
    pthread_mutex_t lock; /* registration only: several threads of the process may register */
};

struct rtd_stats_view {
    struct rtd_seg seg;
    const struct rtd_stats_hdr *hdr;
    const struct rtd_counter_slot *counters;
    const struct rtd_hist_slot *hists;
};

static size_t stats_bytes(uint32_t counters, uint32_t hists)
{
    return RTD_STATS_HDR_BYTES + (size_t)counters * sizeof(struct rtd_counter_slot) +
           (size_t)hists * sizeof(struct rtd_hist_slot);
}

static int stats_name(char *out, size_t cap, const char *instance, const char *process)
{
    char ring[RTD_RING_NAME_MAX + 8];
    if (!process || strlen(process) >= RTD_PROCESS_MAX)
        return -ENAMETOOLONG;
    snprintf(ring, sizeof ring, "stats.%s", process);
    return rtd_shm_name(out, cap, instance, ring);
}

int rtd_stats_create(struct rtd_stats **out, const char *instance, const char *process,
                     uint32_t max_counters)
{
    char name[RTD_SHM_NAME_MAX];
    int rc = stats_name(name, sizeof name, instance, process);
    if (rc)
        return rc;
    if (max_counters == 0 || max_counters > 65536)
        return -EINVAL;
    struct rtd_stats *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    uint32_t hists = STATS_DEFAULT_HISTS;
    size_t len = stats_bytes(max_counters, hists);
    rc = rtd_seg_create(&s->seg, name, len, 0);
    if (rc) {
        free(s);
        return rc;
    }
    struct rtd_stats_hdr *h = s->seg.base;
    rtd_seg_init_hdr(h, RTD_MAGIC_STATS, RTD_SEG_STATS, len, RTD_STATS_HDR_BYTES);
    rtd_strlcpy(h->process, process, sizeof h->process);
    h->pid = (int32_t)getpid();
    h->max_counters = max_counters;
    h->max_hists = hists;
    h->start_real_ns = rtd_realtime_ns();
    h->start_mono_ns = rtd_now_ns();
    atomic_store_explicit(&h->heartbeat_ns, h->start_mono_ns, memory_order_relaxed);
    s->hdr = h;
    s->counters = (struct rtd_counter_slot *)((uint8_t *)h + RTD_STATS_HDR_BYTES);
    s->hists = (struct rtd_hist_slot *)(s->counters + max_counters);
    pthread_mutex_init(&s->lock, NULL);
    /* R1: pairs with A1 in rtd_seg_attach(). */
    atomic_store_explicit(&h->state, RTD_STATE_READY, memory_order_release);
    *out = s;
    return 0;
}

void rtd_stats_close(struct rtd_stats *s)
{
    if (!s)
        return;
    atomic_store_explicit(&s->hdr->state, RTD_STATE_CLOSED, memory_order_release);
    rtd_seg_close(&s->seg);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

_Atomic uint64_t *rtd_stats_counter(struct rtd_stats *s, const char *label,
                                    enum rtd_counter_kind kind)
{
    _Atomic uint64_t *v = NULL;
    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < s->hdr->max_counters; i++) {
        struct rtd_counter_slot *c = &s->counters[i];
        if (atomic_load_explicit(&c->state, memory_order_relaxed) == SLOT_READY) {
            if (!strncmp(c->label, label, sizeof c->label)) {
                v = &c->value;
                break;
            }
            continue;
        }
        rtd_strlcpy(c->label, label, sizeof c->label);
        c->kind = kind;
        atomic_store_explicit(&c->value, 0, memory_order_relaxed);
        /* R7: pairs with A7 in the readers: label and kind are complete. */
        atomic_store_explicit(&c->state, SLOT_READY, memory_order_release);
        v = &c->value;
        break;
    }
    pthread_mutex_unlock(&s->lock);
    return v;
}

struct rtd_hist *rtd_stats_hist(struct rtd_stats *s, const char *label)
{
    struct rtd_hist *v = NULL;
    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < s->hdr->max_hists; i++) {
        struct rtd_hist_slot *hs = &s->hists[i];
        if (atomic_load_explicit(&hs->state, memory_order_relaxed) == SLOT_READY) {
            if (!strncmp(hs->label, label, sizeof hs->label)) {
                v = (struct rtd_hist *)hs;
                break;
            }
            continue;
        }
        rtd_strlcpy(hs->label, label, sizeof hs->label);
        for (int b = 0; b < RTD_HIST_BUCKETS; b++)
            atomic_store_explicit(&hs->buckets[b], 0, memory_order_relaxed);
        /* R7: pairs with A7 in the readers. */
        atomic_store_explicit(&hs->state, SLOT_READY, memory_order_release);
        v = (struct rtd_hist *)hs;
        break;
    }
    pthread_mutex_unlock(&s->lock);
    return v;
}

void rtd_hist_record(struct rtd_hist *h, uint64_t ns)
{
    struct rtd_hist_slot *hs = (struct rtd_hist_slot *)h;
    int b = ns < 2 ? 0 : 63 - __builtin_clzll(ns);
    atomic_fetch_add_explicit(&hs->buckets[b], 1, memory_order_relaxed);
}

void rtd_stats_heartbeat(struct rtd_stats *s)
{
    atomic_store_explicit(&s->hdr->heartbeat_ns, rtd_now_ns(), memory_order_relaxed);
}

/* Seqlock writer: readers copy between two equal even loads of status_seq. */
void rtd_stats_set_status(struct rtd_stats *s, const char *status)
{
    struct rtd_stats_hdr *h = s->hdr;
    pthread_mutex_lock(&s->lock);
    uint32_t q = atomic_load_explicit(&h->status_seq, memory_order_relaxed);
    atomic_store_explicit(&h->status_seq, q + 1, memory_order_relaxed);
    /* R8: pairs with A8 in rtd_stats_view_status(): odd is visible before the text changes. */
    RTD_FENCE(memory_order_release, RTD_FENCE_STATUS);
    rtd_strlcpy(h->status, status, sizeof h->status);
    /* R9: pairs with A9 in rtd_stats_view_status(): the text is complete. */
    atomic_store_explicit(&h->status_seq, q + 2, memory_order_release);
    pthread_mutex_unlock(&s->lock);
}

int rtd_stats_open(struct rtd_stats_view **out, const char *instance, const char *process)
{
    char name[RTD_SHM_NAME_MAX];
    int rc = stats_name(name, sizeof name, instance, process);
    if (rc)
        return rc;
    struct rtd_stats_view *v = calloc(1, sizeof *v);
    if (!v)
        return -ENOMEM;
    rc = rtd_seg_attach(&v->seg, name, RTD_MAGIC_STATS, RTD_SEG_STATS, false);
    if (rc) {
        free(v);
        return rc;
    }
    const struct rtd_stats_hdr *h = v->seg.base;
    if (h->hdr_bytes != RTD_STATS_HDR_BYTES ||
        stats_bytes(h->max_counters, h->max_hists) > v->seg.len) {
        rtd_seg_close(&v->seg);
        free(v);
        return -EBADMSG;
    }
    v->hdr = h;
    v->counters = (const struct rtd_counter_slot *)((const uint8_t *)h + RTD_STATS_HDR_BYTES);
    v->hists = (const struct rtd_hist_slot *)(v->counters + h->max_counters);
    *out = v;
    return 0;
}

void rtd_stats_view_close(struct rtd_stats_view *v)
{
    if (!v)
        return;
    rtd_seg_close(&v->seg);
    free(v);
}

const struct rtd_stats_hdr *rtd_stats_view_header(const struct rtd_stats_view *v)
{
    return v->hdr;
}

#if defined(__SANITIZE_THREAD__)
__attribute__((no_sanitize("thread")))
#endif
static void
racy_copy(char *dst, const char *src, size_t n)
{
    memcpy(dst, src, n);
}

int rtd_stats_view_status(const struct rtd_stats_view *v, char *out, size_t cap)
{
    const struct rtd_stats_hdr *h = v->hdr;
    char buf[RTD_STATUS_MAX];
    for (int tries = 0; tries < 100; tries++) {
        /* A9: pairs with R9: the text of an even sequence is complete. */
        uint32_t q1 = atomic_load_explicit(&h->status_seq, memory_order_acquire);
        if (q1 & 1)
            continue;
        racy_copy(buf, h->status, sizeof buf);
        /* A8: pairs with R8: had the writer started over, we see the odd value. */
        RTD_FENCE(memory_order_acquire, RTD_FENCE_STATUS);
        if (atomic_load_explicit(&h->status_seq, memory_order_relaxed) == q1) {
            buf[sizeof buf - 1] = 0;
            rtd_strlcpy(out, buf, cap);
            return 0;
        }
    }
    return -EAGAIN;
}

void rtd_stats_view_foreach(const struct rtd_stats_view *v,
                            void (*fn)(const char *label, enum rtd_counter_kind kind,
                                       uint64_t value, void *arg),
                            void *arg)
{
    for (uint32_t i = 0; i < v->hdr->max_counters; i++) {
        const struct rtd_counter_slot *c = &v->counters[i];
        /* A7: pairs with R7: label and kind are complete. */
        if (atomic_load_explicit(&c->state, memory_order_acquire) != SLOT_READY)
            continue;
        char label[RTD_STATS_LABEL_MAX];
        rtd_strlcpy(label, c->label, sizeof label);
        fn(label, (enum rtd_counter_kind)c->kind,
           atomic_load_explicit(&c->value, memory_order_relaxed), arg);
    }
}

void rtd_stats_view_foreach_hist(const struct rtd_stats_view *v,
                                 void (*fn)(const char *label, const uint64_t *buckets, void *arg),
                                 void *arg)
{
    for (uint32_t i = 0; i < v->hdr->max_hists; i++) {
        const struct rtd_hist_slot *hs = &v->hists[i];
        /* A7: pairs with R7. */
        if (atomic_load_explicit(&hs->state, memory_order_acquire) != SLOT_READY)
            continue;
        char label[RTD_STATS_LABEL_MAX];
        uint64_t b[RTD_HIST_BUCKETS];
        rtd_strlcpy(label, hs->label, sizeof label);
        for (int k = 0; k < RTD_HIST_BUCKETS; k++)
            b[k] = atomic_load_explicit(&hs->buckets[k], memory_order_relaxed);
        fn(label, b, arg);
    }
}

uint64_t rtd_hist_percentile(const uint64_t *buckets, double q)
{
    uint64_t total = 0;
    for (int i = 0; i < RTD_HIST_BUCKETS; i++)
        total += buckets[i];
    if (!total)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    double target = q * (double)total;
    uint64_t cum = 0;
    for (int i = 0; i < RTD_HIST_BUCKETS; i++) {
        if (!buckets[i])
            continue;
        if ((double)(cum + buckets[i]) >= target) {
            double lo = i == 0 ? 0.0 : (double)(1ull << i);
            double hi = i >= 63 ? 18446744073709551615.0 : (double)(1ull << (i + 1));
            double frac = (target - (double)cum) / (double)buckets[i];
            if (frac < 0)
                frac = 0;
            return (uint64_t)(lo + frac * (hi - lo));
        }
        cum += buckets[i];
    }
    return 0;
}
