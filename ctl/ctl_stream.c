/* SPDX-License-Identifier: MIT */
/*
 * Topics "fits", "wavelet" and "frames": records of the results rings
 * ("results.w<k>"), the wavelet rings ("wavelet.w<k>") and decimated frames of
 * the "frames" ring, forwarded as multipart [topic, JSON header, raw payload]
 * in the style of detector streams (slsDetector, Dectris): the header says
 * what the bytes are; the bytes are the record exactly as the producer wrote
 * it. When a ring closes, disappears or its producer dies, one [topic, JSON]
 * message with "kind": "end" ends that ring's stream.
 *
 * ctl reads every ring as a monitor consumer: it never gates a producer. If
 * ctl falls behind it is lapped, skips ahead and counts what it missed
 * ("results.lapped" in stats.ctl, "lapped" in the header of the next record).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_internal.h"
#include "rtd_shm.h"
#include "rtd_util.h"
#ifdef RTD_CTL_HAVE_RESULTS
#include "rtd_results.h"
#endif

#define MAX_FOLLOW 32
#define BUDGET     4096 /* records per ring per poll: keeps the control socket responsive */

struct follow {
    int used, seen;
    char name[64];
    char topic[16];
    int seq_slot;
    struct rtd_ring *ring;
    struct rtd_consumer *cons;
    uint64_t records, lapped_seen, frames_seen, last_frame_ns;
    /* fits: the ions of the frame being collected (until its summary record). */
    unsigned char *ions;
    size_t n_ions, cap_ions;
    uint64_t ions_frame_seq;
};

struct ctl_stream {
    struct follow f[MAX_FOLLOW];
    int active;
    void *buf;
    size_t buf_cap;
};

int ctl_stream_init(struct ctl *c)
{
    c->stream = calloc(1, sizeof *c->stream);
    return c->stream ? 0 : -ENOMEM;
}

int ctl_stream_active(struct ctl *c)
{
    return c->stream && c->stream->active;
}

static json_t *header(struct ctl *c, struct follow *f, const char *kind)
{
    const char *dot = strchr(f->name, '.');
    return json_pack("{s:s, s:i, s:s, s:s, s:s, s:s, s:o, s:I, s:I}", "schema",
                     !strcmp(f->topic, "frames") ? "rtdaq.frame" : "rtdaq.result", "version",
                     CTL_SCHEMA_VERSION, "kind", kind, "instance", c->instance, "topic", f->topic,
                     "ring", f->name, "worker", dot ? json_string(dot + 1) : json_null(), "seq",
                     (json_int_t)++c->topic_seq[f->seq_slot], "time_ns",
                     (json_int_t)rtd_realtime_ns());
}

/* End of one ring's stream, then forget the ring. */
static void unfollow(struct ctl *c, struct follow *f, const char *reason)
{
    json_t *h = header(c, f, "end");
    json_object_set_new(h, "reason", json_string(reason));
    json_object_set_new(h, "records", json_integer((json_int_t)f->records));
    ctl_publish(c, f->topic, h, NULL, 0);
    json_decref(h);
    if (f->cons)
        rtd_consumer_close(f->cons);
    if (f->ring)
        rtd_ring_close(f->ring);
    free(f->ions);
    memset(f, 0, sizeof *f);
}

void ctl_stream_free(struct ctl *c)
{
    if (!c->stream)
        return;
    for (int i = 0; i < MAX_FOLLOW; i++)
        if (c->stream->f[i].used)
            unfollow(c, &c->stream->f[i], "ctl_shutdown");
    free(c->stream->buf);
    free(c->stream);
    c->stream = NULL;
}

static const char *topic_for(const char *ring, int *slot)
{
    if (!strncmp(ring, "results.", 8)) {
        *slot = CTL_SEQ_FITS;
        return "fits";
    }
    if (!strncmp(ring, "wavelet.", 8)) {
        *slot = CTL_SEQ_WAVELET;
        return "wavelet";
    }
    if (!strcmp(ring, "frames")) {
        *slot = CTL_SEQ_FRAMES;
        return "frames";
    }
    return NULL;
}

static void on_ring(const char *ring, void *arg)
{
    struct ctl *c = arg;
    struct ctl_stream *s = c->stream;
    int slot;
    const char *topic = topic_for(ring, &slot);
    if (!topic || strlen(ring) >= 64)
        return;
    if (slot == CTL_SEQ_FRAMES && !rtd_ctl_param_u64(&c->snap, RTD_P_CTL_FRAMES_EVERY) &&
        rtd_ctl_param_f64(&c->snap, RTD_P_CTL_FRAMES_MAX_RATE) <= 0)
        return; /* frames topic off: do not even register a cursor */
    struct follow *free_f = NULL;
    for (int i = 0; i < MAX_FOLLOW; i++) {
        if (s->f[i].used && !strcmp(s->f[i].name, ring)) {
            s->f[i].seen = 1;
            return;
        }
        if (!s->f[i].used && !free_f)
            free_f = &s->f[i];
    }
    if (!free_f)
        return;
    struct rtd_ring *r;
    if (rtd_ring_attach(&r, c->instance, ring))
        return;
    const struct rtd_ring_hdr *h = rtd_ring_header(r);
    if (atomic_load_explicit(&h->state, memory_order_acquire) != RTD_STATE_READY) {
        rtd_ring_close(r);
        return;
    }
    struct rtd_consumer *cons;
    if (rtd_consumer_open(&cons, r, RTD_CONSUMER_MONITOR, "ctl")) {
        rtd_ring_close(r);
        return;
    }
    free_f->used = free_f->seen = 1;
    snprintf(free_f->name, sizeof free_f->name, "%s", ring);
    snprintf(free_f->topic, sizeof free_f->topic, "%s", topic);
    free_f->seq_slot = slot;
    free_f->ring = r;
    free_f->cons = cons;
}

void ctl_stream_rescan(struct ctl *c)
{
    struct ctl_stream *s = c->stream;
    for (int i = 0; i < MAX_FOLLOW; i++)
        s->f[i].seen = 0;
    rtd_shm_list(c->instance, on_ring, c);
    s->active = 0;
    int frames_on = rtd_ctl_param_u64(&c->snap, RTD_P_CTL_FRAMES_EVERY) ||
                    rtd_ctl_param_f64(&c->snap, RTD_P_CTL_FRAMES_MAX_RATE) > 0;
    for (int i = 0; i < MAX_FOLLOW; i++) {
        struct follow *f = &s->f[i];
        if (!f->used)
            continue;
        const struct rtd_ring_hdr *h = rtd_ring_header(f->ring);
        uint32_t st = atomic_load_explicit(&h->state, memory_order_acquire);
        if (!f->seen)
            unfollow(c, f, "ring_removed");
        else if (st == RTD_STATE_CLOSED)
            unfollow(c, f, "closed");
        else if (!rtd_shm_pid_alive(h->creator_pid))
            unfollow(c, f, "producer_exited");
        else if (f->seq_slot == CTL_SEQ_FRAMES && !frames_on)
            unfollow(c, f, "frames_off");
        else
            s->active = 1;
    }
}

static void *scratch(struct ctl_stream *s, size_t len)
{
    if (len > s->buf_cap) {
        void *b = realloc(s->buf, len);
        if (!b)
            return NULL;
        s->buf = b;
        s->buf_cap = len;
    }
    return s->buf;
}

static void note_lapped(struct ctl *c, struct follow *f, json_t *h)
{
    uint64_t lap = rtd_consumer_lapped(f->cons);
    if (lap != f->lapped_seen) {
        atomic_fetch_add_explicit(c->c_results_lapped, lap - f->lapped_seen, memory_order_relaxed);
        f->lapped_seen = lap;
    }
    json_object_set_new(h, "lapped", json_integer((json_int_t)lap));
}

#ifdef RTD_CTL_HAVE_RESULTS
/*
 * Decoded results (rtd_results.h): one "fits" message per frame, header = the
 * frame summary, payload = its ions (struct rtd_res_ion, 64 B each); one
 * "wavelet" message per band-power or coherence record, payload = the bands
 * (float64). Returns 1 when the record was handled here.
 */
static int publish_result(struct ctl *c, struct follow *f, const struct rtd_pkt_hdr *rec)
{
    const void *p = rtd_pkt_payload(rec);
    if (rec->type == RTD_RES_ION && rec->len >= sizeof(struct rtd_res_ion)) {
        const struct rtd_res_ion *ion = p;
        if (f->n_ions && ion->frame_seq != f->ions_frame_seq)
            f->n_ions = 0; /* the previous frame's summary was lost (lapped) */
        if (f->n_ions == f->cap_ions) {
            size_t cap = f->cap_ions ? f->cap_ions * 2 : 64;
            unsigned char *b = realloc(f->ions, cap * sizeof *ion);
            if (!b)
                return 1;
            f->ions = b;
            f->cap_ions = cap;
        }
        memcpy(f->ions + f->n_ions * sizeof *ion, ion, sizeof *ion);
        f->n_ions++;
        f->ions_frame_seq = ion->frame_seq;
        return 1;
    }
    json_t *h;
    const void *payload;
    size_t len;
    if (rec->type == RTD_RES_FRAME && rec->len >= sizeof(struct rtd_res_frame)) {
        const struct rtd_res_frame *fr = p;
        size_t n = f->n_ions && f->ions_frame_seq == fr->frame_seq ? f->n_ions : 0;
        h = header(c, f, "data");
        json_object_set_new(
            h, "frame",
            json_pack("{s:I, s:I, s:I, s:I, s:f, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, "
                      "s:f, s:f, s:i, s:s, s:i, s:i, s:i}",
                      "frame_seq", (json_int_t)fr->frame_seq, "frame_id", (json_int_t)fr->frame_id,
                      "ts_mono_ns", (json_int_t)fr->ts_mono_ns, "ts_real_ns",
                      (json_int_t)fr->ts_real_ns, "latency_s",
                      fr->done_mono_ns > fr->ts_mono_ns
                          ? (double)(fr->done_mono_ns - fr->ts_mono_ns) / 1e9
                          : 0.0,
                      "n_ions", (int)fr->n_ions, "n_converged", (int)fr->n_converged, "n_failed",
                      (int)fr->n_failed, "n_duplicates", (int)fr->n_duplicates, "n_peaks",
                      (int)fr->n_peaks, "t_detect_ns", (int)fr->t_detect_ns, "t_fit_ns",
                      (int)fr->t_fit_ns, "t_total_ns", (int)fr->t_total_ns, "background",
                      (double)fr->background, "noise", (double)fr->noise, "threshold",
                      (double)fr->threshold, "worker", (int)fr->worker, "analysis",
                      fr->analysis ? "shm" : "static", "flags", (int)fr->flags, "width",
                      (int)fr->width, "height", (int)fr->height));
        json_object_set_new(h, "ions", json_integer((json_int_t)n));
        json_object_set_new(h, "ion_size", json_integer(sizeof(struct rtd_res_ion)));
        json_object_set_new(h, "encoding", json_string("rtd_res_ion[ions], little-endian"));
        payload = f->ions;
        len = n * sizeof(struct rtd_res_ion);
        f->n_ions = 0;
    } else if (rec->type == RTD_RES_WPOWER && rec->len >= sizeof(struct rtd_res_wpower)) {
        const struct rtd_res_wpower *w = p;
        size_t nb = w->n_bands;
        if (rec->len < sizeof *w + nb * 8)
            return 0;
        h = header(c, f, "data");
        json_object_set_new(
            h, "power",
            json_pack("{s:i, s:i, s:I, s:I, s:I, s:i, s:i, s:f}", "client", (int)w->client,
                      "n_bands", (int)nb, "last_seq", (json_int_t)w->last_seq, "last_ts_ns",
                      (json_int_t)w->last_ts_ns, "done_mono_ns", (json_int_t)w->done_mono_ns,
                      "window", (int)w->window, "hop", (int)w->hop, "dt", w->dt));
        json_object_set_new(h, "encoding", json_string("float64[n_bands], little-endian"));
        payload = w + 1;
        len = nb * 8;
    } else if (rec->type == RTD_RES_WCOH && rec->len >= sizeof(struct rtd_res_wcoh)) {
        const struct rtd_res_wcoh *w = p;
        size_t nb = w->n_bands;
        if (rec->len < sizeof *w + nb * 8)
            return 0;
        h = header(c, f, "data");
        json_object_set_new(h, "coherence",
                            json_pack("{s:i, s:i, s:i, s:I, s:I, s:i, s:i, s:f}", "client_a",
                                      (int)w->client_a, "client_b", (int)w->client_b, "n_bands",
                                      (int)nb, "last_ts_ns", (json_int_t)w->last_ts_ns,
                                      "done_mono_ns", (json_int_t)w->done_mono_ns, "window",
                                      (int)w->window, "hop", (int)w->hop, "dt", w->dt));
        json_object_set_new(h, "encoding", json_string("float64[n_bands], little-endian"));
        payload = w + 1;
        len = nb * 8;
    } else {
        return 0;
    }
    json_object_set_new(h, "record_type", json_integer(rec->type));
    note_lapped(c, f, h);
    ctl_publish(c, f->topic, h, len ? payload : "", len);
    json_decref(h);
    atomic_fetch_add_explicit(c->c_results_msgs, 1, memory_order_relaxed);
    f->records++;
    return 1;
}
#endif

static int poll_packets(struct ctl *c, struct follow *f)
{
    int sent = 0, seen = 0;
    /* Monitors copy each record out; shm drops (and counts as lapped) any overwritten meanwhile. */
    const size_t cap = sizeof(struct rtd_pkt_hdr) + RTD_PKT_MAX_PAYLOAD;
    void *buf = scratch(c->stream, cap);
    const struct rtd_pkt_hdr *rec = buf;
    for (int k = 0; buf && k < BUDGET && rtd_pkt_copy(f->cons, buf, cap, NULL) >= 0; k++) {
        seen++;
#ifdef RTD_CTL_HAVE_RESULTS
        if (publish_result(c, f, rec)) {
            sent++;
            continue;
        }
#endif
        /* A record type this build does not know: forwarded as it is. */
        json_t *h = header(c, f, "data");
        json_object_set_new(h, "record_seq", json_integer((json_int_t)rec->seq));
        json_object_set_new(h, "record_type", json_integer(rec->type));
        json_object_set_new(h, "flags", json_integer(rec->flags));
        json_object_set_new(h, "len", json_integer(rec->len));
        json_object_set_new(h, "ts_mono_ns", json_integer((json_int_t)rec->ts_mono_ns));
        json_object_set_new(h, "encoding", json_string("raw record"));
        note_lapped(c, f, h);
        ctl_publish(c, f->topic, h, rtd_pkt_payload(rec), rec->len);
        json_decref(h);
        atomic_fetch_add_explicit(c->c_results_msgs, 1, memory_order_relaxed);
        f->records++;
        sent++;
    }
    if (seen)
        rtd_pkt_release(f->cons);
    return sent;
}

static int poll_frames(struct ctl *c, struct follow *f)
{
    int sent = 0;
    uint64_t every = rtd_ctl_param_u64(&c->snap, RTD_P_CTL_FRAMES_EVERY);
    double max_rate = rtd_ctl_param_f64(&c->snap, RTD_P_CTL_FRAMES_MAX_RATE);
    int is_results = f->seq_slot != CTL_SEQ_FRAMES;
    uint32_t cap = rtd_ring_header(f->ring)->slot_payload;
    void *buf = scratch(c->stream, cap ? cap : 1);
    struct rtd_frame_hdr hd;
    for (int k = 0; buf && k < BUDGET; k++) {
        uint64_t now = rtd_now_ns();
        int want = is_results || ((!every || f->frames_seen % every == 0) &&
                                  (max_rate <= 0 || f->last_frame_ns == 0 ||
                                   (double)(now - f->last_frame_ns) >= 1e9 / max_rate));
        /* Copied out, then validated by shm: a frame reused meanwhile is skipped (lapped). */
        int n = rtd_frame_copy(f->cons, &hd, want ? buf : NULL, want ? cap : 0, NULL);
        if (n < 0)
            break;
        f->frames_seen++;
        if (want) {
            uint32_t len = (uint32_t)n;
            json_t *h = header(c, f, "data");
            json_object_set_new(
                h, "frame",
                json_pack("{s:I, s:I, s:i, s:i, s:i, s:i, s:i, s:I, s:I}", "frame_id",
                          (json_int_t)hd.frame_id, "ring_seq", (json_int_t)hd.seq, "width",
                          (int)hd.width, "height", (int)hd.height, "pixfmt", (int)hd.pixfmt, "type",
                          (int)hd.type, "flags", (int)hd.flags, "ts_mono_ns",
                          (json_int_t)hd.ts_mono_ns, "ts_real_ns", (json_int_t)hd.ts_real_ns));
            json_object_set_new(h, "len", json_integer(len));
            note_lapped(c, f, h);
            ctl_publish(c, f->topic, h, buf, len);
            json_decref(h);
            atomic_fetch_add_explicit(is_results ? c->c_results_msgs : c->c_frames_msgs, 1,
                                      memory_order_relaxed);
            f->records++;
            f->last_frame_ns = now;
            sent++;
        }
    }
    return sent;
}

int ctl_stream_poll(struct ctl *c)
{
    struct ctl_stream *s = c->stream;
    int sent = 0;
    if (!s->active)
        return 0;
    for (int i = 0; i < MAX_FOLLOW; i++) {
        struct follow *f = &s->f[i];
        if (!f->used)
            continue;
        if (rtd_ring_header(f->ring)->kind == RTD_RING_PACKET)
            sent += poll_packets(c, f);
        else
            sent += poll_frames(c, f);
        rtd_consumer_heartbeat(f->cons);
    }
    return sent;
}

json_t *ctl_stream_status(struct ctl *c)
{
    json_t *a = json_array();
    for (int i = 0; i < MAX_FOLLOW; i++) {
        struct follow *f = &c->stream->f[i];
        if (f->used)
            json_array_append_new(a, json_pack("{s:s, s:s, s:I, s:I}", "ring", f->name, "topic",
                                               f->topic, "records", (json_int_t)f->records,
                                               "lapped", (json_int_t)rtd_consumer_lapped(f->cons)));
    }
    return a;
}
