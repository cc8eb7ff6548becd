/* SPDX-License-Identifier: MIT */
/*
 * shm/ internals shared by its .c files: the process-local handles, the
 * segment helpers (create/attach/unmap) and the futex and liveness helpers.
 * Nothing here is part of the public API.
 */
#ifndef RTD_SHM_INTERNAL_H
#define RTD_SHM_INTERNAL_H

#include "rtd_shm.h"

#include <stdbool.h>
#include <sys/types.h>

#define RTD_SHM_NAME_MAX 96

/* Fences (RTD_FENCE, RTD_FENCE_*): see rtd_ring_inline.h, which the inline fast paths use. */

/* A mapped segment. */
struct rtd_seg {
    void *base;
    size_t len;
    char name[RTD_SHM_NAME_MAX]; /* "/rtdaq.<instance>.<ring>" */
    bool creator;
};

/*
 * Create "name" of len bytes (0660, MAP_POPULATE, optional mlock). An existing
 * segment whose creator is alive gives -EEXIST; one whose creator is dead is
 * replaced. The caller initialises the header and stores the state word last.
 */
int rtd_seg_create(struct rtd_seg *s, const char *name, size_t len, int lock);
/*
 * Map an existing segment, check its identity block against magic and
 * seg_type: -ENOENT, -EAGAIN (not ready), -EPROTO (magic or major),
 * -EBADMSG (shorter than it says). writable: PROT_WRITE too.
 */
int rtd_seg_attach(struct rtd_seg *s, const char *name, uint64_t magic, uint32_t seg_type,
                   bool writable);
/* Unmap, and unlink when we created it. */
void rtd_seg_close(struct rtd_seg *s);
/* Fill an identity block (state left at INIT). */
void rtd_seg_init_hdr(void *base, uint64_t magic, uint32_t seg_type, size_t seg_bytes,
                      uint32_t hdr_bytes);

/* true if pid is gone or a zombie (its parent has not reaped it yet). */
bool rtd_pid_dead(pid_t pid);

int rtd_futex_wait(_Atomic uint32_t *word, uint32_t val, uint64_t timeout_ns);
void rtd_futex_wake(_Atomic uint32_t *word);

/* Process-local handle over a mapped ring. */
struct rtd_ring {
    /* First member: the inline rtd_pkt_reserve() reaches it through the opaque pointer.
     * data, mask, cap; producer-private head, cached_min, records; fast-path gate. */
    struct rtd_ring_hot hot;
    struct rtd_seg seg;
    struct rtd_ring_hdr *hdr;
    struct rtd_frame_hdr *desc; /* frame descriptors */
    /* Producer-private state (the producer is the creator). */
    uint64_t pub; /* last value stored into hdr->published */
    uint64_t pub_records;
    uint32_t fast_len_lim;     /* hot.fast_len_lim outside ring-full episodes (packet rings) */
    uint64_t last_liveness_ns; /* rate limit for checking gating consumers' pids */
    bool prod_init;            /* producer state loaded (lazily for attached producers) */
    bool was_full;             /* count `full` once per episode, not once per retry */
};

struct rtd_consumer {
    /* First member: the inline rtd_pkt_next() reaches it through the opaque pointer.
     * Ring geometry copy, pos, pub, consumed, fast-path gate. */
    struct rtd_consumer_hot hot;
    struct rtd_ring *ring;
    struct rtd_consumer_slot *slot;
    int index;
    uint32_t gen;          /* slot->gen we registered with: the slot is ours while they match */
    uint64_t reregistered; /* times we found ourselves reaped and registered again */
    uint32_t policy;
    uint64_t expect_seq; /* monitor (packets): next record seq expected; UINT64_MAX unknown */
    uint64_t lapped;     /* private copy of slot->lapped */
    uint64_t lap_mark;   /* monitor: lapped when the last record was handed out */
    uint32_t refreshes;  /* heartbeat every 256 refreshes of pub */
    bool holding;        /* frames: a peeked frame not yet released */
    bool lost; /* a release found the slot no longer ours: the next refresh re-registers */
};

/* Claim a consumer slot and register it (see F4); index or -EBUSY. */
int rtd_consumer_claim_slot(struct rtd_ring *r, uint32_t policy, const char *label, int32_t pid,
                            int group);
/* Fill a slot held in state CLAIMING, bump its generation, make it ACTIVE; the new generation. */
uint32_t rtd_consumer_init_slot(struct rtd_ring *r, struct rtd_consumer_slot *s, uint32_t policy,
                                const char *label, int32_t pid, int group, uint32_t rereg);
/* Lowest active reliable cursor (head if none); check_liveness marks dead ones DEAD. */
uint64_t rtd_ring_min_cursor(struct rtd_ring *r, uint64_t head, bool check_liveness);
/* Producer side: wake sleeping consumers if any (after a publish). */
void rtd_ring_wake_consumers(struct rtd_ring *r);
/* Consumer side: wake the producer if it sleeps waiting for space (after a release). */
void rtd_ring_wake_producer(struct rtd_ring *r);

/*
 * Store-load barriers of the wake-up handshakes (see shm_seg.c). The waker
 * (after publishing work, before reading the sleeper count) calls
 * rtd_wake_fence(); the sleeper (after counting itself, before re-checking for
 * work) calls rtd_sleep_fence() and sleeps at most the timeout it returns.
 * rtd_membarrier_init() asks the kernel once, at ring create/attach, whether
 * membarrier is there, so no wake-up or sleep pays for the question.
 */
void rtd_membarrier_init(void);
void rtd_wake_fence(int pair);
uint64_t rtd_sleep_fence(int pair, uint64_t timeout_ns);

/* Bounded string copy that always terminates (labels and names in shared memory). */
void rtd_strlcpy(char *dst, const char *src, size_t cap);

#endif
