/* SPDX-License-Identifier: MIT */
/*
 * The control protocol: one JSON object in, one JSON object out. Every reply
 * carries "ok" and "version"; a failure adds "error" (a sentence) and "code"
 * (a stable word for scripts). A request is validated completely before
 * anything changes, so a bad request never leaves a half-applied state.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "ctl_internal.h"
#include "rtd_shm.h"
#include "rtd_util.h"

static int pid_alive(uint32_t pid)
{
    return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

static json_t *param_value(const struct rtd_ctl_snapshot *s, int i)
{
    const struct rtd_ctl_param_desc *d = rtd_ctl_param_desc((enum rtd_ctl_param)i);
    return d->type == RTD_PT_U64 ? json_integer((json_int_t)s->params[i])
                                 : json_real(rtd_ctl_param_get(s, (enum rtd_ctl_param)i));
}

static json_t *params_json(const struct rtd_ctl_snapshot *s)
{
    json_t *o = json_object();
    for (int i = 0; i < RTD_P_COUNT; i++)
        json_object_set_new(o, rtd_ctl_param_desc((enum rtd_ctl_param)i)->name, param_value(s, i));
    return o;
}

static json_t *acquisition_json(struct ctl *c)
{
    struct rtd_ctlblock_shm *b = rtd_ctlblock_shm(c->blk);
    /* K1 partner: the ack words are valid for the seq read here. */
    uint64_t ack = atomic_load_explicit(&b->acq_ack_seq, memory_order_acquire);
    uint32_t pid = atomic_load_explicit(&b->acq_pid, memory_order_relaxed);
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
        "acq_pid", (json_int_t)pid, "acq_alive", pid_alive(pid));
}

static json_t *recording_json(struct ctl *c)
{
    struct rtd_ctlblock_shm *b = rtd_ctlblock_shm(c->blk);
    uint64_t ack = atomic_load_explicit(&b->rec_ack_seq, memory_order_acquire);
    const struct rtd_ctl_snapshot *s = &c->snap;
    const char *req = s->rec_cmd == RTD_REC_CMD_START  ? "start"
                      : s->rec_cmd == RTD_REC_CMD_STOP ? "stop"
                                                       : "none";
    return json_pack("{s:s, s:s, s:I, s:b, s:b, s:i, s:I}", "requested", req, "path", s->rec_path,
                     "seq", (json_int_t)s->rec_cmd_seq, "acknowledged",
                     s->rec_cmd_seq > 0 && ack >= s->rec_cmd_seq, "active",
                     atomic_load_explicit(&b->rec_active, memory_order_relaxed) != 0, "result",
                     atomic_load_explicit(&b->rec_result, memory_order_relaxed), "bytes",
                     (json_int_t)atomic_load_explicit(&b->rec_bytes, memory_order_relaxed));
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
    json_object_set_new(r, "acquisition", acquisition_json(c));
    json_object_set_new(r, "recording", recording_json(c));
    json_object_set_new(r, "params", params_json(&c->snap));
    json_t *ov = ctl_stats_overview(c);
    json_object_update(r, ov); /* "processes", "rings" */
    json_decref(ov);
    json_object_set_new(r, "streams", ctl_stream_status(c));
    json_object_set_new(r, "jobs", ctl_jobs_summary(c));
    return r;
}

static json_t *cmd_params(struct ctl *c)
{
    json_t *r = ctl_reply_ok(), *a = json_array();
    for (int i = 0; i < RTD_P_COUNT; i++) {
        const struct rtd_ctl_param_desc *d = rtd_ctl_param_desc((enum rtd_ctl_param)i);
        json_t *p = json_pack("{s:s, s:s, s:s, s:f, s:f, s:s, s:s}", "name", d->name, "owner",
                              d->owner, "type", d->type == RTD_PT_U64 ? "integer" : "number", "min",
                              d->min, "max", d->max, "unit", d->unit, "help", d->help);
        json_object_set_new(p, "value", param_value(&c->snap, i));
        json_array_append_new(a, p);
    }
    json_object_set_new(r, "params", a);
    return r;
}

/* Validate every pair first; apply all of them under one seqlock write. */
static json_t *cmd_set(struct ctl *c, json_t *req)
{
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
    }
    if (!err) {
        /* A ROI is checked as a whole: it must not wrap around 16-bit coordinates. */
        uint64_t x = rtd_ctl_param_u64(&next, RTD_P_ACQ_ROI_X),
                 w = rtd_ctl_param_u64(&next, RTD_P_ACQ_ROI_WIDTH),
                 y = rtd_ctl_param_u64(&next, RTD_P_ACQ_ROI_Y),
                 h = rtd_ctl_param_u64(&next, RTD_P_ACQ_ROI_HEIGHT);
        if (x + w > 65536 || y + h > 65536)
            err = ctl_reply_err("out_of_range", "ROI %llu,%llu %llux%llu exceeds 65536 px",
                                (unsigned long long)x, (unsigned long long)y, (unsigned long long)w,
                                (unsigned long long)h);
    }
    json_decref(single);
    if (err)
        return err;
    next.generation++;
    c->snap = next;
    rtd_ctlblock_write(c->blk, &c->snap);
    json_t *r = ctl_reply_ok();
    json_object_set_new(r, "generation", json_integer((json_int_t)c->snap.generation));
    json_object_set_new(r, "params", params_json(&c->snap));
    return r;
}

static json_t *cmd_start(struct ctl *c, json_t *req)
{
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
    rtd_ctlblock_write(c->blk, &c->snap);
    json_t *r = ctl_reply_ok();
    json_object_set_new(r, "acquisition", acquisition_json(c));
    return r;
}

static json_t *cmd_stop(struct ctl *c)
{
    c->snap.acq_cmd = RTD_ACQ_CMD_STOP;
    c->snap.acq_cmd_seq++;
    rtd_ctlblock_write(c->blk, &c->snap);
    json_t *r = ctl_reply_ok();
    json_object_set_new(r, "acquisition", acquisition_json(c));
    return r;
}

static json_t *cmd_record(struct ctl *c, json_t *req)
{
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
    rtd_ctlblock_write(c->blk, &c->snap);
    json_t *r = ctl_reply_ok();
    json_object_set_new(r, "recording", recording_json(c));
    return r;
}

json_t *ctl_cmd_handle(struct ctl *c, const char *body, size_t len)
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
        r = cmd_set(c, req);
    else if (!strcmp(cmd, "start"))
        r = cmd_start(c, req);
    else if (!strcmp(cmd, "stop"))
        r = cmd_stop(c);
    else if (!strcmp(cmd, "record"))
        r = cmd_record(c, req);
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
    if (id)
        json_object_set(r, "id", id);
    if (cmd)
        json_object_set_new(r, "cmd", json_string(cmd));
    json_decref(req);
    return r;
}
