/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the ctl tests (plain programs: exit 0 pass, 1 fail, 77
 * skip): start the real rtdaq-ctl with ports and an instance derived from the
 * pid, talk to it, subscribe to it, and stop it.
 */
#ifndef CTL_TEST_H
#define CTL_TEST_H

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <zmq.h>

#include "rtd_ctl_client.h"
#include "rtd_util.h"

#define CTL_BIN RTD_BIN_DIR "/ctl/rtdaq-ctl"
#define CLI_BIN RTD_BIN_DIR "/tools/rtdaq"

static int t_failed;
/* Sanitizer builds run several times slower: deadlines and loads scale with this. */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define T_SLOW 4
#else
#define T_SLOW 1
#endif
/* CURVE credentials for t_ctl_start's readiness check and t_req (NULL: plain). */
static const struct rtd_curve_client *t_curve;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            t_failed = 1;                                                                          \
        }                                                                                          \
    } while (0)

#define REQUIRE(cond, ...)                                                                         \
    do {                                                                                           \
        int ok_ = !!(cond); /* evaluated once: conditions may have side effects */                 \
        if (!ok_) {                                                                                \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            t_failed = 1;                                                                          \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

/* True when nothing listens on 127.0.0.1:port (a test binds it briefly). */
static inline int t_port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/*
 * Ports from the pid, never the defaults: a test uses base + 0..9. A block in
 * use by someone else (another engineer's daemon, a TIME_WAIT) is skipped.
 * All below 32768: a port of Linux's ephemeral range (32768-60999) can be taken
 * between this check and the daemon's bind by the source port of any outgoing
 * connection, such as another test's hundreds of TCP clients.
 */
static inline int t_port_base(void)
{
    int base = 20000 + (int)(getpid() % 1270) * 10;
    for (int tries = 0; tries < 50; tries++, base = base + 10 >= 32760 ? 20000 : base + 10) {
        int ok = 1;
        for (int i = 0; i < 10 && ok; i++)
            ok = t_port_free(base + i);
        if (ok)
            return base;
    }
    return base;
}

struct t_ctl {
    pid_t pid;
    char instance[32];
    char pub[64], ctl[64];
};

/* Start rtdaq-ctl; extra arguments end with NULL. 0 or -errno. */
static inline int t_ctl_start(struct t_ctl *t, const char *instance, int port, ...)
{
    const char *argv[48];
    int n = 0;
    snprintf(t->instance, sizeof t->instance, "%s", instance);
    snprintf(t->pub, sizeof t->pub, "tcp://127.0.0.1:%d", port);
    snprintf(t->ctl, sizeof t->ctl, "tcp://127.0.0.1:%d", port + 1);
    argv[n++] = CTL_BIN;
    argv[n++] = "--instance";
    argv[n++] = t->instance;
    argv[n++] = "--pub";
    argv[n++] = t->pub;
    argv[n++] = "--ctl";
    argv[n++] = t->ctl;
    va_list ap;
    va_start(ap, port);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 46)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        unsetenv("RTDAQ_CONFIG");
        char *av[48];
        memcpy(av, argv, sizeof av); /* execv's prototype predates const */
        execv(CTL_BIN, av);
        _exit(127);
    }
    t->pid = pid;
    /* Ready when it answers ping. */
    for (int i = 0; i < 100; i++) {
        char *rep = NULL;
        if (rtd_ctl_request(t->ctl, "{\"cmd\":\"ping\"}", 100, t_curve, &rep) == 0) {
            free(rep);
            return 0;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            t->pid = 0;
            return -ECHILD;
        }
    }
    return -ETIMEDOUT;
}

/* Stop it (SIGTERM, then SIGKILL after 5 s); returns its exit status or -1. */
static inline int t_ctl_stop(struct t_ctl *t)
{
    if (t->pid <= 0)
        return -1;
    kill(t->pid, SIGTERM);
    int st = 0;
    for (int i = 0; i < 500; i++) {
        if (waitpid(t->pid, &st, WNOHANG) == t->pid) {
            t->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        usleep(10000);
    }
    kill(t->pid, SIGKILL);
    waitpid(t->pid, &st, 0);
    t->pid = 0;
    return -1;
}

/* One request (JSON text) -> parsed reply, NULL when unreachable. */
static inline json_t *t_req(const struct t_ctl *t, const char *fmt, ...)
{
    char body[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    char *rep = NULL;
    if (rtd_ctl_request(t->ctl, body, 3000, t_curve, &rep))
        return NULL;
    json_t *j = json_loads(rep, 0, NULL);
    free(rep);
    return j;
}

static inline int t_ok(json_t *r)
{
    return r && json_is_true(json_object_get(r, "ok"));
}

/* Receive one message of a topic (prefix) within timeout_ms; parts[1] parsed. */
static inline json_t *t_recv_topic(void *sub, const char *topic, int timeout_ms, size_t *payload)
{
    uint64_t end = rtd_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (rtd_now_ns() < end) {
        zmq_pollitem_t it = {sub, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 50) <= 0)
            continue;
        char tp[128];
        int n = zmq_recv(sub, tp, sizeof tp - 1, 0);
        if (n < 0)
            continue;
        tp[n < (int)sizeof tp - 1 ? n : (int)sizeof tp - 1] = 0;
        json_t *hdr = NULL;
        int more;
        size_t ml = sizeof more, part = 1;
        if (payload)
            *payload = 0;
        for (;;) {
            zmq_getsockopt(sub, ZMQ_RCVMORE, &more, &ml);
            if (!more)
                break;
            zmq_msg_t m;
            zmq_msg_init(&m);
            zmq_msg_recv(&m, sub, 0);
            if (part == 1)
                hdr = json_loadb(zmq_msg_data(&m), zmq_msg_size(&m), 0, NULL);
            else if (payload)
                *payload = zmq_msg_size(&m);
            part++;
            zmq_msg_close(&m);
        }
        if (!strcmp(tp, topic) && hdr)
            return hdr;
        json_decref(hdr);
    }
    return NULL;
}

static inline void *t_sub(void *ctx, const char *ep, const char *topic)
{
    void *s = zmq_socket(ctx, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_SUBSCRIBE, topic, strlen(topic));
    zmq_connect(s, ep);
    return s;
}

/* Run a command line, return its exit code (stdout/stderr to /dev/null unless keep). */
static inline int t_run(const char *const argv[], int keep_output)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (!keep_output) {
            FILE *f = freopen("/dev/null", "w", stdout);
            (void)f;
            f = freopen("/dev/null", "w", stderr);
            (void)f;
        }
        char *av[64] = {0};
        size_t n = 0;
        while (argv[n] && n < 63)
            n++;
        memcpy(av, argv, n * sizeof *av);
        execv(av[0], av);
        _exit(127);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

#endif
