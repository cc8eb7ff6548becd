/* SPDX-License-Identifier: MIT */
/*
 * rtdaq-web's HTTP front on libmicrohttpd: one internal polling thread serves
 * the static page, the JSON API and /metrics from the snapshots the sampler
 * publishes, and upgrades /ws to a WebSocket handed to the main thread.
 *
 * Requests that wait (forwarded to rtdaq-ctl, or a WCT job) suspend their
 * connection and run in a helper thread, so a slow ctl or a long transform
 * never stalls the page; at most WEB_MAX_INFLIGHT wait at once (503 beyond).
 * Bodies are bounded (64 KiB for control, 16 MiB for WCT: 413 beyond), every
 * refusal is a JSON object {"ok": false, "error": sentence, "code": word} with
 * a 4xx/5xx status, and counted.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "rtd_ctl_client.h"
#include "rtd_util.h"
#include "web_internal.h"

#define CTL_TIMEOUT_MS 3000

/* PEM text of the TLS key and certificate, kept while the daemon runs. */
static void *tls_key, *tls_cert;

enum req_state { R_BODY, R_WAITING, R_DONE };

struct req {
    struct web *w;
    struct MHD_Connection *conn;
    char *body;
    size_t len, limit;
    int too_big;
    _Atomic int state;
    char *reply; /* when R_DONE */
    unsigned status;
    char ctl_req[64]; /* the control command being forwarded */
    long job;
};

/* ---- responses ------------------------------------------------------------------------------ */

static enum MHD_Result respond(struct web *w, struct MHD_Connection *c, unsigned status,
                               const char *type, const char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (status >= 500)
        web_count(w, W_HTTP_5XX, 1);
    else if (status >= 400)
        web_count(w, W_HTTP_4XX, 1);
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result json_reply(struct web *w, struct MHD_Connection *c, unsigned status,
                                  const char *json)
{
    return respond(w, c, status, "application/json", json, strlen(json));
}

static enum MHD_Result error(struct web *w, struct MHD_Connection *c, unsigned status,
                             const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static enum MHD_Result error(struct web *w, struct MHD_Connection *c, unsigned status,
                             const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *o = json_pack("{s:b, s:s, s:s}", "ok", 0, "error", msg, "code", code);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    enum MHD_Result rc = json_reply(w, c, status, s ? s : "{\"ok\":false}");
    free(s);
    return rc;
}

/* ---- static files --------------------------------------------------------------------------- */

static const char *mime(const char *path)
{
    const char *dot = strrchr(path, '.');
    static const char *const map[][2] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".png", "image/png"},
        {".svg", "image/svg+xml"},
        {".json", "application/json"},
        {".txt", "text/plain; charset=utf-8"},
        {".ico", "image/x-icon"},
    };
    for (size_t i = 0; dot && i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(dot, map[i][0]))
            return map[i][1];
    return "application/octet-stream";
}

static enum MHD_Result serve_file(struct web *w, struct MHD_Connection *c, const char *url,
                                  const char *cookie)
{
    if (!strcmp(url, "/"))
        url = "/index.html";
    /* Only plain names under the static folder: no "..", no hidden files, no odd bytes. */
    for (const char *p = url; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '/' || *p == '.' || *p == '-' || *p == '_') ||
            (*p == '.' && p[-1] == '/')) {
            web_count(w, W_BAD_PATH, 1);
            return error(w, c, MHD_HTTP_NOT_FOUND, "not_found", "no such page: %.200s", url);
        }
    char path[1024];
    snprintf(path, sizeof path, "%s%s", w->o.static_dir, url);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        web_count(w, W_BAD_PATH, 1);
        return error(w, c, MHD_HTTP_NOT_FOUND, "not_found", "no such page: %.200s", url);
    }
    struct MHD_Response *r = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
    if (!r) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, mime(path));
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (cookie)
        MHD_add_response_header(r, MHD_HTTP_HEADER_SET_COOKIE, cookie);
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

/* ---- authentication (required on a non-loopback listener) ----------------------------------- */

static int token_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = (unsigned char)(la != lb);
    for (size_t i = 0; i < la && i < lb; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

static int authorized(struct web *w, struct MHD_Connection *c)
{
    if (!w->token[0])
        return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (h && !strncmp(h, "Bearer ", 7) && token_eq(h + 7, w->token))
        return 1;
    const char *q = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token");
    if (q && token_eq(q, w->token))
        return 1;
    const char *k = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, "rtdaq_token");
    return k && token_eq(k, w->token);
}

/* ---- WebSocket upgrade ---------------------------------------------------------------------- */

static void upgraded(void *cls, struct MHD_Connection *c, void *req_cls, const char *extra_in,
                     size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    struct web *w = cls;
    /* A browser sends nothing before it has read our 101, so extra_in is empty in practice;
     * a client that pipelines anyway loses those bytes and gets no answer to them. */
    (void)extra_in;
    (void)extra_in_size;
    if (web_ws_adopt(w, sock, urh))
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
}

static enum MHD_Result ws_upgrade(struct web *w, struct MHD_Connection *c)
{
    const char *up = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Upgrade");
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-WebSocket-Key");
    const char *ver = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-WebSocket-Version");
    if (!up || strcasecmp(up, "websocket") || !key || strlen(key) != 24 || !ver ||
        strcmp(ver, "13")) {
        web_count(w, W_WS_REFUSED, 1);
        return error(w, c, MHD_HTTP_BAD_REQUEST, "not_websocket",
                     "/ws takes a WebSocket (version 13) upgrade");
    }
    if (atomic_load_explicit(&w->ws_count, memory_order_relaxed) >= w->o.max_ws) {
        web_count(w, W_WS_REFUSED, 1);
        return error(w, c, MHD_HTTP_SERVICE_UNAVAILABLE, "too_many_clients",
                     "%d live pages are open already (--max-clients)", w->o.max_ws);
    }
    char accept[29];
    web_ws_accept_key(key, accept);
    struct MHD_Response *r = MHD_create_response_for_upgrade(upgraded, w);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_UPGRADE, "websocket");
    MHD_add_response_header(r, "Sec-WebSocket-Accept", accept);
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_SWITCHING_PROTOCOLS, r);
    MHD_destroy_response(r);
    return rc;
}

/* ---- requests that wait: forwarded control commands, WCT jobs ------------------------------- */

static void *forward_thread(void *arg)
{
    struct req *q = arg;
    struct web *w = q->w;
    if (q->job) {
        while (!web_wct_finished(w->wct, q->job) &&
               !atomic_load_explicit(w->stop, memory_order_relaxed))
            usleep(20000);
        q->reply = web_wct_json(w->wct, q->job, 1);
        json_t *o = q->reply ? json_loads(q->reply, 0, NULL) : NULL;
        q->status = o && json_is_true(json_object_get(o, "ok")) ? MHD_HTTP_OK
                                                                : MHD_HTTP_UNPROCESSABLE_CONTENT;
        json_decref(o);
    } else {
        char *reply = NULL;
        int rc = rtd_ctl_request(w->o.ctl_endpoint, q->body ? q->body : "{}", CTL_TIMEOUT_MS, NULL,
                                 &reply);
        if (rc) {
            web_count(w, W_CTL_FAILED, 1);
            json_t *o =
                json_pack("{s:b, s:s, s:s}", "ok", 0, "code", "ctl_unreachable", "error", "");
            char msg[400];
            snprintf(msg, sizeof msg,
                     rc == -ETIMEDOUT
                         ? "rtdaq-ctl did not answer at %s within %d ms: is it running?"
                         : "cannot reach rtdaq-ctl at %s (%d ms)",
                     w->o.ctl_endpoint, CTL_TIMEOUT_MS);
            json_object_set_new(o, "error", json_string(msg));
            q->reply = json_dumps(o, JSON_COMPACT);
            json_decref(o);
            q->status = MHD_HTTP_GATEWAY_TIMEOUT;
        } else {
            web_count(w, W_CTL_FORWARDED, 1);
            json_t *o = json_loads(reply, 0, NULL);
            q->status =
                o && json_is_true(json_object_get(o, "ok")) ? MHD_HTTP_OK : MHD_HTTP_BAD_REQUEST;
            json_decref(o);
            q->reply = reply;
        }
    }
    /* R1: pairs with A1 in the handler: reply and status are complete. */
    atomic_store_explicit(&q->state, R_DONE, memory_order_release);
    atomic_fetch_sub_explicit(&w->inflight, 1, memory_order_relaxed);
    MHD_resume_connection(q->conn);
    return NULL;
}

static enum MHD_Result wait_in_thread(struct web *w, struct MHD_Connection *c, struct req *q)
{
    if (atomic_fetch_add_explicit(&w->inflight, 1, memory_order_relaxed) >= WEB_MAX_INFLIGHT) {
        atomic_fetch_sub_explicit(&w->inflight, 1, memory_order_relaxed);
        web_count(w, W_INFLIGHT_REFUSED, 1);
        return error(w, c, MHD_HTTP_SERVICE_UNAVAILABLE, "busy",
                     "%d requests are waiting already; try again", WEB_MAX_INFLIGHT);
    }
    q->conn = c;
    atomic_store_explicit(&q->state, R_WAITING, memory_order_relaxed);
    MHD_suspend_connection(c);
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &a, forward_thread, q)) {
        pthread_attr_destroy(&a);
        atomic_fetch_sub_explicit(&w->inflight, 1, memory_order_relaxed);
        q->reply =
            strdup("{\"ok\":false,\"code\":\"internal\",\"error\":\"cannot start a thread\"}");
        q->status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        atomic_store_explicit(&q->state, R_DONE, memory_order_release);
        MHD_resume_connection(c);
        return MHD_YES;
    }
    pthread_attr_destroy(&a);
    return MHD_YES;
}

/* The control commands rtdaq-web forwards, as rtdaq-ctl names them ("shutdown" never). */
static int control_cmd(const char *name)
{
    static const char *const ok[] = {"status", "params", "set",  "start",
                                     "stop",   "record", "jobs", "ping"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!strcmp(name, ok[i]))
            return 1;
    return 0;
}

static enum MHD_Result control(struct web *w, struct MHD_Connection *c, struct req *q,
                               const char *cmd, const char *method)
{
    json_t *o;
    if (!strcmp(method, "GET")) {
        if (strcmp(cmd, "status") && strcmp(cmd, "params") && strcmp(cmd, "jobs")) {
            web_count(w, W_BAD_METHOD, 1);
            return error(w, c, MHD_HTTP_METHOD_NOT_ALLOWED, "method",
                         "%s changes the system: use POST with a JSON body", cmd);
        }
        o = json_object();
        if (!strcmp(cmd, "jobs"))
            json_object_set_new(o, "action", json_string("list"));
    } else {
        json_error_t e;
        o = q->len ? json_loadb(q->body, q->len, 0, &e) : json_object();
        if (!o || !json_is_object(o)) {
            web_count(w, W_BAD_JSON, 1);
            enum MHD_Result rc = error(w, c, MHD_HTTP_BAD_REQUEST, "bad_json",
                                       o ? "the body must be a JSON object"
                                         : "the body is not valid JSON: %s (line %d)",
                                       o ? "" : e.text, o ? 0 : e.line);
            json_decref(o);
            return rc;
        }
    }
    json_object_set_new(o, "cmd", json_string(cmd));
    free(q->body);
    q->body = json_dumps(o, JSON_COMPACT);
    q->len = q->body ? strlen(q->body) : 0;
    json_decref(o);
    return wait_in_thread(w, c, q);
}

static enum MHD_Result wct(struct web *w, struct MHD_Connection *c, struct req *q, const char *url,
                           const char *method)
{
    if (!web_wct_available())
        return error(w, c, MHD_HTTP_NOT_IMPLEMENTED, "not_available",
                     "this build of rtdaq-web has no wavelet library");
    if (!strcmp(url, "/api/v1/wavelet/wct")) {
        if (strcmp(method, "POST")) {
            web_count(w, W_BAD_METHOD, 1);
            return error(w, c, MHD_HTTP_METHOD_NOT_ALLOWED, "method", "POST a JSON body");
        }
        char err[300];
        long id = web_wct_submit(w->wct, q->body ? q->body : "", q->len, err, sizeof err);
        if (id < 0) {
            web_count(w, W_BAD_JSON, 1);
            return error(w, c, id == -EBUSY ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_BAD_REQUEST,
                         id == -EBUSY ? "busy" : "bad_request", "%s", err);
        }
        json_t *o = q->len ? json_loadb(q->body, q->len, 0, NULL) : NULL;
        int async = o && json_is_true(json_object_get(o, "async"));
        json_decref(o);
        if (async) {
            char *s = web_wct_json(w->wct, id, 0);
            enum MHD_Result rc = json_reply(w, c, MHD_HTTP_ACCEPTED, s ? s : "{}");
            free(s);
            return rc;
        }
        q->job = id;
        return wait_in_thread(w, c, q);
    }
    long id;
    char tail;
    if (sscanf(url, "/api/v1/wavelet/jobs/%ld%c", &id, &tail) == 1 && id > 0) {
        if (!strcmp(method, "DELETE")) {
            if (web_wct_cancel(w->wct, id))
                return error(w, c, MHD_HTTP_NOT_FOUND, "unknown_job", "no job %ld", id);
        } else if (strcmp(method, "GET")) {
            web_count(w, W_BAD_METHOD, 1);
            return error(w, c, MHD_HTTP_METHOD_NOT_ALLOWED, "method", "GET or DELETE a job");
        }
        char *s = web_wct_json(w->wct, id, 1);
        if (!s)
            return error(w, c, MHD_HTTP_NOT_FOUND, "unknown_job", "no job %ld", id);
        enum MHD_Result rc = json_reply(w, c, MHD_HTTP_OK, s);
        free(s);
        return rc;
    }
    if (!strcmp(url, "/api/v1/wavelet/jobs")) {
        char *s = web_wct_json(w->wct, 0, 0);
        enum MHD_Result rc = json_reply(w, c, MHD_HTTP_OK, s ? s : "{}");
        free(s);
        return rc;
    }
    web_count(w, W_BAD_PATH, 1);
    return error(w, c, MHD_HTTP_NOT_FOUND, "not_found", "no such endpoint: %.200s", url);
}

/* ---- the handler ---------------------------------------------------------------------------- */

static enum MHD_Result dispatch(struct web *w, struct MHD_Connection *c, struct req *q,
                                const char *url, const char *method)
{
    if (!authorized(w, c)) {
        web_count(w, W_BAD_AUTH, 1);
        return error(w, c, MHD_HTTP_UNAUTHORIZED, "unauthorized",
                     "this listener needs the bearer token (Authorization: Bearer ...)");
    }
    if (q->too_big) {
        web_count(w, W_BAD_BODY_SIZE, 1);
        return error(w, c, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", "request body over %zu bytes",
                     q->limit);
    }
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (!strcmp(url, "/metrics")) {
        size_t len = 0;
        char *s = web_live_metrics_text(w, &len);
        if (!s)
            return error(w, c, MHD_HTTP_SERVICE_UNAVAILABLE, "starting", "no snapshot yet");
        enum MHD_Result rc = respond(w, c, MHD_HTTP_OK, "text/plain; version=0.0.4", s, len);
        free(s);
        return rc;
    }
    if (!strcmp(url, "/ws"))
        return ws_upgrade(w, c);
    if (!strcmp(url, "/api/v1/counters") || !strcmp(url, "/api/v1/live")) {
        char *s = web_live_counters_json(w);
        if (!s)
            return error(w, c, MHD_HTTP_SERVICE_UNAVAILABLE, "starting", "no snapshot yet");
        enum MHD_Result rc = json_reply(w, c, MHD_HTTP_OK, s);
        free(s);
        return rc;
    }
    if (!strcmp(url, "/api/v1/web")) {
        json_t *o = json_pack("{s:b, s:s, s:s, s:i, s:i, s:b, s:f, s:i}", "ok", 1, "instance",
                              w->o.instance, "ctl", w->o.ctl_endpoint, "clients",
                              atomic_load_explicit(&w->ws_count, memory_order_relaxed),
                              "max_clients", w->o.max_ws, "wavelet", web_wct_available(), "max_fps",
                              w->o.max_fps, "max_dim", w->o.max_dim);
        json_t *cs = json_object();
        for (int i = 0; i < W_N; i++)
            json_object_set_new(
                cs, web_counter_label[i],
                json_integer((json_int_t)atomic_load_explicit(w->cnt[i], memory_order_relaxed)));
        json_object_set_new(o, "counters", cs);
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        enum MHD_Result rc = json_reply(w, c, MHD_HTTP_OK, s ? s : "{}");
        free(s);
        return rc;
    }
    if (!strncmp(url, "/api/v1/wavelet/", 16))
        return wct(w, c, q, url, method);
    if (!strncmp(url, "/api/v1/", 8)) {
        const char *cmd = url + 8;
        if (!control_cmd(cmd)) {
            web_count(w, W_BAD_PATH, 1);
            return error(w, c, MHD_HTTP_NOT_FOUND, "not_found", "no such endpoint: %.200s", url);
        }
        return control(w, c, q, cmd, method);
    }
    if (!get) {
        web_count(w, W_BAD_METHOD, 1);
        return error(w, c, MHD_HTTP_METHOD_NOT_ALLOWED, "method", "%s is not served here", method);
    }
    const char *tok = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token");
    if (tok && w->token[0] && !strcmp(url, "/")) {
        /* The page's own requests (scripts, /ws) then carry the token as a cookie. */
        char *cookie = NULL;
        if (asprintf(&cookie, "rtdaq_token=%s; HttpOnly; Secure; SameSite=Strict; Path=/", tok) < 0)
            return MHD_NO;
        enum MHD_Result rc = serve_file(w, c, url, cookie);
        free(cookie);
        return rc;
    }
    return serve_file(w, c, url, NULL);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **req_cls)
{
    struct web *w = cls;
    struct req *q = *req_cls;
    if (!q) {
        q = calloc(1, sizeof *q);
        if (!q)
            return MHD_NO;
        q->w = w;
        q->limit = !strncmp(url, "/api/v1/wavelet/", 16) ? WEB_BODY_MAX_WCT : WEB_BODY_MAX_CTL;
        *req_cls = q;
        web_count(w, W_HTTP_REQUESTS, 1);
        return MHD_YES;
    }
    if (*upload_size) {
        if (!q->too_big && q->len + *upload_size <= q->limit) {
            char *b = realloc(q->body, q->len + *upload_size + 1);
            if (!b)
                return MHD_NO;
            memcpy(b + q->len, upload, *upload_size);
            q->len += *upload_size;
            b[q->len] = 0;
            q->body = b;
        } else {
            q->too_big = 1; /* read and discard the rest, then answer 413 */
            free(q->body);
            q->body = NULL;
            q->len = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    /* A1: pairs with R1 in forward_thread. */
    int st = atomic_load_explicit(&q->state, memory_order_acquire);
    if (st == R_DONE) {
        enum MHD_Result rc = json_reply(w, c, q->status, q->reply ? q->reply : "{\"ok\":false}");
        return rc;
    }
    if (st == R_WAITING)
        return MHD_YES; /* resumed spuriously: still waiting */
    return dispatch(w, c, q, url, method);
}

static void completed(void *cls, struct MHD_Connection *c, void **req_cls,
                      enum MHD_RequestTerminationCode toe)
{
    struct req *q = *req_cls;
    if (!q)
        return;
    free(q->body);
    free(q->reply);
    free(q);
    *req_cls = NULL;
}

int web_http_start(struct web *w)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)w->o.port)};
    if (inet_pton(AF_INET, w->o.listen_addr, &sa.sin_addr) != 1) {
        rtd_log(RTD_LOG_ERR, "--listen %s: not an IPv4 address", w->o.listen_addr);
        return -EINVAL;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG;
    void *key = NULL, *cert = NULL;
    size_t klen, clen;
    if (w->o.tls_cert) {
        int rc = rtd_read_file(w->o.tls_key, &key, &klen);
        if (!rc)
            rc = rtd_read_file(w->o.tls_cert, &cert, &clen);
        if (rc) {
            rtd_log(RTD_LOG_ERR, "read TLS %s: %s", key ? w->o.tls_cert : w->o.tls_key,
                    strerror(-rc));
            free(key);
            free(cert);
            return rc;
        }
        flags |= MHD_USE_TLS;
    }
    struct MHD_OptionItem tls[] = {
        {MHD_OPTION_HTTPS_MEM_KEY, 0, key},
        {MHD_OPTION_HTTPS_MEM_CERT, 0, cert},
        {MHD_OPTION_END, 0, NULL},
    };
    struct MHD_OptionItem none[] = {{MHD_OPTION_END, 0, NULL}};
    w->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, handler, w, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)w->o.max_conn, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)30, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)w->o.max_conn,
        MHD_OPTION_NOTIFY_COMPLETED, completed, w, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)64,
        MHD_OPTION_ARRAY, w->o.tls_cert ? tls : none, MHD_OPTION_END);
    tls_key = key;
    tls_cert = cert;
    if (!w->mhd) {
        rtd_log(RTD_LOG_ERR, "cannot listen on %s:%d (in use, or not permitted)", w->o.listen_addr,
                w->o.port);
        return -EADDRINUSE;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(w->mhd, MHD_DAEMON_INFO_BIND_PORT);
    if (di && di->port)
        w->o.port = di->port;
    return 0;
}

void web_http_stop(struct web *w)
{
    if (!w->mhd)
        return;
    MHD_quiesce_daemon(w->mhd);
    /* Waiting requests end within the ctl timeout (or at once for jobs: stop is set). */
    for (int i = 0; i < 400 && atomic_load_explicit(&w->inflight, memory_order_relaxed); i++)
        usleep(10000);
    web_ws_close_all(w); /* upgraded sockets are closed before libmicrohttpd stops */
    MHD_stop_daemon(w->mhd);
    w->mhd = NULL;
    free(tls_key);
    free(tls_cert);
    tls_key = tls_cert = NULL;
}
