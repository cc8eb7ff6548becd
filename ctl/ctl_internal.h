/* SPDX-License-Identifier: MIT */
/*
 * rtdaq-ctl's private state, shared by its source files. One thread (main)
 * owns every ZeroMQ socket and the control block; job threads only touch the
 * job table under its mutex (ctl_jobs.c).
 */
#ifndef CTL_INTERNAL_H
#define CTL_INTERNAL_H

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "rtd_ctl_client.h"
#include "rtd_ctlblock.h"

/* Schema version of every JSON message and reply (docs/zmq.md). */
#define CTL_SCHEMA_VERSION 1
#define CTL_MAX_ENDPOINTS  4
/* Largest control request accepted (ZMQ_MAXMSGSIZE on the ROUTER socket). */
#define CTL_MAX_REQUEST_BYTES (4 << 20)

struct ctl_opts {
    const char *instance;
    const char *pub[CTL_MAX_ENDPOINTS];
    int n_pub;
    const char *ctl[CTL_MAX_ENDPOINTS];
    int n_ctl;
    uint64_t interval_ms;
    uint64_t frames_every;
    double frames_max_rate;
    const char *curve_server_key; /* PREFIX.secret of the server */
    const char *curve_allowed;    /* dir of *.pub or file of keys */
    int jobs_parallel;
    int jobs_queue;
    double duration_s;
    int sndhwm;
    int pub_nodrop;
    const char *job_dir;     /* where recordings may be read from ("" = anywhere) */
    char *pub_buf, *ctl_buf; /* the endpoint lists the pointers above point into */
};

struct ctl_stats_state; /* ctl_stats.c */
struct ctl_stream;      /* ctl_stream.c */
struct ctl_jobs;        /* ctl_jobs.c */
struct ctl_acks;        /* ctl_ack.c */

struct ctl {
    struct ctl_opts o;
    const char *instance;
    void *zctx;
    void *pub;    /* XPUB */
    void *router; /* control */
    void *zap;    /* inproc ZAP handler, when CURVE is on */
    int curve;    /* CURVE required on every socket */
    char (*allowed)[RTD_CURVE_KEY_LEN + 1];
    int n_allowed;
    struct rtd_stats *stats; /* stats.ctl */
    _Atomic uint64_t *c_pub_msgs, *c_pub_bytes, *c_pub_dropped, *c_requests, *c_bad_requests,
        *c_zap_denied, *c_zap_allowed, *c_subscriptions, *c_jobs_submitted, *c_jobs_done,
        *c_jobs_failed, *c_jobs_cancelled, *g_jobs_running, *g_jobs_queued, *c_results_msgs,
        *c_frames_msgs, *c_results_lapped, *c_replies_dropped;
    struct rtd_hist *h_publish; /* time to build and send one interval's stats */
    struct rtd_hist *h_request; /* time to handle one control request */
    struct rtd_ctlblock *blk;
    struct rtd_ctl_snapshot snap; /* what ctl last wrote to the block */
    struct ctl_stats_state *st;
    struct ctl_stream *stream;
    struct ctl_jobs *jobs;
    struct ctl_acks *acks;
    uint64_t start_ns, start_realtime_ns;
    uint64_t topic_seq[8];
    volatile int stop;
};

/* Topic sequence slots (per-topic message counters in every message). */
enum { CTL_SEQ_STATS = 0, CTL_SEQ_FITS, CTL_SEQ_WAVELET, CTL_SEQ_FRAMES, CTL_SEQ_EVENT };

/*
 * Send [topic, json] or [topic, json, payload] on the PUB socket without ever
 * blocking. Counts messages, bytes and drops (EAGAIN: a subscriber's queue is
 * full under --pub-nodrop). 0 or -EAGAIN.
 */
int ctl_publish(struct ctl *c, const char *topic, json_t *hdr, const void *payload, size_t len);

/* ctl_stats.c */
int ctl_stats_init(struct ctl *c);
void ctl_stats_free(struct ctl *c);
/* Walk every stats segment of the instance and publish one message per process. */
void ctl_stats_publish(struct ctl *c, double interval_s);
/* Processes, rings and consumers as one JSON object for `status` and `top`. */
json_t *ctl_stats_overview(struct ctl *c);

/* ctl_stream.c: fits / wavelet / frames topics. */
int ctl_stream_init(struct ctl *c);
void ctl_stream_free(struct ctl *c);
/* Poll the rings; returns the number of messages sent (0 when idle). */
int ctl_stream_poll(struct ctl *c);
/* Look for rings that appeared or vanished (called once per interval). */
void ctl_stream_rescan(struct ctl *c);
json_t *ctl_stream_status(struct ctl *c);
/* True while result or frame rings are being followed (the loop polls faster). */
int ctl_stream_active(struct ctl *c);

/* ctl_jobs.c */
int ctl_jobs_init(struct ctl *c, int parallel, int queue_max);
void ctl_jobs_free(struct ctl *c);
json_t *ctl_jobs_handle(struct ctl *c, json_t *req); /* submit|status|cancel|list */
json_t *ctl_jobs_summary(struct ctl *c);
/* Publish job progress/completion events on topic "jobs" (main thread). */
void ctl_jobs_publish_events(struct ctl *c);

/*
 * rtdaq-ctl as a library entry (ctl_main.c; library rtd_ctld): runs until
 * *stop is non-zero (a signal number > 1 is logged by name), a shutdown
 * request or --duration. Installs no signal handlers; the daemon's main()
 * and `rtdaq run --single` do that. Returns the exit status (0, 1, 2).
 */
int rtd_ctl_main(int argc, char **argv, volatile sig_atomic_t *stop);

/*
 * ctl_ack.c: replies that wait for the owner's acknowledgement. A command
 * handler that changed the control block fills a wait and returns no reply;
 * the reply goes out from ctl_ack_poll() once the owner acknowledged, refused,
 * or the timeout passed.
 */
enum ctl_wait_kind { CTL_WAIT_PARAMS = 1, CTL_WAIT_ACQ = 2, CTL_WAIT_REC = 3 };
struct ctl_wait {
    enum ctl_wait_kind kind; /* 0: reply now */
    uint64_t target;         /* parameter generation, acq_cmd_seq or rec_cmd_seq */
    unsigned owners;         /* PARAMS: bits 1u << RTD_OWNER_* involved */
    uint64_t timeout_ns;
    json_t *names; /* PARAMS: the names set (owned reference) */
    json_t *id;    /* the request's "id" (owned reference) */
    char cmd[16];
    struct rtd_ctl_snapshot before; /* PARAMS: requested values before (withdrawn on refusal) */
};
/* What one owner (acq, or every fit worker of proc) acknowledged for generation gen. */
struct ctl_owner_state {
    int live, waiting, refused, refused_param, have_applied;
    uint32_t first_pid, waiting_pid, refused_pid;
    uint64_t applied_gen, applied[RTD_CTL_OWNER_VALUES];
    char reason[RTD_CTL_REASON_MAX];
};
int ctl_owner_state(struct ctl *c, enum rtd_ctl_owner o, uint64_t gen, struct ctl_owner_state *st);
int ctl_ack_init(struct ctl *c);
void ctl_ack_free(struct ctl *c);
int ctl_ack_defer(struct ctl *c, const void *ident, size_t ident_len, int delim,
                  struct ctl_wait *w);
void ctl_ack_poll(struct ctl *c);
int ctl_ack_pending(const struct ctl *c);

/* ctl_main.c: one reply to the ROUTER identity (never blocks). */
void ctl_send_reply(struct ctl *c, const void *ident, size_t ident_len, int delim, json_t *reply);

/* ctl_cmd.c: a reply, or NULL with *w filled when the reply waits for an acknowledgement. */
json_t *ctl_cmd_handle(struct ctl *c, const char *body, size_t len, struct ctl_wait *w);
json_t *ctl_acquisition_json(struct ctl *c);
json_t *ctl_recording_json(struct ctl *c);

/* Helpers for replies. */
json_t *ctl_reply_ok(void);
json_t *ctl_reply_err(const char *code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
