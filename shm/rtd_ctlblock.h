/* SPDX-License-Identifier: MIT */
/*
 * The control block "ctl.params": one small shared-memory segment
 * ("/rtdaq.<instance>.ctl.params") through which rtdaq-ctl hands operator
 * commands and run-time parameters to acq and proc without any socket on
 * their side. ctl is the only writer of the command and parameter words; each
 * owner process (acq, every fit worker of proc) polls it from its idle path or
 * between frames, applies what it owns, and acknowledges in a slot that only
 * it writes: the generation it handled, the effective values, or a refusal
 * with its reason. ctl answers an operator only once that acknowledgement is
 * there (docs/ctl.md, "acknowledged control").
 *
 * Byte map (struct rtd_ctlblock_shm, 4096 bytes, every line 64-byte aligned):
 *
 *     0  identity    struct rtd_seg_hdr (rtd_abi.h): magic "TDAQCTLB",
 *                    abi major/minor, size, creator pid, times, state
 *                    (RTD_STATE_READY written last, release)         ctl
 *    64  seq         seqlock word: odd while ctl writes; generation  ctl
 *   128  acq_cmd     seq, command (start/stop), mode, count, issue
 *                    time (CLOCK_REALTIME)                           ctl
 *   192  rec_cmd     seq, command (start/stop), path (256 B), issue
 *                    time                                            ctl
 *   512  params      RTD_CTL_PARAM_MAX 64-bit words, index = enum    ctl
 *  1536  acq_ack     acked seq, state, frames done, pid, time        acq
 *  1600  rec_ack     acked seq, result (0/-errno), bytes, records,
 *                    dropped                                         acq
 *  1664  owner acks  RTD_CTL_OWNER_SLOTS x 128 B (struct rtd_ctl_ack):
 *                    slot 0 acq, slot 1+k fit worker id k (mod 16)   each owner
 *  3968  reserved    up to 4096
 *
 * Reading. Everything ctl writes sits behind the seqlock: a reader copies it
 * with rtd_ctlblock_read(), which gives up after a bounded number of retries
 * (-EAGAIN, the caller keeps its last good copy), so a ctl killed or stopped
 * in the middle of a write never stops a reader. A command is acted on once:
 * acq stores the seq it handled in its acknowledgement words, and only seqs it
 * handled. Commands carry their issue time, which survives ctl restarts
 * (adoption): an acq that attaches to a new block handles the block's command
 * if it was issued after the last command acq handled (or after acq started),
 * so a command given while acq was re-attaching is carried out, not lost, and
 * an old one is never replayed.
 *
 * Liveness is the rings': the creator pid in the identity header, checked with
 * rtd_shm_pid_alive() (a zombie is dead). A reader whose creator died detaches
 * and attaches to the block the next ctl creates; that ctl adopts the dead
 * one's parameters and command state, so a restart changes nothing the
 * operator asked for.
 *
 * Changing this layout: append fields in the reserved area and bump the minor;
 * anything else bumps the major (attach answers -EPROTO). Major 2 (2026-12-05):
 * owner acknowledgement slots replace proc_ack; rec_ack gained records/dropped.
 */
#ifndef RTD_CTLBLOCK_H
#define RTD_CTLBLOCK_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "rtd_abi.h"

#define RTD_CTLBLOCK_RING    "ctl.params"
#define RTD_CTLBLOCK_MAGIC   0x424c544351414454ull /* "TDAQCTLB" little-endian */
#define RTD_SEG_CTLBLOCK     3                     /* rtd_seg_hdr.seg_type */
#define RTD_CTLBLOCK_MAJOR   2
#define RTD_CTLBLOCK_MINOR   0
#define RTD_CTLBLOCK_SIZE    4096u
#define RTD_CTL_PARAM_MAX    128
#define RTD_CTL_REC_PATH_MAX 256
#define RTD_CTL_OWNER_SLOTS  18 /* acq + 16 fit workers + 1 spare */
#define RTD_CTL_OWNER_VALUES 6  /* parameters one owner may own */
#define RTD_CTL_REASON_MAX   48
/* rtd_ctlblock_read() gives up after this many attempts (a write takes ~1 us). */
#define RTD_CTLBLOCK_READ_TRIES 4096

/* Acquisition commands and image modes (areaDetector's ImageMode/NumImages). */
enum rtd_acq_cmd { RTD_ACQ_CMD_NONE = 0, RTD_ACQ_CMD_START = 1, RTD_ACQ_CMD_STOP = 2 };
enum rtd_acq_mode { RTD_ACQ_SINGLE = 1, RTD_ACQ_MULTIPLE = 2, RTD_ACQ_CONTINUOUS = 3 };
/* What acq reports in acq_ack.state. */
enum rtd_acq_state { RTD_ACQ_IDLE = 0, RTD_ACQ_ACQUIRING = 1, RTD_ACQ_ERROR = 2 };
enum rtd_rec_cmd { RTD_REC_CMD_NONE = 0, RTD_REC_CMD_START = 1, RTD_REC_CMD_STOP = 2 };

/*
 * Parameters, by index into params[]. Integers are stored as uint64, doubles
 * as their IEEE-754 bits. The table in rtd_ctlblock.c gives each a name,
 * owner, type and valid range; "owner" is the process that applies it.
 */
enum rtd_ctl_param {
    RTD_P_ACQ_FRAME_RATE_LIMIT = 0, /* frames/s accepted into the ring, 0 = unlimited */
    RTD_P_ACQ_PACKET_RATE_LIMIT,    /* packets/s accepted, 0 = unlimited */
    RTD_P_ACQ_ROI_X,                /* ROI in pixels; width/height 0 = whole frame */
    RTD_P_ACQ_ROI_Y,
    RTD_P_ACQ_ROI_WIDTH,
    RTD_P_ACQ_ROI_HEIGHT,
    RTD_P_PROC_THRESHOLD,      /* double: ion detection threshold, ADU above background */
    RTD_P_PROC_MAX_ITER,       /* Levenberg-Marquardt iteration cap */
    RTD_P_PROC_MIN_SNR,        /* double: fits below this SNR are flagged, not published */
    RTD_P_CTL_INTERVAL_MS,     /* stats publish interval */
    RTD_P_CTL_FRAMES_EVERY,    /* publish every n-th frame on "frames", 0 = off */
    RTD_P_CTL_FRAMES_MAX_RATE, /* double: at most this many frames/s on "frames", 0 = no cap */
    RTD_P_COUNT
};

enum rtd_ctl_ptype { RTD_PT_U64 = 1, RTD_PT_F64 = 2 };

/* Who applies a parameter (struct rtd_ctl_ack.role). */
enum rtd_ctl_owner { RTD_OWNER_CTL = 1, RTD_OWNER_ACQ = 2, RTD_OWNER_PROC = 3 };
#define RTD_CTL_SLOT_ACQ 0
/* Fit worker id k acknowledges in slot 1 + k % 16. */
#define RTD_CTL_SLOT_PROC(k) (1 + ((k) % 16))

struct rtd_ctl_param_desc {
    const char *name;  /* dotted, e.g. "acq.roi.x" */
    const char *owner; /* "acq", "proc" or "ctl": who applies it */
    enum rtd_ctl_owner owner_id;
    int owner_index; /* index into rtd_ctl_ack.applied[] of its owner */
    enum rtd_ctl_ptype type;
    double min, max; /* inclusive range */
    double def;      /* value at creation */
    const char *unit;
    const char *help;
};

/*
 * One owner's acknowledgement (128 bytes). The owner writes pid/role when it
 * attaches, then for every parameter generation it handles: result, the
 * refused parameter and reason (or the effective values), and last
 * applied_gen with release (K3); ctl loads applied_gen with acquire and may
 * then read the rest. A refusal leaves the previous effective values.
 */
struct rtd_ctl_ack {
    alignas(64) _Atomic uint32_t pid; /* 0: slot never used */
    _Atomic uint32_t role;            /* enum rtd_ctl_owner */
    _Atomic uint64_t attached_ns;     /* CLOCK_REALTIME of the owner's attach */
    _Atomic uint64_t applied_gen;     /* last generation handled (applied or refused) */
    _Atomic int32_t result;           /* 0 applied, -errno refused */
    _Atomic int32_t refused_param;    /* enum rtd_ctl_param, or -1 */
    _Atomic uint64_t applied[RTD_CTL_OWNER_VALUES];  /* effective values, by owner_index */
    _Atomic uint64_t reason[RTD_CTL_REASON_MAX / 8]; /* NUL-terminated text of a refusal */
};
_Static_assert(sizeof(struct rtd_ctl_ack) == 128, "owner ack is two lines");
_Static_assert(offsetof(struct rtd_ctl_ack, applied_gen) == 16, "ack layout");
_Static_assert(offsetof(struct rtd_ctl_ack, applied) == 32, "ack layout");
_Static_assert(offsetof(struct rtd_ctl_ack, reason) == 80, "ack layout");

struct rtd_ctlblock_shm {
    /* Identity; id.state = RTD_STATE_READY last, release (C1); attach loads it with acquire. */
    alignas(64) struct rtd_seg_hdr id;

    alignas(64) _Atomic uint64_t seq; /* seqlock: W1 odd before writing, W2 even after */
    _Atomic uint64_t generation;      /* bumped by every write of params */

    alignas(64) _Atomic uint64_t acq_cmd_seq; /* bumped with each new command */
    _Atomic uint32_t acq_cmd;                 /* enum rtd_acq_cmd */
    _Atomic uint32_t acq_mode;                /* enum rtd_acq_mode */
    _Atomic uint64_t acq_count;               /* frames for single (1) / multiple (N) */
    _Atomic uint64_t acq_cmd_time_ns;         /* CLOCK_REALTIME when the command was issued */

    alignas(64) _Atomic uint64_t rec_cmd_seq;
    _Atomic uint32_t rec_cmd; /* enum rtd_rec_cmd */
    uint32_t reserved1;
    _Atomic uint64_t rec_path[RTD_CTL_REC_PATH_MAX / 8]; /* NUL-terminated path, in words */
    _Atomic uint64_t rec_cmd_time_ns;                    /* CLOCK_REALTIME of issue */

    alignas(64) _Atomic uint64_t params[RTD_CTL_PARAM_MAX];

    /* Written by acq only. */
    alignas(64) _Atomic uint64_t acq_ack_seq;
    _Atomic uint32_t acq_state; /* enum rtd_acq_state */
    _Atomic uint32_t acq_pid;
    _Atomic uint64_t acq_frames_done; /* frames acquired since the last start */
    _Atomic uint64_t acq_ack_time_ns; /* CLOCK_REALTIME of the last acknowledgement */

    alignas(64) _Atomic uint64_t rec_ack_seq;
    _Atomic int32_t rec_result; /* 0 or -errno of the last record command */
    _Atomic uint32_t rec_active;
    _Atomic uint64_t rec_bytes;   /* bytes in the file (current or last recording) */
    _Atomic uint64_t rec_records; /* records kept */
    _Atomic uint64_t rec_dropped; /* records that could not be written */

    /* Slot k written by its owner only (see RTD_CTL_SLOT_*). */
    struct rtd_ctl_ack acks[RTD_CTL_OWNER_SLOTS];

    alignas(64) uint8_t reserved[RTD_CTLBLOCK_SIZE - 3968];
};

_Static_assert(sizeof(struct rtd_ctlblock_shm) == RTD_CTLBLOCK_SIZE, "control block is 4 KiB");
_Static_assert(offsetof(struct rtd_ctlblock_shm, seq) == 64, "seq offset");
_Static_assert(offsetof(struct rtd_ctlblock_shm, acq_cmd_seq) == 128, "acq_cmd offset");
_Static_assert(offsetof(struct rtd_ctlblock_shm, acq_cmd_time_ns) == 152, "acq_cmd offset");
_Static_assert(offsetof(struct rtd_ctlblock_shm, rec_cmd_seq) == 192, "rec_cmd offset");
_Static_assert(offsetof(struct rtd_ctlblock_shm, rec_cmd_time_ns) == 464, "rec_cmd offset");
_Static_assert(offsetof(struct rtd_ctlblock_shm, params) == 512, "params offset");
_Static_assert(offsetof(struct rtd_ctlblock_shm, acq_ack_seq) == 1536, "acq_ack offset");
_Static_assert(offsetof(struct rtd_ctlblock_shm, rec_ack_seq) == 1600, "rec_ack offset");
_Static_assert(offsetof(struct rtd_ctlblock_shm, rec_records) == 1624, "rec_ack offset");
_Static_assert(offsetof(struct rtd_ctlblock_shm, acks) == 1664, "owner acks offset");
_Static_assert(offsetof(struct rtd_ctlblock_shm, reserved) == 3968, "reserved offset");

/* A consistent copy of everything ctl writes. */
struct rtd_ctl_snapshot {
    uint64_t generation;
    uint64_t acq_cmd_seq;
    uint32_t acq_cmd, acq_mode;
    uint64_t acq_count;
    uint64_t acq_cmd_time_ns;
    uint64_t rec_cmd_seq;
    uint32_t rec_cmd;
    char rec_path[RTD_CTL_REC_PATH_MAX];
    uint64_t rec_cmd_time_ns;
    uint64_t params[RTD_P_COUNT];
};

struct rtd_ctlblock; /* process-local handle */

/*
 * ctl: create, replacing a stale block whose creator is dead (-EEXIST while it
 * lives, zombies count as dead). The parameters and command state of a stale
 * block are adopted (*adopted = 1) so a restarted ctl keeps what was asked.
 */
int rtd_ctlblock_create(struct rtd_ctlblock **out, const char *instance, int *adopted);
/* acq/proc: map an existing block read-write. -ENOENT, -EAGAIN (not ready), -EPROTO. */
int rtd_ctlblock_attach(struct rtd_ctlblock **out, const char *instance);
/* Unmap; the creator also unlinks. */
void rtd_ctlblock_close(struct rtd_ctlblock *b);
/* The mapped block (for acknowledgement words and tools). */
struct rtd_ctlblock_shm *rtd_ctlblock_shm(struct rtd_ctlblock *b);

/*
 * Readers: a consistent snapshot. 0, or -EAGAIN after RTD_CTLBLOCK_READ_TRIES
 * attempts found a write in progress (*out is then left as it was: keep the
 * last good copy; a writer killed mid-write never blocks a reader).
 */
int rtd_ctlblock_read(const struct rtd_ctlblock *b, struct rtd_ctl_snapshot *out);
/* 1 while the block is READY and its creator lives; 0: detach and attach again. */
int rtd_ctlblock_live(const struct rtd_ctlblock *b);
/* Cheap change check: compare with the generation of your last snapshot. */
uint64_t rtd_ctlblock_generation(const struct rtd_ctlblock *b);
/* Typed access into a snapshot. */
uint64_t rtd_ctl_param_u64(const struct rtd_ctl_snapshot *s, enum rtd_ctl_param p);
double rtd_ctl_param_f64(const struct rtd_ctl_snapshot *s, enum rtd_ctl_param p);

/* Writer (ctl, one thread): apply a modified snapshot under the seqlock. */
void rtd_ctlblock_write(struct rtd_ctlblock *b, const struct rtd_ctl_snapshot *s);

/* acq: acknowledge a handled acquisition / record command. */
void rtd_ctlblock_ack_acq(struct rtd_ctlblock *b, uint64_t seq, enum rtd_acq_state state,
                          uint64_t frames_done);
struct rtd_ctl_rec_ack {
    int result; /* 0 or -errno */
    int active;
    uint64_t bytes, records, dropped;
};
void rtd_ctlblock_ack_rec(struct rtd_ctlblock *b, uint64_t seq, const struct rtd_ctl_rec_ack *r);

/*
 * Owners: claim slot (RTD_CTL_SLOT_*) for this process, then acknowledge each
 * generation handled: result 0 with the effective values of every parameter
 * the owner owns (indexed by enum, only the owner's are read), or -errno with
 * the refused parameter and a reason (the effective values stay).
 */
void rtd_ctlblock_owner_attach(struct rtd_ctlblock *b, int slot, enum rtd_ctl_owner role);
void rtd_ctlblock_owner_ack(struct rtd_ctlblock *b, int slot, uint64_t generation, int result,
                            int refused_param, const char *reason,
                            const struct rtd_ctl_snapshot *effective);
/* ctl: copy of an owner slot (reason NUL-terminated). */
struct rtd_ctl_ack_view {
    uint32_t pid, role;
    uint64_t applied_gen;
    int result, refused_param;
    uint64_t applied[RTD_CTL_OWNER_VALUES];
    char reason[RTD_CTL_REASON_MAX];
};
void rtd_ctlblock_owner_read(const struct rtd_ctlblock *b, int slot, struct rtd_ctl_ack_view *v);

/* Parameter table. */
const struct rtd_ctl_param_desc *rtd_ctl_param_desc(enum rtd_ctl_param p);
/* Index by name, or -ENOENT. */
int rtd_ctl_param_find(const char *name);
/* Range- and type-check a value for p; 0 or -ERANGE / -EINVAL (non-integer for a U64). */
int rtd_ctl_param_check(enum rtd_ctl_param p, double v);
/* Store v into a snapshot (after rtd_ctl_param_check). */
void rtd_ctl_param_store(struct rtd_ctl_snapshot *s, enum rtd_ctl_param p, double v);
double rtd_ctl_param_get(const struct rtd_ctl_snapshot *s, enum rtd_ctl_param p);
/*
 * A parameter word of all ones is "not set by an operator": its owner keeps
 * the value of its own configuration (command line, config file). Blocks are
 * created with every parameter unset.
 */
#define RTD_CTL_UNSET UINT64_MAX
static inline int rtd_ctl_param_is_set(const struct rtd_ctl_snapshot *s, enum rtd_ctl_param p)
{
    return s->params[p] != RTD_CTL_UNSET;
}
/* The value, or dflt (the owner's configuration) while unset. */
double rtd_ctl_param_or(const struct rtd_ctl_snapshot *s, enum rtd_ctl_param p, double dflt);
/* A value word (as stored in params[] / applied[]) as a double. */
double rtd_ctl_param_word(enum rtd_ctl_param p, uint64_t word);

const char *rtd_acq_mode_name(uint32_t mode);
const char *rtd_acq_state_name(uint32_t state);

#endif
