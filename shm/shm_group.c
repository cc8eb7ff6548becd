/* SPDX-License-Identifier: MIT */
/*
 * Consumer groups: N worker processes share one reliable cursor of a frame
 * ring; each frame is taken by exactly one member. Members take positions by
 * CAS on the group's `next`; the shared cursor (which gates the producer) is
 * the lowest position still held by a member, or `next`. A member that dies
 * holding a frame is found by a survivor, which adopts the frame if the slot
 * still holds it, or counts it in lost_dead.
 *
 * Ordering: the group's words (next, holding, cursor) are used with seq_cst.
 * G1: a member publishes `holding = n` before its CAS of next to n + 1, so a
 * survivor that reads next >= n + 1 (G2) also sees the holding and never moves
 * the cursor past a frame in use. Frames per second here are ~1e5 at most, so
 * the cost of seq_cst is irrelevant next to the frame's processing.
 *
 * Generations. The group's shared cursor slot and each member entry carry a
 * generation. A group whose cursor was reaped (every member dead, or stopped
 * past the producer's heartbeat limit) is revived by the next joiner: the
 * cursor slot is re-registered in place (new generation) and members whose
 * process still lives keep their entry (new generation) but lose the frame they
 * held (counted in lost_dead). Such a member finds out at its next take, adopts
 * the new generations and counts itself in the cursor slot's `reregistered`.
 * Neither the cursor slot nor a live member's entry is ever handed to another
 * consumer or joiner while a member that may still write it lives
 * (slot_reclaimable() in shm_ring.c, revive_group() here).
 */
#include "shm_internal.h"
#include "rtd_util.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEAD_CHECK_PERIOD_NS  2000000ull
#define ADMIN_LOCK_TIMEOUT_NS 2000000000ull

struct rtd_group {
    struct rtd_ring *ring;
    struct rtd_group_slot *g;
    struct rtd_group_member *m;
    struct rtd_consumer_slot *cs;
    uint64_t held; /* position held, or RTD_GROUP_NONE */
    uint64_t pub;  /* cached published */
    uint64_t last_dead_check_ns;
    uint32_t takes;
    uint32_t m_gen;  /* m->gen when we joined (or last noticed a revival) */
    uint32_t cs_gen; /* cs->gen when we took the frame we hold */
    uint64_t rejoined;
};

/* Cold-path lock over group tables; a dead holder's lock is taken over. */
static int admin_lock(struct rtd_ring_hdr *h)
{
    int32_t me = (int32_t)getpid();
    uint64_t t0 = rtd_now_ns();
    for (;;) {
        int32_t cur = 0;
        if (atomic_compare_exchange_strong_explicit(&h->admin_lock, &cur, me, memory_order_acquire,
                                                    memory_order_relaxed))
            return 0;
        if (cur != 0 && rtd_pid_dead(cur) &&
            atomic_compare_exchange_strong_explicit(&h->admin_lock, &cur, me, memory_order_acquire,
                                                    memory_order_relaxed))
            return 0;
        if (rtd_now_ns() - t0 > ADMIN_LOCK_TIMEOUT_NS)
            return -EBUSY;
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
}

static void admin_unlock(struct rtd_ring_hdr *h)
{
    atomic_store_explicit(&h->admin_lock, 0, memory_order_release);
}

static int find_group(struct rtd_ring_hdr *h, const char *label)
{
    for (int i = 0; i < RTD_MAX_GROUPS; i++)
        if (atomic_load_explicit(&h->groups[i].state, memory_order_acquire) == RTD_GROUP_ACTIVE &&
            !strncmp(h->groups[i].label, label, RTD_LABEL_MAX))
            return i;
    return -1;
}

/*
 * Reset a group whose cursor was reaped (every member died or stopped):
 * holdings are lost, and so is every frame published while the cursor did not
 * gate the producer (the group restarts at the newest frame). Both go to
 * lost_dead, so that published = taken + lost_dead across the outage. Members
 * whose process lives (stopped, not dead) keep their entry under a new
 * generation, so a stopped member that resumes never writes an entry handed to
 * someone else; it notices the new generation at its next take.
 */
static int revive_group(struct rtd_ring *r, struct rtd_group_slot *g, int gi)
{
    struct rtd_ring_hdr *h = r->hdr;
    /* New generations first: a member that then takes a frame of the old epoch sees it. */
    for (int i = 0; i < RTD_GROUP_MAX_MEMBERS; i++) {
        struct rtd_group_member *m = &g->members[i];
        if (atomic_load_explicit(&m->state, memory_order_seq_cst) != RTD_MEMBER_FREE)
            atomic_fetch_add_explicit(&m->gen, 1, memory_order_seq_cst);
    }
    const uint64_t old_next = atomic_load_explicit(&g->next, memory_order_seq_cst);
    for (int i = 0; i < RTD_GROUP_MAX_MEMBERS; i++) {
        struct rtd_group_member *m = &g->members[i];
        uint32_t st = atomic_load_explicit(&m->state, memory_order_seq_cst);
        if (st == RTD_MEMBER_FREE)
            continue;
        /*
         * Held and handed out (below next): lost. A holding at or above old_next
         * was never handed out (its owner stopped between G1 and its CAS) and is
         * counted with the frames after old_next below: never twice.
         */
        uint64_t hold = atomic_exchange_explicit(&m->holding, RTD_GROUP_NONE, memory_order_seq_cst);
        if (hold != RTD_GROUP_NONE && (int64_t)(old_next - hold) > 0)
            atomic_fetch_add_explicit(&g->lost_dead, 1, memory_order_relaxed);
        if (st != RTD_MEMBER_ACTIVE ||
            rtd_pid_dead(atomic_load_explicit(&m->pid, memory_order_relaxed)))
            atomic_store_explicit(&m->state, RTD_MEMBER_FREE, memory_order_seq_cst);
    }
    /*
     * The reaped cursor slot is ours while any member lives: register it again
     * in place so stopped members keep writing their own group's cursor. Taken
     * by someone else (only possible once every member had died): claim another.
     */
    int ci = g->consumer;
    struct rtd_consumer_slot *cs = &h->consumers[ci];
    const uint64_t first = cs->start; /* where the group began: kept across revivals */
    uint32_t st = RTD_CSLOT_DEAD;
    if (cs->group == gi &&
        atomic_compare_exchange_strong_explicit(&cs->state, &st, RTD_CSLOT_CLAIMING,
                                                memory_order_acquire, memory_order_relaxed)) {
        rtd_consumer_init_slot(r, cs, RTD_CONSUMER_RELIABLE, g->label, 0, gi,
                               atomic_load_explicit(&cs->reregistered, memory_order_relaxed));
    } else {
        ci = rtd_consumer_claim_slot(r, RTD_CONSUMER_RELIABLE, g->label, 0, gi);
        if (ci < 0)
            return ci;
        g->consumer = ci;
    }
    h->consumers[ci].start = first;
    const uint64_t start = atomic_load_explicit(&h->consumers[ci].cursor, memory_order_seq_cst);
    if ((int64_t)(start - old_next) > 0)
        atomic_fetch_add_explicit(&g->lost_dead, start - old_next, memory_order_relaxed);
    atomic_store_explicit(&g->next, start, memory_order_seq_cst);
    return 0;
}

int rtd_group_join(struct rtd_group **out, struct rtd_ring *r, const char *group_label,
                   const char *member_label)
{
    struct rtd_ring_hdr *h = r->hdr;
    if (!r->desc || !group_label || !*group_label)
        return -EINVAL;
    struct rtd_group *gh = calloc(1, sizeof *gh);
    if (!gh)
        return -ENOMEM;
    int rc = admin_lock(h);
    if (rc) {
        free(gh);
        return rc;
    }
    int gi = find_group(h, group_label);
    struct rtd_group_slot *g = NULL;
    if (gi < 0) {
        for (int i = 0; i < RTD_MAX_GROUPS && gi < 0; i++)
            if (atomic_load_explicit(&h->groups[i].state, memory_order_acquire) == RTD_GROUP_FREE)
                gi = i;
        if (gi < 0) {
            rc = -EBUSY;
            goto out;
        }
        g = &h->groups[gi];
        rtd_strlcpy(g->label, group_label, sizeof g->label);
        atomic_store_explicit(&g->lost_dead, 0, memory_order_relaxed);
        atomic_store_explicit(&g->adopted, 0, memory_order_relaxed);
        for (int i = 0; i < RTD_GROUP_MAX_MEMBERS; i++) {
            atomic_store_explicit(&g->members[i].holding, RTD_GROUP_NONE, memory_order_relaxed);
            atomic_store_explicit(&g->members[i].state, RTD_MEMBER_FREE, memory_order_relaxed);
        }
        int ci = rtd_consumer_claim_slot(r, RTD_CONSUMER_RELIABLE, group_label, 0, gi);
        if (ci < 0) {
            rc = ci;
            goto out;
        }
        g->consumer = ci;
        uint64_t start = atomic_load_explicit(&h->consumers[ci].cursor, memory_order_seq_cst);
        h->consumers[ci].start = start; /* before ACTIVE (release below): readers see it with it */
        atomic_store_explicit(&g->next, start, memory_order_seq_cst);
        atomic_store_explicit(&g->state, RTD_GROUP_ACTIVE, memory_order_release);
    } else {
        g = &h->groups[gi];
        struct rtd_consumer_slot *cs = &h->consumers[g->consumer];
        if (atomic_load_explicit(&cs->state, memory_order_acquire) != RTD_CSLOT_ACTIVE ||
            cs->group != gi) {
            rc = revive_group(r, g, gi);
            if (rc)
                goto out;
        }
    }
    int mi = -1;
    for (int i = 0; i < RTD_GROUP_MAX_MEMBERS && mi < 0; i++)
        if (atomic_load_explicit(&g->members[i].state, memory_order_seq_cst) == RTD_MEMBER_FREE)
            mi = i;
    if (mi < 0) {
        rc = -EBUSY;
        goto out;
    }
    struct rtd_group_member *m = &g->members[mi];
    rtd_strlcpy(m->label, member_label, sizeof m->label);
    atomic_store_explicit(&m->holding, RTD_GROUP_NONE, memory_order_seq_cst);
    atomic_store_explicit(&m->taken, 0, memory_order_relaxed);
    atomic_store_explicit(&m->heartbeat_ns, rtd_now_ns(), memory_order_relaxed);
    atomic_store_explicit(&m->pid, (int32_t)getpid(), memory_order_relaxed);
    gh->m_gen = atomic_load_explicit(&m->gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&m->gen, gh->m_gen, memory_order_seq_cst);
    atomic_store_explicit(&m->state, RTD_MEMBER_ACTIVE, memory_order_seq_cst);
    gh->ring = r;
    gh->g = g;
    gh->m = m;
    gh->cs = &h->consumers[g->consumer];
    gh->held = RTD_GROUP_NONE;
out:
    admin_unlock(h);
    if (rc) {
        free(gh);
        return rc;
    }
    *out = gh;
    return 0;
}

/* Move the shared cursor up to the lowest position still in use (G2). */
static void advance_cursor(struct rtd_group *gh)
{
    struct rtd_group_slot *g = gh->g;
    uint64_t min = atomic_load_explicit(&g->next, memory_order_seq_cst);
    for (int i = 0; i < RTD_GROUP_MAX_MEMBERS; i++) {
        struct rtd_group_member *m = &g->members[i];
        if (atomic_load_explicit(&m->state, memory_order_seq_cst) == RTD_MEMBER_FREE)
            continue;
        uint64_t hold = atomic_load_explicit(&m->holding, memory_order_seq_cst);
        if (hold != RTD_GROUP_NONE && (int64_t)(hold - min) < 0)
            min = hold;
    }
    uint64_t cur = atomic_load_explicit(&gh->cs->cursor, memory_order_seq_cst);
    /* R2 (seq_cst is stronger): the frames below min are done; the producer may reuse them. */
    while ((int64_t)(min - cur) > 0 &&
           !atomic_compare_exchange_weak_explicit(&gh->cs->cursor, &cur, min, memory_order_seq_cst,
                                                  memory_order_seq_cst))
        ;
    rtd_ring_wake_producer(gh->ring);
}

static void frame_at(struct rtd_ring *r, uint64_t pos, struct rtd_frame *f)
{
    f->hdr = &r->desc[pos & r->hot.mask];
    f->data = r->hot.data + (pos & r->hot.mask) * r->hdr->slot_stride;
}

/* Look for members that died; adopt one orphaned frame if the slot still holds it. */
static bool adopt_orphans(struct rtd_group *gh, struct rtd_frame *f)
{
    struct rtd_group_slot *g = gh->g;
    struct rtd_ring *r = gh->ring;
    bool got = false;
    for (int i = 0; i < RTD_GROUP_MAX_MEMBERS; i++) {
        struct rtd_group_member *m = &g->members[i];
        if (m == gh->m)
            continue;
        uint32_t st = atomic_load_explicit(&m->state, memory_order_seq_cst);
        if (st == RTD_MEMBER_ACTIVE &&
            rtd_pid_dead(atomic_load_explicit(&m->pid, memory_order_relaxed))) {
            if (atomic_compare_exchange_strong_explicit(&m->state, &st, RTD_MEMBER_ORPHAN,
                                                        memory_order_seq_cst, memory_order_seq_cst))
                st = RTD_MEMBER_ORPHAN;
        }
        if (st != RTD_MEMBER_ORPHAN || got)
            continue;
        if (!atomic_compare_exchange_strong_explicit(&m->state, &st, RTD_MEMBER_ADOPTING,
                                                     memory_order_seq_cst, memory_order_seq_cst))
            continue;
        uint64_t hold = atomic_load_explicit(&m->holding, memory_order_seq_cst);
        if (hold != RTD_GROUP_NONE) {
            struct rtd_frame_hdr *d = &r->desc[hold & r->hot.mask];
            if (atomic_load_explicit(&d->slot_seq, memory_order_acquire) == hold) {
                /* Hold it ourselves before the orphan lets go, so the cursor never passes it. */
                atomic_store_explicit(&gh->m->holding, hold, memory_order_seq_cst);
                gh->held = hold;
                gh->cs_gen = atomic_load_explicit(&gh->cs->gen, memory_order_relaxed);
                frame_at(r, hold, f);
                atomic_fetch_add_explicit(&g->adopted, 1, memory_order_relaxed);
                atomic_fetch_add_explicit(&gh->m->taken, 1, memory_order_relaxed);
                got = true;
            } else {
                atomic_fetch_add_explicit(&g->lost_dead, 1, memory_order_relaxed);
            }
        }
        atomic_store_explicit(&m->holding, RTD_GROUP_NONE, memory_order_seq_cst);
        atomic_store_explicit(&m->state, RTD_MEMBER_FREE, memory_order_seq_cst);
    }
    if (!got)
        advance_cursor(gh);
    return got;
}

/*
 * Was the group revived since we last looked (we were stopped while its cursor
 * was reaped)? Then our holding was cleared and counted lost; adopt the new
 * generations, count the re-registration. -ENOTCONN if our entry was freed
 * (only when our pid looked dead to a reviver).
 */
static int check_generation(struct rtd_group *gh)
{
    struct rtd_group_slot *g = gh->g;
    struct rtd_ring_hdr *h = gh->ring->hdr;
    uint32_t mg = atomic_load_explicit(&gh->m->gen, memory_order_seq_cst);
    if (__builtin_expect(mg == gh->m_gen, 1))
        return 0;
    if (atomic_load_explicit(&gh->m->state, memory_order_seq_cst) != RTD_MEMBER_ACTIVE)
        return -ENOTCONN;
    gh->m_gen = mg;
    gh->cs = &h->consumers[g->consumer];
    gh->held = RTD_GROUP_NONE;
    gh->rejoined++;
    atomic_fetch_add_explicit(&gh->cs->reregistered, 1, memory_order_relaxed);
    return 0;
}

int rtd_group_take(struct rtd_group *gh, struct rtd_frame *f)
{
    struct rtd_group_slot *g = gh->g;
    struct rtd_ring *r = gh->ring;
    int rc = check_generation(gh);
    if (rc)
        return rc;
    if (gh->held != RTD_GROUP_NONE)
        return -EBUSY;
    if ((++gh->takes & 255) == 0) {
        uint64_t now = rtd_now_ns();
        atomic_store_explicit(&gh->m->heartbeat_ns, now, memory_order_relaxed);
        atomic_store_explicit(&gh->cs->heartbeat_ns, now, memory_order_relaxed);
    }
    for (;;) {
        uint64_t n = atomic_load_explicit(&g->next, memory_order_seq_cst);
        if ((int64_t)(gh->pub - n) <= 0) {
            /* A5: pairs with R5 in publish. */
            gh->pub = atomic_load_explicit(&r->hdr->published, memory_order_acquire);
            if ((int64_t)(gh->pub - n) <= 0) {
                atomic_store_explicit(&gh->m->holding, RTD_GROUP_NONE, memory_order_seq_cst);
                uint64_t now = rtd_now_ns();
                if (now - gh->last_dead_check_ns >= DEAD_CHECK_PERIOD_NS) {
                    gh->last_dead_check_ns = now;
                    atomic_store_explicit(&gh->m->heartbeat_ns, now, memory_order_relaxed);
                    atomic_store_explicit(&gh->cs->heartbeat_ns, now, memory_order_relaxed);
                    if (adopt_orphans(gh, f))
                        return 0;
                }
                return -EAGAIN;
            }
        }
        /* G1: the holding is visible before the CAS that hands us position n. */
        atomic_store_explicit(&gh->m->holding, n, memory_order_seq_cst);
        if (atomic_compare_exchange_weak_explicit(&g->next, &n, n + 1, memory_order_seq_cst,
                                                  memory_order_seq_cst))
            break;
    }
    /*
     * A revival that bumped our generation before this load read next and our
     * holding after it, so it counted this frame lost: do not hand it out, and
     * let go of it (a holding below the revived cursor would pin it). A
     * revival that bumps it after this load takes the holding from us and
     * counts the frame; our rtd_group_done() then returns -ESTALE.
     */
    if (__builtin_expect(atomic_load_explicit(&gh->m->gen, memory_order_seq_cst) != gh->m_gen, 0)) {
        atomic_store_explicit(&gh->m->holding, RTD_GROUP_NONE, memory_order_seq_cst);
        rc = check_generation(gh);
        return rc ? rc : -EAGAIN;
    }
    gh->held = atomic_load_explicit(&gh->m->holding, memory_order_relaxed);
    gh->cs_gen = atomic_load_explicit(&gh->cs->gen, memory_order_relaxed);
    atomic_fetch_add_explicit(&gh->m->taken, 1, memory_order_relaxed);
    frame_at(r, gh->held, f);
    return 0;
}

/*
 * Let go of the frame we hold. The exchange on our holding decides, against a
 * reviver's exchange (revive_group()), who accounts for the frame: a reviver
 * that took the holding counted it lost; if we took it back ourselves, nobody
 * counted it, and it is done, unless the group's cursor was reaped (or revived)
 * since we took it: then the cursor no longer protected the slot, and we count
 * it lost ourselves. Either way -ESTALE tells the caller to discard its result.
 */
int rtd_group_done(struct rtd_group *gh, const struct rtd_frame *f)
{
    (void)f;
    const uint64_t held = gh->held;
    if (held == RTD_GROUP_NONE)
        return 0;
    gh->held = RTD_GROUP_NONE;
    if (atomic_exchange_explicit(&gh->m->holding, RTD_GROUP_NONE, memory_order_seq_cst) != held)
        return -ESTALE;
    if (atomic_load_explicit(&gh->cs->state, memory_order_seq_cst) != RTD_CSLOT_ACTIVE ||
        atomic_load_explicit(&gh->cs->gen, memory_order_relaxed) != gh->cs_gen) {
        atomic_fetch_add_explicit(&gh->g->lost_dead, 1, memory_order_relaxed);
        return -ESTALE;
    }
    /* The group's frames done, shown by rtdaq stat as the shared cursor's `consumed`. */
    atomic_fetch_add_explicit(&gh->cs->consumed, 1, memory_order_relaxed);
    advance_cursor(gh);
    return 0;
}

int rtd_group_wait(struct rtd_group *gh, uint64_t timeout_ns)
{
    struct rtd_ring_hdr *h = gh->ring->hdr;
    uint32_t w = atomic_load_explicit(&h->data_futex, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->data_sleepers, 1, memory_order_relaxed);
    /* F2: pairs with F1 in rtd_ring_wake_consumers(). */
    timeout_ns = rtd_sleep_fence(RTD_FENCE_WAKE, timeout_ns);
    int rc = 0;
    uint64_t p = atomic_load_explicit(&h->published, memory_order_relaxed);
    uint64_t n = atomic_load_explicit(&gh->g->next, memory_order_relaxed);
    /* Sleep in slices: a dead member's frame is only found by polling. */
    uint64_t slice = timeout_ns < 10000000u ? timeout_ns : 10000000u;
    if ((int64_t)(p - n) <= 0 &&
        atomic_load_explicit(&h->state, memory_order_relaxed) != RTD_STATE_CLOSED)
        rc = rtd_futex_wait(&h->data_futex, w, slice);
    atomic_fetch_sub_explicit(&h->data_sleepers, 1, memory_order_relaxed);
    return rc == -ETIMEDOUT && slice < timeout_ns ? 0 : rc;
}

uint64_t rtd_group_lost_dead(const struct rtd_group *gh)
{
    return atomic_load_explicit(&gh->g->lost_dead, memory_order_relaxed);
}

uint64_t rtd_group_rejoined(const struct rtd_group *gh)
{
    return gh->rejoined;
}

uint64_t rtd_group_adopted(const struct rtd_group *gh)
{
    return atomic_load_explicit(&gh->g->adopted, memory_order_relaxed);
}

void rtd_group_leave(struct rtd_group *gh)
{
    if (!gh)
        return;
    struct rtd_ring_hdr *h = gh->ring->hdr;
    struct rtd_group_slot *g = gh->g;
    atomic_store_explicit(&gh->m->holding, RTD_GROUP_NONE, memory_order_seq_cst);
    bool locked = admin_lock(h) == 0;
    atomic_store_explicit(&gh->m->state, RTD_MEMBER_FREE, memory_order_seq_cst);
    bool last = true;
    for (int i = 0; i < RTD_GROUP_MAX_MEMBERS; i++)
        if (atomic_load_explicit(&g->members[i].state, memory_order_seq_cst) != RTD_MEMBER_FREE)
            last = false;
    if (last && locked) {
        /* Nobody left to read: stop gating the producer and free the group. */
        uint32_t st = RTD_CSLOT_ACTIVE;
        atomic_compare_exchange_strong_explicit(&gh->cs->state, &st, RTD_CSLOT_FREE,
                                                memory_order_release, memory_order_relaxed);
        atomic_store_explicit(&g->state, RTD_GROUP_FREE, memory_order_release);
    } else {
        advance_cursor(gh);
    }
    if (locked)
        admin_unlock(h);
    rtd_ring_wake_producer(gh->ring);
    free(gh);
}
