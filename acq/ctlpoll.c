/* SPDX-License-Identifier: MIT */
/*
 * acq's side of rtdaq-ctl's control block "ctl.params" (ctl/rtd_ctlblock.h):
 * polled every 10 ms from the loop. Applied here: acquisition start/stop
 * (single = 1 frame, multiple = N, continuous; gates the frame source, packets
 * always flow), record start/stop (path "" = --record DIR, else --record-dir;
 * a path ending in .rtdrec names the file, otherwise a directory),
 * and acq.frame_rate_limit. Not applied: acq.packet_rate_limit and acq.roi.*
 * (frames are published whole). Without ctl (no block) acq acquires
 * continuously from start-up, as configured.
 */
#include "acq_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rtd_util.h"

#ifdef RTD_ACQ_HAVE_CTLBLOCK
#include "rtd_ctlblock.h"

struct acq_ctl {
    struct rtd_ctlblock *blk;
    uint64_t handled_acq, handled_rec, next_attach_ns;
    int acked_acquiring;
};

static void ack_acq(struct acq *a)
{
    struct acq_ctl *c = a->ctl;
    c->acked_acquiring = a->acquiring;
    rtd_ctlblock_ack_acq(c->blk, c->handled_acq, a->acquiring ? RTD_ACQ_ACQUIRING : RTD_ACQ_IDLE,
                         a->acq_done);
}

static void ack_rec(struct acq *a, int result)
{
    struct acq_ctl *c = a->ctl;
    uint64_t bytes = 0;
    if (a->rec)
        rtd_rec_writer_stats(a->rec, NULL, NULL, &bytes);
    rtd_ctlblock_ack_rec(c->blk, c->handled_rec, result, a->rec != NULL, bytes);
}

void acq_ctl_poll(struct acq *a)
{
    uint64_t now = rtd_now_ns();
    struct acq_ctl *c = a->ctl;
    if (!c) {
        c = a->ctl = calloc(1, sizeof *c);
        if (!c)
            return;
    }
    if (!c->blk) {
        if (now < c->next_attach_ns)
            return;
        c->next_attach_ns = now + 1000000000ull; /* ctl not up yet: look again in a second */
        if (rtd_ctlblock_attach(&c->blk, a->cfg->instance))
            return;
        struct rtd_ctl_snapshot s;
        rtd_ctlblock_read(c->blk, &s);
        /* Commands issued before we attached were meant for an earlier acq: not replayed. */
        c->handled_acq = s.acq_cmd_seq;
        c->handled_rec = s.rec_cmd_seq;
        ack_acq(a);
        rtd_log(RTD_LOG_INFO, "attached to the control block of instance %s", a->cfg->instance);
    }
    if (atomic_load_explicit(&rtd_ctlblock_shm(c->blk)->id.state, memory_order_acquire) !=
        RTD_STATE_READY) {
        /* ctl went away (its block is being torn down): detach and look for a new one. */
        rtd_ctlblock_close(c->blk);
        c->blk = NULL;
        return;
    }
    struct rtd_ctl_snapshot s;
    rtd_ctlblock_read(c->blk, &s);
    if (s.acq_cmd_seq != c->handled_acq) {
        c->handled_acq = s.acq_cmd_seq;
        if (s.acq_cmd == RTD_ACQ_CMD_START) {
            a->acquiring = 1;
            a->acq_done = 0;
            a->acq_target = s.acq_mode == RTD_ACQ_SINGLE     ? 1
                            : s.acq_mode == RTD_ACQ_MULTIPLE ? s.acq_count
                                                             : 0;
            rtd_log(RTD_LOG_INFO, "acquisition started (%s, %llu frames)",
                    rtd_acq_mode_name(s.acq_mode), (unsigned long long)a->acq_target);
        } else if (s.acq_cmd == RTD_ACQ_CMD_STOP) {
            a->acquiring = 0;
            rtd_log(RTD_LOG_INFO, "acquisition stopped after %llu frames",
                    (unsigned long long)a->acq_done);
        }
        ack_acq(a);
    }
    if (s.rec_cmd_seq != c->handled_rec) {
        c->handled_rec = s.rec_cmd_seq;
        int rc = 0;
        if (s.rec_cmd == RTD_REC_CMD_START && !a->rec)
            rc = acq_recording_start(a, s.rec_path[0] ? s.rec_path : NULL);
        else if (s.rec_cmd == RTD_REC_CMD_STOP && a->rec)
            rc = acq_recording_stop(a);
        ack_rec(a, rc);
    }
    uint64_t lim = rtd_ctl_param_u64(&s, RTD_P_ACQ_FRAME_RATE_LIMIT);
    a->frame_min_interval_ns = lim ? 1000000000ull / lim : 0;
    /* Progress for `rtdaq status`: the same seq, updated counts; at once when a
     * single/multiple run completed. */
    if (a->acquiring != c->acked_acquiring || (now / 1000000ull) % 200 < 10) {
        ack_acq(a);
        if (a->rec)
            ack_rec(a, 0);
    }
}

void acq_ctl_close(struct acq *a)
{
    struct acq_ctl *c = a->ctl;
    if (!c)
        return;
    if (c->blk) {
        a->acquiring = 0;
        ack_acq(a);
        rtd_ctlblock_close(c->blk);
    }
    free(c);
    a->ctl = NULL;
}

#else

void acq_ctl_poll(struct acq *a)
{
    (void)a;
}

void acq_ctl_close(struct acq *a)
{
    (void)a;
}

#endif
