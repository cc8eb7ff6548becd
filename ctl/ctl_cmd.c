/* SPDX-License-Identifier: MIT */
/*
 * The control protocol: one JSON object in, one JSON object out. Every reply
 * carries "ok" and "version"; a failure adds "error" (a sentence) and "code"
 * (a stable word for scripts). A request is validated completely before
 * anything changes, so a bad request never leaves a half-applied state.
 * set/start/stop/record are answered once their owner acknowledged them
 * (ctl_ack.c); "wait": false answers at once, "timeout_ms" bounds the wait.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "ctl_internal.h"
#include "rtd_shm.h"
#include "rtd_util.h"

#define CTL_WAIT_DEFAULT_MS 2000
#define CTL_WAIT_MAX_MS     60000

/*
 * How long a request waits for its acknowledgement: "timeout_ms" (1..60000,
 * default 2000), or 0 with "wait": false. -EINVAL for a bad value.
 */
static int wait_ms(json_t *req, uint64_t *ms)
{
    json_t *jw = json_object_get(req, "wait"), *jt = json_object_get(req, "timeout_ms");
    if (jw && !json_is_boolean(jw))
        return -EINVAL;
    if (jt && (!json_is_integer(jt) || json_integer_value(jt) < 1 ||
               json_integer_value(jt) > CTL_WAIT_MAX_MS))
        return -EINVAL;
    *ms = json_is_false(jw) ? 0 : jt ? (uint64_t)json_integer_value(jt) : CTL_WAIT_DEFAULT_MS;
    return 0;
}

static json_t *bad_wait(void)
{
    return ctl_reply_err("bad_value",
                         "\"wait\" is a boolean and \"timeout_ms\" an integer in "
                         "[1, %d]",
                         CTL_WAIT_MAX_MS);
}

/* A requested value; null while no operator set it (the owner runs its own configuration). */
static json_t *param_value(const struct rtd_ctl_snapshot *s, int i)
{
    const struct rtd_ctl_param_desc *d = rtd_ctl_param_desc((enum rtd_ctl_param)i);
    if (!rtd_ctl_param_is_set(s, (enum rtd_ctl_param)i))
        return json_null();
    return d->type == RTD_PT_U64 ? json_integer((json_int_t)s->params[i])
                                 : json_real(rtd_ctl_param_get(s, (enum rtd_ctl_param)i));
}

static json_t *word_value(int i, uint64_t word)
{
    const struct rtd_ctl_param_desc *d = rtd_ctl_param_desc((enum rtd_ctl_param)i);
    return d->type == RTD_PT_U64 ? json_integer((json_int_t)word)
                                 : json_real(rtd_ctl_param_word((enum rtd_ctl_param)i, word));
}

static json_t *params_json(const struct rtd_ctl_snapshot *s)
{
    json_t *o = json_object();
    for (int i = 0; i < RTD_P_COUNT; i++)
        json_object_set_new(o, rtd_ctl_param_desc((enum rtd_ctl_param)i)->name, param_value(s, i));
    return o;
}

json_t *ctl_acquisition_json(struct ctl *c)
{
    struct rtd_ctlblock_shm *b = rtd_ctlblock_shm(c->blk);
    /* K1 partner: the ack words are valid for the seq read here. */
    uint64_t ack = atomic_load_explicit(&b->acq_ack_seq, memory_order_acquire);
    struct ctl_owner_state st;
    ctl_owner_state(c, RTD_OWNER_ACQ, 0, &st);
    uint32_t pid = st.first_pid;
    const struct rtd_ctl_snapshot *s = &c->snap;
    const char *req = s->acq_cmd == RTD_ACQ_CMD_START  ? "start"
                      : s->acq_cmd == RTD_ACQ_CMD_STOP ? "stop"
                                                       : "none";
    return json_pack(
        "{s:s, s:s, s:I, s:I, s:b, s:I, s:s, s:I, s:I, s:b}", "requested", req, "mode",
        rtd_acq_mode_name(s->acq_mode), "count", (json_int_t)s->acq_count, "seq",
        (json_int_t)s->acq_cmd_seq, "acknowledged", s->acq_cmd_seq > 0 && ack >= s->acq_cmd_seq,
        "acked_seq", (json_int_t)ack, "state",
        rtd_acq_state_name(atomic_load_explicit(&b->acq_state, memory_order_relaxed)),
        "frames_done", (json_int_t)atomic_load_explicit(&b->acq_frames_done, memory_order_relaxed),
        "acq_pid", (json_int_t)pid, "acq_alive", st.live > 0);
}

json_t *ctl_recording_json(struct ctl *c)
{
    struct rtd_ctlblock_shm *b = rtd_ctlblock_shm(c->blk);
    uint64_t ack = atomic_load_explicit(&b->rec_ack_seq, memory_order_acquire);
    const struct rtd_ctl_snapshot *s = &c->snap;
    const char *req = s->rec_cmd == RTD_REC_CMD_START  ? "start"
                      : s->rec_cmd == RTD_REC_CMD_STOP ? "stop"
                                                       : "none";
    uint64_t kept = atomic_load_explicit(&b->rec_records, memory_order_relaxed),
             dropped = atomic_load_explicit(&b->rec_dropped, memory_order_relaxed);
    json_t *r = json_pack("{s:s, s:s, s:I, s:b, s:b, s:i, s:I, s:I, s:I}", "requested", req, "path",
                          s->rec_path, "seq", (json_int_t)s->rec_cmd_seq, "acknowledged",
                          s->rec_cmd_seq > 0 && ack >= s->rec_cmd_seq, "active",
                          atomic_load_explicit(&b->rec_active, memory_order_relaxed) != 0, "result",
                          atomic_load_explicit(&b->rec_result, memory_order_relaxed), "bytes",
                          (json_int_t)atomic_load_explicit(&b->rec_bytes, memory_order_relaxed),
                          "records", (json_int_t)kept, "dropped", (json_int_t)dropped);
    /* The operator must be told when a recording does not keep up. */
    if (dropped)
        json_object_set_new(r, "warning",
                            json_sprintf("recording dropped %llu of %llu records (%.1f %%)",
                                         (unsigned long long)dropped,
                                         (unsigned long long)(kept + dropped),
                                         100.0 * (double)dropped / (double)(kept + dropped)));
    return r;
}

static json_t *cmd_status(struct ctl *c)
{
    json_t *r = ctl_reply_ok();
    json_t *eps = json_array(), *ceps = json_array();
    for (int i = 0; i < c->o.n_pub; i++)
        json_array_append_new(eps, json_string(c->o.pub[i]));
    for (int i = 0; i < c->o.n_ctl; i++)
        json_array_append_new(ceps, json_string(c->o.ctl[i]));
    json_object_set_new(r, "instance", json_string(c->instance));
    json_object_set_new(
        r, "ctl",
        json_pack(
            "{s:i, s:f, s:o, s:o, s:b, s:I, s:I, s:I}", "pid", (int)getpid(), "uptime_s",
            (double)(rtd_now_ns() - c->start_ns) / 1e9, "pub", eps, "ctl", ceps, "curve", c->curve,
            "pub_msgs", (json_int_t)atomic_load_explicit(c->c_pub_msgs, memory_order_relaxed),
            "pub_dropped", (json_int_t)atomic_load_explicit(c->c_pub_dropped, memory_order_relaxed),
            "subscriptions",
            (json_int_t)atomic_load_explicit(c->c_subscriptions, memory_order_relaxed)));
    json_object_set_new(r, "acquisition", ctl_acquisition_json(c));
    json_object_set_new(r, "recording", ctl_recording_json(c));
    json_object_set_new(r, "params", params_json(&c->snap));
    json_t *ov = ctl_stats_overview(c);
    json_object_update(r, ov); /* "processes", "rings" */
    json_decref(ov);
    json_object_set_new(r, "streams", ctl_stream_status(c));
    json_object_set_new(r, "jobs", ctl_jobs_summary(c));
    return r;
}

/*
 * Every parameter: what was requested (null: never set, the owner runs its own
 * configuration), what its owner applied and in which generation, and whether
 * the owner runs at all.
 */
static json_t *cmd_params(struct ctl *c)
{
    json_t *r = ctl_reply_ok(), *a = json_array();
    struct ctl_owner_state own[RTD_OWNER_PROC + 1];
    for (int o = RTD_OWNER_ACQ; o <= RTD_OWNER_PROC; o++)
        ctl_owner_state(c, (enum rtd_ctl_owner)o, c->snap.generation, &own[o]);
    for (int i = 0; i < RTD_P_COUNT; i++) {
        const struct rtd_ctl_param_desc *d = rtd_ctl_param_desc((enum rtd_ctl_param)i);
        json_t *p = json_pack("{s:s, s:s, s:s, s:f, s:f, s:s, s:s}", "name", d->name, "owner",
                              d->owner, "type", d->type == RTD_PT_U64 ? "integer" : "number", "min",
                              d->min, "max", d->max, "unit", d->unit, "help", d->help);
        json_object_set_new(p, "requested", param_value(&c->snap, i));
        json_object_set_new(p, "value", param_value(&c->snap, i)); /* schema 1 name */
        if (d->owner_id == RTD_OWNER_CTL) {
            /* ctl applies its own parameters as it writes them. */
            json_object_set_new(p, "applied", word_value(i, c->snap.params[i]));
            json_object_set_new(p, "applied_generation",
                                json_integer((json_int_t)c->snap.generation));
            json_object_set_new(p, "owner_running", json_true());
        } else {
            const struct ctl_owner_state *st = &own[d->owner_id];
            json_object_set_new(p, "applied",
                                st->have_applied ? word_value(i, st->applied[d->owner_index])
                                                 : json_null());
            json_object_set_new(p, "applied_generation",
                                st->have_applied ? json_integer((json_int_t)st->applied_gen)
                                                 : json_null());
            json_object_set_new(p, "owner_running", json_boolean(st->live > 0));
            json_object_set_new(p, "owner_processes", json_integer(st->live));
            if (st->waiting)
                json_object_set_new(p, "pending", json_integer(st->waiting));
        }
        json_array_append_new(a, p);
    }
    json_object_set_new(r, "generation", json_integer((json_int_t)c->snap.generation));
    json_object_set_new(r, "params", a);
    return r;
}

/* Validate every pair first; apply all of them under one seqlock write. */
static json_t *cmd_set(struct ctl *c, json_t *req, struct ctl_wait *w)
{
    uint64_t ms;
    if (wait_ms(req, &ms))
        return bad_wait();
    json_t *params = json_object_get(req, "params");
    json_t *single = NULL;
    if (!params) {
        json_t *name = json_object_get(req, "name"), *value = json_object_get(req, "value");
        if (!json_is_string(name) || !value)
            return ctl_reply_err("bad_request",
                                 "set wants {\"params\": {name: value, ...}} or name and value");
        single = json_object();
        json_object_set(single, json_string_value(name), value);
        params = single;
    }
    if (!json_is_object(params) || json_object_size(params) == 0) {
        json_decref(single);
        return ctl_reply_err("bad_request", "set: params must be a non-empty object");
    }
    struct rtd_ctl_snapshot next = c->snap;
    const char *key;
    json_t *val;
    json_t *err = NULL;
    unsigned owners = 0;
    json_t *names = json_array();
    json_object_foreach(params, key, val)
    {
        int p = rtd_ctl_param_find(key);
        if (p < 0) {
            err = ctl_reply_err("unknown_param", "unknown parameter '%s' (see: rtdaq set --list)",
                                key);
            break;
        }
        const struct rtd_ctl_param_desc *d = rtd_ctl_param_desc((enum rtd_ctl_param)p);
        if (!json_is_number(val)) {
            err = ctl_reply_err("bad_value", "%s wants a number", key);
            break;
        }
        double v = json_number_value(val);
        int rc = rtd_ctl_param_check((enum rtd_ctl_param)p, v);
        if (rc == -EINVAL) {
            err = ctl_reply_err("bad_value", "%s wants an integer, not %g", key, v);
            break;
        }
        if (rc == -ERANGE) {
            err = ctl_reply_err("out_of_range", "%s = %g is outside [%g, %g] %s", key, v, d->min,
                                d->max, d->unit);
            break;
        }
        rtd_ctl_param_store(&next, (enum rtd_ctl_param)p, v);
        owners |= 1u << d->owner_id;
        json_array_append_new(names, json_string(d->name));
    }
    if (!err) {
        /* A ROI is checked as a whole: it must not wrap around 16-bit coordinates. */
        uint64_t x = rtd_ctl_param_u64(&next, RTD_P_ACQ_ROI_X),
                 rw = rtd_ctl_param_u64(&next, RTD_P_ACQ_ROI_WIDTH),
                 y = rtd_ctl_param_u64(&next, RTD_P_ACQ_ROI_Y),
                 rh = rtd_ctl_param_u64(&next, RTD_P_ACQ_ROI_HEIGHT);
        if (x + rw > 65536 || y + rh > 65536)
            err = ctl_reply_err("out_of_range", "ROI %llu,%llu %llux%llu exceeds 65536 px",
                                (unsigned long long)x, (unsigned long long)y,
                                (unsigned long long)rw, (unsigned long long)rh);
    }
    json_decref(single);
    if (err) {
        json_decref(names);
        return err;
    }
    next.generation++;
    struct rtd_ctl_snapshot before = c->snap;
    c->snap = next;
    rtd_ctlblock_write(c->blk, &c->snap);
    owners &= ~(1u << RTD_OWNER_CTL); /* ctl's own: applied as written */
    if (!ms || !owners) {
        json_t *r = ctl_reply_ok();
        json_object_set_new(r, "generation", json_integer((json_int_t)c->snap.generation));
        json_object_set_new(r, "params", params_json(&c->snap));
        json_object_set_new(r, "acknowledged", json_boolean(!owners));
        json_decref(names);
        return r;
    }
    w->kind = CTL_WAIT_PARAMS;
    w->target = c->snap.generation;
    w->owners = owners;
    w->timeout_ns = ms * 1000000ull;
    w->names = names;
    w->before = before;
    return NULL;
}

/* A command written to the block: answered now ("wait": false) or once acq acknowledged it. */
static json_t *acq_command(struct ctl *c, uint64_t ms, struct ctl_wait *w, int rec)
{
    rtd_ctlblock_write(c->blk, &c->snap);
    if (ms) {
        w->kind = rec ? CTL_WAIT_REC : CTL_WAIT_ACQ;
        w->target = rec ? c->snap.rec_cmd_seq : c->snap.acq_cmd_seq;
        w->timeout_ns = ms * 1000000ull;
        return NULL;
    }
    json_t *r = ctl_reply_ok();
    json_object_set_new(r, rec ? "recording" : "acquisition",
                        rec ? ctl_recording_json(c) : ctl_acquisition_json(c));
    return r;
}

static json_t *cmd_start(struct ctl *c, json_t *req, struct ctl_wait *w)
{
    uint64_t ms;
    if (wait_ms(req, &ms))
        return bad_wait();
    json_t *jm = json_object_get(req, "mode"), *jc = json_object_get(req, "count");
    const char *m = jm ? json_string_value(jm) : "continuous";
    uint32_t mode;
    if (!m)
        return ctl_reply_err("bad_value", "mode must be a string");
    if (!strcmp(m, "single"))
        mode = RTD_ACQ_SINGLE;
    else if (!strcmp(m, "multiple"))
        mode = RTD_ACQ_MULTIPLE;
    else if (!strcmp(m, "continuous"))
        mode = RTD_ACQ_CONTINUOUS;
    else
        return ctl_reply_err("bad_value", "mode '%s': want single, multiple or continuous", m);
    if (jc && !json_is_integer(jc))
        return ctl_reply_err("bad_value", "count must be an integer");
    json_int_t count = jc ? json_integer_value(jc) : (mode == RTD_ACQ_SINGLE ? 1 : 0);
    if (mode == RTD_ACQ_SINGLE && count != 1)
        return ctl_reply_err("out_of_range", "mode single acquires exactly 1 frame, not %lld",
                             (long long)count);
    if (mode == RTD_ACQ_MULTIPLE && (count < 1 || count > (json_int_t)1e12))
        return ctl_reply_err("out_of_range", "mode multiple wants count in [1, 1e12], not %lld",
                             (long long)count);
    if (mode == RTD_ACQ_CONTINUOUS && count != 0)
        return ctl_reply_err("bad_value", "mode continuous takes no count");
    c->snap.acq_cmd = RTD_ACQ_CMD_START;
    c->snap.acq_mode = mode;
    c->snap.acq_count = (uint64_t)count;
    c->snap.acq_cmd_seq++;
    c->snap.acq_cmd_time_ns = rtd_realtime_ns();
    return acq_command(c, ms, w, 0);
}

static json_t *cmd_stop(struct ctl *c, json_t *req, struct ctl_wait *w)
{
    uint64_t ms;
    if (wait_ms(req, &ms))
        return bad_wait();
    c->snap.acq_cmd = RTD_ACQ_CMD_STOP;
    c->snap.acq_cmd_seq++;
    c->snap.acq_cmd_time_ns = rtd_realtime_ns();
    return acq_command(c, ms, w, 0);
}

static json_t *cmd_record(struct ctl *c, json_t *req, struct ctl_wait *w)
{
    uint64_t ms;
    if (wait_ms(req, &ms))
        return bad_wait();
    const char *a = json_string_value(json_object_get(req, "action"));
    if (!a || (strcmp(a, "start") && strcmp(a, "stop")))
        return ctl_reply_err("bad_value", "record wants \"action\": \"start\" or \"stop\"");
    json_t *jp = json_object_get(req, "path");
    const char *path = "";
    if (jp) {
        path = json_string_value(jp);
        if (!path || !*path || strlen(path) >= RTD_CTL_REC_PATH_MAX)
            return ctl_reply_err("bad_value", "path must be a string of 1..%d bytes",
                                 RTD_CTL_REC_PATH_MAX - 1);
    }
    if (!strcmp(a, "start")) {
        c->snap.rec_cmd = RTD_REC_CMD_START;
        memset(c->snap.rec_path, 0, sizeof c->snap.rec_path);
        snprintf(c->snap.rec_path, sizeof c->snap.rec_path, "%s", path);
    } else {
        c->snap.rec_cmd = RTD_REC_CMD_STOP;
    }
    c->snap.rec_cmd_seq++;
    c->snap.rec_cmd_time_ns = rtd_realtime_ns();
    return acq_command(c, ms, w, 1);
}

json_t *ctl_cmd_handle(struct ctl *c, const char *body, size_t len, struct ctl_wait *w)
{
    json_error_t jerr;
    json_t *req = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!req)
        return ctl_reply_err("malformed", "malformed JSON at byte %d: %s", jerr.position,
                             jerr.text);
    json_t *r;
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    if (!json_is_object(req) || !cmd)
        r = ctl_reply_err("bad_request", "a request is an object with a string \"cmd\"");
    else if (!strcmp(cmd, "status"))
        r = cmd_status(c);
    else if (!strcmp(cmd, "ping"))
        r = ctl_reply_ok();
    else if (!strcmp(cmd, "params"))
        r = cmd_params(c);
    else if (!strcmp(cmd, "set"))
        r = cmd_set(c, req, w);
    else if (!strcmp(cmd, "start"))
        r = cmd_start(c, req, w);
    else if (!strcmp(cmd, "stop"))
        r = cmd_stop(c, req, w);
    else if (!strcmp(cmd, "record"))
        r = cmd_record(c, req, w);
    else if (!strcmp(cmd, "jobs"))
        r = ctl_jobs_handle(c, req);
    else if (!strcmp(cmd, "shutdown")) {
        c->stop = 1;
        r = ctl_reply_ok();
    } else
        r = ctl_reply_err("unknown_command",
                          "unknown command '%s' (status, ping, params, set, start, stop, record, "
                          "jobs, shutdown)",
                          cmd);
    json_t *id = json_object_get(req, "id");
    if (!r) {
        /* Deferred: the reply is made once acknowledged (ctl_ack.c). */
        w->id = id ? json_incref(id) : NULL;
        snprintf(w->cmd, sizeof w->cmd, "%s", cmd);
        json_decref(req);
        return NULL;
    }
    if (id)
        json_object_set(r, "id", id);
    if (cmd)
        json_object_set_new(r, "cmd", json_string(cmd));
    json_decref(req);
    return r;
}
