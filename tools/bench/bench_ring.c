/* SPDX-License-Identifier: MIT */
/*
 * `rtdaq-bench ring [--json] [--runs N] [--seconds S] [--batch B]`: shared-memory
 * rings between two processes pinned to different cores, against ZeroMQ
 * ipc:// PUSH/PULL measured in the same run, and a plain memcpy baseline for
 * frames. Cases are interleaved run by run (the host's noise hits every case
 * alike); each case reports the median, min and max of its runs and the ratio
 * of its median to ZeroMQ's median for the same payload.
 *
 *   msg32      32 B messages, rtdaq publishing each one / every B, zmq one send each
 *   frame128k  128 KiB frames: the producer copies a frame in, the consumer
 *              sums every byte (rtdaq: in place in the slot; zmq: in the message)
 */
#include "bench.h"
#include "rtd_shm.h"
#include "rtd_util.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#define FRAME_BYTES (128u * 1024u)
#define MSG_BYTES   32u
#define MAX_RUNS    64

enum impl { IMPL_RTDAQ_EACH, IMPL_RTDAQ_BATCH, IMPL_ZMQ, IMPL_MEMCPY };
enum payload { PAY_MSG, PAY_FRAME };

struct bcase {
    const char *name;
    const char *impl;
    enum payload pay;
    enum impl kind;
    double rate[MAX_RUNS];
    int n;
};

/* Shared between the producer (parent) and the consumer (child). */
struct shared {
    _Atomic int ready;
    _Atomic int stop;
    _Atomic uint64_t count;
    _Atomic uint64_t ns;
    _Atomic uint64_t sum; /* keeps the consumer's reads from being optimised away */
    _Atomic int err;
};

static char inst[32];
static unsigned batch = 64;
static uint8_t *frame_src;

static int ncpu; /* counted before any pinning: a pinned parent's children inherit one CPU */

static void pin(int cpu)
{
    if (ncpu >= 2)
        (void)rtd_pin_cpu(cpu);
}

static uint64_t sum_bytes(const uint8_t *p, size_t n)
{
    const uint64_t *w = (const uint64_t *)(const void *)p;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i < n / 8; i += 4) {
        a += w[i];
        b += w[i + 1];
        c += w[i + 2];
        d += w[i + 3];
    }
    return a + b + c + d;
}

/* ---- rtdaq ------------------------------------------------------------------- */

/*
 * Busy-poll, then sleep on the futex: on a quiet machine the spin always wins;
 * on an oversubscribed one a spinner burns its share of the CPU while its peer
 * waits to be scheduled, and sleeping is what keeps data moving.
 */
#define SPIN_LIMIT 20000u

static void idle(struct rtd_consumer *c, unsigned *spins)
{
    if (++*spins < SPIN_LIMIT)
        return;
    rtd_consumer_wait(c, 1000000);
    *spins = 0;
}

static void idle_producer(struct rtd_ring *r, unsigned *spins)
{
    if (++*spins < SPIN_LIMIT)
        return;
    rtd_ring_wait_space(r, 1000000);
    *spins = 0;
}

static void consume_ring(struct rtd_ring *r, enum payload pay, struct shared *sh)
{
    struct rtd_consumer *c;
    int rc = rtd_consumer_open(&c, r, RTD_CONSUMER_RELIABLE, "bench");
    if (rc) {
        atomic_store(&sh->err, rc);
        atomic_store(&sh->ready, 1);
        return;
    }
    atomic_store(&sh->ready, 1);
    uint64_t n = 0, sum = 0, t0 = 0;
    unsigned spins = 0;
    bool end = false;
    while (!end) {
        if (pay == PAY_MSG) {
            const struct rtd_pkt_hdr *h;
            unsigned got = 0;
            int nrc;
            while ((nrc = rtd_pkt_next(c, &h)) == 0) {
                if (h->type == 2) {
                    end = true;
                    break;
                }
                const uint64_t *p = rtd_pkt_payload(h);
                sum += p[0] + p[1] + p[2] + p[3];
                if (!t0)
                    t0 = rtd_now_ns();
                n++;
                if (++got == 256)
                    break;
            }
            if (got || end) {
                rtd_pkt_release(c);
                spins = 0;
            } else if (nrc == -EAGAIN) {
                idle(c, &spins);
            }
        } else {
            struct rtd_frame f;
            if (rtd_frame_peek(c, &f) != 0) {
                idle(c, &spins);
            } else {
                spins = 0;
                if (f.hdr->type == 2) {
                    end = true;
                } else {
                    sum += sum_bytes(f.data, f.hdr->len);
                    if (!t0)
                        t0 = rtd_now_ns();
                    n++;
                }
                rtd_frame_release(c);
            }
        }
    }
    atomic_store(&sh->ns, rtd_now_ns() - t0);
    atomic_store(&sh->count, n);
    atomic_store(&sh->sum, sum);
    rtd_consumer_close(c);
}

static int produce_ring(struct rtd_ring *r, enum payload pay, bool each, double seconds,
                        struct shared *sh)
{
    uint64_t t_end = rtd_now_ns() + (uint64_t)(seconds * 1e9), i = 0;
    unsigned pending = 0, spins = 0;
    for (;;) {
        bool last = (i & 1023) == 0 && rtd_now_ns() >= t_end;
        if (pay == PAY_MSG) {
            int err;
            uint64_t *p = rtd_pkt_reserve(r, MSG_BYTES, last ? 2 : 1, &err);
            if (!p) {
                rtd_pkt_publish(r);
                pending = 0;
                idle_producer(r, &spins);
                continue;
            }
            spins = 0;
            p[0] = i;
            p[1] = i + 1;
            p[2] = i + 2;
            p[3] = i + 3;
            if (each || ++pending >= batch || last) {
                rtd_pkt_publish(r);
                pending = 0;
            }
        } else {
            struct rtd_frame f;
            if (rtd_frame_claim(r, &f) != 0) {
                idle_producer(r, &spins);
                continue;
            }
            spins = 0;
            f.hdr->type = last ? 2 : 1;
            f.hdr->len = FRAME_BYTES;
            f.hdr->ts_mono_ns = 1; /* skip the clock reads: measure the ring */
            f.hdr->ts_real_ns = 1;
            if (!last)
                memcpy(f.data, frame_src, FRAME_BYTES);
            rtd_frame_publish(r, &f);
        }
        i++;
        if (last)
            break;
    }
    (void)sh;
    return 0;
}

static double run_rtdaq(enum payload pay, bool each, double seconds, int run)
{
    char name[32];
    snprintf(name, sizeof name, "bench%d", run);
    struct rtd_ring_config cfg = {.overflow = RTD_OVERFLOW_BLOCK, .mlock = 0};
    if (pay == PAY_MSG) {
        cfg.kind = RTD_RING_PACKET;
        cfg.data_bytes = 256 * 1024;
    } else {
        cfg.kind = RTD_RING_FRAME;
        cfg.slot_payload = FRAME_BYTES;
        cfg.slot_count = 16;
    }
    struct rtd_ring *r;
    int rc = rtd_ring_create(&r, inst, name, &cfg);
    if (rc) {
        fprintf(stderr, "rtdaq-bench ring: create: %s\n", strerror(-rc));
        return -1;
    }
    struct shared *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        rtd_ring_close(r);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        pin(1);
        consume_ring(r, pay, sh);
        _exit(0);
    }
    pin(0);
    while (!atomic_load(&sh->ready))
        sched_yield();
    double rate = -1;
    if (!atomic_load(&sh->err)) {
        produce_ring(r, pay, each, seconds, sh);
        waitpid(pid, NULL, 0);
        uint64_t ns = atomic_load(&sh->ns), n = atomic_load(&sh->count);
        if (ns && n)
            rate = (double)n / ((double)ns / 1e9);
    } else {
        waitpid(pid, NULL, 0);
    }
    munmap(sh, sizeof *sh);
    rtd_ring_close(r);
    return rate;
}

/* ---- ZeroMQ ipc PUSH/PULL ------------------------------------------------------- */

static double run_zmq(enum payload pay, double seconds, int run)
{
    char ep[96];
    snprintf(ep, sizeof ep, "ipc://@rtdaq-bench-%d-%d", (int)getpid(), run);
    struct shared *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return -1;
    size_t len = pay == PAY_MSG ? MSG_BYTES : FRAME_BYTES;
    pid_t pid = fork();
    if (pid == 0) {
        pin(1);
        void *ctx = zmq_ctx_new();
        void *s = zmq_socket(ctx, ZMQ_PULL);
        if (zmq_connect(s, ep) != 0)
            atomic_store(&sh->err, -errno);
        atomic_store(&sh->ready, 1);
        uint64_t n = 0, sum = 0, t0 = 0;
        for (;;) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, s, 0) < 0) {
                zmq_msg_close(&m);
                if (errno == EINTR)
                    continue;
                break;
            }
            size_t sz = zmq_msg_size(&m);
            if (sz == 1) {
                zmq_msg_close(&m);
                break;
            }
            const uint8_t *d = zmq_msg_data(&m);
            if (sz == MSG_BYTES) {
                const uint64_t *p = (const uint64_t *)(const void *)d;
                sum += p[0] + p[1] + p[2] + p[3];
            } else {
                sum += sum_bytes(d, sz);
            }
            if (!t0)
                t0 = rtd_now_ns();
            n++;
            zmq_msg_close(&m);
        }
        atomic_store(&sh->ns, rtd_now_ns() - t0);
        atomic_store(&sh->count, n);
        atomic_store(&sh->sum, sum);
        zmq_close(s);
        zmq_ctx_term(ctx);
        _exit(0);
    }
    pin(0);
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_PUSH);
    double rate = -1;
    if (zmq_bind(s, ep) == 0) {
        while (!atomic_load(&sh->ready))
            sched_yield();
        uint64_t msg[4] = {0};
        uint64_t t_end = rtd_now_ns() + (uint64_t)(seconds * 1e9), i = 0;
        for (;; i++) {
            if ((i & 255) == 0 && rtd_now_ns() >= t_end)
                break;
            const void *src = pay == PAY_MSG ? (const void *)msg : (const void *)frame_src;
            msg[0] = i;
            if (zmq_send(s, src, len, 0) < 0 && errno != EINTR)
                break;
        }
        zmq_send(s, "e", 1, 0);
        waitpid(pid, NULL, 0);
        uint64_t ns = atomic_load(&sh->ns), n = atomic_load(&sh->count);
        if (ns && n)
            rate = (double)n / ((double)ns / 1e9);
    } else {
        fprintf(stderr, "rtdaq-bench ring: zmq_bind %s: %s\n", ep, zmq_strerror(errno));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(s);
    zmq_ctx_term(ctx);
    munmap(sh, sizeof *sh);
    return rate;
}

/* ---- memcpy baseline: copy each frame in and sum it, one core, 16 buffers --------- */

static double run_memcpy(double seconds)
{
    uint8_t *bufs = aligned_alloc(4096, 16 * (size_t)FRAME_BYTES);
    if (!bufs)
        return -1;
    memset(bufs, 1, 16 * (size_t)FRAME_BYTES);
    pin(0);
    uint64_t t0 = rtd_now_ns(), t_end = t0 + (uint64_t)(seconds * 1e9), n = 0, sum = 0;
    while ((n & 63) || rtd_now_ns() < t_end) {
        uint8_t *dst = bufs + (n & 15) * (size_t)FRAME_BYTES;
        memcpy(dst, frame_src, FRAME_BYTES);
        sum += sum_bytes(dst, FRAME_BYTES);
        n++;
    }
    double rate = (double)n / ((double)(rtd_now_ns() - t0) / 1e9);
    free(bufs);
    return sum == 42 ? rate + 1e-9 : rate;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n, double *mn, double *mx)
{
    double s[MAX_RUNS];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    *mn = s[0];
    *mx = s[n - 1];
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static void usage(void)
{
    fprintf(stderr, "usage: rtdaq-bench ring [--json] [--runs N (5)] [--seconds S per run (0.3)]\n"
                    "                        [--batch B (64)] [--instance NAME]\n");
}

int rtd_bench_ring(int argc, char **argv)
{
    int json = 0, runs = 5;
    double seconds = 0.3;
    const char *instance_arg = NULL;
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"runs", required_argument, NULL, 'r'},
                                         {"seconds", required_argument, NULL, 's'},
                                         {"batch", required_argument, NULL, 'b'},
                                         {"instance", required_argument, NULL, 'i'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "jr:s:b:i:h", opts, NULL)) != -1) {
        switch (o) {
        case 'j':
            json = 1;
            break;
        case 'r':
            runs = atoi(optarg);
            break;
        case 's':
            seconds = atof(optarg);
            break;
        case 'b':
            batch = (unsigned)atoi(optarg);
            break;
        case 'i':
            instance_arg = optarg;
            break;
        case 'h':
            usage();
            return 0;
        default:
            usage();
            return 2;
        }
    }
    if (runs < 1 || runs > MAX_RUNS || seconds <= 0 || seconds > 60 || batch < 1 || batch > 4096) {
        usage();
        return 2;
    }
    /* Our own instance: never collides with a running system or another bench. */
    if (instance_arg)
        snprintf(inst, sizeof inst, "%s", instance_arg);
    else
        snprintf(inst, sizeof inst, "bench%d", (int)getpid());
    ncpu = rtd_cpu_count();
    frame_src = aligned_alloc(4096, FRAME_BYTES);
    if (!frame_src)
        return 1;
    for (size_t i = 0; i < FRAME_BYTES; i++)
        frame_src[i] = (uint8_t)(i * 7);

    struct bcase cases[] = {
        {"msg32", "rtdaq-each", PAY_MSG, IMPL_RTDAQ_EACH, {0}, 0},
        {"msg32", "rtdaq-batch", PAY_MSG, IMPL_RTDAQ_BATCH, {0}, 0},
        {"msg32", "zmq-ipc", PAY_MSG, IMPL_ZMQ, {0}, 0},
        {"frame128k", "rtdaq", PAY_FRAME, IMPL_RTDAQ_EACH, {0}, 0},
        {"frame128k", "zmq-ipc", PAY_FRAME, IMPL_ZMQ, {0}, 0},
        {"frame128k", "memcpy", PAY_FRAME, IMPL_MEMCPY, {0}, 0},
    };
    int nc = (int)(sizeof cases / sizeof cases[0]);
    if (!json)
        fprintf(stderr, "rtdaq-bench ring: %d runs x %.2f s per case, interleaved\n", runs,
                seconds);
    for (int run = 0; run < runs; run++) {
        for (int k = 0; k < nc; k++) {
            /* Rotate the order each run so no case always follows the same one. */
            struct bcase *c = &cases[(k + run) % nc];
            double rate = -1;
            switch (c->kind) {
            case IMPL_RTDAQ_EACH:
                rate = run_rtdaq(c->pay, true, seconds, run * nc + k);
                break;
            case IMPL_RTDAQ_BATCH:
                rate = run_rtdaq(c->pay, false, seconds, run * nc + k);
                break;
            case IMPL_ZMQ:
                rate = run_zmq(c->pay, seconds, run * nc + k);
                break;
            case IMPL_MEMCPY:
                rate = run_memcpy(seconds);
                break;
            }
            if (rate <= 0) {
                fprintf(stderr, "rtdaq-bench ring: case %s/%s failed\n", c->name, c->impl);
                free(frame_src);
                rtd_shm_cleanup(inst, 1);
                return 1;
            }
            c->rate[c->n++] = rate;
        }
    }
    double zmq_med[2] = {0, 0};
    for (int k = 0; k < nc; k++) {
        double mn, mx;
        if (cases[k].kind == IMPL_ZMQ)
            zmq_med[cases[k].pay] = median(cases[k].rate, cases[k].n, &mn, &mx);
    }
    if (!json)
        printf("%-10s %-12s %14s %14s %14s %9s %8s\n", "case", "impl", "median/s", "min/s", "max/s",
               "GB/s", "vs zmq");
    for (int k = 0; k < nc; k++) {
        struct bcase *c = &cases[k];
        double mn, mx, med = median(c->rate, c->n, &mn, &mx);
        double bytes = c->pay == PAY_MSG ? MSG_BYTES : FRAME_BYTES;
        double gbs = med * bytes / 1e9, ratio = med / zmq_med[c->pay];
        if (json) {
            json_t *o_ = json_object();
            json_object_set_new(o_, "case", json_string(c->name));
            json_object_set_new(o_, "impl", json_string(c->impl));
            json_object_set_new(o_, c->pay == PAY_MSG ? "msgs_per_s" : "frames_per_s",
                                json_real(med));
            json_object_set_new(o_, "gb_per_s", json_real(gbs));
            json_object_set_new(o_, "median_of", json_integer(c->n));
            json_object_set_new(o_, "min", json_real(mn));
            json_object_set_new(o_, "max", json_real(mx));
            json_object_set_new(o_, "vs_zmq", json_real(ratio));
            json_object_set_new(o_, "payload_bytes", json_integer((json_int_t)bytes));
            if (c->kind == IMPL_RTDAQ_BATCH)
                json_object_set_new(o_, "batch", json_integer(batch));
            json_object_set_new(o_, "seconds_per_run", json_real(seconds));
            char *s = json_dumps(o_, JSON_COMPACT | JSON_REAL_PRECISION(6));
            if (s)
                puts(s);
            free(s);
            json_decref(o_);
        } else {
            printf("%-10s %-12s %14.4g %14.4g %14.4g %9.2f %7.1fx\n", c->name, c->impl, med, mn, mx,
                   gbs, ratio);
        }
    }
    fflush(stdout);
    free(frame_src);
    rtd_shm_cleanup(inst, 1);
    return 0;
}
