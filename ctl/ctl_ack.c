/* SPDX-License-Identifier: MIT */
/*
 * Acknowledged control: a `set`, `start`, `stop` or `record` is answered only
 * once the process that carries it out has done it. The command handler
 * writes the control block and hands back a wait (struct ctl_wait); the
 * request's ROUTER identity is kept here, and every turn of ctl's loop looks
 * at the owners' acknowledgement words (shm/rtd_ctlblock.h): the parameter
 * generation each owner applied or refused, acq's command and record seqs.
 * The reply says what was applied, by whom, or why not: refused (with the
 * owner's reason; the request's values are withdrawn so that what is asked
 * and what runs agree), owner not running, or no answer within the timeout.
 *
 * An owner is live while its slot's pid is (rtd_shm_pid_alive: zombies are
 * dead); a restarted owner attaches again and re-acknowledges the current
 * generation, so a wait that spans its restart still completes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "ctl_internal.h"
#include "rtd_shm.h"
#include "rtd_util.h"

#define CTL_PENDING_MAX 256

struct ctl_pending {
    int used;
    void *ident;
    size_t ident_len;
    int delim;
    uint64_t deadline_ns, start_ns;
    struct ctl_wait w;
};

struct ctl_acks {
    struct ctl_pending p[CTL_PENDING_MAX];
    int n;
};

static const char *owner_proc_name(enum rtd_ctl_owner o)
{
    return o == RTD_OWNER_ACQ ? "rtdaq-acq" : o == RTD_OWNER_PROC ? "rtdaq-proc" : "rtdaq-ctl";
}

int ctl_owner_state(struct ctl *c, enum rtd_ctl_owner o, uint64_t gen, struct ctl_owner_state *st)
{
    memset(st, 0, sizeof *st);
    st->refused_param = -1;
    int lo = o == RTD_OWNER_ACQ ? RTD_CTL_SLOT_ACQ : 1, hi = o == RTD_OWNER_ACQ ? 1 : 17;
    for (int k = lo; k < hi; k++) {
        struct rtd_ctl_ack_view v;
        rtd_ctlblock_owner_read(c->blk, k, &v);
        if (!v.pid || v.role != (uint32_t)o || !rtd_shm_pid_alive((int32_t)v.pid))
            continue;
        st->live++;
        if (!st->first_pid)
            st->first_pid = v.pid;
        if (v.applied_gen < gen) {
            if (!st->waiting_pid)
                st->waiting_pid = v.pid;
            st->waiting++;
            continue;
        }
        if (v.applied_gen == gen && v.result && !st->refused) {
            st->refused = v.result;
            st->refused_param = v.refused_param;
            st->refused_pid = v.pid;
            snprintf(st->reason, sizeof st->reason, "%s", v.reason);
        }
        if (!st->have_applied) {
            st->have_applied = 1;
            st->applied_gen = v.applied_gen;
            memcpy(st->applied, v.applied, sizeof st->applied);
        }
    }
    return st->live;
}

int ctl_ack_init(struct ctl *c)
{
    c->acks = calloc(1, sizeof *c->acks);
    return c->acks ? 0 : -ENOMEM;
}

static void pending_free(struct ctl_pending *p)
{
    free(p->ident);
    json_decref(p->w.id);
    json_decref(p->w.names);
    memset(p, 0, sizeof *p);
}

void ctl_ack_free(struct ctl *c)
{
    if (!c->acks)
        return;
    for (int i = 0; i < CTL_PENDING_MAX; i++)
        if (c->acks->p[i].used)
            pending_free(&c->acks->p[i]);
    free(c->acks);
    c->acks = NULL;
}

int ctl_ack_pending(const struct ctl *c)
{
    return c->acks ? c->acks->n : 0;
}

static void reply(struct ctl *c, struct ctl_pending *p, json_t *r)
{
    if (p->w.id)
        json_object_set(r, "id", p->w.id);
    json_object_set_new(r, "cmd", json_string(p->w.cmd));
    json_object_set_new(r, "waited_ms", json_real((double)(rtd_now_ns() - p->start_ns) / 1e6));
    if (!json_is_true(json_object_get(r, "ok")))
        atomic_fetch_add_explicit(c->c_bad_requests, 1, memory_order_relaxed);
    ctl_send_reply(c, p->ident, p->ident_len, p->delim, r);
    json_decref(r);
    pending_free(p);
    c->acks->n--;
}

int ctl_ack_defer(struct ctl *c, const void *ident, size_t ident_len, int delim, struct ctl_wait *w)
{
    struct ctl_acks *a = c->acks;
    if (a->n == CTL_PENDING_MAX)
        return -EBUSY;
    for (int i = 0; i < CTL_PENDING_MAX; i++) {
        struct ctl_pending *p = &a->p[i];
        if (p->used)
            continue;
        p->ident = malloc(ident_len ? ident_len : 1);
        if (!p->ident)
            return -ENOMEM;
        memcpy(p->ident, ident, ident_len);
        p->ident_len = ident_len;
        p->delim = delim;
        p->start_ns = rtd_now_ns();
        p->deadline_ns = p->start_ns + w->timeout_ns;
        p->w = *w; /* takes the references */
        p->used = 1;
        a->n++;
        return 0;
    }
    return -EBUSY;
}

/* The values one owner applied, for the names of a set: {name: value}. */
static json_t *applied_json(const struct ctl_wait *w, const struct ctl_owner_state *st,
                            enum rtd_ctl_owner o)
{
    json_t *out = json_object();
    size_t i;
    json_t *n;
    json_array_foreach(w->names, i, n)
    {
        int p = rtd_ctl_param_find(json_string_value(n));
        const struct rtd_ctl_param_desc *d = p >= 0 ? rtd_ctl_param_desc(p) : NULL;
        if (!d || d->owner_id != o)
            continue;
        uint64_t word = st->applied[d->owner_index];
        json_object_set_new(out, d->name,
                            d->type == RTD_PT_U64 ? json_integer((json_int_t)word)
                                                  : json_real(rtd_ctl_param_word(p, word)));
    }
    return out;
}

/* A refused set: withdraw its values (the owner keeps running the previous ones). */
static void withdraw(struct ctl *c, const struct ctl_wait *w)
{
    size_t i;
    json_t *n;
    json_array_foreach(w->names, i, n)
    {
        int p = rtd_ctl_param_find(json_string_value(n));
        if (p >= 0)
            c->snap.params[p] = w->before.params[p];
    }
    c->snap.generation++;
    rtd_ctlblock_write(c->blk, &c->snap);
}

/* 1 when the wait is over (a reply was sent). */
static int check_params(struct ctl *c, struct ctl_pending *p, uint64_t now)
{
    const struct ctl_wait *w = &p->w;
    json_t *applied = json_object();
    json_t *err = NULL;
    int done = 1;
    for (int o = RTD_OWNER_ACQ; o <= RTD_OWNER_PROC && !err; o++) {
        if (!(w->owners & (1u << o)))
            continue;
        struct ctl_owner_state st;
        ctl_owner_state(c, (enum rtd_ctl_owner)o, w->target, &st);
        if (st.refused) {
            const struct rtd_ctl_param_desc *d =
                st.refused_param >= 0 ? rtd_ctl_param_desc(st.refused_param) : NULL;
            err = ctl_reply_err("refused", "%s (pid %u) refused %s: %s", owner_proc_name(o),
                                st.refused_pid, d ? d->name : "the parameters",
                                st.reason[0] ? st.reason : strerror(-st.refused));
            withdraw(c, w);
            break;
        }
        if (st.live && !st.waiting) {
            json_object_set_new(applied, owner_proc_name(o),
                                json_pack("{s:o, s:i, s:I}", "values",
                                          applied_json(w, &st, (enum rtd_ctl_owner)o), "processes",
                                          st.live, "generation", (json_int_t)st.applied_gen));
            continue;
        }
        done = 0;
        if (now < p->deadline_ns)
            continue;
        double s = (double)w->timeout_ns / 1e9;
        if (!st.live)
            err = ctl_reply_err("owner_not_running",
                                "%s is not running: not applied (requested as generation %llu; "
                                "it applies when %s starts)",
                                owner_proc_name(o), (unsigned long long)w->target,
                                owner_proc_name(o));
        else
            err =
                ctl_reply_err("timeout",
                              "%s (pid %u) has not applied generation %llu after %.3g s: is it "
                              "running?",
                              owner_proc_name(o), st.waiting_pid, (unsigned long long)w->target, s);
    }
    if (err) {
        json_object_set_new(err, "generation", json_integer((json_int_t)w->target));
        json_decref(applied);
        reply(c, p, err);
        return 1;
    }
    if (!done) {
        json_decref(applied);
        return 0;
    }
    json_t *r = ctl_reply_ok();
    json_object_set_new(r, "generation", json_integer((json_int_t)w->target));
    json_object_set_new(r, "applied", applied);
    reply(c, p, r);
    return 1;
}

static int check_acq(struct ctl *c, struct ctl_pending *p, uint64_t now)
{
    struct rtd_ctlblock_shm *b = rtd_ctlblock_shm(c->blk);
    struct ctl_owner_state st;
    ctl_owner_state(c, RTD_OWNER_ACQ, 0, &st);
    /* K1/K2 partners: the state words are valid for the seq loaded here. */
    uint64_t ack = p->w.kind == CTL_WAIT_ACQ
                       ? atomic_load_explicit(&b->acq_ack_seq, memory_order_acquire)
                       : atomic_load_explicit(&b->rec_ack_seq, memory_order_acquire);
    if (st.live && ack >= p->w.target) {
        if (p->w.kind == CTL_WAIT_ACQ) {
            json_t *r = ctl_reply_ok();
            json_object_set_new(r, "acquisition", ctl_acquisition_json(c));
            reply(c, p, r);
            return 1;
        }
        int res = atomic_load_explicit(&b->rec_result, memory_order_relaxed);
        json_t *r;
        if (res && ack == p->w.target)
            r = ctl_reply_err("record_failed",
                              "rtdaq-acq (pid %u) could not %s the recording%s%s: %s", st.first_pid,
                              c->snap.rec_cmd == RTD_REC_CMD_START ? "start" : "stop",
                              c->snap.rec_path[0] ? " to " : "", c->snap.rec_path,
                              res == -EBUSY ? "a recording is already running (record stop first)"
                                            : strerror(-res));
        else
            r = ctl_reply_ok();
        json_object_set_new(r, "recording", ctl_recording_json(c));
        reply(c, p, r);
        return 1;
    }
    if (now < p->deadline_ns)
        return 0;
    json_t *r;
    if (!st.live)
        r = ctl_reply_err("owner_not_running",
                          "rtdaq-acq is not running (no live acq follows the control block): "
                          "'%s' not carried out",
                          p->w.cmd);
    else
        r = ctl_reply_err("timeout",
                          "rtdaq-acq (pid %u) has not acknowledged '%s' (seq %llu) "
                          "after %.3g s: is it running?",
                          st.first_pid, p->w.cmd, (unsigned long long)p->w.target,
                          (double)p->w.timeout_ns / 1e9);
    reply(c, p, r);
    return 1;
}

void ctl_ack_poll(struct ctl *c)
{
    struct ctl_acks *a = c->acks;
    if (!a || !a->n)
        return;
    uint64_t now = rtd_now_ns();
    for (int i = 0; i < CTL_PENDING_MAX && a->n; i++) {
        struct ctl_pending *p = &a->p[i];
        if (!p->used)
            continue;
        if (p->w.kind == CTL_WAIT_PARAMS)
            check_params(c, p, now);
        else
            check_acq(c, p, now);
    }
}
