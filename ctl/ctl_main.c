/* SPDX-License-Identifier: MIT */
/*
 * rtdaq-ctl: the control daemon. Publishes every process's counters, the
 * results rings and decimated frames over ZeroMQ PUB, answers JSON requests
 * on a ROUTER socket, runs offline analysis jobs on worker threads, and
 * hands commands to acq/proc through the shared control block. It never
 * touches the hot path: counters are read lock-free, rings as a monitor.
 *
 * Shape (Redis' ae.c in miniature): one thread polls the control socket, the
 * ZAP socket and the publisher with a timeout that ends at the next stats
 * tick or, while result rings exist, within a few milliseconds.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "ctl_internal.h"
#include "rtd_config.h"
#include "rtd_shm.h"
#include "rtd_util.h"

/* The merged argv lives as long as the process (getopt's optarg points into it). */
static char **volatile merged_argv; /* volatile: the store must not be optimised away */

static const char usage[] =
    "usage: rtdaq-ctl [options]\n"
    "  --instance NAME          shared-memory instance (default $RTDAQ_INSTANCE or 'default')\n"
    "  --pub EP[,EP...]         PUB endpoints (default " RTD_CTL_PUB_DEFAULT ")\n"
    "  --ctl EP[,EP...]         control ROUTER endpoints (default " RTD_CTL_CTL_DEFAULT ")\n"
    "  --interval-ms N          stats publish interval, 10..60000 (default 1000)\n"
    "  --frames-every N         publish every N-th frame on topic 'frames' (0 = off)\n"
    "  --frames-max-rate R      at most R frames/s on 'frames' (0 = no cap)\n"
    "  --sndhwm N               PUB send high-water mark in messages (default 1000)\n"
    "  --pub-nodrop             count drops at the publisher (XPUB_NODROP; see docs/zmq.md)\n"
    "  --curve-server-key FILE  server secret key (PREFIX.secret); turns CURVE on\n"
    "  --curve-allowed PATH     directory of *.pub files or a file of client public keys\n"
    "  --jobs-parallel N        analysis jobs run at once (default 1)\n"
    "  --jobs-queue N           queued jobs accepted (default 16)\n"
    "  --job-dir DIR            recordings for jobs must lie under DIR (default: anywhere)\n"
    "  --duration S             exit after S seconds (0 = run until stopped)\n"
    "  --gen-keys PREFIX        write PREFIX.pub and PREFIX.secret and exit\n"
    "  --config FILE            rtdaq.ini ([rtdaq] and [ctl] sections)\n"
    "Non-loopback endpoints require --curve-server-key and --curve-allowed.\n";

static const struct option long_opts[] = {
    {"instance", required_argument, 0, 'i'},
    {"pub", required_argument, 0, 'p'},
    {"ctl", required_argument, 0, 'c'},
    {"interval-ms", required_argument, 0, 'I'},
    {"frames-every", required_argument, 0, 'F'},
    {"frames-max-rate", required_argument, 0, 'R'},
    {"sndhwm", required_argument, 0, 'H'},
    {"pub-nodrop", no_argument, 0, 'N'},
    {"curve-server-key", required_argument, 0, 'k'},
    {"curve-allowed", required_argument, 0, 'a'},
    {"jobs-parallel", required_argument, 0, 'j'},
    {"jobs-queue", required_argument, 0, 'q'},
    {"job-dir", required_argument, 0, 'J'},
    {"duration", required_argument, 0, 'd'},
    {"gen-keys", required_argument, 0, 'g'},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

json_t *ctl_reply_ok(void)
{
    return json_pack("{s:b, s:i}", "ok", 1, "version", CTL_SCHEMA_VERSION);
}

json_t *ctl_reply_err(const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return json_pack("{s:b, s:i, s:s, s:s}", "ok", 0, "version", CTL_SCHEMA_VERSION, "error", msg,
                     "code", code);
}

int ctl_publish(struct ctl *c, const char *topic, json_t *hdr, const void *payload, size_t len)
{
    char *js = json_dumps(hdr, JSON_COMPACT);
    if (!js)
        return -ENOMEM;
    size_t jl = strlen(js);
    int rc = 0;
    /*
     * The first part decides: once it is queued the rest of a multipart message
     * always follows (ZeroMQ queues whole messages), so EAGAIN can only happen here.
     */
    if (zmq_send(c->pub, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        rc = -EAGAIN;
        atomic_fetch_add_explicit(c->c_pub_dropped, 1, memory_order_relaxed);
    } else {
        zmq_send(c->pub, js, jl, (payload ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT);
        if (payload)
            zmq_send(c->pub, payload, len, ZMQ_DONTWAIT);
        atomic_fetch_add_explicit(c->c_pub_msgs, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(c->c_pub_bytes, strlen(topic) + jl + (payload ? len : 0),
                                  memory_order_relaxed);
    }
    free(js);
    return rc;
}

/* Split "a,b,c" into at most CTL_MAX_ENDPOINTS endpoints (the string is kept). */
static int split_endpoints(char *s, const char **out, int *n)
{
    *n = 0;
    for (char *save = NULL, *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (*n == CTL_MAX_ENDPOINTS)
            return -E2BIG;
        out[(*n)++] = t;
    }
    return *n ? 0 : -EINVAL;
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_opts(struct ctl_opts *o, int argc, char **argv, const char **gen_keys)
{
    uint64_t v;
    double d;
    char *end;
    o->interval_ms = 1000;
    o->jobs_parallel = 1;
    o->jobs_queue = 16;
    o->sndhwm = 1000;
    static char pub_default[] = RTD_CTL_PUB_DEFAULT, ctl_default[] = RTD_CTL_CTL_DEFAULT;
    char *pub = pub_default, *ctl = ctl_default;
    int opt, li = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", long_opts, &li)) != -1) {
        switch (opt) {
        case 'i':
            o->instance = optarg;
            break;
        case 'p':
            pub = optarg;
            break;
        case 'c':
            ctl = optarg;
            break;
        case 'I':
            if (parse_u64(optarg, 10, 60000, &o->interval_ms))
                goto bad;
            break;
        case 'F':
            if (parse_u64(optarg, 0, 1000000, &o->frames_every))
                goto bad;
            break;
        case 'R':
            d = strtod(optarg, &end);
            if (end == optarg || *end || !(d >= 0 && d <= 1000))
                goto bad;
            o->frames_max_rate = d;
            break;
        case 'H':
            if (parse_u64(optarg, 1, 1000000, &v))
                goto bad;
            o->sndhwm = (int)v;
            break;
        case 'N':
            o->pub_nodrop = 1;
            break;
        case 'k':
            o->curve_server_key = optarg;
            break;
        case 'a':
            o->curve_allowed = optarg;
            break;
        case 'j':
            if (parse_u64(optarg, 1, 64, &v))
                goto bad;
            o->jobs_parallel = (int)v;
            break;
        case 'q':
            if (parse_u64(optarg, 1, 4096, &v))
                goto bad;
            o->jobs_queue = (int)v;
            break;
        case 'J':
            o->job_dir = optarg;
            break;
        case 'd':
            d = strtod(optarg, &end);
            if (end == optarg || *end || !(d >= 0))
                goto bad;
            o->duration_s = d;
            break;
        case 'g':
            *gen_keys = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            exit(0);
        default:
            fputs(usage, stderr);
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rtdaq-ctl: unexpected argument '%s'\n%s", argv[optind], usage);
        return -EINVAL;
    }
    pub = o->pub_buf = strdup(pub);
    ctl = o->ctl_buf = strdup(ctl);
    if (!pub || !ctl || split_endpoints(pub, o->pub, &o->n_pub) ||
        split_endpoints(ctl, o->ctl, &o->n_ctl)) {
        fprintf(stderr, "rtdaq-ctl: --pub/--ctl want 1..%d comma-separated endpoints\n",
                CTL_MAX_ENDPOINTS);
        return -EINVAL;
    }
    return 0;
bad:
    fprintf(stderr, "rtdaq-ctl: bad value '%s' for --%s\n%s", optarg, long_opts[li].name, usage);
    return -EINVAL;
}

/*
 * ZAP (RFC 27): libzmq asks inproc://zeromq.zap.01 about every CURVE client.
 * Frames: version, request id, domain, address, identity, mechanism, key.
 * We allow exactly the public keys of the allow-list.
 */
static void zap_handle(struct ctl *c)
{
    zmq_msg_t part[8];
    int n = 0, more = 1;
    while (more && n < 8) {
        zmq_msg_init(&part[n]);
        if (zmq_msg_recv(&part[n], c->zap, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&part[n]);
            break;
        }
        more = zmq_msg_more(&part[n]);
        n++;
    }
    while (more) { /* drain an over-long request */
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->zap, 0) < 0)
            more = 0;
        else
            more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    if (n < 2)
        goto out;
    int allow = 0;
    char client[RTD_CURVE_KEY_LEN + 1] = "";
    if (n >= 7 && zmq_msg_size(&part[5]) == 5 && !memcmp(zmq_msg_data(&part[5]), "CURVE", 5) &&
        zmq_msg_size(&part[6]) == 32) {
        zmq_z85_encode(client, zmq_msg_data(&part[6]), 32);
        for (int i = 0; i < c->n_allowed && !allow; i++)
            allow = !strcmp(client, c->allowed[i]);
    }
    const char *code = allow ? "200" : "400", *text = allow ? "OK" : "key not in the allow-list";
    zmq_send(c->zap, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(c->zap, zmq_msg_data(&part[1]), zmq_msg_size(&part[1]), ZMQ_SNDMORE);
    zmq_send(c->zap, code, 3, ZMQ_SNDMORE);
    zmq_send(c->zap, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(c->zap, allow ? client : "", allow ? RTD_CURVE_KEY_LEN : 0, ZMQ_SNDMORE);
    zmq_send(c->zap, "", 0, 0);
    atomic_fetch_add_explicit(allow ? c->c_zap_allowed : c->c_zap_denied, 1, memory_order_relaxed);
    if (!allow)
        rtd_log(RTD_LOG_WARN, "CURVE: refused client key %s", client[0] ? client : "(none)");
out:
    for (int i = 0; i < n; i++)
        zmq_msg_close(&part[i]);
}

void ctl_send_reply(struct ctl *c, const void *ident, size_t ident_len, int delim, json_t *reply)
{
    char *js = json_dumps(reply, JSON_COMPACT);
    zmq_send(c->router, ident, ident_len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (delim)
        zmq_send(c->router, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    /* ROUTER drops a reply to a vanished client (not ROUTER_MANDATORY): counted as failed. */
    if (zmq_send(c->router, js ? js : "{\"ok\":false}", js ? strlen(js) : 11, ZMQ_DONTWAIT) < 0)
        atomic_fetch_add_explicit(c->c_replies_dropped, 1, memory_order_relaxed);
    free(js);
}

/* One request: [identity, (empty,) body] -> [identity, (empty,) reply], now or once acknowledged.
 */
static void router_handle(struct ctl *c)
{
    zmq_msg_t part[4];
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < 4)
            part[n++] = m;
        else
            zmq_msg_close(&m); /* a malformed many-part request: answered as malformed */
    }
    if (n < 2) {
        for (int i = 0; i < n; i++)
            zmq_msg_close(&part[i]);
        return;
    }
    uint64_t t0 = rtd_now_ns();
    int delim = zmq_msg_size(&part[1]) == 0;
    zmq_msg_t *body = &part[n - 1];
    json_t *reply;
    struct ctl_wait w;
    memset(&w, 0, sizeof w);
    if ((delim && n != 3) || (!delim && n != 2))
        reply = ctl_reply_err("malformed", "expected one JSON part per request");
    else
        reply = ctl_cmd_handle(c, zmq_msg_data(body), zmq_msg_size(body), &w);
    atomic_fetch_add_explicit(c->c_requests, 1, memory_order_relaxed);
    if (!reply) {
        int rc = ctl_ack_defer(c, zmq_msg_data(&part[0]), zmq_msg_size(&part[0]), delim, &w);
        if (rc) {
            /* The command was carried out; only its acknowledgement cannot be awaited. */
            reply = ctl_reply_err("busy",
                                  "%d replies already wait for acknowledgements; '%s' "
                                  "was sent but its effect is unconfirmed",
                                  ctl_ack_pending(c), w.cmd);
            if (w.id)
                json_object_set(reply, "id", w.id);
            json_decref(w.id);
            json_decref(w.names);
        }
    }
    if (reply) {
        if (!json_is_true(json_object_get(reply, "ok")))
            atomic_fetch_add_explicit(c->c_bad_requests, 1, memory_order_relaxed);
        ctl_send_reply(c, zmq_msg_data(&part[0]), zmq_msg_size(&part[0]), delim, reply);
        json_decref(reply);
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&part[i]);
    if (c->h_request)
        rtd_hist_record(c->h_request, rtd_now_ns() - t0);
}

/* XPUB hands us (un)subscriptions: counted, otherwise ignored. */
static void pub_drain(struct ctl *c)
{
    char buf[256];
    int n;
    while ((n = zmq_recv(c->pub, buf, sizeof buf, ZMQ_DONTWAIT)) >= 0) {
        if (n > 0 && buf[0] == 1)
            atomic_fetch_add_explicit(c->c_subscriptions, 1, memory_order_relaxed);
        else if (n > 0 && buf[0] == 0)
            atomic_fetch_sub_explicit(c->c_subscriptions, 1, memory_order_relaxed);
    }
}

static int setup_curve(struct ctl *c)
{
    int need = 0;
    for (int i = 0; i < c->o.n_pub; i++)
        need |= !rtd_endpoint_is_local(c->o.pub[i]);
    for (int i = 0; i < c->o.n_ctl; i++)
        need |= !rtd_endpoint_is_local(c->o.ctl[i]);
    if (!c->o.curve_server_key && !c->o.curve_allowed) {
        if (need) {
            rtd_log(RTD_LOG_ERR, "an endpoint binds a non-loopback address: CURVE is required "
                                 "(--curve-server-key and --curve-allowed; see docs/ctl.md)");
            return -EPERM;
        }
        return 0;
    }
    if (!c->o.curve_server_key || !c->o.curve_allowed) {
        rtd_log(RTD_LOG_ERR, "CURVE needs both --curve-server-key and --curve-allowed");
        return -EINVAL;
    }
    char err[512];
    int n = rtd_curve_load_allowed(c->o.curve_allowed, &c->allowed, err, sizeof err);
    if (n < 0) {
        rtd_log(RTD_LOG_ERR, "%s", err);
        return n;
    }
    if (n == 0) {
        rtd_log(RTD_LOG_ERR, "allow-list %s holds no keys", c->o.curve_allowed);
        return -EINVAL;
    }
    c->n_allowed = n;
    /* The ZAP handler must be bound before any CURVE socket binds. */
    c->zap = zmq_socket(c->zctx, ZMQ_REP);
    if (!c->zap || zmq_bind(c->zap, "inproc://zeromq.zap.01") != 0) {
        rtd_log(RTD_LOG_ERR, "ZAP handler: %s", zmq_strerror(errno));
        return -EIO;
    }
    c->curve = 1;
    return 0;
}

static int curve_server(struct ctl *c, void *sock)
{
    if (!c->curve)
        return 0;
    char pub[RTD_CURVE_KEY_LEN + 1], sec[RTD_CURVE_KEY_LEN + 1];
    int rc = rtd_curve_load_secret(c->o.curve_server_key, pub, sec);
    if (rc) {
        rtd_log(RTD_LOG_ERR, "server key %s: %s", c->o.curve_server_key,
                rc == -EINVAL ? "not a Z85 secret key" : strerror(-rc));
        return rc;
    }
    int one = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec, RTD_CURVE_KEY_LEN) ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "rtdaq", 5)) {
        rtd_log(RTD_LOG_ERR, "CURVE: %s (libzmq built without CURVE?)", zmq_strerror(errno));
        return -ENOTSUP;
    }
    return 0;
}

static int setup_sockets(struct ctl *c)
{
    int rc, zero = 0, one = 1;
    c->pub = zmq_socket(c->zctx, ZMQ_XPUB);
    c->router = zmq_socket(c->zctx, ZMQ_ROUTER);
    if (!c->pub || !c->router)
        return -errno;
    zmq_setsockopt(c->pub, ZMQ_SNDHWM, &c->o.sndhwm, sizeof c->o.sndhwm);
    zmq_setsockopt(c->pub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(c->router, ZMQ_LINGER, &zero, sizeof zero);
    /* Bounded control input: a larger request closes its connection (libzmq counts
     * nothing; the peer sees a reset). Requests are small JSON objects; jobs with
     * inline data have --x-file instead. */
    int64_t maxmsg = CTL_MAX_REQUEST_BYTES;
    zmq_setsockopt(c->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    /* A reply to a client that went away is dropped, never queued or blocking. */
    zmq_setsockopt(c->router, ZMQ_ROUTER_MANDATORY, &zero, sizeof zero);
    if (c->o.pub_nodrop)
        zmq_setsockopt(c->pub, ZMQ_XPUB_NODROP, &one, sizeof one);
    if ((rc = curve_server(c, c->pub)) || (rc = curve_server(c, c->router)))
        return rc;
    for (int i = 0; i < c->o.n_pub; i++)
        if (zmq_bind(c->pub, c->o.pub[i]) != 0) {
            rtd_log(RTD_LOG_ERR, "bind PUB %s: %s", c->o.pub[i], zmq_strerror(errno));
            return -EADDRINUSE;
        }
    for (int i = 0; i < c->o.n_ctl; i++)
        if (zmq_bind(c->router, c->o.ctl[i]) != 0) {
            rtd_log(RTD_LOG_ERR, "bind control %s: %s", c->o.ctl[i], zmq_strerror(errno));
            return -EADDRINUSE;
        }
    return 0;
}

static void init_counters(struct ctl *c)
{
    struct {
        _Atomic uint64_t **p;
        const char *label;
        enum rtd_counter_kind kind;
    } t[] = {
        {&c->c_pub_msgs, "pub.msgs", RTD_COUNTER},
        {&c->c_pub_bytes, "pub.bytes", RTD_COUNTER},
        {&c->c_pub_dropped, "pub.dropped", RTD_COUNTER},
        {&c->c_subscriptions, "pub.subscriptions", RTD_GAUGE},
        {&c->c_requests, "ctl.requests", RTD_COUNTER},
        {&c->c_bad_requests, "ctl.requests_failed", RTD_COUNTER},
        {&c->c_replies_dropped, "ctl.replies_dropped", RTD_COUNTER},
        {&c->c_zap_allowed, "curve.allowed", RTD_COUNTER},
        {&c->c_zap_denied, "curve.denied", RTD_COUNTER},
        {&c->c_jobs_submitted, "jobs.submitted", RTD_COUNTER},
        {&c->c_jobs_done, "jobs.done", RTD_COUNTER},
        {&c->c_jobs_failed, "jobs.failed", RTD_COUNTER},
        {&c->c_jobs_cancelled, "jobs.cancelled", RTD_COUNTER},
        {&c->g_jobs_running, "jobs.running", RTD_GAUGE},
        {&c->g_jobs_queued, "jobs.queued", RTD_GAUGE},
        {&c->c_results_msgs, "results.msgs", RTD_COUNTER},
        {&c->c_frames_msgs, "frames.msgs", RTD_COUNTER},
        {&c->c_results_lapped, "results.lapped", RTD_COUNTER},
    };
    static _Atomic uint64_t spare[32];
    size_t k = 0;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        _Atomic uint64_t *p = c->stats ? rtd_stats_counter(c->stats, t[i].label, t[i].kind) : NULL;
        /* Without a stats segment the counters still work, only nobody else sees them. */
        *t[i].p = p ? p : &spare[k++];
    }
    c->h_publish = c->stats ? rtd_stats_hist(c->stats, "latency.publish") : NULL;
    c->h_request = c->stats ? rtd_stats_hist(c->stats, "latency.request") : NULL;
}

static void update_status(struct ctl *c)
{
    char line[256];
    snprintf(line, sizeof line, "pub %s; %llu msgs, %llu dropped; %llu requests; jobs %llu running",
             c->o.pub[0],
             (unsigned long long)atomic_load_explicit(c->c_pub_msgs, memory_order_relaxed),
             (unsigned long long)atomic_load_explicit(c->c_pub_dropped, memory_order_relaxed),
             (unsigned long long)atomic_load_explicit(c->c_requests, memory_order_relaxed),
             (unsigned long long)atomic_load_explicit(c->g_jobs_running, memory_order_relaxed));
    rtd_sd_status("%s", line);
    if (c->stats)
        rtd_stats_set_status(c->stats, "publishing");
}

int rtd_ctl_main(int argc, char **argv, volatile sig_atomic_t *stop)
{
    struct ctl ctl = {0}, *c = &ctl;
    const char *gen_keys = NULL;
    char err[512];
    int rc, exit_code = 1;
    if ((rc = rtd_config_argv("ctl", long_opts, &argc, &argv, err, sizeof err))) {
        fprintf(stderr, "rtdaq-ctl: %s\n", err);
        return 2;
    }
    merged_argv = argv;
    if (parse_opts(&c->o, argc, argv, &gen_keys))
        return 2;
    if (gen_keys) {
        free(c->o.pub_buf);
        free(c->o.ctl_buf);
        rc = rtd_curve_gen_keys(gen_keys);
        if (rc) {
            fprintf(stderr, "rtdaq-ctl: --gen-keys %s: %s\n", gen_keys, strerror(-rc));
            return 1;
        }
        printf("wrote %s.pub and %s.secret\n", gen_keys, gen_keys);
        return 0;
    }
    c->instance = rtd_instance_name(c->o.instance);
    char segname[128];
    if (rtd_shm_name(segname, sizeof segname, c->instance, "stats.ctl")) {
        fprintf(stderr, "rtdaq-ctl: --instance '%s': invalid name ([A-Za-z0-9_-], 1..%d)\n",
                c->instance, RTD_INSTANCE_MAX);
        return 2;
    }
    c->start_ns = rtd_now_ns();
    c->start_realtime_ns = rtd_realtime_ns();

    c->zctx = zmq_ctx_new();
    if (!c->zctx)
        return 1;
    if ((rc = setup_curve(c)))
        goto cleanup_ctx;
    if (rtd_config_check_only()) {
        puts("config ok");
        exit_code = 0;
        goto cleanup_ctx;
    }
    if ((rc = rtd_stats_create(&c->stats, c->instance, "ctl", 64))) {
        rtd_log(RTD_LOG_WARN, "stats segment stats.ctl: %s (counters stay private)", strerror(-rc));
        c->stats = NULL;
    }
    init_counters(c);
    int adopted = 0;
    if ((rc = rtd_ctlblock_create(&c->blk, c->instance, &adopted))) {
        rtd_log(RTD_LOG_ERR, "control block %s: %s%s", RTD_CTLBLOCK_RING, strerror(-rc),
                rc == -EEXIST ? " (another rtdaq-ctl runs on this instance)" : "");
        goto cleanup_stats;
    }
    if (adopted)
        rtd_log(RTD_LOG_INFO, "adopted the parameters and commands of the previous rtdaq-ctl");
    /* Nobody else writes the block yet: this read cannot find a write in progress. */
    rtd_ctlblock_read(c->blk, &c->snap);
    {
        struct rtd_ctl_snapshot *s = &c->snap;
        rtd_ctl_param_store(s, RTD_P_CTL_INTERVAL_MS, (double)c->o.interval_ms);
        rtd_ctl_param_store(s, RTD_P_CTL_FRAMES_EVERY, (double)c->o.frames_every);
        rtd_ctl_param_store(s, RTD_P_CTL_FRAMES_MAX_RATE, c->o.frames_max_rate);
        s->generation++;
        rtd_ctlblock_write(c->blk, s);
    }
    if ((rc = setup_sockets(c)))
        goto cleanup_blk;
    if ((rc = ctl_ack_init(c)) || (rc = ctl_stats_init(c)) || (rc = ctl_stream_init(c)) ||
        (rc = ctl_jobs_init(c, c->o.jobs_parallel, c->o.jobs_queue))) {
        rtd_log(RTD_LOG_ERR, "init: %s", strerror(-rc));
        goto cleanup_all;
    }
    rtd_log(RTD_LOG_INFO, "instance %s: publishing on %s, control on %s%s", c->instance,
            c->o.pub[0], c->o.ctl[0], c->curve ? " (CURVE)" : "");
    rtd_sd_ready();

    uint64_t interval_ns = rtd_ctl_param_u64(&c->snap, RTD_P_CTL_INTERVAL_MS) * 1000000ull;
    uint64_t last_tick = rtd_now_ns(), next_tick = last_tick + interval_ns;
    uint64_t end_ns = c->o.duration_s > 0 ? c->start_ns + (uint64_t)(c->o.duration_s * 1e9) : 0;
    /* First stats at once, so subscribers see something within one interval. */
    ctl_stream_rescan(c);
    ctl_stats_publish(c, 0);
    update_status(c);
    while (!c->stop && !*stop) {
        uint64_t now = rtd_now_ns();
        if (end_ns && now >= end_ns)
            break;
        long timeout_ms = next_tick > now ? (long)((next_tick - now + 999999) / 1000000) : 0;
        /* Results rings are polled, not waited on: a monitor never wakes the producer. */
        if (ctl_stream_active(c) && timeout_ms > 2)
            timeout_ms = 2;
        /* Wake at least every second: watchdog pings and --duration with long intervals. */
        if (timeout_ms > 1000)
            timeout_ms = 1000;
        zmq_pollitem_t items[3] = {
            {c->router, 0, ZMQ_POLLIN, 0},
            {c->pub, 0, ZMQ_POLLIN, 0},
            {c->zap, 0, ZMQ_POLLIN, 0},
        };
        /* Acknowledgements are polled: a waiting reply goes out within ~1 ms of its ack. */
        if (ctl_ack_pending(c) && timeout_ms > 1)
            timeout_ms = 1;
        int n = zmq_poll(items, c->zap ? 3 : 2, timeout_ms);
        if (n < 0 && errno != EINTR) {
            rtd_log(RTD_LOG_ERR, "zmq_poll: %s", zmq_strerror(errno));
            break;
        }
        if (n > 0) {
            if (c->zap && (items[2].revents & ZMQ_POLLIN))
                zap_handle(c);
            if (items[0].revents & ZMQ_POLLIN)
                for (int k = 0; k < 64 && !c->stop; k++) {
                    int ev = 0;
                    size_t evl = sizeof ev;
                    zmq_getsockopt(c->router, ZMQ_EVENTS, &ev, &evl);
                    if (!(ev & ZMQ_POLLIN))
                        break;
                    router_handle(c);
                }
            if (items[1].revents & ZMQ_POLLIN)
                pub_drain(c);
        }
        ctl_ack_poll(c);
        ctl_stream_poll(c);
        ctl_jobs_publish_events(c);
        now = rtd_now_ns();
        if (now >= next_tick) {
            uint64_t t0 = now;
            ctl_stream_rescan(c);
            ctl_stats_publish(c, (double)(now - last_tick) / 1e9);
            last_tick = now;
            interval_ns = rtd_ctl_param_u64(&c->snap, RTD_P_CTL_INTERVAL_MS) * 1000000ull;
            /* Ticks keep their phase; after a long stall the next one is a full interval away. */
            next_tick += interval_ns;
            if (next_tick <= now)
                next_tick = now + interval_ns;
            if (c->stats)
                rtd_stats_heartbeat(c->stats);
            update_status(c);
            if (c->h_publish)
                rtd_hist_record(c->h_publish, rtd_now_ns() - t0);
        }
        rtd_sd_watchdog();
        if (c->stats)
            rtd_stats_heartbeat(c->stats);
    }
    rtd_sd_stopping();
    rtd_log(RTD_LOG_INFO, "stopping (%s)",
            *stop > 1 ? strsignal(*stop)
            : *stop   ? "stop request"
            : c->stop ? "shutdown request"
                      : "duration");
    ctl_stream_free(c); /* sends the end-of-acquisition messages */
    exit_code = 0;
cleanup_all:
    ctl_ack_free(c); /* waiting replies go unanswered: their clients time out */
    ctl_jobs_free(c);
    ctl_stats_free(c);
cleanup_blk:
    if (c->pub) {
        /* Let the end-of-stream messages leave, but never hang on a stuck subscriber. */
        int linger = 300;
        zmq_setsockopt(c->pub, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(c->pub);
    }
    if (c->router)
        zmq_close(c->router);
    rtd_ctlblock_close(c->blk);
cleanup_stats:
    if (c->stats)
        rtd_stats_close(c->stats);
cleanup_ctx:
    if (c->zap)
        zmq_close(c->zap);
    zmq_ctx_term(c->zctx);
    free(c->allowed);
    free(c->o.pub_buf);
    free(c->o.ctl_buf);
    return exit_code;
}

#ifdef RTD_CTL_WITH_MAIN
static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

int main(int argc, char **argv)
{
    rtd_log_init("rtdaq-ctl", RTD_LOG_INFO);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return rtd_ctl_main(argc, argv, &got_signal);
}
#endif
