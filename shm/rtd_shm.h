/* SPDX-License-Identifier: MIT */
/*
 * shm/: lock-free rings and counters in POSIX shared memory. This is the
 * public API every rtdaq process links against; the bytes that live in the
 * segments are declared in rtd_abi.h.
 *
 * Names. A segment of instance I and ring R is "/rtdaq.I.R". Instance names
 * are [A-Za-z0-9_-]{1,31}; ring names [A-Za-z0-9_.-]{1,47} (a '.' lets a
 * process name its own rings, e.g. "results.w0"). The default instance is
 * "default", overridden by $RTDAQ_INSTANCE.
 *
 * Errors. Every int-returning function returns 0 (or a count) on success or
 * -errno. Attach distinguishes: -ENOENT no such segment, -EAGAIN exists but
 * not ready (creator still initialising), -EPROTO incompatible ABI major or
 * bad magic, -EBADMSG truncated (file shorter than its header says),
 * -EINVAL/-ENAMETOOLONG bad name. Hot paths return -EAGAIN for "nothing now".
 *
 * Threads. A ring handle is used by one thread. A producer is one thread of
 * one process; each consumer handle is one thread of one process.
 */
#ifndef RTD_SHM_H
#define RTD_SHM_H

#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>

#include "rtd_abi.h"

#define RTD_INSTANCE_DEFAULT "default"
#define RTD_INSTANCE_MAX     31
#define RTD_RING_NAME_MAX    47
#define RTD_MAX_CONSUMERS    16

/* Instance from the argument, else $RTDAQ_INSTANCE, else "default". */
const char *rtd_instance_name(const char *arg);
/* Validate and build "/rtdaq.<instance>.<ring>" into out. 0 or -EINVAL/-ENAMETOOLONG. */
int rtd_shm_name(char *out, size_t cap, const char *instance, const char *ring);
/* Call fn for every segment of an instance found in /dev/shm (ring is the part after the instance).
 */
int rtd_shm_list(const char *instance, void (*fn)(const char *ring, void *arg), void *arg);
/*
 * Read a segment's identity block (any rtdaq segment: ring, stats, or another
 * module's segment that opens with the same 64 bytes). 0, -ENOENT, -EAGAIN
 * (empty), -EBADMSG (shorter than the block), -EPROTO (not an rtdaq magic).
 */
int rtd_shm_identity(const char *instance, const char *ring, struct rtd_seg_hdr *out);
/* 1 if the process exists and is not a zombie (liveness of creators, consumers, members). */
int rtd_shm_pid_alive(int32_t pid);
/*
 * This process's wake-up barrier (docs/shm.md, "Memory ordering"): 1 registered
 * for membarrier (its wakers skip their fence), 0 fencing but membarrier
 * available, -1 unavailable or refused (fences on both sides, sleeps capped at
 * 1 ms; ThreadSanitizer builds always).
 */
int rtd_shm_membarrier_state(void);
/* Remove every segment of an instance whose creator is dead (or all with force). Count removed or
 * -errno. */
int rtd_shm_cleanup(const char *instance, int force);

/* ---- rings -------------------------------------------------------------- */

enum rtd_ring_kind { RTD_RING_FRAME = 1, RTD_RING_PACKET = 2 };
/* What a full ring does to the producer (per ring). */
enum rtd_overflow { RTD_OVERFLOW_BLOCK = 1, RTD_OVERFLOW_DROP_NEWEST = 2 };
/* What a consumer does to the producer. */
enum rtd_consumer_policy {
    RTD_CONSUMER_RELIABLE = 1, /* gates the producer; the ring's overflow policy applies */
    RTD_CONSUMER_MONITOR = 2,  /* never gates; detects and counts being lapped */
};

struct rtd_ring_config {
    enum rtd_ring_kind kind;
    uint32_t slot_payload; /* frame rings: payload bytes per slot (slot is 4 KiB aligned) */
    uint32_t slot_count;   /* frame rings: power of two */
    uint64_t data_bytes;   /* packet rings: bytes of record space, power of two */
    enum rtd_overflow overflow;
    int mlock; /* lock the mapping in RAM (warns once if not permitted) */
};

struct rtd_ring; /* opaque, process-local handle over one mapped segment */

/* Create (or replace a stale one whose creator is dead) and map; the state word is written last. */
int rtd_ring_create(struct rtd_ring **out, const char *instance, const char *name,
                    const struct rtd_ring_config *cfg);
/* Map an existing ring read-write (consumers write their cursors). */
int rtd_ring_attach(struct rtd_ring **out, const char *instance, const char *name);
/* Map read-only, for tools that only look (rtdaq stat): no consumers, no producing. */
int rtd_ring_attach_readonly(struct rtd_ring **out, const char *instance, const char *name);
/* Unmap. The creator's close also unlinks the segment. */
void rtd_ring_close(struct rtd_ring *r);
/* The mapped header, for tools that print it (rtdaq stat). */
const struct rtd_ring_hdr *rtd_ring_header(const struct rtd_ring *r);
/* Segment bytes a ring of this config takes (0: invalid config). */
size_t rtd_ring_memsize(const struct rtd_ring_config *cfg);
/* 1 once the creator closed the ring (end of stream): drain what is published, then stop. */
int rtd_ring_closed(const struct rtd_ring *r);
/* 1 when the ring's creator closed it or died: drain it, then attach to its successor. */
int rtd_ring_orphaned(const struct rtd_ring *r);
/*
 * Producer under RTD_OVERFLOW_BLOCK: sleep until a consumer frees space (or a
 * gating consumer is found dead) or timeout_ns passes. 0 or -ETIMEDOUT. Busy
 * retrying is faster; this is for idle time (a futex wake costs ~25 us here).
 */
int rtd_ring_wait_space(struct rtd_ring *r, uint64_t timeout_ns);

/* ---- frame rings: fixed slots, written and read in place ---------------- */

struct rtd_frame {
    struct rtd_frame_hdr *hdr; /* in the slot: seq, len, timestamps, type, flags, geometry */
    uint8_t *data;             /* slot payload, rtd_ring_header()->slot_payload bytes */
};

/*
 * Producer: claim the next slot, fill it in place, publish. A claim that is not
 * published is reused by the next claim (a dropped partial frame costs nothing).
 * -EAGAIN: full under RTD_OVERFLOW_BLOCK (retry or wait); -ENOBUFS: full under
 * RTD_OVERFLOW_DROP_NEWEST (the frame is counted as dropped; skip it).
 * Publish fills seq and, if zero, ts_mono_ns; wakes sleeping consumers only.
 */
int rtd_frame_claim(struct rtd_ring *r, struct rtd_frame *f);
int rtd_frame_publish(struct rtd_ring *r, struct rtd_frame *f);

/* ---- packet rings: variable-length records, batch publish --------------- */

/*
 * Producer: reserve len bytes (16 B .. 64 KiB) for one record, fill it, and
 * repeat; rtd_pkt_publish() makes every reserved record visible at once.
 * -EAGAIN / -ENOBUFS as for frames (on -ENOBUFS the record is counted dropped).
 * The returned pointer is valid until publish. Inline (rtd_ring_inline.h):
 * static inline void *rtd_pkt_reserve(struct rtd_ring *r, uint32_t len, uint16_t type, int *err);
 */
int rtd_pkt_publish(struct rtd_ring *r);

/* ---- consumers ---------------------------------------------------------- */

struct rtd_consumer; /* opaque: one registered cursor (pid, heartbeat, policy) */

/* Register a cursor (starts at the newest published position). -EBUSY: all 16 in use. */
int rtd_consumer_open(struct rtd_consumer **out, struct rtd_ring *r,
                      enum rtd_consumer_policy policy, const char *label);
void rtd_consumer_close(struct rtd_consumer *c);

/*
 * Reliable consumers, frame rings: peek the next frame in place (zero copy).
 * 0 got one, -EAGAIN none, -EINVAL for a monitor (monitors use rtd_frame_copy).
 */
int rtd_frame_peek(struct rtd_consumer *c, struct rtd_frame *f);
/*
 * Give the slot back: the consumer's cursor moves past it. 0, or -ESTALE: this
 * consumer was reaped (stopped past the producer's heartbeat limit) since its
 * previous release, so what it read since then may have been overwritten under
 * it: discard it. The next read registers again (see rtd_consumer_heartbeat).
 */
int rtd_frame_release(struct rtd_consumer *c);

/*
 * Reliable consumers, packet rings: read the next record in place; 0, -EAGAIN,
 * -EINVAL for a monitor. Records read are released in a batch by
 * rtd_pkt_release() (one cursor store per batch; 0, or -ESTALE as for
 * rtd_frame_release: discard the batch). Inline (rtd_ring_inline.h):
 * static inline int rtd_pkt_next(struct rtd_consumer *c, const struct rtd_pkt_hdr **rec);
 */
int rtd_pkt_release(struct rtd_consumer *c);

/*
 * Monitors (which never gate the producer and so may be lapped) read only by
 * copying out, as Aeron's copy receiver does: the record is copied into the
 * caller's buffer, then checked against the producer's claim mark; a record
 * overwritten before or during the copy is discarded and counted as lapped,
 * never returned torn. Reliable consumers may use them too (no check needed).
 *
 * rtd_frame_copy: copies the next frame's descriptor into *hdr and up to cap
 * payload bytes (buf may be NULL with cap 0: descriptor only) and moves past
 * it. Returns the payload bytes copied (min(len, slot_payload, cap)).
 * rtd_pkt_copy: copies the next record (struct rtd_pkt_hdr, then payload) into
 * buf (8-byte aligned, cap >= sizeof(struct rtd_pkt_hdr) + the largest record
 * expected; a larger record is skipped and counted as lapped) and returns its
 * payload length. Call rtd_pkt_release() once per batch so `rtdaq stat` shows
 * the monitor's position.
 * Both: -EAGAIN nothing now; -ENOTCONN reaped and no slot left to re-register.
 * *lapped (may be NULL) gets the records skipped since the previous record
 * returned: overwritten before they were read, or during the copy. A packet
 * monitor counts exactly by record seq; over a run, records returned + lapped
 * + those published after the last one returned = records published since open
 * (exact when the producer was idle at open).
 */
int rtd_frame_copy(struct rtd_consumer *c, struct rtd_frame_hdr *hdr, void *buf, size_t cap,
                   uint64_t *lapped);
int rtd_pkt_copy(struct rtd_consumer *c, void *buf, size_t cap, uint64_t *lapped);
/* As rtd_frame_copy, but up to cap bytes of the whole slot (what the producer left after the
 * frame's len bytes too, e.g. the synthetic camera's ground truth), validated the same way. */
int rtd_frame_copy_slot(struct rtd_consumer *c, struct rtd_frame_hdr *hdr, void *buf, size_t cap,
                        uint64_t *lapped);

/* Sleep on the ring's futex until something is published or timeout_ns passes. */
int rtd_consumer_wait(struct rtd_consumer *c, uint64_t timeout_ns);
/*
 * Liveness: refresh the heartbeat (peek/next/copy also do it every 256 polls).
 * Only rtd_ring_reap(stale_ns) looks at heartbeats; dead pids are found
 * automatically.
 *
 * A consumer reaped while it was alive (stopped past stale_ns, then resumed)
 * finds out at its next read or release: its slot no longer carries its
 * generation. It stores nothing more there and registers again (in the same
 * slot, which was kept for it while its pid lived), resuming at the newest
 * record; rtd_consumer_reregistered() and the slot's `reregistered` (shown by
 * rtdaq stat) count this. It never writes a slot another consumer registered.
 */
void rtd_consumer_heartbeat(struct rtd_consumer *c);
/* Records this consumer missed by being lapped (monitor) so far. */
uint64_t rtd_consumer_lapped(const struct rtd_consumer *c);
/* Times this consumer found itself reaped and registered again. */
uint64_t rtd_consumer_reregistered(const struct rtd_consumer *c);

/* Producer side: reclaim cursors of dead consumers (pid gone or heartbeat older than stale_ns). */
int rtd_ring_reap(struct rtd_ring *r, uint64_t stale_ns);

/* ---- consumer groups: N processes share one frame stream --------------- */

/*
 * A group is one reliable cursor shared by up to 16 members (worker processes).
 * Each frame goes to exactly one member. A member that dies holding a frame:
 * the frame is handed to the next member that calls rtd_group_take() (if the
 * slot still holds it) or, failing that, counted in the group's lost_dead
 * counter: never silently lost.
 */
struct rtd_group; /* opaque */
int rtd_group_join(struct rtd_group **out, struct rtd_ring *r, const char *group_label,
                   const char *member_label);
/*
 * take: 0, -EAGAIN (nothing now), -EBUSY (this member already holds a frame:
 * done first), -ENOTCONN (this member's entry was freed). done: 0, or -ESTALE:
 * the group was revived while this member held the frame (it had been stopped
 * past the producer's heartbeat limit), the frame was counted in lost_dead and
 * may have been overwritten: discard what was made of it.
 */
int rtd_group_take(struct rtd_group *g, struct rtd_frame *f);
int rtd_group_done(struct rtd_group *g, const struct rtd_frame *f);
int rtd_group_wait(struct rtd_group *g, uint64_t timeout_ns);
void rtd_group_leave(struct rtd_group *g);
/* The group's counters: frames of dead members lost / re-offered to survivors. */
uint64_t rtd_group_lost_dead(const struct rtd_group *g);
uint64_t rtd_group_adopted(const struct rtd_group *g);
/* Times this member found the group revived under it (it was stopped) and rejoined. */
uint64_t rtd_group_rejoined(const struct rtd_group *g);

/* ---- counters: one stats segment per process, read lock-free by anyone --- */

/*
 * Each process (or worker) creates its own stats segment "stats.<process>",
 * e.g. "stats.acq", "stats.proc.w0", "stats.ctl", with a label table. Each
 * counter has one writer (that process); any process may read at any time.
 * Labels are dotted paths ("packets.rx", "frames.dropped", "client.17.gaps").
 */
enum rtd_counter_kind { RTD_COUNTER = 1, RTD_GAUGE = 2 };
struct rtd_stats; /* opaque */
struct rtd_hist;  /* log2-bucketed histogram of ns values, in shared memory */

int rtd_stats_create(struct rtd_stats **out, const char *instance, const char *process,
                     uint32_t max_counters);
void rtd_stats_close(struct rtd_stats *s); /* unlinks: the process is gone */
/* Allocate (or find) a counter; NULL when the table is full. Writer: add/store relaxed. */
_Atomic uint64_t *rtd_stats_counter(struct rtd_stats *s, const char *label,
                                    enum rtd_counter_kind kind);
struct rtd_hist *rtd_stats_hist(struct rtd_stats *s, const char *label);
void rtd_hist_record(struct rtd_hist *h, uint64_t ns);
/* Liveness and what the process is doing, shown by rtdaq stat / ctl. */
void rtd_stats_heartbeat(struct rtd_stats *s);
void rtd_stats_set_status(struct rtd_stats *s, const char *status);

/* Readers: map an existing stats segment read-only and walk it. */
struct rtd_stats_view; /* opaque */
int rtd_stats_open(struct rtd_stats_view **out, const char *instance, const char *process);
void rtd_stats_view_close(struct rtd_stats_view *v);
const struct rtd_stats_hdr *rtd_stats_view_header(const struct rtd_stats_view *v);
/* Consistent copy of the status line (seqlock read). 0 or -EAGAIN (writer kept changing it). */
int rtd_stats_view_status(const struct rtd_stats_view *v, char *out, size_t cap);
/* Call fn for each counter: label, kind, value (relaxed snapshot). */
void rtd_stats_view_foreach(const struct rtd_stats_view *v,
                            void (*fn)(const char *label, enum rtd_counter_kind kind,
                                       uint64_t value, void *arg),
                            void *arg);
/* Histograms: label, bucket counts (RTD_HIST_BUCKETS; bucket i counts values in [2^i, 2^(i+1)) ns).
 */
void rtd_stats_view_foreach_hist(const struct rtd_stats_view *v,
                                 void (*fn)(const char *label, const uint64_t *buckets, void *arg),
                                 void *arg);
/* Percentile (0..1) from log2 buckets, interpolated within the bucket; 0 if empty. */
uint64_t rtd_hist_percentile(const uint64_t *buckets, double q);

/* Inline fast paths of rtd_pkt_reserve() and rtd_pkt_next(). */
#include "rtd_ring_inline.h"

#endif
