/* SPDX-License-Identifier: MIT */
/*
 * rtdaq-web's insides, shared by its files: the options, the live sampler
 * (web_live.c: shared memory in, snapshots and frame messages out), the HTTP
 * front (web_http.c: libmicrohttpd, static files, the JSON API, /metrics), the
 * WebSocket clients (web_ws.c) and the wavelet jobs (web_wct.c).
 *
 * Threads. The main thread runs the sampler loop and owns every shared-memory
 * handle and every WebSocket client socket. libmicrohttpd's one internal thread
 * runs the HTTP handlers; they only read the snapshot the sampler publishes
 * (under snap_lock), hand new WebSocket sockets over (under ws_lock) and start
 * short-lived helper threads for requests that wait (control forwarding, WCT
 * jobs). Nothing here ever gates a producer: every ring is read as a monitor.
 */
#ifndef WEB_INTERNAL_H
#define WEB_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define WEB_MAX_WS_DEFAULT   8
#define WEB_MAX_CONN_DEFAULT 64
#define WEB_BODY_MAX_CTL     (64u << 10) /* control requests: a few parameters */
#define WEB_BODY_MAX_WCT     (16u << 20) /* WCT: two series of up to ~500 k samples as JSON */
#define WEB_MAX_INFLIGHT     8           /* waiting requests (ctl forwarding, WCT) at once */

struct web_opts {
    char listen_addr[64];
    int port;
    const char *instance;
    const char *ctl_endpoint; /* rtdaq-ctl's control socket, for /api/v1/ control requests */
    const char *static_dir;   /* NULL: installed share dir, else the source tree's */
    const char *tls_cert, *tls_key, *token_file;
    const char *cpus; /* "2-3,5": our CPU affinity; NULL: leave it */
    int nice;
    int max_ws, max_conn;
    double max_fps;  /* frames per second per client, at most (the browser paces below it) */
    int max_dim;     /* frames are binned until width and height are at most this */
    int wct_threads; /* FFTW threads of one WCT job */
    int check_config;
    int verbose;
};

/* Counters of rtdaq-web itself (in its stats segment "stats.web" and in /metrics). */
enum web_counter {
    W_HTTP_REQUESTS,
    W_HTTP_4XX,
    W_HTTP_5XX,
    W_BAD_JSON,
    W_BAD_BODY_SIZE,
    W_BAD_PATH,
    W_BAD_AUTH,
    W_BAD_METHOD,
    W_CONN_REFUSED,
    W_WS_ACCEPTED,
    W_WS_REFUSED,
    W_WS_CLOSED,
    W_WS_CLIENTS,
    W_WS_BYTES,
    W_WS_FRAMES,
    W_WS_STATS,
    W_WS_SKIPPED_BUSY,
    W_FRAMES_COPIED,
    W_FRAMES_TORN,
    W_FRAMES_SKIPPED,
    W_RESULTS_READ,
    W_RESULTS_TORN,
    W_RESULTS_LAPPED,
    W_CTL_FORWARDED,
    W_CTL_FAILED,
    W_WCT_JOBS,
    W_WCT_FAILED,
    W_INFLIGHT_REFUSED,
    W_N
};

struct web;

/* ---- web_live.c: the sampler ---------------------------------------------------------------- */

struct web_live;
int web_live_init(struct web_live **out, struct web *w);
void web_live_free(struct web_live *l);
/* One pass: rescan segments, drain results, copy a frame when due, publish snapshots. */
void web_live_tick(struct web_live *l, uint64_t now_ns);
/* Latest published snapshots (malloc'd copies; NULL before the first). */
char *web_live_counters_json(struct web *w);
char *web_live_metrics_text(struct web *w, size_t *len);

/* ---- web_ws.c: WebSocket framing and clients ----------------------------------------------- */

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2): out gets 28 chars + NUL. */
void web_ws_accept_key(const char *key, char out[29]);
void web_sha1(const void *data, size_t len, uint8_t out[20]);
size_t web_base64(const uint8_t *in, size_t len, char *out); /* out: 4*ceil(len/3)+1 */

struct web_ws_client;
/* Called from the HTTP thread once a connection is upgraded; 0 or -errno (refused). */
int web_ws_adopt(struct web *w, int fd, void *urh);
/* Main thread: service sockets (reads, pending writes) for up to timeout_ms. */
void web_ws_poll(struct web *w, int timeout_ms);
/* Main thread: count of clients that may take a frame now (credit, pace). */
int web_ws_want_frame(struct web *w, uint64_t now_ns);
/* Main thread: send to every client; binary frames only to those with credit. */
/* msg16/msg8: the same frame as u16 and as u8; each client gets the one it asked for. */
void web_ws_broadcast_frame(struct web *w, const void *msg16, size_t len16, const void *msg8,
                            size_t len8, uint64_t now_ns);
void web_ws_broadcast_text(struct web *w, const char *text, size_t len);
void web_ws_close_all(struct web *w);

/* ---- web_http.c ----------------------------------------------------------------------------- */

int web_http_start(struct web *w);
void web_http_stop(struct web *w);

/* ---- web_wct.c: POST /api/v1/wavelet/wct as jobs -------------------------------------------- */

struct web_wct;
int web_wct_init(struct web_wct **out, struct web *w);
void web_wct_free(struct web_wct *j);
/*
 * Parse and validate a request body; on success start a job and return its id
 * (> 0). On a bad request: -EINVAL with a sentence in err.
 */
long web_wct_submit(struct web_wct *j, const char *body, size_t len, char *err, size_t errcap);
/* The job as JSON (status, progress, result when done); NULL if unknown. malloc'd. */
char *web_wct_json(struct web_wct *j, long id, int with_result);
/* 0 cancelled (or already finished), -ENOENT unknown. */
int web_wct_cancel(struct web_wct *j, long id);
/* 1 when finished (done, failed or cancelled). */
int web_wct_finished(struct web_wct *j, long id);
int web_wct_available(void);

/* ---- the process ---------------------------------------------------------------------------- */

struct web {
    struct web_opts o;
    _Atomic int *stop;
    char token[128]; /* bearer token ("" when none is required) */
    int remote;      /* bound to a non-loopback address: TLS and token required */
    struct rtd_stats *stats;
    _Atomic uint64_t *cnt[W_N]; /* in stats.web (or in local_cnt when the segment is full) */
    _Atomic uint64_t local_cnt[W_N];
    struct web_live *live;
    struct web_wct *wct;
    void *mhd; /* struct MHD_Daemon */
    int wake_fd[2];

    pthread_mutex_t snap_lock; /* counters JSON and metrics text, written by the sampler */
    char *snap_json, *snap_metrics;
    size_t snap_metrics_len;

    pthread_mutex_t ws_lock; /* clients handed over by the HTTP thread, not yet adopted */
    struct web_ws_client *ws_new;
    struct web_ws_client *ws; /* main thread only */
    _Atomic int ws_count;
    _Atomic int inflight;
};

static inline void web_count(struct web *w, enum web_counter c, uint64_t n)
{
    atomic_fetch_add_explicit(w->cnt[c], n, memory_order_relaxed);
}

extern const char *const web_counter_label[W_N];

#endif
