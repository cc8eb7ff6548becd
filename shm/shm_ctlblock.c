/* SPDX-License-Identifier: MIT */
/*
 * The control block "ctl.params" (see rtd_ctlblock.h): creation by ctl,
 * attachment by acq/proc, the seqlock that keeps a multi-word command or a
 * ROI consistent for readers, and the parameter table with ranges.
 */
#include "rtd_ctlblock.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rtd_shm.h"
#include "rtd_util.h"

/*
 * GCC refuses atomic_thread_fence under ThreadSanitizer. TSan cannot follow
 * another process anyway, and these fences only order accesses to memory
 * shared with other processes, so a TSan build uses an RMW on a private word
 * (x86 keeps the order either way).
 */
#if defined(__SANITIZE_THREAD__)
static _Atomic uint32_t ctlblock_fence_word;
#define CTL_FENCE(order) ((void)atomic_fetch_add_explicit(&ctlblock_fence_word, 0, order))
#else
#define CTL_FENCE(order) atomic_thread_fence(order)
#endif

/* A pause between retries: the writer, if it runs, finishes in about a microsecond. */
static inline void ctl_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

struct rtd_ctlblock {
    struct rtd_ctlblock_shm *shm;
    int creator;
    char name[96];
};

static const struct rtd_ctl_param_desc params[RTD_P_COUNT] = {
    [RTD_P_ACQ_FRAME_RATE_LIMIT] = {"acq.frame_rate_limit", "acq", RTD_OWNER_ACQ, 0, RTD_PT_U64, 0,
                                    1e6, 0, "frames/s",
                                    "frames accepted per second, 0 = unlimited"},
    [RTD_P_ACQ_PACKET_RATE_LIMIT] = {"acq.packet_rate_limit", "acq", RTD_OWNER_ACQ, 1, RTD_PT_U64,
                                     0, 1e9, 0, "packets/s",
                                     "packets accepted per second, 0 = unlimited"},
    [RTD_P_ACQ_ROI_X] = {"acq.roi.x", "acq", RTD_OWNER_ACQ, 2, RTD_PT_U64, 0, 65535, 0, "px",
                         "ROI left column"},
    [RTD_P_ACQ_ROI_Y] = {"acq.roi.y", "acq", RTD_OWNER_ACQ, 3, RTD_PT_U64, 0, 65535, 0, "px",
                         "ROI top row"},
    [RTD_P_ACQ_ROI_WIDTH] = {"acq.roi.width", "acq", RTD_OWNER_ACQ, 4, RTD_PT_U64, 0, 65535, 0,
                             "px", "ROI width, 0 = whole frame"},
    [RTD_P_ACQ_ROI_HEIGHT] = {"acq.roi.height", "acq", RTD_OWNER_ACQ, 5, RTD_PT_U64, 0, 65535, 0,
                              "px", "ROI height, 0 = whole frame"},
    [RTD_P_PROC_THRESHOLD] = {"proc.threshold", "proc", RTD_OWNER_PROC, 0, RTD_PT_F64, 0, 1e9, 0,
                              "ADU", "ion detection threshold above background, 0 = automatic"},
    [RTD_P_PROC_MAX_ITER] = {"proc.max_iter", "proc", RTD_OWNER_PROC, 1, RTD_PT_U64, 1, 1000, 20,
                             "iterations", "Levenberg-Marquardt iteration cap"},
    [RTD_P_PROC_MIN_SNR] = {"proc.min_snr", "proc", RTD_OWNER_PROC, 2, RTD_PT_F64, 0, 1e6, 0, "",
                            "fits below this signal-to-noise ratio are flagged"},
    [RTD_P_CTL_INTERVAL_MS] = {"ctl.interval_ms", "ctl", RTD_OWNER_CTL, 0, RTD_PT_U64, 10, 60000,
                               1000, "ms", "stats publish interval"},
    [RTD_P_CTL_FRAMES_EVERY] = {"ctl.frames_every", "ctl", RTD_OWNER_CTL, 1, RTD_PT_U64, 0, 1e6, 0,
                                "frames", "publish every n-th frame on topic 'frames', 0 = off"},
    [RTD_P_CTL_FRAMES_MAX_RATE] = {"ctl.frames_max_rate", "ctl", RTD_OWNER_CTL, 2, RTD_PT_F64, 0,
                                   1000, 0, "frames/s", "cap on topic 'frames', 0 = no cap"},
};

const struct rtd_ctl_param_desc *rtd_ctl_param_desc(enum rtd_ctl_param p)
{
    return (unsigned)p < RTD_P_COUNT ? &params[p] : NULL;
}

int rtd_ctl_param_find(const char *name)
{
    for (int i = 0; i < RTD_P_COUNT; i++)
        if (!strcmp(params[i].name, name))
            return i;
    return -ENOENT;
}

int rtd_ctl_param_check(enum rtd_ctl_param p, double v)
{
    const struct rtd_ctl_param_desc *d = rtd_ctl_param_desc(p);
    if (!d || !isfinite(v))
        return -EINVAL;
    if (d->type == RTD_PT_U64 && v != floor(v))
        return -EINVAL;
    if (v < d->min || v > d->max)
        return -ERANGE;
    return 0;
}

static uint64_t f64_bits(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static double bits_f64(uint64_t u)
{
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

void rtd_ctl_param_store(struct rtd_ctl_snapshot *s, enum rtd_ctl_param p, double v)
{
    s->params[p] = params[p].type == RTD_PT_U64 ? (uint64_t)v : f64_bits(v);
}

double rtd_ctl_param_or(const struct rtd_ctl_snapshot *s, enum rtd_ctl_param p, double dflt)
{
    return rtd_ctl_param_is_set(s, p) ? rtd_ctl_param_get(s, p) : dflt;
}

double rtd_ctl_param_word(enum rtd_ctl_param p, uint64_t word)
{
    return params[p].type == RTD_PT_U64 ? (double)word : bits_f64(word);
}

double rtd_ctl_param_get(const struct rtd_ctl_snapshot *s, enum rtd_ctl_param p)
{
    if (s->params[p] == RTD_CTL_UNSET)
        return params[p].def; /* unset: the table's default (callers with a config use _or) */
    return params[p].type == RTD_PT_U64 ? (double)s->params[p] : bits_f64(s->params[p]);
}

uint64_t rtd_ctl_param_u64(const struct rtd_ctl_snapshot *s, enum rtd_ctl_param p)
{
    if (s->params[p] == RTD_CTL_UNSET)
        return (uint64_t)params[p].def;
    return params[p].type == RTD_PT_U64 ? s->params[p] : (uint64_t)bits_f64(s->params[p]);
}

double rtd_ctl_param_f64(const struct rtd_ctl_snapshot *s, enum rtd_ctl_param p)
{
    return rtd_ctl_param_get(s, p);
}

const char *rtd_acq_mode_name(uint32_t mode)
{
    switch (mode) {
    case RTD_ACQ_SINGLE:
        return "single";
    case RTD_ACQ_MULTIPLE:
        return "multiple";
    case RTD_ACQ_CONTINUOUS:
        return "continuous";
    }
    return "none";
}

const char *rtd_acq_state_name(uint32_t state)
{
    switch (state) {
    case RTD_ACQ_IDLE:
        return "idle";
    case RTD_ACQ_ACQUIRING:
        return "acquiring";
    case RTD_ACQ_ERROR:
        return "error";
    }
    return "unknown";
}

static int map_block(struct rtd_ctlblock **out, const char *instance, int create,
                     struct rtd_ctl_snapshot *adopt, int *adopted)
{
    struct rtd_ctlblock *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    int rc = rtd_shm_name(b->name, sizeof b->name, rtd_instance_name(instance), RTD_CTLBLOCK_RING);
    if (rc)
        goto fail;
    int fd;
    if (create) {
        fd = shm_open(b->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0660);
        if (fd < 0 && errno == EEXIST) {
            /* Replace a block left by a dead ctl (a zombie is dead); refuse while it lives. */
            struct rtd_ctlblock *old = NULL;
            if (!map_block(&old, instance, 0, NULL, NULL) && old) {
                int alive = rtd_shm_pid_alive(old->shm->id.creator_pid);
                if (!alive && adopt && old->shm->id.magic == RTD_CTLBLOCK_MAGIC &&
                    old->shm->id.abi_major == RTD_CTLBLOCK_MAJOR &&
                    atomic_load_explicit(&old->shm->id.state, memory_order_acquire) ==
                        RTD_STATE_READY &&
                    rtd_ctlblock_read(old, adopt) == 0)
                    *adopted = 1; /* a torn last write is not adopted: defaults instead */
                rtd_ctlblock_close(old);
                if (alive) {
                    rc = -EEXIST;
                    goto fail;
                }
            }
            shm_unlink(b->name);
            fd = shm_open(b->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0660);
        }
        if (fd >= 0 && ftruncate(fd, RTD_CTLBLOCK_SIZE) < 0) {
            rc = -errno;
            close(fd);
            shm_unlink(b->name);
            goto fail;
        }
    } else {
        fd = shm_open(b->name, O_RDWR | O_CLOEXEC, 0);
    }
    if (fd < 0) {
        rc = -errno;
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || (size_t)st.st_size < sizeof(struct rtd_ctlblock_shm)) {
        close(fd);
        rc = create ? -EIO : -EAGAIN;
        goto fail;
    }
    void *p = mmap(NULL, RTD_CTLBLOCK_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        rc = -errno;
        goto fail;
    }
    b->shm = p;
    b->creator = create;
    *out = b;
    return 0;
fail:
    free(b);
    return rc;
}

int rtd_ctlblock_create(struct rtd_ctlblock **out, const char *instance, int *adopted)
{
    struct rtd_ctlblock *b = NULL;
    struct rtd_ctl_snapshot old;
    int have_old = 0;
    int rc = map_block(&b, instance, 1, &old, &have_old);
    if (rc || !b)
        return rc ? rc : -EIO;
    struct rtd_ctlblock_shm *s = b->shm;
    s->id.magic = RTD_CTLBLOCK_MAGIC;
    s->id.abi_major = RTD_CTLBLOCK_MAJOR;
    s->id.abi_minor = RTD_CTLBLOCK_MINOR;
    s->id.seg_type = RTD_SEG_CTLBLOCK;
    s->id.seg_bytes = RTD_CTLBLOCK_SIZE;
    s->id.hdr_bytes = RTD_CTLBLOCK_SIZE;
    s->id.creator_pid = (int32_t)getpid();
    s->id.created_real_ns = rtd_realtime_ns();
    s->id.created_mono_ns = rtd_now_ns();
    if (have_old) {
        /* The next generation re-applies the same values: owners acknowledge anew. */
        old.generation++;
        rtd_ctlblock_write(b, &old);
    } else {
        for (int i = 0; i < RTD_P_COUNT; i++)
            atomic_store_explicit(&s->params[i], RTD_CTL_UNSET, memory_order_relaxed);
    }
    if (adopted)
        *adopted = have_old;
    /* C1: publishes the initialised header; pairs with A1 in attach. */
    atomic_store_explicit(&s->id.state, RTD_STATE_READY, memory_order_release);
    *out = b;
    return 0;
}

int rtd_ctlblock_attach(struct rtd_ctlblock **out, const char *instance)
{
    struct rtd_ctlblock *b = NULL;
    int rc = map_block(&b, instance, 0, NULL, NULL);
    if (rc || !b)
        return rc ? rc : -EIO;
    /* A1: pairs with C1; the header fields below are valid once READY. */
    if (atomic_load_explicit(&b->shm->id.state, memory_order_acquire) != RTD_STATE_READY) {
        rtd_ctlblock_close(b);
        return -EAGAIN;
    }
    if (b->shm->id.magic != RTD_CTLBLOCK_MAGIC || b->shm->id.abi_major != RTD_CTLBLOCK_MAJOR) {
        rtd_ctlblock_close(b);
        return -EPROTO;
    }
    *out = b;
    return 0;
}

void rtd_ctlblock_close(struct rtd_ctlblock *b)
{
    if (!b)
        return;
    if (b->creator) {
        /* Tells attached acq/proc that this block is finished: they look for a new one. */
        atomic_store_explicit(&b->shm->id.state, RTD_STATE_CLOSED, memory_order_release);
        shm_unlink(b->name);
    }
    munmap(b->shm, RTD_CTLBLOCK_SIZE);
    free(b);
}

struct rtd_ctlblock_shm *rtd_ctlblock_shm(struct rtd_ctlblock *b)
{
    return b->shm;
}

uint64_t rtd_ctlblock_generation(const struct rtd_ctlblock *b)
{
    return atomic_load_explicit(&b->shm->generation, memory_order_acquire);
}

int rtd_ctlblock_live(const struct rtd_ctlblock *b)
{
    /* A3: pairs with C1 and with the CLOSED store of the creator's close. */
    return atomic_load_explicit(&b->shm->id.state, memory_order_acquire) == RTD_STATE_READY &&
           rtd_shm_pid_alive(b->shm->id.creator_pid);
}

int rtd_ctlblock_read(const struct rtd_ctlblock *b, struct rtd_ctl_snapshot *out)
{
    struct rtd_ctlblock_shm *s = b->shm;
    struct rtd_ctl_snapshot tmp, *o = &tmp;
    memset(o, 0, sizeof *o); /* padding too: snapshots compare with memcmp */
    for (int tries = 0; tries < RTD_CTLBLOCK_READ_TRIES; tries++) {
        /* R1: pairs with W2; an even value means the words below are complete. */
        uint64_t s1 = atomic_load_explicit(&s->seq, memory_order_acquire);
        if (s1 & 1) {
            ctl_relax();
            continue;
        }
        o->generation = atomic_load_explicit(&s->generation, memory_order_relaxed);
        o->acq_cmd_seq = atomic_load_explicit(&s->acq_cmd_seq, memory_order_relaxed);
        o->acq_cmd = atomic_load_explicit(&s->acq_cmd, memory_order_relaxed);
        o->acq_mode = atomic_load_explicit(&s->acq_mode, memory_order_relaxed);
        o->acq_count = atomic_load_explicit(&s->acq_count, memory_order_relaxed);
        o->acq_cmd_time_ns = atomic_load_explicit(&s->acq_cmd_time_ns, memory_order_relaxed);
        o->rec_cmd_time_ns = atomic_load_explicit(&s->rec_cmd_time_ns, memory_order_relaxed);
        o->rec_cmd_seq = atomic_load_explicit(&s->rec_cmd_seq, memory_order_relaxed);
        o->rec_cmd = atomic_load_explicit(&s->rec_cmd, memory_order_relaxed);
        for (size_t i = 0; i < RTD_CTL_REC_PATH_MAX / 8; i++) {
            uint64_t w = atomic_load_explicit(&s->rec_path[i], memory_order_relaxed);
            memcpy(o->rec_path + i * 8, &w, 8);
        }
        o->rec_path[RTD_CTL_REC_PATH_MAX - 1] = 0;
        for (int i = 0; i < RTD_P_COUNT; i++)
            o->params[i] = atomic_load_explicit(&s->params[i], memory_order_relaxed);
        /* R2: orders the loads above before the re-check; pairs with W1's fence. */
        CTL_FENCE(memory_order_acquire);
        if (atomic_load_explicit(&s->seq, memory_order_relaxed) == s1) {
            *out = tmp;
            return 0;
        }
    }
    return -EAGAIN;
}

void rtd_ctlblock_write(struct rtd_ctlblock *b, const struct rtd_ctl_snapshot *o)
{
    struct rtd_ctlblock_shm *s = b->shm;
    uint64_t q = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, q + 1, memory_order_relaxed);
    /* W1: the odd seq is visible before any word changes; pairs with R2. */
    CTL_FENCE(memory_order_release);
    atomic_store_explicit(&s->generation, o->generation, memory_order_relaxed);
    atomic_store_explicit(&s->acq_cmd, o->acq_cmd, memory_order_relaxed);
    atomic_store_explicit(&s->acq_mode, o->acq_mode, memory_order_relaxed);
    atomic_store_explicit(&s->acq_count, o->acq_count, memory_order_relaxed);
    atomic_store_explicit(&s->acq_cmd_time_ns, o->acq_cmd_time_ns, memory_order_relaxed);
    atomic_store_explicit(&s->rec_cmd_time_ns, o->rec_cmd_time_ns, memory_order_relaxed);
    atomic_store_explicit(&s->acq_cmd_seq, o->acq_cmd_seq, memory_order_relaxed);
    atomic_store_explicit(&s->rec_cmd, o->rec_cmd, memory_order_relaxed);
    for (size_t i = 0; i < RTD_CTL_REC_PATH_MAX / 8; i++) {
        uint64_t w;
        memcpy(&w, o->rec_path + i * 8, 8);
        atomic_store_explicit(&s->rec_path[i], w, memory_order_relaxed);
    }
    atomic_store_explicit(&s->rec_cmd_seq, o->rec_cmd_seq, memory_order_relaxed);
    for (int i = 0; i < RTD_P_COUNT; i++)
        atomic_store_explicit(&s->params[i], o->params[i], memory_order_relaxed);
    /* W2: publishes every word above; pairs with R1. */
    atomic_store_explicit(&s->seq, q + 2, memory_order_release);
}

void rtd_ctlblock_ack_acq(struct rtd_ctlblock *b, uint64_t seq, enum rtd_acq_state state,
                          uint64_t frames_done)
{
    struct rtd_ctlblock_shm *s = b->shm;
    atomic_store_explicit(&s->acq_state, (uint32_t)state, memory_order_relaxed);
    atomic_store_explicit(&s->acq_frames_done, frames_done, memory_order_relaxed);
    atomic_store_explicit(&s->acq_pid, (uint32_t)getpid(), memory_order_relaxed);
    atomic_store_explicit(&s->acq_ack_time_ns, rtd_realtime_ns(), memory_order_relaxed);
    /* K1: the state words above are visible with the seq; ctl reads the seq with acquire. */
    atomic_store_explicit(&s->acq_ack_seq, seq, memory_order_release);
}

void rtd_ctlblock_ack_rec(struct rtd_ctlblock *b, uint64_t seq, const struct rtd_ctl_rec_ack *r)
{
    struct rtd_ctlblock_shm *s = b->shm;
    atomic_store_explicit(&s->rec_result, r->result, memory_order_relaxed);
    atomic_store_explicit(&s->rec_active, (uint32_t) !!r->active, memory_order_relaxed);
    atomic_store_explicit(&s->rec_bytes, r->bytes, memory_order_relaxed);
    atomic_store_explicit(&s->rec_records, r->records, memory_order_relaxed);
    atomic_store_explicit(&s->rec_dropped, r->dropped, memory_order_relaxed);
    /* K2: as K1. */
    atomic_store_explicit(&s->rec_ack_seq, seq, memory_order_release);
}

void rtd_ctlblock_owner_attach(struct rtd_ctlblock *b, int slot, enum rtd_ctl_owner role)
{
    struct rtd_ctl_ack *a = &b->shm->acks[slot];
    atomic_store_explicit(&a->role, (uint32_t)role, memory_order_relaxed);
    atomic_store_explicit(&a->attached_ns, rtd_realtime_ns(), memory_order_relaxed);
    atomic_store_explicit(&a->applied_gen, 0, memory_order_relaxed);
    /* K4: the slot is reset before its new pid shows; ctl loads pid with acquire. */
    atomic_store_explicit(&a->pid, (uint32_t)getpid(), memory_order_release);
}

void rtd_ctlblock_owner_ack(struct rtd_ctlblock *b, int slot, uint64_t generation, int result,
                            int refused_param, const char *reason,
                            const struct rtd_ctl_snapshot *eff)
{
    struct rtd_ctl_ack *a = &b->shm->acks[slot];
    uint32_t role = atomic_load_explicit(&a->role, memory_order_relaxed);
    if (result == 0 && eff)
        for (int i = 0; i < RTD_P_COUNT; i++)
            if ((uint32_t)params[i].owner_id == role)
                atomic_store_explicit(&a->applied[params[i].owner_index], eff->params[i],
                                      memory_order_relaxed);
    char text[RTD_CTL_REASON_MAX] = {0};
    if (reason)
        snprintf(text, sizeof text, "%s", reason);
    for (size_t i = 0; i < RTD_CTL_REASON_MAX / 8; i++) {
        uint64_t w;
        memcpy(&w, text + i * 8, 8);
        atomic_store_explicit(&a->reason[i], w, memory_order_relaxed);
    }
    atomic_store_explicit(&a->result, result, memory_order_relaxed);
    atomic_store_explicit(&a->refused_param, result ? refused_param : -1, memory_order_relaxed);
    /* K3: everything above is visible with the generation; pairs with K3' in owner_read. */
    atomic_store_explicit(&a->applied_gen, generation, memory_order_release);
}

void rtd_ctlblock_owner_read(const struct rtd_ctlblock *b, int slot, struct rtd_ctl_ack_view *v)
{
    struct rtd_ctl_ack *a = &b->shm->acks[slot];
    /* K4' and K3': pair with K4 and K3. */
    v->pid = atomic_load_explicit(&a->pid, memory_order_acquire);
    v->applied_gen = atomic_load_explicit(&a->applied_gen, memory_order_acquire);
    v->role = atomic_load_explicit(&a->role, memory_order_relaxed);
    v->result = atomic_load_explicit(&a->result, memory_order_relaxed);
    v->refused_param = atomic_load_explicit(&a->refused_param, memory_order_relaxed);
    for (int i = 0; i < RTD_CTL_OWNER_VALUES; i++)
        v->applied[i] = atomic_load_explicit(&a->applied[i], memory_order_relaxed);
    for (size_t i = 0; i < RTD_CTL_REASON_MAX / 8; i++) {
        uint64_t w = atomic_load_explicit(&a->reason[i], memory_order_relaxed);
        memcpy(v->reason + i * 8, &w, 8);
    }
    v->reason[RTD_CTL_REASON_MAX - 1] = 0;
}
