/* SPDX-License-Identifier: MIT */
/*
 * Inline fast paths of the packet ring: rtd_pkt_reserve() for the producer
 * and rtd_pkt_next() for reliable consumers. A call across a library
 * boundary with the general checks cost ~7 ns (reserve) and ~5 ns (next) per
 * record; inlined, the common case (no wrap, known room, reliable cursor) is a
 * few loads and stores. Every other case (first use, wrap-around padding, ring
 * full, refreshing the published position, monitors) falls back to the
 * out-of-line rtd_pkt_reserve_slow() / rtd_pkt_next_slow(), which are complete
 * on their own.
 *
 * Included by rtd_shm.h; not meant to be included directly. The "hot" structs
 * below are the first member of the process-local handles (shm_internal.h), so
 * a handle pointer converts to a pointer to its hot part (C17 6.7.2.1p15).
 * They are process-local, not shared memory: the ABI in rtd_abi.h is
 * unchanged. Only shm/ writes them; applications must not touch them.
 */
#ifndef RTD_RING_INLINE_H
#define RTD_RING_INLINE_H

#include <stdatomic.h>
#include <stdint.h>

#include "rtd_abi.h"

struct rtd_ring;
struct rtd_consumer;

/*
 * Fences. ThreadSanitizer does not model atomic_thread_fence (gcc refuses it
 * with -Wtsan), so under TSan each fence pair becomes an RMW of the given order
 * on a word private to that pair: the same synchronisation, in a form TSan
 * understands, without linking unrelated pairs (which would hide real races).
 * Public only because the inline fast paths below use them.
 */
enum {
    RTD_FENCE_WAKE = 0,
    RTD_FENCE_SPACE,
    RTD_FENCE_CLAIM,
    RTD_FENCE_SCAN,
    RTD_FENCE_STATUS,
    RTD_FENCE_PAIRS
};
#if defined(__SANITIZE_THREAD__)
extern _Atomic uint32_t rtd_tsan_fence_word[RTD_FENCE_PAIRS];
#define RTD_FENCE(order, pair)                                                                     \
    ((void)atomic_fetch_add_explicit(&rtd_tsan_fence_word[pair], 0, order))
#else
#define RTD_FENCE(order, pair) atomic_thread_fence(order)
#endif

/* Producer-side hot state: the first member of struct rtd_ring. */
struct rtd_ring_hot {
    uint8_t *data;             /* packet records or frame payloads */
    uint64_t mask;             /* cap - 1 */
    uint64_t cap;              /* slot_count or data_bytes */
    uint64_t head;             /* frames: next slot to claim; packets: reserve end (bytes) */
    uint64_t cached_min;       /* lowest reliable cursor seen at the last scan */
    uint64_t records;          /* packet records reserved (seq of the next one) */
    _Atomic uint64_t *claimed; /* &hdr->claimed */
    /* Inline reserve applies to len < fast_len_lim; 0 (frame ring, producer not yet
     * initialised, or inside a ring-full episode) sends every call to the slow path. */
    uint32_t fast_len_lim;
};

/* Consumer-side hot state: the first member of struct rtd_consumer. */
struct rtd_consumer_hot {
    const uint8_t *data; /* the ring's record area */
    uint64_t mask;
    uint64_t cap;
    uint64_t pos;      /* next position to read */
    uint64_t pub;      /* cached published position */
    uint64_t consumed; /* records read so far (private; published per batch) */
    int fast;          /* 1: reliable consumer of a packet ring (inline next applies) */
};

void *rtd_pkt_reserve_slow(struct rtd_ring *r, uint32_t len, uint16_t type, int *err);
int rtd_pkt_next_slow(struct rtd_consumer *c, const struct rtd_pkt_hdr **rec);

static inline void *rtd_pkt_reserve(struct rtd_ring *r, uint32_t len, uint16_t type, int *err)
{
    struct rtd_ring_hot *h = (struct rtd_ring_hot *)(void *)r;
    uint64_t w = h->head;
    uint32_t s = rtd_pkt_stride(len);
    uint64_t end = w + s;
    /* No padding record needed, and room known from the last scan: else the slow path. */
    if (__builtin_expect(len >= h->fast_len_lim || type == RTD_PKT_PAD ||
                             (w & h->mask) + s > h->cap ||
                             (int64_t)(end - h->cached_min) > (int64_t)h->cap,
                         0))
        return rtd_pkt_reserve_slow(r, len, type, err);
    atomic_store_explicit(h->claimed, end, memory_order_relaxed);
    /* R3: pairs with A3 in monitors: the claim is visible before any byte changes. */
    RTD_FENCE(memory_order_release, RTD_FENCE_CLAIM);
    struct rtd_pkt_hdr *ph = (struct rtd_pkt_hdr *)(void *)(h->data + (w & h->mask));
    ph->len = len;
    ph->type = type;
    ph->flags = 0;
    ph->seq = h->records++;
    ph->ts_mono_ns = 0;
    h->head = end;
    return ph + 1;
}

static inline int rtd_pkt_next(struct rtd_consumer *c, const struct rtd_pkt_hdr **rec)
{
    struct rtd_consumer_hot *h = (struct rtd_consumer_hot *)(void *)c;
    /* Records below pub were made complete by R5 and acquired (A5) when pub was loaded. */
    if (__builtin_expect(h->fast && (int64_t)(h->pub - h->pos) > 0, 1)) {
        uint64_t off = h->pos & h->mask;
        const struct rtd_pkt_hdr *ph = (const struct rtd_pkt_hdr *)(const void *)(h->data + off);
        if (__builtin_expect(h->cap - off >= sizeof *ph && ph->type != RTD_PKT_PAD, 1)) {
            h->pos += rtd_pkt_stride(ph->len);
            h->consumed++;
            *rec = ph;
            return 0;
        }
    }
    return rtd_pkt_next_slow(c, rec);
}

#endif
