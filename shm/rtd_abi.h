/* SPDX-License-Identifier: MIT */
/*
 * Every byte that lives in rtdaq's shared memory. Two kinds of segment exist:
 * rings ("/rtdaq.<instance>.<ring>") and stats ("/rtdaq.<instance>.stats.<process>").
 * Both open with the same 64-byte identity block (struct rtd_seg_hdr), whose
 * state word is stored last with release, so a reader can tell "not ready"
 * (-EAGAIN) from "incompatible" (-EPROTO) from "truncated" (-EBADMSG).
 *
 * Ring segment (one producer, up to 16 consumers, up to 4 consumer groups):
 *
 *   offset  size  what                                   writer
 *   0       64    identity: magic .. state               creator (once)
 *   64      64    geometry: kind, overflow, slots, name  creator (once)
 *   128     64    guard line (never written)
 *   192     64    producer line: published,              producer
 *                 published_records, dropped, full, pid
 *   256     64    claim line: claimed (written per record, producer
 *                 read only by monitors and registering
 *                 consumers, so reliable consumers' line
 *                 stays quiet)
 *   320     64    wake line: futex words, sleeper counts producer+consumers
 *   384     128   admin lock (group join/leave), reserved
 *   512     2048  consumers[16], 128 B each              each consumer its own
 *                 (+56 gen: bumped by every registration and reap;
 *                 +60 reregistered: times the owner came back after a reap)
 *   2560    4352  groups[4], 1088 B each: a 64 B group    group members
 *                 line then members[16], 64 B each
 *                 (member +56 gen: bumped by join and revival)
 *   6912    1280  reserved (zero)
 *   8192    ...   frame rings: slot_count descriptors (struct rtd_frame_hdr,
 *                 128 B each), then at the next 4 KiB boundary slot_count
 *                 payloads of slot_stride bytes (slot_payload rounded up to
 *                 4 KiB), so every payload is 4 KiB aligned;
 *                 packet rings: data_bytes of records (struct rtd_pkt_hdr +
 *                 payload, 8-byte aligned, never split across the end: a
 *                 RTD_PKT_PAD record, or a tail shorter than a header, fills
 *                 the end), then a zero guard of 72 KiB (one maximal record
 *                 rounded to pages), from when monitors read in place (kept).
 *
 * Positions are free-running 64-bit counts (frames: slots; packets: bytes),
 * masked on use; the capacity is a power of two. A consumer's cursor is the
 * position it has finished with; the producer may reuse position p only when
 * every active reliable cursor is above p - capacity.
 *
 * Stats segment (one writer process, any number of read-only readers):
 *
 *   0       64    identity block
 *   64      64    process[48], pid, max_counters, max_hists
 *   128     64    start times, heartbeat_ns (writer)
 *   192     192   status string under a sequence word (writer)
 *   384     128   reserved
 *   512     ...   counters[max_counters], 64 B each (value + kind + label),
 *                 then hists[max_hists], 576 B each (label + 64 buckets)
 *
 * Changing this file: append fields in reserved space and bump
 * RTD_ABI_MINOR; anything else (moving, resizing, changing meaning) bumps
 * RTD_ABI_MAJOR. Readers accept any minor of their major. Never pack these
 * structs and never store pointers in them: each process maps at its own address.
 */
#ifndef RTD_ABI_H
#define RTD_ABI_H

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>

#define RTD_ABI_MAJOR 2 /* 2: claimed on its own line, packet-ring tail guard */
/* Minor 1: consumer slots carry gen, reregistered and a group's start position, group
 * members carry gen, frame descriptors carry the frame origin (ROI). */
#define RTD_ABI_MINOR 1

#define RTD_MAGIC_RING  0x474e495251414454ull /* "TDAQRING" little-endian */
#define RTD_MAGIC_STATS 0x5354415451414454ull /* "TDAQTATS" little-endian */
/* Low 32 bits shared by every rtdaq segment's magic ("TDAQ"): other modules' segments may use it.
 */
#define RTD_MAGIC_FAMILY 0x51414454u

enum { RTD_SEG_RING = 1, RTD_SEG_STATS = 2 };

/* Values of the state word. Anything else means "still initialising". */
#define RTD_STATE_INIT   0u
#define RTD_STATE_READY  0x59444552u /* "REDY" */
#define RTD_STATE_CLOSED 0x45534f43u /* "COSE": the creator closed it (end of stream) */

#define RTD_CACHE_LINE        64
#define RTD_RING_HDR_BYTES    8192u
#define RTD_PAGE_ALIGN        4096u
#define RTD_MAX_GROUPS        4
#define RTD_GROUP_MAX_MEMBERS 16
#define RTD_LABEL_MAX         32 /* consumer/group/member labels, including the NUL */
#define RTD_HIST_BUCKETS      64
#define RTD_STATUS_MAX        160
#define RTD_STATS_LABEL_MAX   48
#define RTD_PROCESS_MAX       48

/* The identity block every segment opens with (same bytes in both headers below). */
struct rtd_seg_hdr {
    uint64_t magic;           /* RTD_MAGIC_RING / RTD_MAGIC_STATS */
    uint16_t abi_major;       /* RTD_ABI_MAJOR of the creator */
    uint16_t abi_minor;       /* RTD_ABI_MINOR of the creator */
    uint32_t seg_type;        /* RTD_SEG_* */
    uint64_t seg_bytes;       /* mapped size the creator truncated the file to */
    uint32_t hdr_bytes;       /* size of the header before the data area */
    int32_t creator_pid;      /* process that created (and will unlink) it */
    uint64_t created_real_ns; /* CLOCK_REALTIME at creation */
    uint64_t created_mono_ns; /* CLOCK_MONOTONIC at creation */
    _Atomic uint32_t state;   /* RTD_STATE_*: READY stored last with release */
    uint32_t reserved0;
    uint64_t reserved1;
};
_Static_assert(sizeof(struct rtd_seg_hdr) == 64, "identity block is one line");
_Static_assert(offsetof(struct rtd_seg_hdr, magic) == 0, "abi");
_Static_assert(offsetof(struct rtd_seg_hdr, abi_major) == 8, "abi");
_Static_assert(offsetof(struct rtd_seg_hdr, abi_minor) == 10, "abi");
_Static_assert(offsetof(struct rtd_seg_hdr, seg_type) == 12, "abi");
_Static_assert(offsetof(struct rtd_seg_hdr, seg_bytes) == 16, "abi");
_Static_assert(offsetof(struct rtd_seg_hdr, hdr_bytes) == 24, "abi");
_Static_assert(offsetof(struct rtd_seg_hdr, creator_pid) == 28, "abi");
_Static_assert(offsetof(struct rtd_seg_hdr, created_real_ns) == 32, "abi");
_Static_assert(offsetof(struct rtd_seg_hdr, created_mono_ns) == 40, "abi");
_Static_assert(offsetof(struct rtd_seg_hdr, state) == 48, "abi");

/* ---- frames --------------------------------------------------------------- */

#define RTD_FRAME_PARTIAL (1u << 0) /* some of the frame's data is missing (lost packets) */
#define RTD_FRAME_EOS     (1u << 1) /* last frame of a stream (replay end, run stop) */

/* Pixel formats of struct rtd_frame_hdr.pixfmt (0: opaque bytes). */
enum {
    RTD_PIXFMT_NONE = 0,
    RTD_PIXFMT_MONO8 = 1,
    RTD_PIXFMT_MONO16 = 2, /* little-endian */
    RTD_PIXFMT_F32 = 3,
};

/*
 * One frame slot's descriptor, written by the producer between claim and
 * publish. claim zeroes the first
 * 64 bytes; rtd_frame_publish() fills seq, and ts_mono_ns / ts_real_ns when
 * the caller left them zero; the rest is the caller's.
 */
struct rtd_frame_hdr {
    uint64_t seq;        /* position of the frame in the ring (0, 1, 2, ...) */
    uint32_t len;        /* payload bytes used */
    uint16_t type;       /* producer-defined */
    uint16_t flags;      /* RTD_FRAME_* */
    uint64_t ts_mono_ns; /* CLOCK_MONOTONIC when acquired */
    uint64_t ts_real_ns; /* CLOCK_REALTIME when acquired */
    uint32_t width, height, pixfmt;
    uint32_t reserved0;
    uint64_t frame_id; /* the source's frame number (gaps = lost frames upstream) */
    /*
     * Where pixel (0,0) of this slot lies in the camera's full frame: non-zero
     * when acq publishes a region of interest (acq.roi.*). Results are reported
     * in full-frame coordinates (slot coordinates + origin). Minor 1; 0 before.
     */
    uint32_t origin_x, origin_y;
    /*
     * Slot sequence word, shm-internal: the position whose data the slot holds,
     * RTD_SLOT_WRITING while the producer writes it. Monitors read the slot
     * between two loads of this word (a seqlock), so they can tell it was
     * overwritten under them.
     */
    _Atomic uint64_t slot_seq;
    uint64_t reserved2[7];
};
#define RTD_SLOT_WRITING UINT64_MAX
_Static_assert(sizeof(struct rtd_frame_hdr) == 128, "frame descriptor is two lines");
_Static_assert(offsetof(struct rtd_frame_hdr, seq) == 0, "abi");
_Static_assert(offsetof(struct rtd_frame_hdr, len) == 8, "abi");
_Static_assert(offsetof(struct rtd_frame_hdr, type) == 12, "abi");
_Static_assert(offsetof(struct rtd_frame_hdr, flags) == 14, "abi");
_Static_assert(offsetof(struct rtd_frame_hdr, ts_mono_ns) == 16, "abi");
_Static_assert(offsetof(struct rtd_frame_hdr, ts_real_ns) == 24, "abi");
_Static_assert(offsetof(struct rtd_frame_hdr, width) == 32, "abi");
_Static_assert(offsetof(struct rtd_frame_hdr, height) == 36, "abi");
_Static_assert(offsetof(struct rtd_frame_hdr, pixfmt) == 40, "abi");
_Static_assert(offsetof(struct rtd_frame_hdr, frame_id) == 48, "abi");
_Static_assert(offsetof(struct rtd_frame_hdr, origin_x) == 56, "abi");
_Static_assert(offsetof(struct rtd_frame_hdr, origin_y) == 60, "abi");
_Static_assert(offsetof(struct rtd_frame_hdr, slot_seq) == 64, "abi");

/* ---- packets -------------------------------------------------------------- */

#define RTD_PKT_MAX_PAYLOAD 65536u
#define RTD_PKT_ALIGN       8u
#define RTD_PKT_PAD         0xffffu /* type of a padding record (skipped by rtd_pkt_next) */

/*
 * One record of a packet ring: this header, then len payload bytes, then
 * padding to RTD_PKT_ALIGN. seq counts records published by this producer
 * (drops do not take a seq; padding records carry none).
 */
struct rtd_pkt_hdr {
    uint32_t len;  /* payload bytes */
    uint16_t type; /* producer-defined; RTD_PKT_PAD is reserved */
    uint16_t flags;
    uint64_t seq;
    uint64_t ts_mono_ns; /* CLOCK_MONOTONIC set by the producer (0 if it chose not to) */
};
_Static_assert(sizeof(struct rtd_pkt_hdr) == 24, "abi");
_Static_assert(offsetof(struct rtd_pkt_hdr, len) == 0, "abi");
_Static_assert(offsetof(struct rtd_pkt_hdr, type) == 4, "abi");
_Static_assert(offsetof(struct rtd_pkt_hdr, flags) == 6, "abi");
_Static_assert(offsetof(struct rtd_pkt_hdr, seq) == 8, "abi");
_Static_assert(offsetof(struct rtd_pkt_hdr, ts_mono_ns) == 16, "abi");

static inline const void *rtd_pkt_payload(const struct rtd_pkt_hdr *h)
{
    return (const unsigned char *)h + sizeof *h;
}

/* Bytes a record of len payload bytes takes in the ring. */
static inline uint32_t rtd_pkt_stride(uint32_t len)
{
    return ((uint32_t)sizeof(struct rtd_pkt_hdr) + len + RTD_PKT_ALIGN - 1) & ~(RTD_PKT_ALIGN - 1);
}

/* ---- consumers ------------------------------------------------------------ */

/* Consumer slot states (claimed with a CAS from FREE or DEAD). */
enum {
    RTD_CSLOT_FREE = 0,
    RTD_CSLOT_CLAIMING = 1, /* being initialised by a new consumer */
    RTD_CSLOT_ACTIVE = 2,
    RTD_CSLOT_DEAD = 3, /* reaped: no longer gates; may be reclaimed */
};

/*
 * One registered cursor, two lines, written only by its consumer (or, for a
 * group, by the group's members; or by a reaper once the owner is dead).
 *
 * gen (minor 1) is bumped by every registration and every reap; a consumer
 * handle remembers the gen it registered with and stops writing the slot once
 * gen differs. A slot reaped while its owner's pid is alive (stale heartbeat:
 * the owner is stopped, not gone) stays reserved to that owner: only the owner
 * re-registers it (counting reregistered), so its stray stores after a reap
 * land in a slot no other consumer uses (docs/shm.md, "Reaping and generations").
 */
struct rtd_consumer_slot {
    alignas(RTD_CACHE_LINE) _Atomic uint64_t cursor; /* position consumed up to (exclusive) */
    _Atomic uint64_t heartbeat_ns;                   /* CLOCK_MONOTONIC of last sign of life */
    _Atomic uint64_t lapped;                         /* records missed by being lapped (monitor) */
    _Atomic uint64_t consumed;                       /* records taken (published per batch) */
    _Atomic uint32_t state;                          /* RTD_CSLOT_* */
    _Atomic int32_t pid;                             /* owner; 0 for a group's shared cursor */
    uint32_t policy;                                 /* enum rtd_consumer_policy */
    int32_t group;                                   /* group index, or -1 */
    uint64_t opened_mono_ns;
    _Atomic uint32_t gen;          /* (minor 1) registration generation; bumped by reaps too */
    _Atomic uint32_t reregistered; /* (minor 1) re-registrations of this owner after a reap */
    char label[RTD_LABEL_MAX];
    /* (minor 1) A group's shared cursor: the position it started at (records published
     * before it existed were never offered to it; the accounting names them). */
    uint64_t start;
    uint64_t reserved1[3];
};
_Static_assert(sizeof(struct rtd_consumer_slot) == 128, "abi");
_Static_assert(offsetof(struct rtd_consumer_slot, cursor) == 0, "abi");
_Static_assert(offsetof(struct rtd_consumer_slot, heartbeat_ns) == 8, "abi");
_Static_assert(offsetof(struct rtd_consumer_slot, lapped) == 16, "abi");
_Static_assert(offsetof(struct rtd_consumer_slot, consumed) == 24, "abi");
_Static_assert(offsetof(struct rtd_consumer_slot, state) == 32, "abi");
_Static_assert(offsetof(struct rtd_consumer_slot, pid) == 36, "abi");
_Static_assert(offsetof(struct rtd_consumer_slot, policy) == 40, "abi");
_Static_assert(offsetof(struct rtd_consumer_slot, group) == 44, "abi");
_Static_assert(offsetof(struct rtd_consumer_slot, gen) == 56, "abi");
_Static_assert(offsetof(struct rtd_consumer_slot, reregistered) == 60, "abi");
_Static_assert(offsetof(struct rtd_consumer_slot, label) == 64, "abi");
_Static_assert(offsetof(struct rtd_consumer_slot, start) == 64 + RTD_LABEL_MAX, "abi");

/* ---- consumer groups ------------------------------------------------------ */

#define RTD_GROUP_NONE UINT64_MAX /* a member's `holding` when it holds no frame */

/* Member states. */
enum {
    RTD_MEMBER_FREE = 0,
    RTD_MEMBER_ACTIVE = 1,
    RTD_MEMBER_ORPHAN = 2,   /* owner found dead; its frame awaits adoption */
    RTD_MEMBER_ADOPTING = 3, /* a survivor is taking the orphan's frame */
};

/* One member of a group: one line, written by that member (or its adopter). */
struct rtd_group_member {
    alignas(RTD_CACHE_LINE) _Atomic uint64_t holding; /* position held, or RTD_GROUP_NONE */
    _Atomic uint64_t heartbeat_ns;
    _Atomic uint64_t taken; /* frames this member took (adoptions included) */
    _Atomic uint32_t state; /* RTD_MEMBER_* */
    _Atomic int32_t pid;
    char label[RTD_LABEL_MAX - 8];
    _Atomic uint32_t gen; /* (minor 1) bumped by join and by a revival that kept the entry */
    uint32_t reserved0;
};
_Static_assert(sizeof(struct rtd_group_member) == 64, "abi");
_Static_assert(offsetof(struct rtd_group_member, gen) == 56, "abi");
_Static_assert(offsetof(struct rtd_group_member, holding) == 0, "abi");
_Static_assert(offsetof(struct rtd_group_member, state) == 24, "abi");
_Static_assert(offsetof(struct rtd_group_member, pid) == 28, "abi");

enum { RTD_GROUP_FREE = 0, RTD_GROUP_CLAIMING = 1, RTD_GROUP_ACTIVE = 2 };

/*
 * A consumer group: one reliable cursor (consumers[consumer]) shared by up to
 * 16 members. `next` is the next position to hand out (members CAS it); the
 * shared cursor is advanced to min(next, every member's holding).
 */
struct rtd_group_slot {
    alignas(RTD_CACHE_LINE) _Atomic uint64_t next;
    _Atomic uint64_t lost_dead; /* frames a dead member held that were gone before adoption */
    _Atomic uint64_t adopted;   /* frames of dead members re-offered to survivors */
    _Atomic uint32_t state;     /* RTD_GROUP_* */
    int32_t consumer;           /* index of the shared cursor in consumers[] */
    char label[RTD_LABEL_MAX];
    struct rtd_group_member members[RTD_GROUP_MAX_MEMBERS];
};
_Static_assert(sizeof(struct rtd_group_slot) == 1088, "abi");
_Static_assert(offsetof(struct rtd_group_slot, lost_dead) == 8, "abi");
_Static_assert(offsetof(struct rtd_group_slot, state) == 24, "abi");
_Static_assert(offsetof(struct rtd_group_slot, consumer) == 28, "abi");
_Static_assert(offsetof(struct rtd_group_slot, label) == 32, "abi");
_Static_assert(offsetof(struct rtd_group_slot, members) == 64, "abi");

/* ---- the ring header ------------------------------------------------------ */

struct rtd_ring_hdr {
    /* Line 0: identity (same bytes as struct rtd_seg_hdr), written once by the creator. */
    uint64_t magic;
    uint16_t abi_major, abi_minor;
    uint32_t seg_type;
    uint64_t seg_bytes;
    uint32_t hdr_bytes;
    int32_t creator_pid;
    uint64_t created_real_ns;
    uint64_t created_mono_ns;
    _Atomic uint32_t state;
    uint32_t reserved0;
    uint64_t reserved1;

    /* Line 1: geometry, written once by the creator. */
    uint32_t kind;         /* enum rtd_ring_kind */
    uint32_t overflow;     /* enum rtd_overflow */
    uint32_t slot_payload; /* frame rings: usable payload bytes per slot */
    uint32_t slot_count;   /* frame rings: power of two */
    uint64_t slot_stride;  /* frame rings: bytes between payloads (4 KiB multiple) */
    uint64_t data_bytes;   /* packet rings: record space, power of two; frame: payload area */
    uint64_t data_off;     /* frame rings: payload area; packet rings: record area */
    uint64_t desc_off;     /* frame rings: descriptor table (struct rtd_frame_hdr[]) */
    char name[16];         /* ring name, truncated (the segment name is authoritative) */

    /* Line 2: guard. */
    alignas(RTD_CACHE_LINE) uint64_t guard0[8];

    /* Line 3: the producer's line (one writer: the producer). */
    alignas(RTD_CACHE_LINE) _Atomic uint64_t published; /* frames: slots; packets: bytes */
    uint64_t reserved_claimed;          /* was `claimed` before it moved to its own line */
    _Atomic uint64_t published_records; /* records (frames) made visible so far */
    _Atomic uint64_t dropped;           /* records refused under RTD_OVERFLOW_DROP_NEWEST */
    _Atomic uint64_t full;              /* times the producer found the ring full */
    _Atomic uint64_t prod_heartbeat_ns;
    _Atomic int32_t producer_pid;
    uint32_t reserved2;
    uint64_t reserved3;

    /* Line 4: high-water of positions the producer may be writing (monitors' seqlock). */
    alignas(RTD_CACHE_LINE) _Atomic uint64_t claimed;
    uint64_t guard1[7];

    /* Line 5: wake-ups. Read by the producer on every publish, written only when someone sleeps. */
    alignas(RTD_CACHE_LINE) _Atomic uint32_t data_futex; /* bumped when data arrives for sleepers */
    _Atomic uint32_t data_sleepers;                      /* consumers in futex_wait on data_futex */
    _Atomic uint32_t space_futex; /* bumped when a consumer frees space for a sleeping producer */
    _Atomic uint32_t space_sleepers; /* 0/1: the producer waits for space */
    uint32_t reserved4[12];

    /* 384: cold-path lock for group join/leave: pid of the holder, 0 free (stolen from the dead).
     */
    _Atomic int32_t admin_lock;
    uint32_t reserved5[31]; /* ..511 */

    struct rtd_consumer_slot consumers[16];
    struct rtd_group_slot groups[RTD_MAX_GROUPS];
    uint8_t reserved6[RTD_RING_HDR_BYTES - 6912];
};
_Static_assert(sizeof(struct rtd_ring_hdr) == RTD_RING_HDR_BYTES, "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, magic) == offsetof(struct rtd_seg_hdr, magic), "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, abi_major) == offsetof(struct rtd_seg_hdr, abi_major),
               "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, seg_bytes) == offsetof(struct rtd_seg_hdr, seg_bytes),
               "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, creator_pid) ==
                   offsetof(struct rtd_seg_hdr, creator_pid),
               "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, state) == offsetof(struct rtd_seg_hdr, state), "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, kind) == 64, "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, overflow) == 68, "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, slot_payload) == 72, "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, slot_count) == 76, "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, slot_stride) == 80, "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, data_bytes) == 88, "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, data_off) == 96, "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, desc_off) == 104, "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, name) == 112, "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, published) == 192, "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, claimed) == 256, "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, published_records) == 208, "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, dropped) == 216, "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, full) == 224, "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, producer_pid) == 240, "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, data_futex) == 320, "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, space_sleepers) == 332, "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, admin_lock) == 384, "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, consumers) == 512, "abi");
_Static_assert(offsetof(struct rtd_ring_hdr, groups) == 2560, "abi");

/* ---- stats segments -------------------------------------------------------- */

/* One counter or gauge: its value and its label on one line (one writer: the owning process). */
struct rtd_counter_slot {
    _Atomic uint64_t value;
    uint32_t kind;          /* enum rtd_counter_kind */
    _Atomic uint32_t state; /* 0 free, 1 ready (label and kind valid; stored with release) */
    char label[RTD_STATS_LABEL_MAX];
};
_Static_assert(sizeof(struct rtd_counter_slot) == 64, "abi");
_Static_assert(offsetof(struct rtd_counter_slot, value) == 0, "abi");
_Static_assert(offsetof(struct rtd_counter_slot, kind) == 8, "abi");
_Static_assert(offsetof(struct rtd_counter_slot, state) == 12, "abi");
_Static_assert(offsetof(struct rtd_counter_slot, label) == 16, "abi");

/* A log2 histogram of ns values: bucket i counts [2^i, 2^(i+1)) (bucket 0 also counts 0). */
struct rtd_hist_slot {
    _Atomic uint32_t state; /* as rtd_counter_slot.state */
    uint32_t reserved0;
    uint64_t reserved1;
    char label[RTD_STATS_LABEL_MAX];
    _Atomic uint64_t buckets[RTD_HIST_BUCKETS];
};
_Static_assert(sizeof(struct rtd_hist_slot) == 576, "abi");
_Static_assert(offsetof(struct rtd_hist_slot, label) == 16, "abi");
_Static_assert(offsetof(struct rtd_hist_slot, buckets) == 64, "abi");

#define RTD_STATS_HDR_BYTES 512u

struct rtd_stats_hdr {
    /* Line 0: identity. */
    uint64_t magic;
    uint16_t abi_major, abi_minor;
    uint32_t seg_type;
    uint64_t seg_bytes;
    uint32_t hdr_bytes;
    int32_t creator_pid;
    uint64_t created_real_ns;
    uint64_t created_mono_ns;
    _Atomic uint32_t state;
    uint32_t reserved0;
    uint64_t reserved1;

    /* Line 1: who, written once. */
    char process[RTD_PROCESS_MAX];
    int32_t pid;
    uint32_t max_counters;
    uint32_t max_hists;
    uint32_t reserved2;

    /* Line 2: liveness (writer: the process). */
    uint64_t start_real_ns;
    uint64_t start_mono_ns;
    _Atomic uint64_t heartbeat_ns; /* CLOCK_MONOTONIC */
    uint64_t reserved3[5];

    /*
     * Lines 3-5: status text. status_seq is odd while the writer changes it;
     * readers copy the text between two equal even loads (a seqlock).
     */
    _Atomic uint32_t status_seq;
    uint32_t reserved4[7];
    char status[RTD_STATUS_MAX];

    uint64_t reserved5[16]; /* 384..511 */
    /* counters[max_counters] then hists[max_hists] follow at hdr_bytes. */
};
_Static_assert(sizeof(struct rtd_stats_hdr) == RTD_STATS_HDR_BYTES, "abi");
_Static_assert(offsetof(struct rtd_stats_hdr, state) == offsetof(struct rtd_seg_hdr, state), "abi");
_Static_assert(offsetof(struct rtd_stats_hdr, creator_pid) ==
                   offsetof(struct rtd_seg_hdr, creator_pid),
               "abi");
_Static_assert(offsetof(struct rtd_stats_hdr, process) == 64, "abi");
_Static_assert(offsetof(struct rtd_stats_hdr, pid) == 112, "abi");
_Static_assert(offsetof(struct rtd_stats_hdr, max_counters) == 116, "abi");
_Static_assert(offsetof(struct rtd_stats_hdr, max_hists) == 120, "abi");
_Static_assert(offsetof(struct rtd_stats_hdr, start_real_ns) == 128, "abi");
_Static_assert(offsetof(struct rtd_stats_hdr, heartbeat_ns) == 144, "abi");
_Static_assert(offsetof(struct rtd_stats_hdr, status_seq) == 192, "abi");
_Static_assert(offsetof(struct rtd_stats_hdr, status) == 224, "abi");

#endif
