/* SPDX-License-Identifier: MIT */
/*
 * A fit worker: one process pinned to one core, a member of the frames
 * ring's consumer group. Per frame: the pipeline (proc/pipeline), then one
 * record per ion and a summary record into this worker's results ring
 * (proc/daemon/rtd_results.h), published together, and only then the frame is
 * given back to the group, so a worker killed mid-frame leaves it to be
 * re-offered (its results may then appear twice; never zero times).
 *
 * proc.* parameters (threshold, max_iter, min_snr) come from rtdaq-ctl's
 * control block: between frames the worker compares one generation word; a
 * new generation is applied to its pipeline before the next frame and then
 * acknowledged in the worker's own slot, so `rtdaq set` answers only after
 * every live fit worker applied it. A parameter nobody set keeps the value of
 * the worker's command line.
 *
 * The loop busy-polls for --poll-us after each frame (a futex wake costs
 * ~25 us here) and sleeps on the ring's futex when idle.
 *
 * With --backend cuda the frames go through the GPU pipeline's streaming API
 * (proc/cuda): several frames per launch. A group member holds one frame at a
 * time, so the worker joins the group as several members ("w<id>", "w<id>.1",
 * ...), one per frame in flight; each frame is still given back only after its
 * results are published, and a dead worker's frames are re-offered as before
 * (all its members die with its pid). The batching wait of every frame
 * (launch - submit) goes into the histogram latency.batch.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proc_internal.h"
#include "rtd_ctlblock.h"
#include "rtd_fit_cuda.h"
#include "rtd_results.h"
#include "rtd_util.h"

/* Group members (frames held at once) of one GPU worker; 16 per group in all. */
#define CUDA_MAX_MEMBERS 12

struct cuda_held {
    int member;
    struct rtd_frame f;
};

struct fits_state {
    const struct proc_opts *o;
    struct proc_worker *w;
    struct rtd_ring *frames;
    struct rtd_group *group;
    struct rtd_ring *results;
    struct rtd_pipe *pipe;
    struct rtd_pipe_ion *ions;
    int max_ions;
    /* --backend cuda */
    /* proc.* parameters from the control block */
    struct rtd_pipe_config pcfg; /* the pipeline's configuration as applied */
    struct rtd_ctlblock *blk;
    uint64_t handled_gen, next_attach_ns;
    int draining;  /* the frames ring's producer is gone: take what is left, then re-attach */
    int cuda_idle; /* the last cuda_step took and collected nothing */
    struct rtd_cuda_pipe *cpipe;
    int cw, ch;                                  /* frame size cpipe was made for */
    int cuda_broken;                             /* create failed: frames are skipped */
    struct rtd_group *members[CUDA_MAX_MEMBERS]; /* [0] is group */
    int n_members, busy[CUDA_MAX_MEMBERS];
    struct cuda_held q[CUDA_MAX_MEMBERS]; /* submitted frames, oldest at q_head */
    int q_head, q_n;
};

static void cuda_drain(struct fits_state *s);

static void detach_frames(struct fits_state *s)
{
    cuda_drain(s);
    /* Orphaned (the supervisor died): the process ends as a dead member; see worker_start. */
    for (int i = 1; i < s->n_members; i++)
        if (s->members[i] && !proc_orphaned)
            rtd_group_leave(s->members[i]);
    s->n_members = 0;
    memset(s->members, 0, sizeof s->members);
    if (s->group && !proc_orphaned)
        rtd_group_leave(s->group);
    s->group = NULL;
    if (s->frames)
        rtd_ring_close(s->frames);
    s->frames = NULL;
}

/* Attach to the frames ring and join the group; -errno while it does not exist yet. */
static int attach_frames(struct fits_state *s)
{
    int rc = rtd_ring_attach(&s->frames, s->o->instance, s->o->frames_ring);
    if (rc < 0)
        return rc;
    char member[24];
    snprintf(member, sizeof member, "w%d", s->w->id);
    rc = rtd_group_join(&s->group, s->frames, s->o->group, member);
    if (rc < 0) {
        rtd_log(RTD_LOG_ERR, "join group %s on ring %s: %s", s->o->group, s->o->frames_ring,
                strerror(-rc));
        rtd_ring_close(s->frames);
        s->frames = NULL;
        return rc;
    }
    s->members[0] = s->group;
    s->n_members = 1;
    memset(s->busy, 0, sizeof s->busy);
    if (s->o->backend == PROC_BACKEND_CUDA) {
        /* One member per frame in flight: two batches' worth, as far as the group has room. */
        int want = 2 * s->o->cuda_batch;
        if (want > CUDA_MAX_MEMBERS)
            want = CUDA_MAX_MEMBERS;
        while (s->n_members < want) {
            snprintf(member, sizeof member, "w%d.%d", s->w->id, s->n_members);
            if (rtd_group_join(&s->members[s->n_members], s->frames, s->o->group, member) < 0)
                break;
            s->n_members++;
        }
    }
    rtd_log(RTD_LOG_INFO, "joined group %s on ring %s (%d member(s))", s->o->group,
            s->o->frames_ring, s->n_members);
    rtd_stats_set_status(s->w->stats, "running");
    return 0;
}

static void publish(struct fits_state *s, const struct rtd_frame *f, int n,
                    const struct rtd_pipe_frame_stats *st, uint32_t flags)
{
    const struct proc_counters *c = &s->w->c;
    const struct rtd_frame_hdr *h = f->hdr;
    int err = 0;
    for (int i = 0; i < n; i++) {
        struct rtd_res_ion *r = rtd_pkt_reserve(s->results, sizeof *r, RTD_RES_ION, &err);
        if (!r) {
            atomic_fetch_add_explicit(c->dropped, (uint64_t)(n - i), memory_order_relaxed);
            break;
        }
        const struct rtd_pipe_ion *a = &s->ions[i];
        *r = (struct rtd_res_ion){
            .frame_seq = h->seq,
            .frame_id = h->frame_id,
            /* Slot coordinates to the camera's full frame (acq.roi.*). */
            .x = (float)(a->x + h->origin_x),
            .y = (float)(a->y + h->origin_y),
            .amp = (float)a->amp,
            .sigma = (float)a->sigma,
            .offset = (float)a->offset,
            .sigma_y = (float)a->sigma_y,
            .A = (float)a->A,
            .chi2 = (float)a->chi2,
            .state = a->state,
            .flags = a->flags,
            .index = (uint16_t)i,
            .worker = (uint16_t)s->w->id,
            .iters = (uint32_t)a->iters,
        };
    }
    struct rtd_res_frame *r = rtd_pkt_reserve(s->results, sizeof *r, RTD_RES_FRAME, &err);
    const uint64_t done = rtd_now_ns();
    if (r) {
        *r = (struct rtd_res_frame){
            .frame_seq = h->seq,
            .frame_id = h->frame_id,
            .ts_mono_ns = h->ts_mono_ns,
            .ts_real_ns = h->ts_real_ns,
            .done_mono_ns = done,
            .n_ions = (uint32_t)n,
            .n_converged = st->n_converged,
            .n_failed = st->n_failed,
            .n_duplicates = st->n_duplicates,
            .n_peaks = st->n_peaks,
            .t_detect_ns = (uint32_t)st->t_detect_ns,
            .t_fit_ns = (uint32_t)st->t_fit_ns,
            .t_total_ns = (uint32_t)st->t_total_ns,
            .background = st->background,
            .noise = st->noise,
            .threshold = st->threshold,
            .worker = (uint16_t)s->w->id,
            .analysis = (uint8_t)s->o->pipe.analysis,
            .version = RTD_RES_VERSION,
            .flags = flags,
            .width = (uint16_t)h->width,
            .height = (uint16_t)h->height,
        };
    } else {
        atomic_fetch_add_explicit(c->dropped, 1, memory_order_relaxed);
    }
    rtd_pkt_publish(s->results);
    if (h->ts_mono_ns && done > h->ts_mono_ns)
        rtd_hist_record(c->latency, done - h->ts_mono_ns);
}

/* u16 mono frames (pixfmt 0 = opaque, trusted when the size matches). */
static int frame_ok(const struct fits_state *s, const struct rtd_frame_hdr *h)
{
    const uint64_t need = (uint64_t)h->width * h->height * 2u;
    const uint32_t cap = rtd_ring_header(s->frames)->slot_payload;
    return !(h->width == 0 || h->height == 0 || need > h->len || need > cap || h->width > 65535 ||
             h->height > 65535 || h->pixfmt > 2);
}

/* Flags and counters of a frame whose n ions are in s->ions, then publish. */
static void finish(struct fits_state *s, const struct rtd_frame *f, int n,
                   const struct rtd_pipe_frame_stats *st, uint32_t flags)
{
    const struct proc_counters *c = &s->w->c;
    if (flags & RTD_RES_F_SKIPPED)
        atomic_fetch_add_explicit(c->skipped, 1, memory_order_relaxed);
    if (f->hdr->flags & RTD_FRAME_PARTIAL) {
        flags |= RTD_RES_F_PARTIAL;
        atomic_fetch_add_explicit(c->partial, 1, memory_order_relaxed);
    }
    if (st->truncated) {
        flags |= RTD_RES_F_TRUNCATED;
        atomic_fetch_add_explicit(c->truncated, 1, memory_order_relaxed);
    }
    publish(s, f, n, st, flags);
    atomic_fetch_add_explicit(c->ions, (uint64_t)n, memory_order_relaxed);
    atomic_fetch_add_explicit(c->converged, st->n_converged, memory_order_relaxed);
    atomic_fetch_add_explicit(c->failed, st->n_failed, memory_order_relaxed);
    rtd_hist_record(c->pipeline, st->t_total_ns);
}

/* Analyse one frame taken from the group; the caller gives it back. */
static void process(struct fits_state *s, const struct rtd_frame *f)
{
    const struct proc_counters *c = &s->w->c;
    const struct rtd_frame_hdr *h = f->hdr;
    const uint64_t t0 = rtd_now_ns();
    struct rtd_pipe_frame_stats st;
    memset(&st, 0, sizeof st);
    uint32_t flags = 0;
    int n = 0;
    atomic_store_explicit(c->cur_frame, h->frame_id, memory_order_relaxed);
    atomic_store_explicit(c->cur_seq, h->seq, memory_order_relaxed);
    if (!frame_ok(s, h)) {
        flags |= RTD_RES_F_SKIPPED;
    } else {
        n = rtd_pipe_process(s->pipe, (const uint16_t *)(const void *)f->data, (int)h->width,
                             (int)h->height, h->width, h->frame_id, s->ions, s->max_ions, &st);
        if (n < 0) {
            flags |= RTD_RES_F_SKIPPED;
            n = 0;
        }
    }
    finish(s, f, n, &st, flags);
    atomic_fetch_add_explicit(c->busy_ns, rtd_now_ns() - t0, memory_order_relaxed);
}

/* ---- --backend cuda: streaming through proc/cuda ------------------------------------ */

/* Publish a frame held by member m, then give it back to the group. */
static void cuda_release(struct fits_state *s, int m, const struct rtd_frame *f, int n,
                         const struct rtd_pipe_frame_stats *st, uint32_t flags)
{
    finish(s, f, n, st, flags);
    rtd_group_done(s->members[m], f);
    s->busy[m] = 0;
    atomic_fetch_add_explicit(s->w->c.processed, 1, memory_order_relaxed);
}

/* A CUDA call failed: every queued frame is published as skipped, the context rebuilt later. */
static void cuda_fail(struct fits_state *s, int rc)
{
    rtd_log(RTD_LOG_ERR, "cuda pipeline: %s; %d queued frame(s) skipped", strerror(-rc), s->q_n);
    struct rtd_pipe_frame_stats st;
    memset(&st, 0, sizeof st);
    while (s->q_n > 0) {
        const struct cuda_held *e = &s->q[s->q_head];
        s->q_head = (s->q_head + 1) % CUDA_MAX_MEMBERS;
        s->q_n--;
        cuda_release(s, e->member, &e->f, 0, &st, RTD_RES_F_SKIPPED);
    }
    rtd_cuda_pipe_destroy(s->cpipe);
    s->cpipe = NULL;
}

/* Results that are ready (wait = 0), the oldest one (1), or all (2). Returns how many. */
static int cuda_collect(struct fits_state *s, int wait)
{
    const struct proc_counters *c = &s->w->c;
    int done = 0;
    while (s->q_n > 0 && s->cpipe) {
        struct rtd_cuda_frame_result res;
        struct rtd_pipe_frame_stats st;
        memset(&st, 0, sizeof st);
        int rc = rtd_cuda_pipe_poll(s->cpipe, &res, s->ions, s->max_ions, &st,
                                    wait == 2 || (wait == 1 && done == 0));
        if (rc < 0) {
            cuda_fail(s, rc);
            break;
        }
        if (rc == 0)
            break;
        const uint64_t t0 = rtd_now_ns();
        const struct cuda_held *e = &s->q[s->q_head];
        s->q_head = (s->q_head + 1) % CUDA_MAX_MEMBERS;
        s->q_n--;
        if (res.t_launch_ns >= res.t_submit_ns)
            rtd_hist_record(c->batch, res.t_launch_ns - res.t_submit_ns);
        int n = res.n_ions < 0 ? 0 : res.n_ions;
        cuda_release(s, e->member, &e->f, n, &st, 0);
        atomic_fetch_add_explicit(c->busy_ns, rtd_now_ns() - t0, memory_order_relaxed);
        done++;
    }
    return done;
}

static void cuda_drain(struct fits_state *s)
{
    if (s->cpipe && s->q_n > 0) {
        rtd_cuda_pipe_flush(s->cpipe);
        cuda_collect(s, 2);
    }
}

/* A frame member m just took: submit it (or publish it skipped at once). */
static void cuda_take(struct fits_state *s, int m, const struct rtd_frame *f)
{
    const struct proc_counters *c = &s->w->c;
    const struct rtd_frame_hdr *h = f->hdr;
    const uint64_t t0 = rtd_now_ns();
    struct rtd_pipe_frame_stats st;
    memset(&st, 0, sizeof st);
    s->busy[m] = 1;
    atomic_store_explicit(c->cur_frame, h->frame_id, memory_order_relaxed);
    atomic_store_explicit(c->cur_seq, h->seq, memory_order_relaxed);
    if (!frame_ok(s, h)) {
        cuda_release(s, m, f, 0, &st, RTD_RES_F_SKIPPED);
        return;
    }
    /* The GPU context is made for one frame size: drain and rebuild when it changes. */
    if (s->cpipe && (s->cw != (int)h->width || s->ch != (int)h->height)) {
        cuda_drain(s);
        rtd_cuda_pipe_destroy(s->cpipe);
        s->cpipe = NULL;
    }
    if (!s->cpipe) {
        struct rtd_cuda_pipe_opts po;
        rtd_cuda_pipe_opts_default(&po);
        po.batch_frames = s->o->cuda_batch;
        po.n_inflight = (s->n_members + po.batch_frames - 1) / po.batch_frames;
        if (po.n_inflight < 2)
            po.n_inflight = 2;
        po.max_wait_ns = s->o->cuda_wait_ns;
        int rc = rtd_cuda_pipe_create(&s->cpipe, &s->o->pipe, (int)h->width, (int)h->height, &po);
        if (rc < 0) {
            s->cpipe = NULL;
            if (!s->cuda_broken)
                rtd_log(RTD_LOG_ERR, "cuda pipeline for %ux%u frames: %s; skipping frames",
                        h->width, h->height, strerror(-rc));
            s->cuda_broken = 1;
            cuda_release(s, m, f, 0, &st, RTD_RES_F_SKIPPED);
            return;
        }
        s->cuda_broken = 0;
        s->cw = (int)h->width;
        s->ch = (int)h->height;
    }
    /* All batch buffers in flight: wait for the oldest result (its failure drops the context). */
    int rc = -EIO;
    while (s->cpipe) {
        rc = rtd_cuda_pipe_submit(s->cpipe, (const uint16_t *)(const void *)f->data, h->width,
                                  h->frame_id);
        if (rc != -EAGAIN || s->q_n == 0)
            break;
        cuda_collect(s, 1);
    }
    if (rc < 0 || !s->cpipe) {
        if (s->cpipe)
            cuda_fail(s, rc);
        cuda_release(s, m, f, 0, &st, RTD_RES_F_SKIPPED);
        return;
    }
    const int tail = (s->q_head + s->q_n) % CUDA_MAX_MEMBERS;
    s->q[tail] = (struct cuda_held){.member = m, .f = *f};
    s->q_n++;
    atomic_fetch_add_explicit(c->busy_ns, rtd_now_ns() - t0, memory_order_relaxed);
}

/*
 * One turn of the GPU loop: results that are ready, then as many new frames as
 * there are free members. 1 when something happened, 0 when idle, -errno when
 * the group failed.
 */
static int cuda_step(struct fits_state *s)
{
    int did = cuda_collect(s, 0);
    if (s->q_n == s->n_members && s->q_n > 0)
        did += cuda_collect(s, 1);
    for (int m = 0; m < s->n_members; m++) {
        if (s->busy[m])
            continue;
        struct rtd_frame f;
        int rc = rtd_group_take(s->members[m], &f);
        if (rc == -EAGAIN)
            break;
        if (rc < 0)
            return rc;
        cuda_take(s, m, &f);
        did++;
    }
    return did > 0 || s->q_n > 0;
}

/* Apply a parameter generation to the CPU pipeline (rebuilt between frames) and acknowledge. */
static void params_apply(struct fits_state *s)
{
    struct rtd_ctl_snapshot snap;
    if (rtd_ctlblock_read(s->blk, &snap))
        return; /* a write in progress: the next frame boundary tries again */
    struct rtd_pipe_config cfg = s->pcfg;
    cfg.threshold =
        (float)rtd_ctl_param_or(&snap, RTD_P_PROC_THRESHOLD, (double)s->o->pipe.threshold);
    cfg.max_iter = (int)rtd_ctl_param_or(&snap, RTD_P_PROC_MAX_ITER, (double)s->o->pipe.max_iter);
    cfg.min_snr = (float)rtd_ctl_param_or(&snap, RTD_P_PROC_MIN_SNR, (double)s->o->pipe.min_snr);
    int rc = 0;
    if (memcmp(&cfg, &s->pcfg, sizeof cfg) && s->pipe) {
        struct rtd_pipe *np = NULL;
        rc = rtd_pipe_create(&np, &cfg, 512, 512);
        if (rc == 0) {
            rtd_pipe_destroy(s->pipe);
            s->pipe = np;
        }
    }
    const int slot = RTD_CTL_SLOT_PROC(s->w->id);
    if (rc) {
        rtd_ctlblock_owner_ack(s->blk, slot, snap.generation, rc, RTD_P_PROC_THRESHOLD,
                               "pipeline rebuild failed", NULL);
    } else {
        if (s->pipe || s->o->backend == PROC_BACKEND_CUDA)
            s->pcfg = cfg;
        /* The effective values, in the parameter words' encoding. */
        rtd_ctl_param_store(&snap, RTD_P_PROC_THRESHOLD, (double)s->pcfg.threshold);
        rtd_ctl_param_store(&snap, RTD_P_PROC_MAX_ITER, (double)s->pcfg.max_iter);
        rtd_ctl_param_store(&snap, RTD_P_PROC_MIN_SNR, (double)s->pcfg.min_snr);
        rtd_ctlblock_owner_ack(s->blk, slot, snap.generation, 0, -1, NULL, &snap);
    }
    s->handled_gen = snap.generation;
    if (rc == 0)
        rtd_log(RTD_LOG_INFO,
                "parameters generation %llu applied: threshold %g, max_iter %d, "
                "min_snr %g",
                (unsigned long long)snap.generation, (double)s->pcfg.threshold, s->pcfg.max_iter,
                (double)s->pcfg.min_snr);
}

/* Every ~50 ms: follow the control block of the live rtdaq-ctl (it may restart). */
static void params_attach(struct fits_state *s, uint64_t now)
{
    if (s->blk && !rtd_ctlblock_live(s->blk)) {
        rtd_ctlblock_close(s->blk);
        s->blk = NULL;
    }
    if (s->blk || now < s->next_attach_ns)
        return;
    s->next_attach_ns = now + 200000000ull;
    if (rtd_ctlblock_attach(&s->blk, s->o->instance))
        return;
    if (!rtd_ctlblock_live(s->blk)) {
        rtd_ctlblock_close(s->blk);
        s->blk = NULL;
        return;
    }
    rtd_ctlblock_owner_attach(s->blk, RTD_CTL_SLOT_PROC(s->w->id), RTD_OWNER_PROC);
    params_apply(s);
}

/* While draining an orphaned ring: 1 once nothing is left to take and nothing is in flight. */
static int drained_idle(struct fits_state *s)
{
    if (s->o->backend == PROC_BACKEND_CUDA)
        return s->q_n == 0 && s->cuda_idle; /* cuda_step found nothing to take */
    /* The producer is gone: published no longer moves. A take that finds nothing means
     * every published frame was taken. */
    struct rtd_frame f;
    int rc = rtd_group_take(s->group, &f);
    if (rc == 0) {
        process(s, &f);
        rtd_group_done(s->group, &f);
        atomic_fetch_add_explicit(s->w->c.processed, 1, memory_order_relaxed);
        return 0;
    }
    return 1; /* -EAGAIN (drained) or an error: either way this ring is done */
}

/* Between frames: one load of the generation word. */
static inline void params_check(struct fits_state *s)
{
    if (s->blk && rtd_ctlblock_generation(s->blk) != s->handled_gen)
        params_apply(s);
}

int proc_worker_fits(const struct proc_opts *o, struct proc_worker *w)
{
    struct fits_state s;
    memset(&s, 0, sizeof s);
    s.o = o;
    s.w = w;
    const struct proc_counters *c = &w->c;
    int ret = -1;
    atomic_store_explicit(c->pid, (uint64_t)getpid(), memory_order_relaxed);
    if (w->cpu >= 0) {
        int rc = rtd_pin_cpu(w->cpu);
        if (rc < 0)
            rtd_log(RTD_LOG_WARN, "pin to cpu %d: %s (running unpinned)", w->cpu, strerror(-rc));
    }
    atomic_store_explicit(c->cpu, (uint64_t)(int64_t)w->cpu, memory_order_relaxed);
    int rt = rtd_realtime_setup(o->fifo, o->mlock);
    atomic_store_explicit(c->rt, (uint64_t)rt, memory_order_relaxed);

    atomic_store_explicit(c->backend_cuda, o->backend == PROC_BACKEND_CUDA, memory_order_relaxed);
    s.max_ions = o->pipe.max_ions;
    s.ions = calloc((size_t)s.max_ions, sizeof *s.ions);
    /* The GPU context is made on the first frame, for its size. */
    s.pcfg = o->pipe;
    int rc = o->backend == PROC_BACKEND_CUDA ? 0 : rtd_pipe_create(&s.pipe, &s.pcfg, 512, 512);
    if (!s.ions || rc < 0) {
        rtd_log(RTD_LOG_ERR, "pipeline: %s", strerror(rc < 0 ? -rc : ENOMEM));
        goto out;
    }
    rc = rtd_ring_attach(&s.results, o->instance, w->ring_name);
    if (rc < 0) {
        rtd_log(RTD_LOG_ERR, "results ring %s: %s", w->ring_name, strerror(-rc));
        goto out;
    }
    rtd_log(RTD_LOG_INFO, "backend %s", o->backend == PROC_BACKEND_CUDA ? "cuda" : "cpu");
    rtd_stats_set_status(w->stats, "waiting for the frames ring");
    uint64_t last_beat = 0, last_try = 0, last_work = 0;
    int logged_wait = 0;
    while (!proc_stop) {
        const uint64_t now = rtd_now_ns();
        if (now - last_beat > 50000000ull) {
            last_beat = now;
            rtd_stats_heartbeat(w->stats);
            params_attach(&s, now);
            /*
             * The producer closed the ring or died (acq stopped, or SIGKILLed and
             * restarted under the same name): the frames it published are still here
             * and still ours to process. Drain them, then attach to the new ring.
             */
            if (s.frames && !s.draining && rtd_ring_orphaned(s.frames)) {
                rtd_log(RTD_LOG_INFO, "frames ring orphaned by its producer; draining it");
                s.draining = 1;
            }
        }
        if (!s.frames) {
            if (now - last_try > 100000000ull) {
                last_try = now;
                rc = attach_frames(&s);
                if (rc < 0 && !logged_wait) {
                    rtd_log(RTD_LOG_INFO, "waiting for ring %s (%s)", o->frames_ring,
                            strerror(-rc));
                    logged_wait = 1;
                }
            }
            if (!s.frames) {
                struct timespec ts = {0, 10 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        if (s.draining && drained_idle(&s)) {
            rtd_log(RTD_LOG_INFO, "orphaned frames ring drained; re-attaching");
            detach_frames(&s);
            s.draining = 0;
            rtd_stats_set_status(w->stats, "waiting for the frames ring");
            continue;
        }
        if (o->backend == PROC_BACKEND_CUDA) {
            rc = cuda_step(&s);
            s.cuda_idle = rc == 0;
            if (rc < 0) {
                rtd_log(RTD_LOG_ERR, "take from ring %s: %s; re-attaching", o->frames_ring,
                        strerror(-rc));
                detach_frames(&s);
            } else if (rc > 0) {
                last_work = rtd_now_ns();
            } else if (rtd_now_ns() - last_work > (uint64_t)o->poll_us * 1000u) {
                /* Idle with nothing on the GPU: sleep like the CPU loop. */
                rtd_group_wait(s.group, 20 * 1000 * 1000);
            }
            continue;
        }
        params_check(&s);
        struct rtd_frame f;
        rc = rtd_group_take(s.group, &f);
        if (rc == 0) {
            process(&s, &f);
            rtd_group_done(s.group, &f);
            atomic_fetch_add_explicit(c->processed, 1, memory_order_relaxed);
            continue;
        }
        if (rc != -EAGAIN) {
            rtd_log(RTD_LOG_ERR, "take from ring %s: %s; re-attaching", o->frames_ring,
                    strerror(-rc));
            detach_frames(&s);
            continue;
        }
        /* Nothing now: spin a little (frames come every 100 us at 10 kHz), then sleep. */
        const uint64_t spin_until = rtd_now_ns() + (uint64_t)o->poll_us * 1000u;
        while (!proc_stop && rtd_now_ns() < spin_until) {
            rc = rtd_group_take(s.group, &f);
            if (rc != -EAGAIN)
                break;
        }
        if (rc == 0) {
            process(&s, &f);
            rtd_group_done(s.group, &f);
            atomic_fetch_add_explicit(c->processed, 1, memory_order_relaxed);
        } else if (rc == -EAGAIN) {
            rtd_group_wait(s.group, 20 * 1000 * 1000);
        }
    }
    ret = 0;
out:
    rtd_stats_set_status(w->stats, "stopped");
    detach_frames(&s);
    if (s.results)
        rtd_ring_close(s.results);
    rtd_pipe_destroy(s.pipe);
    rtd_cuda_pipe_destroy(s.cpipe);
    if (s.blk)
        rtd_ctlblock_close(s.blk);
    free(s.ions);
    return ret;
}
