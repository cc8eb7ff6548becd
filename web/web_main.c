/* SPDX-License-Identifier: MIT */
/*
 * rtdaq-web: the live web view and HTTP API of one rtdaq instance.
 * parse -> init -> attach -> loop -> cleanup, like every rtdaq daemon.
 *
 * It is a reader: stats segments and rings are read as a monitor (never
 * gating acq or proc), control requests go to rtdaq-ctl's control socket, and
 * the process lowers its own priority (--nice, default 10) and may be kept off
 * the real-time cores (--cpus; `rtdaq run` gives it the housekeeping cores, as
 * it does ctl). Loopback only unless TLS and a bearer token are configured.
 *
 * Readiness: once listening, it prints one line to stdout,
 *   rtdaq-web: listening on http://ADDR:PORT/
 * (the port actually bound: --listen ADDR:0 picks a free one) and tells systemd.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <sched.h>

#include "rtd_config.h"
#include "rtd_ctl_client.h"
#include "rtd_shm.h"
#include "rtd_util.h"
#include "rtd_web.h"
#include "web_internal.h"

#ifndef RTD_WEB_STATIC_INSTALLED
#define RTD_WEB_STATIC_INSTALLED ""
#endif
#ifndef RTD_WEB_STATIC_SOURCE
#define RTD_WEB_STATIC_SOURCE ""
#endif

const char *const web_counter_label[W_N] = {
    [W_HTTP_REQUESTS] = "http.requests",
    [W_HTTP_4XX] = "http.responses_4xx",
    [W_HTTP_5XX] = "http.responses_5xx",
    [W_BAD_JSON] = "bad.json",
    [W_BAD_BODY_SIZE] = "bad.body_too_large",
    [W_BAD_PATH] = "bad.path",
    [W_BAD_AUTH] = "bad.auth",
    [W_BAD_METHOD] = "bad.method",
    [W_CONN_REFUSED] = "http.refused",
    [W_WS_ACCEPTED] = "ws.accepted",
    [W_WS_REFUSED] = "ws.refused",
    [W_WS_CLOSED] = "ws.closed",
    [W_WS_CLIENTS] = "ws.clients",
    [W_WS_BYTES] = "ws.bytes",
    [W_WS_FRAMES] = "ws.frames",
    [W_WS_STATS] = "ws.stats",
    [W_WS_SKIPPED_BUSY] = "ws.skipped_busy",
    [W_FRAMES_COPIED] = "frames.copied",
    [W_FRAMES_TORN] = "frames.torn",
    [W_FRAMES_SKIPPED] = "frames.skipped",
    [W_RESULTS_READ] = "results.read",
    [W_RESULTS_TORN] = "results.torn",
    [W_RESULTS_LAPPED] = "results.lapped",
    [W_CTL_FORWARDED] = "ctl.forwarded",
    [W_CTL_FAILED] = "ctl.failed",
    [W_WCT_JOBS] = "wct.jobs",
    [W_WCT_FAILED] = "wct.failed",
    [W_INFLIGHT_REFUSED] = "http.busy",
};

static const char usage[] =
    "usage: rtdaq-web [options]\n"
    "  --listen ADDR:PORT    HTTP listener (default 127.0.0.1:8080; PORT 0 picks a free one);\n"
    "                        an address other than loopback needs --tls-cert, --tls-key and\n"
    "                        --token-file\n"
    "  --instance NAME       rtdaq instance (default $RTDAQ_INSTANCE or 'default')\n"
    "  --ctl ENDPOINT        rtdaq-ctl's control socket (default " RTD_CTL_CTL_DEFAULT ")\n"
    "  --static DIR          the page's files (default: installed share/rtdaq/web)\n"
    "  --tls-cert FILE, --tls-key FILE   PEM certificate and key: serve HTTPS\n"
    "  --token-file FILE     bearer token (one line) every request must carry\n"
    "  --cpus LIST           CPU affinity, e.g. 2-3 (default: inherited)\n"
    "  --nice N              scheduling niceness to apply (default 10; 0 leaves it)\n"
    "  --max-clients N       live pages at once (default 8)\n"
    "  --max-connections N   HTTP connections at once (default 64)\n"
    "  --max-fps F           frames per second per page, at most (default 30)\n"
    "  --max-dim N           frames are binned to at most N x N pixels (default 512)\n"
    "  --wct-threads N       threads of one wavelet job (default 1)\n"
    "  --config FILE         [web] section of the rtdaq configuration\n"
    "  --check-config        validate and exit\n"
    "  -v, --verbose\n";

static const struct option long_opts[] = {
    {"listen", required_argument, 0, 'l'},
    {"instance", required_argument, 0, 'i'},
    {"ctl", required_argument, 0, 'c'},
    {"static", required_argument, 0, 's'},
    {"tls-cert", required_argument, 0, 'C'},
    {"tls-key", required_argument, 0, 'K'},
    {"token-file", required_argument, 0, 'T'},
    {"cpus", required_argument, 0, 'u'},
    {"nice", required_argument, 0, 'n'},
    {"max-clients", required_argument, 0, 'm'},
    {"max-connections", required_argument, 0, 'M'},
    {"max-fps", required_argument, 0, 'f'},
    {"max-dim", required_argument, 0, 'd'},
    {"wct-threads", required_argument, 0, 'W'},
    {"check-config", no_argument, 0, 'k'},
    {"verbose", no_argument, 0, 'v'},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

static int parse_long(const char *opt, const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "rtdaq-web: --%s %s: want an integer in [%ld, %ld]\n", opt, s, lo, hi);
        return -EINVAL;
    }
    *out = (int)v;
    return 0;
}

static int parse_listen(struct web_opts *o, const char *s)
{
    const char *colon = strrchr(s, ':');
    size_t n = colon ? (size_t)(colon - s) : 0;
    if (!colon || n == 0 || n >= sizeof o->listen_addr) {
        fprintf(stderr, "rtdaq-web: --listen %s: want ADDR:PORT (e.g. 127.0.0.1:8080)\n", s);
        return -EINVAL;
    }
    memcpy(o->listen_addr, s, n);
    o->listen_addr[n] = 0;
    if (!strcmp(o->listen_addr, "localhost"))
        snprintf(o->listen_addr, sizeof o->listen_addr, "127.0.0.1");
    return parse_long("listen", colon + 1, 0, 65535, &o->port);
}

/* "0,2-3": a CPU set. 0 or -EINVAL. */
static int parse_cpus(const char *s, cpu_set_t *set)
{
    CPU_ZERO(set);
    const char *p = s;
    while (*p) {
        char *end;
        long a = strtol(p, &end, 10), b;
        if (end == p || a < 0 || a >= CPU_SETSIZE)
            return -EINVAL;
        b = a;
        if (*end == '-') {
            p = end + 1;
            b = strtol(p, &end, 10);
            if (end == p || b < a || b >= CPU_SETSIZE)
                return -EINVAL;
        }
        for (long c = a; c <= b; c++)
            CPU_SET((int)c, set);
        if (*end == ',')
            end++;
        else if (*end)
            return -EINVAL;
        p = end;
    }
    return CPU_COUNT(set) ? 0 : -EINVAL;
}

static int parse_opts(struct web_opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    snprintf(o->listen_addr, sizeof o->listen_addr, "127.0.0.1");
    o->port = 8080;
    o->ctl_endpoint = RTD_CTL_CTL_DEFAULT;
    o->nice = 10;
    o->max_ws = WEB_MAX_WS_DEFAULT;
    o->max_conn = WEB_MAX_CONN_DEFAULT;
    o->max_fps = 30;
    o->max_dim = 512;
    o->wct_threads = 1;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "vh", long_opts, NULL)) != -1) {
        int rc = 0;
        switch (ch) {
        case 'l':
            rc = parse_listen(o, optarg);
            break;
        case 'i':
            o->instance = optarg;
            break;
        case 'c':
            o->ctl_endpoint = optarg;
            break;
        case 's':
            o->static_dir = optarg;
            break;
        case 'C':
            o->tls_cert = optarg;
            break;
        case 'K':
            o->tls_key = optarg;
            break;
        case 'T':
            o->token_file = optarg;
            break;
        case 'u': {
            cpu_set_t set;
            if (parse_cpus(optarg, &set)) {
                fprintf(stderr, "rtdaq-web: --cpus %s: want a CPU list such as 2-3,5\n", optarg);
                rc = -EINVAL;
            }
            o->cpus = optarg;
            break;
        }
        case 'n':
            rc = parse_long("nice", optarg, 0, 19, &o->nice);
            break;
        case 'm':
            rc = parse_long("max-clients", optarg, 1, 64, &o->max_ws);
            break;
        case 'M':
            rc = parse_long("max-connections", optarg, 4, 1024, &o->max_conn);
            break;
        case 'f': {
            char *end;
            o->max_fps = strtod(optarg, &end);
            if (end == optarg || *end || !(o->max_fps >= 0.1 && o->max_fps <= 60)) {
                fprintf(stderr, "rtdaq-web: --max-fps %s: want 0.1 .. 60\n", optarg);
                rc = -EINVAL;
            }
            break;
        }
        case 'd':
            rc = parse_long("max-dim", optarg, 16, 4096, &o->max_dim);
            break;
        case 'W':
            rc = parse_long("wct-threads", optarg, 1, 64, &o->wct_threads);
            break;
        case 'k':
            o->check_config = 1;
            break;
        case 'v':
            o->verbose = 1;
            break;
        case 'h':
            fputs(usage, stdout);
            exit(0);
        default:
            fputs(usage, stderr);
            return -EINVAL;
        }
        if (rc)
            return rc;
    }
    if (optind < argc) {
        fprintf(stderr, "rtdaq-web: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    if (!!o->tls_cert != !!o->tls_key) {
        fprintf(stderr, "rtdaq-web: --tls-cert and --tls-key go together\n");
        return -EINVAL;
    }
    return 0;
}

/* Loopback: 127.0.0.0/8. Anything else is a network and needs TLS and a token. */
static int is_loopback(const char *addr)
{
    return !strncmp(addr, "127.", 4);
}

static int load_token(struct web *w)
{
    if (!w->o.token_file)
        return 0;
    void *buf;
    size_t len;
    int rc = rtd_read_file(w->o.token_file, &buf, &len);
    if (rc) {
        fprintf(stderr, "rtdaq-web: --token-file %s: %s\n", w->o.token_file, strerror(-rc));
        return rc;
    }
    char *s = buf;
    s[strcspn(s, "\r\n")] = 0;
    size_t n = strlen(s);
    if (n < 16 || n >= sizeof w->token) {
        fprintf(stderr, "rtdaq-web: --token-file %s: want one line of 16..%zu characters\n",
                w->o.token_file, sizeof w->token - 1);
        free(buf);
        return -EINVAL;
    }
    memcpy(w->token, s, n + 1);
    free(buf);
    return 0;
}

static int static_dir_ok(const char *dir)
{
    char path[1200];
    if (strlen(dir) > 1024)
        return 0;
    snprintf(path, sizeof path, "%s/index.html", dir);
    return dir[0] && access(path, R_OK) == 0;
}

/* --static, else <prefix>/share/rtdaq/web next to our bin/, else the configured paths. */
static int find_static(struct web_opts *o)
{
    static char buf[1024];
    if (o->static_dir)
        return static_dir_ok(o->static_dir) ? 0 : -ENOENT;
    char exe[900];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(buf, sizeof buf, "%s/../share/rtdaq/web", exe);
            if (static_dir_ok(buf)) {
                o->static_dir = buf;
                return 0;
            }
        }
    }
    if (static_dir_ok(RTD_WEB_STATIC_INSTALLED)) {
        o->static_dir = RTD_WEB_STATIC_INSTALLED;
        return 0;
    }
    if (static_dir_ok(RTD_WEB_STATIC_SOURCE)) {
        o->static_dir = RTD_WEB_STATIC_SOURCE;
        return 0;
    }
    return -ENOENT;
}

static _Atomic int stop_flag;
/* rtd_config_argv()'s vector lives until exit (kept reachable here, as the other daemons do). */
static char **volatile merged_argv; /* volatile: the store must not be optimised away */

static void on_signal(int sig)
{
    (void)sig;
    atomic_store_explicit(&stop_flag, 1, memory_order_relaxed);
}

int rtd_web_main(int argc, char **argv)
{
    struct web web, *w = &web;
    memset(w, 0, sizeof *w);
    char err[512];
    int rc, exit_code = 1;

    /* ---- parse ---- */
    if ((rc = rtd_config_argv("web", long_opts, &argc, &argv, err, sizeof err))) {
        fprintf(stderr, "rtdaq-web: %s\n", err);
        return 2;
    }
    merged_argv = argv;
    if (parse_opts(&w->o, argc, argv))
        return 2;
    w->o.instance = rtd_instance_name(w->o.instance);
    char segname[128];
    if (rtd_shm_name(segname, sizeof segname, w->o.instance, "stats.web")) {
        fprintf(stderr, "rtdaq-web: --instance '%s': invalid name ([A-Za-z0-9_-], 1..%d)\n",
                w->o.instance, RTD_INSTANCE_MAX);
        return 2;
    }
    w->remote = !is_loopback(w->o.listen_addr);
    if (w->remote && (!w->o.tls_cert || !w->o.token_file)) {
        fprintf(stderr,
                "rtdaq-web: --listen %s is not loopback: it needs --tls-cert, --tls-key and "
                "--token-file (the control endpoints are never open on a network)\n",
                w->o.listen_addr);
        return 2;
    }
    if (load_token(w))
        return 2;
    if (find_static(&w->o)) {
        fprintf(stderr, "rtdaq-web: no page files (index.html) in %s; give --static DIR\n",
                w->o.static_dir ? w->o.static_dir : "share/rtdaq/web or the source tree");
        return 2;
    }
    if (w->o.check_config || rtd_config_check_only()) {
        puts("config ok");
        return 0;
    }
    rtd_log_init("rtdaq-web", w->o.verbose ? RTD_LOG_DEBUG : RTD_LOG_INFO);

    /* ---- init ---- */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    w->stop = &stop_flag;
    if (w->o.cpus) {
        cpu_set_t set;
        parse_cpus(w->o.cpus, &set);
        if (sched_setaffinity(0, sizeof set, &set))
            rtd_log(RTD_LOG_WARN, "--cpus %s: %s (left as it was)", w->o.cpus, strerror(errno));
    }
    /* Lower our priority: the page is worth less than any frame. Threads created later
     * (libmicrohttpd's, the wavelet worker) inherit it. */
    if (w->o.nice > 0 && setpriority(PRIO_PROCESS, 0, w->o.nice))
        rtd_log(RTD_LOG_WARN, "--nice %d: %s", w->o.nice, strerror(errno));
    pthread_mutex_init(&w->snap_lock, NULL);
    pthread_mutex_init(&w->ws_lock, NULL);
    for (int i = 0; i < W_N; i++)
        w->cnt[i] = &w->local_cnt[i];
    if (pipe2(w->wake_fd, O_CLOEXEC | O_NONBLOCK)) {
        rtd_log(RTD_LOG_ERR, "pipe: %s", strerror(errno));
        goto cleanup_locks;
    }

    /* ---- attach ---- */
    if ((rc = rtd_stats_create(&w->stats, w->o.instance, "web", 64))) {
        rtd_log(RTD_LOG_ERR, "stats segment %s: %s%s", segname, strerror(-rc),
                rc == -EEXIST ? " (another rtdaq-web runs on this instance)" : "");
        goto cleanup_pipe;
    }
    for (int i = 0; i < W_N; i++) {
        _Atomic uint64_t *p = rtd_stats_counter(w->stats, web_counter_label[i],
                                                i == W_WS_CLIENTS ? RTD_GAUGE : RTD_COUNTER);
        if (p)
            w->cnt[i] = p;
    }
    rtd_stats_set_status(w->stats, "starting");
    if ((rc = web_live_init(&w->live, w))) {
        rtd_log(RTD_LOG_ERR, "sampler: %s", strerror(-rc));
        goto cleanup_stats;
    }
    if ((rc = web_wct_init(&w->wct, w))) {
        rtd_log(RTD_LOG_ERR, "wavelet worker: %s", strerror(-rc));
        goto cleanup_live;
    }
    web_live_tick(w->live, rtd_now_ns()); /* a first snapshot before the first request */
    if ((rc = web_http_start(w)))
        goto cleanup_wct;
    printf("rtdaq-web: listening on %s://%s:%d/ (instance %s, page files %s)\n",
           w->o.tls_cert ? "https" : "http", w->o.listen_addr, w->o.port, w->o.instance,
           w->o.static_dir);
    fflush(stdout);
    rtd_sd_ready();
    rtd_stats_set_status(w->stats, "serving");

    /* ---- loop ---- */
    uint64_t next_status = 0;
    while (!atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
        /* 10 ms: frames and results are picked up at 100 Hz at most; sockets wake us at once. */
        web_ws_poll(w, 10);
        uint64_t now = rtd_now_ns();
        web_live_tick(w->live, now);
        if (now >= next_status) {
            rtd_stats_heartbeat(w->stats);
            rtd_sd_watchdog();
            char line[128];
            snprintf(line, sizeof line, "serving: %d pages, %llu requests",
                     atomic_load_explicit(&w->ws_count, memory_order_relaxed),
                     (unsigned long long)atomic_load_explicit(w->cnt[W_HTTP_REQUESTS],
                                                              memory_order_relaxed));
            rtd_stats_set_status(w->stats, line);
            next_status = now + 1000000000ull;
        }
    }
    exit_code = 0;
    rtd_sd_stopping();

    /* ---- cleanup ---- */
    web_http_stop(w); /* closes the pages' WebSockets too */
cleanup_wct:
    web_wct_free(w->wct);
cleanup_live:
    web_live_free(w->live);
cleanup_stats:
    rtd_stats_close(w->stats);
cleanup_pipe:
    close(w->wake_fd[0]);
    close(w->wake_fd[1]);
cleanup_locks:
    free(w->snap_json);
    free(w->snap_metrics);
    pthread_mutex_destroy(&w->snap_lock);
    pthread_mutex_destroy(&w->ws_lock);
    return exit_code;
}
