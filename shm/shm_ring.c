/* SPDX-License-Identifier: MIT */
/*
 * Rings: create/attach, the frame ring (fixed slots claimed, written and read
 * in place), the packet ring (variable-length records, batch publish), the
 * consumers (reliable and monitor cursors), futex wake-ups and reaping.
 *
 * Memory-ordering points carry a label and name their partner:
 *   R1/A1  creator's state word   -> attachers (shm_seg.c)
 *   R2/A2  consumer cursor        -> producer's free-space scan: "the cursor
 *          is the producer's licence to overwrite the slots behind it"
 *   R3/A3  producer's claimed     -> monitors' seqlock validation: a monitor
 *          that saw overwritten bytes will also see the claim that allowed it
 *   R4/A4  frame slot_seq         -> monitors: the slot holds position p
 *   R5/A5  published              -> consumers: records up to here are complete
 *   F1/F2  publish vs consumer sleep (store published; load sleepers) /
 *          (store sleepers; load published): one of the two sides sees the other
 *   F3/F4  producer scan vs consumer registration (Dekker, see consumer_open)
 *   F5/F6  consumer release vs producer sleeping for space
 *
 * Consumer slot ownership is not an ordering but a reservation: a slot's gen
 * changes only when it is registered, and a reaped slot is registered again
 * only by its owner while the owner's pid lives (slot_reclaimable()), so a
 * reaped owner's late stores can only land in its own, non-gating slot.
 */
#include "shm_internal.h"
#include "rtd_util.h"

#if defined(__SANITIZE_THREAD__)
_Atomic uint32_t rtd_tsan_fence_word[RTD_FENCE_PAIRS];
#endif

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The producer looks at the gating consumers' pids at most this often when full. */
#define LIVENESS_PERIOD_NS 10000000ull

#ifdef RTD_SHM_WEAKEN
/* Negative control for ThreadSanitizer: R5 weakened to relaxed; TSan must report it. */
#define ORDER_R5 memory_order_relaxed
#else
#define ORDER_R5 memory_order_release
#endif

static inline int64_t diff64(uint64_t a, uint64_t b)
{
    return (int64_t)(a - b);
}

static bool is_pow2(uint64_t x)
{
    return x && !(x & (x - 1));
}

static uint64_t round_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) & ~(a - 1);
}

/* Geometry from a config: 0 or -EINVAL. */
static int ring_geometry(const struct rtd_ring_config *cfg, uint64_t *seg_bytes, uint64_t *desc_off,
                         uint64_t *data_off, uint64_t *stride, uint64_t *data_bytes)
{
    if (cfg->overflow != RTD_OVERFLOW_BLOCK && cfg->overflow != RTD_OVERFLOW_DROP_NEWEST)
        return -EINVAL;
    if (cfg->kind == RTD_RING_FRAME) {
        if (!is_pow2(cfg->slot_count) || cfg->slot_count < 2 || cfg->slot_count > (1u << 20) ||
            cfg->slot_payload == 0 || cfg->slot_payload > (1u << 30))
            return -EINVAL;
        *desc_off = RTD_RING_HDR_BYTES;
        *data_off = round_up(*desc_off + (uint64_t)cfg->slot_count * sizeof(struct rtd_frame_hdr),
                             RTD_PAGE_ALIGN);
        *stride = round_up(cfg->slot_payload, RTD_PAGE_ALIGN);
        *data_bytes = *stride * cfg->slot_count;
    } else if (cfg->kind == RTD_RING_PACKET) {
        if (!is_pow2(cfg->data_bytes) || cfg->data_bytes < 4096 || cfg->data_bytes > (1ull << 40))
            return -EINVAL;
        *desc_off = 0;
        *data_off = RTD_RING_HDR_BYTES;
        *stride = 0;
        *data_bytes = cfg->data_bytes;
    } else {
        return -EINVAL;
    }
    *seg_bytes = *data_off + *data_bytes;
    /*
     * Packet rings end with a zero guard of one maximal record, from when
     * monitors read records in place. rtd_pkt_copy() bounds every copy by the
     * record area whatever length it reads, so it no longer needs the guard;
     * the guard stays because it is part of the ABI (seg_bytes).
     */
    if (cfg->kind == RTD_RING_PACKET)
        *seg_bytes += round_up(sizeof(struct rtd_pkt_hdr) + RTD_PKT_MAX_PAYLOAD, RTD_PAGE_ALIGN);
    return 0;
}

size_t rtd_ring_memsize(const struct rtd_ring_config *cfg)
{
    uint64_t seg, d, o, s, b;
    return ring_geometry(cfg, &seg, &d, &o, &s, &b) ? 0 : (size_t)seg;
}

static void ring_bind(struct rtd_ring *r)
{
    struct rtd_ring_hdr *h = r->seg.base;
    rtd_membarrier_init(); /* off the hot path: the membarrier query */
    r->hdr = h;
    r->hot.data = (uint8_t *)r->seg.base + h->data_off;
    if (h->kind == RTD_RING_FRAME) {
        r->desc = (struct rtd_frame_hdr *)((uint8_t *)r->seg.base + h->desc_off);
        r->hot.cap = h->slot_count;
    } else {
        r->desc = NULL;
        r->hot.cap = h->data_bytes;
    }
    r->hot.mask = r->hot.cap - 1;
    r->hot.claimed = &h->claimed;
    /*
     * Inline reserve: len < lim implies len <= RTD_PKT_MAX_PAYLOAD and stride <= cap / 2 (the
     * -EINVAL and -EMSGSIZE checks of the slow path; cap / 2 and the header are multiples of 8).
     * The gate opens once this handle is the producer (creator, or producer_init()).
     */
    r->fast_len_lim = 0;
    if (!r->desc) {
        uint64_t by_cap = r->hot.cap / 2 - sizeof(struct rtd_pkt_hdr);
        r->fast_len_lim =
            (uint32_t)(by_cap < RTD_PKT_MAX_PAYLOAD ? by_cap : RTD_PKT_MAX_PAYLOAD) + 1;
    }
    r->hot.fast_len_lim = 0;
}

int rtd_ring_create(struct rtd_ring **out, const char *instance, const char *name,
                    const struct rtd_ring_config *cfg)
{
    char shm_name[RTD_SHM_NAME_MAX];
    int rc = rtd_shm_name(shm_name, sizeof shm_name, instance, name);
    if (rc)
        return rc;
    uint64_t seg_bytes, desc_off, data_off, stride, data_bytes;
    rc = ring_geometry(cfg, &seg_bytes, &desc_off, &data_off, &stride, &data_bytes);
    if (rc)
        return rc;
    struct rtd_ring *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    rc = rtd_seg_create(&r->seg, shm_name, seg_bytes, cfg->mlock);
    if (rc) {
        free(r);
        return rc;
    }
    struct rtd_ring_hdr *h = r->seg.base;
    rtd_seg_init_hdr(h, RTD_MAGIC_RING, RTD_SEG_RING, seg_bytes, RTD_RING_HDR_BYTES);
    h->kind = cfg->kind;
    h->overflow = cfg->overflow;
    h->slot_payload = cfg->kind == RTD_RING_FRAME ? cfg->slot_payload : 0;
    h->slot_count = cfg->kind == RTD_RING_FRAME ? cfg->slot_count : 0;
    h->slot_stride = stride;
    h->data_bytes = data_bytes;
    h->data_off = data_off;
    h->desc_off = desc_off;
    rtd_strlcpy(h->name, name, sizeof h->name);
    atomic_store_explicit(&h->producer_pid, (int32_t)getpid(), memory_order_relaxed);
    for (int i = 0; i < RTD_MAX_CONSUMERS; i++)
        h->consumers[i].group = -1;
    ring_bind(r);
    if (r->desc)
        for (uint64_t i = 0; i < r->hot.cap; i++)
            atomic_store_explicit(&r->desc[i].slot_seq, RTD_SLOT_WRITING, memory_order_relaxed);
    r->prod_init = true;
    r->hot.fast_len_lim = r->fast_len_lim;
    /* R1: pairs with A1 in rtd_seg_attach(): everything above is visible to an attacher. */
    atomic_store_explicit(&h->state, RTD_STATE_READY, memory_order_release);
    *out = r;
    return 0;
}

static int ring_attach(struct rtd_ring **out, const char *instance, const char *name, bool writable)
{
    char shm_name[RTD_SHM_NAME_MAX];
    int rc = rtd_shm_name(shm_name, sizeof shm_name, instance, name);
    if (rc)
        return rc;
    struct rtd_ring *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    rc = rtd_seg_attach(&r->seg, shm_name, RTD_MAGIC_RING, RTD_SEG_RING, writable);
    if (rc) {
        free(r);
        return rc;
    }
    const struct rtd_ring_hdr *h = r->seg.base;
    struct rtd_ring_config cfg = {.kind = h->kind,
                                  .slot_payload = h->slot_payload,
                                  .slot_count = h->slot_count,
                                  .data_bytes = h->data_bytes,
                                  .overflow = h->overflow};
    uint64_t seg_bytes, desc_off, data_off, stride, data_bytes;
    rc = ring_geometry(&cfg, &seg_bytes, &desc_off, &data_off, &stride, &data_bytes);
    if (rc == 0 && (seg_bytes > r->seg.len || data_off != h->data_off || desc_off != h->desc_off ||
                    stride != h->slot_stride))
        rc = -EBADMSG;
    if (rc) {
        rtd_seg_close(&r->seg);
        free(r);
        return rc == -EINVAL ? -EPROTO : rc;
    }
    ring_bind(r);
    *out = r;
    return 0;
}

int rtd_ring_attach(struct rtd_ring **out, const char *instance, const char *name)
{
    return ring_attach(out, instance, name, true);
}

int rtd_ring_attach_readonly(struct rtd_ring **out, const char *instance, const char *name)
{
    return ring_attach(out, instance, name, false);
}

void rtd_ring_close(struct rtd_ring *r)
{
    if (!r)
        return;
    if (r->seg.creator) {
        /* Consumers still mapped see CLOSED (end of stream) and wake up to notice it. */
        atomic_store_explicit(&r->hdr->state, RTD_STATE_CLOSED, memory_order_release);
        atomic_fetch_add_explicit(&r->hdr->data_futex, 1, memory_order_release);
        rtd_futex_wake(&r->hdr->data_futex);
    }
    rtd_seg_close(&r->seg);
    free(r);
}

const struct rtd_ring_hdr *rtd_ring_header(const struct rtd_ring *r)
{
    return r->hdr;
}

int rtd_ring_closed(const struct rtd_ring *r)
{
    return atomic_load_explicit(&r->hdr->state, memory_order_acquire) == RTD_STATE_CLOSED;
}

/* ---- producer helpers ------------------------------------------------------ */

/* The producer may be a process that attached (replay into a daemon's ring): start where it left.
 */
static void producer_init(struct rtd_ring *r)
{
    if (r->prod_init)
        return;
    r->prod_init = true;
    /* An unpublished claim of an earlier producer is abandoned. */
    r->pub = atomic_load_explicit(&r->hdr->published, memory_order_relaxed);
    r->hot.head = r->pub;
    r->hot.records = atomic_load_explicit(&r->hdr->published_records, memory_order_relaxed);
    r->pub_records = r->hot.records;
    r->hot.cached_min = r->hot.head;
    r->hot.fast_len_lim = r->fast_len_lim;
    atomic_store_explicit(&r->hdr->producer_pid, (int32_t)getpid(), memory_order_relaxed);
}

static bool group_has_live_member(const struct rtd_ring_hdr *h, int gi)
{
    if (gi < 0 || gi >= RTD_MAX_GROUPS)
        return false;
    const struct rtd_group_slot *g = &h->groups[gi];
    for (int i = 0; i < RTD_GROUP_MAX_MEMBERS; i++) {
        uint32_t st = atomic_load_explicit(&g->members[i].state, memory_order_acquire);
        if (st == RTD_MEMBER_FREE)
            continue;
        if (st != RTD_MEMBER_ACTIVE)
            return true; /* an adoption is in progress: someone is alive */
        if (!rtd_pid_dead(atomic_load_explicit(&g->members[i].pid, memory_order_relaxed)))
            return true;
    }
    return false;
}

/* Dead: pid gone (or, with stale_ns, heartbeat older than that); groups: no live member. */
static bool slot_dead(const struct rtd_ring_hdr *h, const struct rtd_consumer_slot *s,
                      uint64_t stale_ns, uint64_t now)
{
    if (stale_ns) {
        uint64_t hb = atomic_load_explicit(&s->heartbeat_ns, memory_order_relaxed);
        if (diff64(now, hb) > (int64_t)stale_ns)
            return true;
    }
    if (s->group >= 0)
        return !group_has_live_member(h, s->group);
    return rtd_pid_dead(atomic_load_explicit(&s->pid, memory_order_relaxed));
}

uint64_t rtd_ring_min_cursor(struct rtd_ring *r, uint64_t head, bool check_liveness)
{
    struct rtd_ring_hdr *h = r->hdr;
    /* F3: pairs with F4 in rtd_consumer_open(): our claimed store vs its registration. */
    RTD_FENCE(memory_order_seq_cst, RTD_FENCE_SCAN);
    uint64_t min = head;
    uint64_t now = check_liveness ? rtd_now_ns() : 0;
    for (int i = 0; i < RTD_MAX_CONSUMERS; i++) {
        struct rtd_consumer_slot *s = &h->consumers[i];
        if (atomic_load_explicit(&s->state, memory_order_acquire) != RTD_CSLOT_ACTIVE ||
            s->policy != RTD_CONSUMER_RELIABLE)
            continue;
        /* A2: pairs with R2 in the consumer's release: it no longer reads below cursor. */
        uint64_t c = atomic_load_explicit(&s->cursor, memory_order_acquire);
        if (diff64(c, min) >= 0)
            continue;
        if (check_liveness && slot_dead(h, s, 0, now)) {
            uint32_t st = RTD_CSLOT_ACTIVE;
            atomic_compare_exchange_strong_explicit(&s->state, &st, RTD_CSLOT_DEAD,
                                                    memory_order_acq_rel, memory_order_relaxed);
            continue;
        }
        min = c;
    }
    return min;
}

/* Ring full for a record ending at `end`: rescan; true if there is room now. */
static bool make_room(struct rtd_ring *r, uint64_t end)
{
    bool live = false;
    uint64_t now = rtd_now_ns();
    if (now - r->last_liveness_ns >= LIVENESS_PERIOD_NS) {
        live = true;
        r->last_liveness_ns = now;
    }
    r->hot.cached_min = rtd_ring_min_cursor(r, r->hot.head, live);
    return diff64(end, r->hot.cached_min) <= (int64_t)r->hot.cap;
}

static int ring_full(struct rtd_ring *r)
{
    struct rtd_ring_hdr *h = r->hdr;
    if (!r->was_full) {
        r->was_full = true;
        r->hot.fast_len_lim = 0; /* the slow path ends the episode (was_full) */
        atomic_store_explicit(&h->full, atomic_load_explicit(&h->full, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    }
    if (h->overflow == RTD_OVERFLOW_DROP_NEWEST) {
        atomic_store_explicit(&h->dropped,
                              atomic_load_explicit(&h->dropped, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        return -ENOBUFS;
    }
    return -EAGAIN;
}

void rtd_ring_wake_consumers(struct rtd_ring *r)
{
    struct rtd_ring_hdr *h = r->hdr;
    /* F1: pairs with F2 in rtd_consumer_wait(): either it sees published or we see it sleeping. */
    rtd_wake_fence(RTD_FENCE_WAKE);
    if (atomic_load_explicit(&h->data_sleepers, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&h->data_futex, 1, memory_order_relaxed);
        rtd_futex_wake(&h->data_futex);
    }
}

void rtd_ring_wake_producer(struct rtd_ring *r)
{
    struct rtd_ring_hdr *h = r->hdr;
    if (h->overflow != RTD_OVERFLOW_BLOCK)
        return; /* a drop-newest producer never sleeps for space */
    /* F5: pairs with F6 in rtd_ring_wait_space(). */
    rtd_wake_fence(RTD_FENCE_SPACE);
    if (atomic_load_explicit(&h->space_sleepers, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&h->space_futex, 1, memory_order_relaxed);
        rtd_futex_wake(&h->space_futex);
    }
}

int rtd_ring_wait_space(struct rtd_ring *r, uint64_t timeout_ns)
{
    struct rtd_ring_hdr *h = r->hdr;
    producer_init(r);
    uint32_t w = atomic_load_explicit(&h->space_futex, memory_order_relaxed);
    atomic_store_explicit(&h->space_sleepers, 1, memory_order_relaxed);
    /* F6: pairs with F5: either a releasing consumer sees us asleep or we see its cursor. */
    timeout_ns = rtd_sleep_fence(RTD_FENCE_SPACE, timeout_ns);
    uint64_t before = r->hot.cached_min;
    r->last_liveness_ns = 0;
    int rc = 0;
    if (!make_room(r, r->hot.head + 1) && r->hot.cached_min == before)
        rc = rtd_futex_wait(&h->space_futex, w, timeout_ns);
    atomic_store_explicit(&h->space_sleepers, 0, memory_order_relaxed);
    return rc;
}

/* ---- frame ring: producer ---------------------------------------------------- */

int rtd_frame_claim(struct rtd_ring *r, struct rtd_frame *f)
{
    if (!r->desc)
        return -EINVAL;
    producer_init(r);
    uint64_t p = r->hot.head;
    if (diff64(p + 1, r->hot.cached_min) > (int64_t)r->hot.cap && !make_room(r, p + 1))
        return ring_full(r);
    r->was_full = false;
    struct rtd_frame_hdr *d = &r->desc[p & r->hot.mask];
    atomic_store_explicit(&r->hdr->claimed, p + 1, memory_order_relaxed);
    atomic_store_explicit(&d->slot_seq, RTD_SLOT_WRITING, memory_order_relaxed);
    /* R3: pairs with A3 in rtd_frame_copy(): the slot is marked before any byte changes. */
    RTD_FENCE(memory_order_release, RTD_FENCE_CLAIM);
    memset(d, 0, offsetof(struct rtd_frame_hdr, slot_seq));
    f->hdr = d;
    f->data = r->hot.data + (p & r->hot.mask) * r->hdr->slot_stride;
    return 0;
}

int rtd_frame_publish(struct rtd_ring *r, struct rtd_frame *f)
{
    uint64_t p = r->hot.head;
    struct rtd_frame_hdr *d = &r->desc[p & r->hot.mask];
    if (!f || f->hdr != d)
        return -EINVAL;
    d->seq = p;
    if (!d->ts_mono_ns)
        d->ts_mono_ns = rtd_now_ns();
    if (!d->ts_real_ns)
        d->ts_real_ns = rtd_realtime_ns();
    /* R4: pairs with A4 in monitors' peek: the slot now holds position p, complete. */
    atomic_store_explicit(&d->slot_seq, p, memory_order_release);
    r->hot.head = p + 1;
    r->pub = p + 1;
    atomic_store_explicit(&r->hdr->published_records, p + 1, memory_order_relaxed);
    /* R5: pairs with A5 in the consumers: frame p is complete. */
    atomic_store_explicit(&r->hdr->published, p + 1, ORDER_R5);
    rtd_ring_wake_consumers(r);
    return 0;
}

/* ---- packet ring: producer ---------------------------------------------------- */

/* Everything the inline rtd_pkt_reserve() leaves out: first use, padding, full ring, errors. */
void *rtd_pkt_reserve_slow(struct rtd_ring *r, uint32_t len, uint16_t type, int *err)
{
    int rc;
    if (r->desc || len > RTD_PKT_MAX_PAYLOAD || type == RTD_PKT_PAD) {
        rc = -EINVAL;
        goto fail;
    }
    producer_init(r);
    uint32_t s = rtd_pkt_stride(len);
    if (s > r->hot.cap / 2) {
        rc = -EMSGSIZE;
        goto fail;
    }
    uint64_t w = r->hot.head;
    uint64_t room = r->hot.cap - (w & r->hot.mask);
    uint64_t pad = room < s ? room : 0;
    uint64_t end = w + pad + s;
    if (diff64(end, r->hot.cached_min) > (int64_t)r->hot.cap && !make_room(r, end)) {
        rc = ring_full(r);
        goto fail;
    }
    r->was_full = false;
    r->hot.fast_len_lim = r->fast_len_lim;
    atomic_store_explicit(&r->hdr->claimed, end, memory_order_relaxed);
    /* R3: pairs with A3 in monitors: the claim is visible before any byte changes. */
    RTD_FENCE(memory_order_release, RTD_FENCE_CLAIM);
    if (pad) {
        if (pad >= sizeof(struct rtd_pkt_hdr)) {
            struct rtd_pkt_hdr *ph = (struct rtd_pkt_hdr *)(r->hot.data + (w & r->hot.mask));
            ph->len = (uint32_t)(pad - sizeof *ph);
            ph->type = RTD_PKT_PAD;
            ph->flags = 0;
            ph->seq = 0;
            ph->ts_mono_ns = 0;
        }
        w += pad;
    }
    struct rtd_pkt_hdr *ph = (struct rtd_pkt_hdr *)(r->hot.data + (w & r->hot.mask));
    ph->len = len;
    ph->type = type;
    ph->flags = 0;
    ph->seq = r->hot.records++;
    ph->ts_mono_ns = 0;
    r->hot.head = end;
    return ph + 1;
fail:
    if (err)
        *err = rc;
    return NULL;
}

int rtd_pkt_publish(struct rtd_ring *r)
{
    if (r->hot.head == r->pub)
        return 0;
    int n = (int)(r->hot.records - r->pub_records);
    r->pub_records = r->hot.records;
    r->pub = r->hot.head;
    atomic_store_explicit(&r->hdr->published_records, r->hot.records, memory_order_relaxed);
    /* R5: pairs with A5 in the consumers: every record reserved so far is complete. */
    atomic_store_explicit(&r->hdr->published, r->hot.head, ORDER_R5);
    rtd_ring_wake_consumers(r);
    return n;
}

/* ---- consumers --------------------------------------------------------------- */

/*
 * May a registering consumer take this DEAD slot? Only if nobody can still
 * write it: its owner's pid is gone, or (a group's shared cursor) no member of
 * its group is alive. A slot reaped by heartbeat while its owner lives (a
 * stopped, not a dead, process) stays reserved to that owner: when it resumes
 * it re-registers that very slot (reregister()), so a store it makes before it
 * notices lands in a slot that no other consumer uses. See "Reaping and
 * generations" in docs/shm.md.
 */
static bool slot_reclaimable(const struct rtd_ring_hdr *h, const struct rtd_consumer_slot *s)
{
    if (s->group >= 0)
        return !group_has_live_member(h, s->group);
    return rtd_pid_dead(atomic_load_explicit(&s->pid, memory_order_relaxed));
}

/*
 * Fill a slot this thread holds in state CLAIMING and make it ACTIVE with a new
 * generation; returns the generation. The cursor starts at the newest record.
 */
uint32_t rtd_consumer_init_slot(struct rtd_ring *r, struct rtd_consumer_slot *s, uint32_t policy,
                                const char *label, int32_t pid, int group, uint32_t rereg)
{
    struct rtd_ring_hdr *h = r->hdr;
    uint64_t now = rtd_now_ns();
    s->policy = policy;
    s->group = group;
    s->opened_mono_ns = now;
    if (label != s->label)
        rtd_strlcpy(s->label, label, sizeof s->label);
    atomic_store_explicit(&s->pid, pid, memory_order_relaxed);
    atomic_store_explicit(&s->heartbeat_ns, now, memory_order_relaxed);
    atomic_store_explicit(&s->lapped, 0, memory_order_relaxed);
    atomic_store_explicit(&s->consumed, 0, memory_order_relaxed);
    atomic_store_explicit(&s->reregistered, rereg, memory_order_relaxed);
    /* Only the CLAIMING holder writes gen: a plain increment. */
    uint32_t gen = atomic_load_explicit(&s->gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&s->gen, gen, memory_order_relaxed);
    /* A5: pairs with R5: start at the newest complete record. */
    uint64_t start = atomic_load_explicit(&h->published, memory_order_acquire);
    atomic_store_explicit(&s->cursor, start, memory_order_relaxed);
    atomic_store_explicit(&s->state, RTD_CSLOT_ACTIVE, memory_order_release);
    /*
     * F4: pairs with F3 in the producer's scan. Either the producer's next
     * scan sees this slot, or we see the claim that scan was made for and
     * start beyond it, so it can never overwrite what we are about to read.
     */
    RTD_FENCE(memory_order_seq_cst, RTD_FENCE_SCAN);
    uint64_t claimed = atomic_load_explicit(&h->claimed, memory_order_relaxed);
    if (diff64(claimed, start) > 0) {
        start = claimed;
        atomic_store_explicit(&s->cursor, start, memory_order_release);
    }
    return gen;
}

int rtd_consumer_claim_slot(struct rtd_ring *r, uint32_t policy, const char *label, int32_t pid,
                            int group)
{
    struct rtd_ring_hdr *h = r->hdr;
    for (int i = 0; i < RTD_MAX_CONSUMERS; i++) {
        struct rtd_consumer_slot *s = &h->consumers[i];
        uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);
        if (st != RTD_CSLOT_FREE && (st != RTD_CSLOT_DEAD || !slot_reclaimable(h, s)))
            continue;
        if (!atomic_compare_exchange_strong_explicit(&s->state, &st, RTD_CSLOT_CLAIMING,
                                                     memory_order_acquire, memory_order_relaxed))
            continue;
        rtd_consumer_init_slot(r, s, policy, label, pid, group, 0);
        return i;
    }
    return -EBUSY;
}

int rtd_consumer_open(struct rtd_consumer **out, struct rtd_ring *r,
                      enum rtd_consumer_policy policy, const char *label)
{
    if (policy != RTD_CONSUMER_RELIABLE && policy != RTD_CONSUMER_MONITOR)
        return -EINVAL;
    struct rtd_consumer *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    int i = rtd_consumer_claim_slot(r, policy, label, (int32_t)getpid(), -1);
    if (i < 0) {
        free(c);
        return i;
    }
    c->ring = r;
    c->index = i;
    c->slot = &r->hdr->consumers[i];
    c->gen = atomic_load_explicit(&c->slot->gen, memory_order_relaxed);
    c->policy = policy;
    c->hot.pos = atomic_load_explicit(&c->slot->cursor, memory_order_relaxed);
    c->hot.pub = c->hot.pos;
    c->hot.data = r->hot.data;
    c->hot.mask = r->hot.mask;
    c->hot.cap = r->hot.cap;
    c->hot.fast = !r->desc && policy == RTD_CONSUMER_RELIABLE;
    /*
     * Lap counting starts at the records published before the start position.
     * Exact when the producer was between publishes (published_records is
     * stored just before published); otherwise the first record read corrects
     * it downwards and the difference is not counted.
     */
    c->expect_seq = r->desc
                        ? c->hot.pos
                        : atomic_load_explicit(&r->hdr->published_records, memory_order_relaxed);
    *out = c;
    return 0;
}

void rtd_consumer_close(struct rtd_consumer *c)
{
    if (!c)
        return;
    /*
     * Our slot: ACTIVE under our generation, or DEAD and reserved to us (reaped
     * while we were stopped). Any other state or generation is not ours.
     */
    uint32_t st = atomic_load_explicit(&c->slot->state, memory_order_relaxed);
    if ((st == RTD_CSLOT_ACTIVE &&
         atomic_load_explicit(&c->slot->gen, memory_order_relaxed) == c->gen) ||
        st == RTD_CSLOT_DEAD)
        atomic_compare_exchange_strong_explicit(&c->slot->state, &st, RTD_CSLOT_FREE,
                                                memory_order_release, memory_order_relaxed);
    /* A producer blocked on us may go on now. */
    if (c->policy == RTD_CONSUMER_RELIABLE)
        rtd_ring_wake_producer(c->ring);
    free(c);
}

static void add_lapped(struct rtd_consumer *c, uint64_t n)
{
    c->lapped += n;
    atomic_store_explicit(&c->slot->lapped, c->lapped, memory_order_relaxed);
}

/*
 * Is the slot still ours? Two relaxed loads of our own line (which no one else
 * writes while we own it, so they hit our cache). A reap sets state DEAD; a
 * registration by anyone else would change gen.
 */
static inline bool slot_ours(const struct rtd_consumer *c)
{
    return atomic_load_explicit(&c->slot->state, memory_order_relaxed) == RTD_CSLOT_ACTIVE &&
           atomic_load_explicit(&c->slot->gen, memory_order_relaxed) == c->gen;
}

/*
 * We were reaped (stopped past the heartbeat limit, then resumed): register
 * again, preferably in our own slot (reserved to us while our pid lives, see
 * slot_reclaimable()), else in any free one. The cursor restarts at the newest
 * record; the records skipped are counted as lapped where positions count
 * records (frame rings; packet monitors count them by seq at the next read).
 * 0, or -ENOTCONN when no slot is left.
 */
static int reregister(struct rtd_consumer *c)
{
    struct rtd_ring *r = c->ring;
    struct rtd_consumer_slot *s = c->slot;
    uint32_t rereg = atomic_load_explicit(&s->reregistered, memory_order_relaxed) + 1;
    uint32_t st = RTD_CSLOT_DEAD;
    int i = c->index;
    if (atomic_compare_exchange_strong_explicit(&s->state, &st, RTD_CSLOT_CLAIMING,
                                                memory_order_acquire, memory_order_relaxed)) {
        c->gen = rtd_consumer_init_slot(r, s, c->policy, s->label, (int32_t)getpid(), -1, rereg);
    } else {
        char label[RTD_LABEL_MAX];
        rtd_strlcpy(label, s->label, sizeof label);
        i = rtd_consumer_claim_slot(r, c->policy, label, (int32_t)getpid(), -1);
        if (i < 0)
            return -ENOTCONN;
        s = &r->hdr->consumers[i];
        atomic_store_explicit(&s->reregistered, rereg, memory_order_relaxed);
        c->gen = atomic_load_explicit(&s->gen, memory_order_relaxed);
    }
    c->index = i;
    c->slot = s;
    uint64_t start = atomic_load_explicit(&s->cursor, memory_order_relaxed);
    if (r->desc && diff64(start, c->hot.pos) > 0)
        add_lapped(c, start - c->hot.pos);
    else
        atomic_store_explicit(&s->lapped, c->lapped, memory_order_relaxed);
    atomic_store_explicit(&s->consumed, c->hot.consumed, memory_order_relaxed);
    c->hot.pos = c->hot.pub = start;
    c->holding = false;
    c->reregistered++;
    return 0;
}

void rtd_consumer_heartbeat(struct rtd_consumer *c)
{
    if (slot_ours(c))
        atomic_store_explicit(&c->slot->heartbeat_ns, rtd_now_ns(), memory_order_relaxed);
}

uint64_t rtd_consumer_reregistered(const struct rtd_consumer *c)
{
    return c->reregistered;
}

uint64_t rtd_consumer_lapped(const struct rtd_consumer *c)
{
    return c->lapped;
}

/*
 * Refresh the cached published position; -EAGAIN nothing new, -ENOTCONN we were
 * reaped and found no slot to register again. Whether the slot is still ours is
 * checked before every cursor store (release_ok()), which tells us through
 * c->lost; here only every 256th refresh (with the heartbeat), so an idle
 * reader that releases nothing notices too. Measured on one core, a
 * publish + next + release round trip of one record: 13.5 ns before the
 * ownership check, 15.2 ns checking on every refresh and release, 14.2 ns
 * like this; batched (64 records) 4.6 ns per record in all three; rtdaq-bench
 * ring unchanged within its noise (docs/shm.md, "Ownership check").
 */
static int refresh(struct rtd_consumer *c)
{
    if (__builtin_expect(c->lost || (++c->refreshes & 255) == 0, 0)) {
        if (!slot_ours(c) && reregister(c))
            return -ENOTCONN;
        c->lost = false;
        atomic_store_explicit(&c->slot->heartbeat_ns, rtd_now_ns(), memory_order_relaxed);
    }
    /* A5: pairs with R5 in publish: records below published are complete. */
    c->hot.pub = atomic_load_explicit(&c->ring->hdr->published, memory_order_acquire);
    return diff64(c->hot.pub, c->hot.pos) > 0 ? 0 : -EAGAIN;
}

int rtd_consumer_wait(struct rtd_consumer *c, uint64_t timeout_ns)
{
    struct rtd_ring_hdr *h = c->ring->hdr;
    rtd_consumer_heartbeat(c);
    uint32_t w = atomic_load_explicit(&h->data_futex, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->data_sleepers, 1, memory_order_relaxed);
    /* F2: pairs with F1 in rtd_ring_wake_consumers(). */
    timeout_ns = rtd_sleep_fence(RTD_FENCE_WAKE, timeout_ns);
    int rc = 0;
    uint64_t p = atomic_load_explicit(&h->published, memory_order_relaxed);
    if (diff64(p, c->hot.pos) <= 0 &&
        atomic_load_explicit(&h->state, memory_order_relaxed) != RTD_STATE_CLOSED)
        rc = rtd_futex_wait(&h->data_futex, w, timeout_ns);
    atomic_fetch_sub_explicit(&h->data_sleepers, 1, memory_order_relaxed);
    return rc;
}

/*
 * Before a cursor store: is the slot still ours? If not, store nothing and make
 * the next read refresh, which re-registers. A stop between this check and the
 * store is harmless: the reaped slot stays reserved to us (slot_reclaimable()).
 */
static inline bool release_ok(struct rtd_consumer *c)
{
    if (__builtin_expect(slot_ours(c), 1))
        return true;
    c->hot.pub = c->hot.pos;
    c->lost = true;
    return false;
}

/* ---- frame ring: consumers ------------------------------------------------------ */

/* Reliable consumers only: the slot is ours until rtd_frame_release(). */
int rtd_frame_peek(struct rtd_consumer *c, struct rtd_frame *f)
{
    struct rtd_ring *r = c->ring;
    if (!r->desc || c->policy != RTD_CONSUMER_RELIABLE)
        return -EINVAL;
    if (diff64(c->hot.pub, c->hot.pos) <= 0) {
        int rc = refresh(c);
        if (rc)
            return rc;
    }
    f->hdr = &r->desc[c->hot.pos & r->hot.mask];
    f->data = r->hot.data + (c->hot.pos & r->hot.mask) * r->hdr->slot_stride;
    c->holding = true;
    return 0;
}

int rtd_frame_release(struct rtd_consumer *c)
{
    c->hot.pos++;
    c->hot.consumed++;
    c->holding = false;
    if (!release_ok(c))
        return -ESTALE;
    atomic_store_explicit(&c->slot->consumed, c->hot.consumed, memory_order_relaxed);
    /* R2: pairs with A2 in the producer's scan: we are done reading the slot. */
    atomic_store_explicit(&c->slot->cursor, c->hot.pos, memory_order_release);
    if (c->policy == RTD_CONSUMER_RELIABLE)
        rtd_ring_wake_producer(c->ring);
    return 0;
}

/* ---- monitors: copy out, then validate ------------------------------------------- */

/*
 * A monitor never gates the producer, so whatever it reads may be overwritten
 * while it reads. Like Aeron's copy broadcast receiver, it copies the record
 * out and only then checks (a seqlock on the producer's claimed mark, R3/A3)
 * that the producer did not begin to overwrite it before the copy ended; a
 * record that fails is discarded and counted as lapped. Callers only ever see
 * their own copy: nothing hands out a pointer into a lappable ring.
 *
 * The copy itself races with the producer by design: ThreadSanitizer is told
 * not to look (and, since it intercepts memcpy, the copy is a plain word loop
 * under TSan), the validation decides.
 */
#if defined(__SANITIZE_THREAD__)
#define RTD_NO_TSAN __attribute__((no_sanitize("thread")))
#else
#define RTD_NO_TSAN
#endif

RTD_NO_TSAN static void racy_copy(void *dst, const void *src, size_t n)
{
#if defined(__SANITIZE_THREAD__)
    /* volatile: keeps the compiler from turning the loop back into an intercepted memcpy. */
    const volatile uint8_t *s = src;
    uint8_t *d = dst;
    for (size_t i = 0; i < n; i++)
        d[i] = s[i];
#else
    memcpy(dst, src, n);
#endif
}

/*
 * Negative control (rtd_shm_novalidate, tests/shm/CMakeLists.txt): the copy is
 * returned without the check. stress_monitor must then see torn records.
 */
/* Had the producer claimed anything that overwrites position pos (or beyond)? */
static inline bool overwritten(struct rtd_ring *r, uint64_t pos)
{
#ifdef RTD_SHM_NO_VALIDATE
    (void)r;
    (void)pos;
    return false;
#else
    /* A3: pairs with R3 in claim/reserve: had the producer begun to overwrite, we see its mark. */
    RTD_FENCE(memory_order_acquire, RTD_FENCE_CLAIM);
    uint64_t claimed = atomic_load_explicit(&r->hdr->claimed, memory_order_relaxed);
    return diff64(claimed, pos) > (int64_t)r->hot.cap;
#endif
}

/* Records skipped since the last record handed out, for the caller's *lapped. */
static inline void report_lapped(struct rtd_consumer *c, uint64_t *lapped)
{
    if (lapped)
        *lapped = c->lapped - c->lap_mark;
    c->lap_mark = c->lapped;
}

static int frame_copy(struct rtd_consumer *c, struct rtd_frame_hdr *hdr, void *buf, size_t cap,
                      uint64_t *lapped, bool whole_slot)
{
    struct rtd_ring *r = c->ring;
    if (!r->desc || !hdr || (cap && !buf))
        return -EINVAL;
    const bool mon = c->policy == RTD_CONSUMER_MONITOR;
    for (;;) {
        if (diff64(c->hot.pub, c->hot.pos) <= 0) {
            int rc = refresh(c);
            if (rc)
                return rc;
        }
        if (mon) {
            /* The producer may be rewriting slot `pub`: the oldest safe position is pub - cap + 1.
             */
            uint64_t oldest = c->hot.pub - r->hot.cap + 1;
            if (diff64(oldest, c->hot.pos) > 0) {
                add_lapped(c, oldest - c->hot.pos);
                c->hot.pos = oldest;
            }
        }
        const struct rtd_frame_hdr *d = &r->desc[c->hot.pos & r->hot.mask];
        if (mon) {
            /* A4: pairs with R4 in publish: the slot holds our position, complete. */
            uint64_t sq = atomic_load_explicit(&d->slot_seq, memory_order_acquire);
            if (sq != c->hot.pos) {
                c->hot.pub = c->hot.pos; /* overwritten since: look at published again */
                continue;
            }
        }
        racy_copy(hdr, d, offsetof(struct rtd_frame_hdr, slot_seq));
        atomic_store_explicit(&hdr->slot_seq, c->hot.pos, memory_order_relaxed);
        size_t n = hdr->len < r->hdr->slot_payload && !whole_slot ? hdr->len : r->hdr->slot_payload;
        if (n > cap)
            n = cap;
        if (n)
            racy_copy(buf, r->hot.data + (c->hot.pos & r->hot.mask) * r->hdr->slot_stride, n);
        /* The claim of position p + cap is what overwrites ours: valid while claimed <= p + cap. */
        bool ok = !mon || !overwritten(r, c->hot.pos);
        /* A reliable reader reaped while it read has no licence for what it read either. */
        if (rtd_frame_release(c) && !mon)
            ok = false;
        if (!ok) {
            add_lapped(c, 1);
            continue;
        }
        report_lapped(c, lapped);
        return (int)n;
    }
}

int rtd_frame_copy(struct rtd_consumer *c, struct rtd_frame_hdr *hdr, void *buf, size_t cap,
                   uint64_t *lapped)
{
    return frame_copy(c, hdr, buf, cap, lapped, false);
}

int rtd_frame_copy_slot(struct rtd_consumer *c, struct rtd_frame_hdr *hdr, void *buf, size_t cap,
                        uint64_t *lapped)
{
    return frame_copy(c, hdr, buf, cap, lapped, true);
}

/* ---- packet ring: consumers ----------------------------------------------------- */

/* Everything the inline rtd_pkt_next() leaves out: refresh, padding, errors. Reliable only. */
int rtd_pkt_next_slow(struct rtd_consumer *c, const struct rtd_pkt_hdr **rec)
{
    struct rtd_ring *r = c->ring;
    if (r->desc || c->policy != RTD_CONSUMER_RELIABLE)
        return -EINVAL;
    for (;;) {
        if (diff64(c->hot.pub, c->hot.pos) <= 0) {
            int rc = refresh(c);
            if (rc)
                return rc;
        }
        uint64_t off = c->hot.pos & r->hot.mask;
        uint64_t room = r->hot.cap - off;
        if (room < sizeof(struct rtd_pkt_hdr)) {
            c->hot.pos += room;
            continue;
        }
        const struct rtd_pkt_hdr *h = (const struct rtd_pkt_hdr *)(r->hot.data + off);
        c->hot.pos += rtd_pkt_stride(h->len);
        if (h->type == RTD_PKT_PAD)
            continue;
        c->hot.consumed++;
        *rec = h;
        return 0;
    }
}

int rtd_pkt_copy(struct rtd_consumer *c, void *buf, size_t cap, uint64_t *lapped)
{
    struct rtd_ring *r = c->ring;
    if (r->desc || !buf || cap < sizeof(struct rtd_pkt_hdr) || ((uintptr_t)buf & 7))
        return -EINVAL;
    if (c->policy == RTD_CONSUMER_RELIABLE) {
        const struct rtd_pkt_hdr *h;
        int rc = rtd_pkt_next(c, &h);
        if (rc)
            return rc;
        if (sizeof *h + h->len > cap)
            return -EMSGSIZE; /* consumed: a reliable reader must size its buffer */
        memcpy(buf, h, sizeof *h + h->len);
        if (lapped)
            *lapped = 0;
        return (int)h->len;
    }
    for (;;) {
        if (diff64(c->hot.pub, c->hot.pos) <= 0) {
            int rc = refresh(c);
            if (rc)
                return rc;
        }
        uint64_t pos = c->hot.pos;
        uint64_t off = pos & r->hot.mask;
        uint64_t room = r->hot.cap - off;
        if (room < sizeof(struct rtd_pkt_hdr)) {
            c->hot.pos += room;
            continue;
        }
        struct rtd_pkt_hdr *v = buf;
        racy_copy(v, r->hot.data + off, sizeof *v);
        /* A length torn by an overwrite must not send the copy out of the record area. */
        bool fits = v->len <= RTD_PKT_MAX_PAYLOAD && rtd_pkt_stride(v->len) <= room;
        if (fits && v->type != RTD_PKT_PAD && sizeof *v + v->len <= cap)
            racy_copy(v + 1, r->hot.data + off + sizeof *v, v->len);
        /* Header and payload were copied before this check: it covers both. */
        if (!fits || overwritten(r, pos)) {
            /* Lapped: resume at the newest boundary; the next record's seq tells what we missed. */
            c->hot.pos = c->hot.pub =
                atomic_load_explicit(&r->hdr->published, memory_order_acquire);
            continue;
        }
        c->hot.pos += rtd_pkt_stride(v->len);
        if (v->type == RTD_PKT_PAD)
            continue;
        if (c->expect_seq != UINT64_MAX && diff64(v->seq, c->expect_seq) > 0)
            add_lapped(c, v->seq - c->expect_seq);
        c->expect_seq = v->seq + 1;
        if (sizeof *v + v->len > cap) {
            add_lapped(c, 1); /* too large for the caller's buffer: missed, counted */
            continue;
        }
        c->hot.consumed++;
        report_lapped(c, lapped);
        return (int)v->len;
    }
}

int rtd_pkt_release(struct rtd_consumer *c)
{
    if (!release_ok(c))
        return -ESTALE;
    atomic_store_explicit(&c->slot->consumed, c->hot.consumed, memory_order_relaxed);
    /* R2: pairs with A2 in the producer's scan: every record below pos may be overwritten. */
    atomic_store_explicit(&c->slot->cursor, c->hot.pos, memory_order_release);
    if (c->policy == RTD_CONSUMER_RELIABLE)
        rtd_ring_wake_producer(c->ring);
    return 0;
}

/* ---- reaping ------------------------------------------------------------------ */

int rtd_ring_reap(struct rtd_ring *r, uint64_t stale_ns)
{
    struct rtd_ring_hdr *h = r->hdr;
    uint64_t now = rtd_now_ns();
    int n = 0;
    for (int i = 0; i < RTD_MAX_CONSUMERS; i++) {
        struct rtd_consumer_slot *s = &h->consumers[i];
        uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);
        if (st != RTD_CSLOT_ACTIVE || !slot_dead(h, s, stale_ns, now))
            continue;
        if (atomic_compare_exchange_strong_explicit(&s->state, &st, RTD_CSLOT_DEAD,
                                                    memory_order_acq_rel, memory_order_relaxed))
            n++;
    }
    return n;
}
