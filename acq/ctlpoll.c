/* SPDX-License-Identifier: MIT */
/*
 * acq's side of the control block "ctl.params" (shm/rtd_ctlblock.h), polled
 * every 10 ms from the loop. acq owns and applies: acquisition start/stop
 * (single = 1 frame, multiple = N, continuous; gates the frame source,
 * packets always flow), record start/stop (path "" = --record DIR, else
 * --record-dir; a path ending in .rtdrec names the file, otherwise a
 * directory), acq.frame_rate_limit, acq.packet_rate_limit and acq.roi.*.
 * Every command and parameter generation is acknowledged only once applied
 * (or refused, with the reason), in words only acq writes.
 *
 * A ctl that dies (SIGKILL, even in the middle of a write) never stops acq:
 * reads are bounded (the last good copy is kept), and a block whose creator is
 * dead is left for the one the next ctl creates. Without ctl (no block) acq
 * acquires continuously from start-up, as configured.
 */
#include "acq_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rtd_ctlblock.h"
#include "rtd_shm.h"
#include "rtd_util.h"

struct acq_ctl {
    struct rtd_ctlblock *blk;
    struct rtd_ctl_snapshot last; /* last good copy */
    uint64_t handled_acq, handled_rec, handled_gen, next_attach_ns, next_live_ns;
    /* Seqs acknowledged in this block: only commands acq carried out. */
    uint64_t acked_acq, acked_rec;
    /* Issue time of the last command handled (acq's start before any): survives ctl restarts. */
    uint64_t acq_time_seen, rec_time_seen;
    uint64_t rec_base_records, rec_base_dropped; /* counters when this recording started */
    int acked_acquiring;
};

static void ack_acq(struct acq *a)
{
    struct acq_ctl *c = a->ctl;
    c->acked_acquiring = a->acquiring;
    rtd_ctlblock_ack_acq(c->blk, c->acked_acq, a->acquiring ? RTD_ACQ_ACQUIRING : RTD_ACQ_IDLE,
                         a->acq_done);
}

static void ack_rec(struct acq *a, int result)
{
    struct acq_ctl *c = a->ctl;
    struct rtd_ctl_rec_ack r = {.result = result, .active = a->rec != NULL};
    if (a->rec)
        rtd_rec_writer_stats(a->rec, NULL, NULL, &r.bytes);
    else
        r.bytes = a->cnt[C_REC_BYTES];
    /* Records of the current (or last) recording: the counters are cumulative. */
    r.records = a->cnt[C_REC_RECORDS] - c->rec_base_records;
    r.dropped = a->cnt[C_REC_DROPPED] - c->rec_base_dropped;
    rtd_ctlblock_ack_rec(c->blk, c->acked_rec, &r);
}

/*
 * One parameter generation: validate what acq owns against what it knows of
 * the source, then apply all of it or none (a refusal names the parameter).
 */
static void apply_params(struct acq *a, const struct rtd_ctl_snapshot *s)
{
    struct acq_ctl *c = a->ctl;
    uint32_t x = (uint32_t)rtd_ctl_param_u64(s, RTD_P_ACQ_ROI_X),
             y = (uint32_t)rtd_ctl_param_u64(s, RTD_P_ACQ_ROI_Y),
             w = (uint32_t)rtd_ctl_param_u64(s, RTD_P_ACQ_ROI_WIDTH),
             h = (uint32_t)rtd_ctl_param_u64(s, RTD_P_ACQ_ROI_HEIGHT);
    /* The geometry acq knows: the synthetic camera's, else the last frame's. */
    uint32_t fw = a->geom_w, fh = a->geom_h;
    if (a->cfg->source == RTD_SRC_SYNTHETIC) {
        fw = a->cfg->width;
        fh = a->cfg->height;
    }
    if (fw && fh && (x | y | w | h) &&
        ((uint64_t)x + (w ? w : 1) > fw || (uint64_t)y + (h ? h : 1) > fh)) {
        char why[96]; /* the slot keeps RTD_CTL_REASON_MAX - 1 characters */
        snprintf(why, sizeof why, "ROI %u,%u %ux%u exceeds the %ux%u frame", x, y, w, h, fw, fh);
        rtd_log(RTD_LOG_WARN, "parameters generation %llu refused: %s",
                (unsigned long long)s->generation, why);
        int bad = x >= fw                          ? RTD_P_ACQ_ROI_X
                  : (uint64_t)x + (w ? w : 1) > fw ? RTD_P_ACQ_ROI_WIDTH
                  : y >= fh                        ? RTD_P_ACQ_ROI_Y
                                                   : RTD_P_ACQ_ROI_HEIGHT;
        rtd_ctlblock_owner_ack(c->blk, RTD_CTL_SLOT_ACQ, s->generation, -ERANGE, bad, why, NULL);
        return;
    }
    a->roi_x = x;
    a->roi_y = y;
    a->roi_w = w;
    a->roi_h = h;
    uint64_t lim = rtd_ctl_param_u64(s, RTD_P_ACQ_FRAME_RATE_LIMIT);
    uint64_t interval = lim ? 1000000000ull / lim : 0;
    if (interval != a->frame_min_interval_ns) {
        a->frame_min_interval_ns = interval;
        a->frame_next_due_ns = 0; /* a new schedule starts with the next frame */
    }
    uint64_t prate = rtd_ctl_param_u64(s, RTD_P_ACQ_PACKET_RATE_LIMIT);
    if (prate != a->pkt_rate) {
        a->pkt_rate = prate;
        a->pkt_tokens_milli = 0;
        a->pkt_tokens_ns = rtd_now_ns();
    }
    /* The effective values, in the parameter words' encoding (unset ones resolved). */
    struct rtd_ctl_snapshot eff = *s;
    rtd_ctl_param_store(&eff, RTD_P_ACQ_FRAME_RATE_LIMIT, (double)lim);
    rtd_ctl_param_store(&eff, RTD_P_ACQ_PACKET_RATE_LIMIT, (double)prate);
    rtd_ctl_param_store(&eff, RTD_P_ACQ_ROI_X, x);
    rtd_ctl_param_store(&eff, RTD_P_ACQ_ROI_Y, y);
    rtd_ctl_param_store(&eff, RTD_P_ACQ_ROI_WIDTH, w);
    rtd_ctl_param_store(&eff, RTD_P_ACQ_ROI_HEIGHT, h);
    rtd_ctlblock_owner_ack(c->blk, RTD_CTL_SLOT_ACQ, s->generation, 0, -1, NULL, &eff);
}

static void detach(struct acq *a, const char *why)
{
    struct acq_ctl *c = a->ctl;
    rtd_log(RTD_LOG_INFO, "control block: %s; looking for the next rtdaq-ctl", why);
    rtd_ctlblock_close(c->blk);
    c->blk = NULL;
    c->next_attach_ns = 0;
}

void acq_ctl_poll(struct acq *a)
{
    uint64_t now = rtd_now_ns();
    struct acq_ctl *c = a->ctl;
    if (!c) {
        c = a->ctl = calloc(1, sizeof *c);
        if (!c)
            return;
        c->acq_time_seen = c->rec_time_seen = rtd_realtime_ns();
    }
    if (!c->blk) {
        if (now < c->next_attach_ns)
            return;
        c->next_attach_ns = now + 200000000ull; /* ctl not up yet: look again in 200 ms */
        if (rtd_ctlblock_attach(&c->blk, a->cfg->instance))
            return;
        if (!rtd_ctlblock_live(c->blk) || rtd_ctlblock_read(c->blk, &c->last)) {
            /* A dead ctl's block (or one torn by its death): wait for the next ctl's. */
            rtd_ctlblock_close(c->blk);
            c->blk = NULL;
            return;
        }
        /*
         * The block's current command: handled now if issued after the last one we
         * handled (given while we re-attached to a restarted ctl); acknowledged as done
         * if it is that very one (adopted by the new ctl); else it was meant for an
         * earlier acq: neither replayed nor acknowledged. Parameters are state, not
         * commands: the current ones are applied now.
         */
        const struct rtd_ctl_snapshot *l = &c->last;
        c->handled_acq =
            l->acq_cmd_time_ns > c->acq_time_seen ? l->acq_cmd_seq - 1 : l->acq_cmd_seq;
        c->acked_acq =
            l->acq_cmd_seq && l->acq_cmd_time_ns == c->acq_time_seen ? l->acq_cmd_seq : 0;
        c->handled_rec =
            l->rec_cmd_time_ns > c->rec_time_seen ? l->rec_cmd_seq - 1 : l->rec_cmd_seq;
        c->acked_rec =
            l->rec_cmd_seq && l->rec_cmd_time_ns == c->rec_time_seen ? l->rec_cmd_seq : 0;
        rtd_ctlblock_owner_attach(c->blk, RTD_CTL_SLOT_ACQ, RTD_OWNER_ACQ);
        apply_params(a, &c->last);
        c->handled_gen = c->last.generation;
        ack_acq(a);
        ack_rec(a, 0);
        c->next_live_ns = now + 100000000ull;
        rtd_log(RTD_LOG_INFO, "attached to the control block of instance %s (rtdaq-ctl pid %d)",
                a->cfg->instance, (int)rtd_ctlblock_shm(c->blk)->id.creator_pid);
    }
    /* The creator's liveness costs a /proc read: every 100 ms is enough. */
    if (now >= c->next_live_ns) {
        c->next_live_ns = now + 100000000ull;
        if (!rtd_ctlblock_live(c->blk)) {
            detach(a, "its rtdaq-ctl is gone");
            return;
        }
    }
    struct rtd_ctl_snapshot s;
    if (rtd_ctlblock_read(c->blk, &s)) {
        /* A write in progress for longer than a write takes: ctl stopped or died in it.
         * Keep the last good copy; the liveness check above detaches from a dead one. */
        a->cnt[C_CTL_READ_BUSY]++;
        return;
    }
    c->last = s;
    if (s.acq_cmd_seq != c->handled_acq) {
        c->handled_acq = c->acked_acq = s.acq_cmd_seq;
        c->acq_time_seen = s.acq_cmd_time_ns;
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
        c->handled_rec = c->acked_rec = s.rec_cmd_seq;
        c->rec_time_seen = s.rec_cmd_time_ns;
        int rc = 0;
        if (s.rec_cmd == RTD_REC_CMD_START) {
            if (a->rec)
                rc = -EBUSY; /* one recording at a time: stop the current one first */
            else if ((rc = acq_recording_start(a, s.rec_path[0] ? s.rec_path : NULL)) == 0) {
                c->rec_base_records = a->cnt[C_REC_RECORDS];
                c->rec_base_dropped = a->cnt[C_REC_DROPPED];
            }
        } else if (s.rec_cmd == RTD_REC_CMD_STOP && a->rec) {
            rc = acq_recording_stop(a);
        }
        ack_rec(a, rc);
    }
    if (s.generation != c->handled_gen) {
        c->handled_gen = s.generation;
        apply_params(a, &s);
    }
    /* Progress for `rtdaq status`: the same seq, updated counts; at once when a
     * single/multiple run completed. */
    if (a->acquiring != c->acked_acquiring || (now / 1000000ull) % 200 < 10) {
        ack_acq(a);
        ack_rec(a,
                atomic_load_explicit(&rtd_ctlblock_shm(c->blk)->rec_result, memory_order_relaxed));
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
