/* SPDX-License-Identifier: MIT */
/*
 * `rtdaq-bench acq [--json] [--clients N] [--seconds S] [--rate HZ] [--batch B]
 *  [--size S] [--runs N] [--cases LIST] [--max-clients N] [--max-seconds S]
 *  [--recv-buf-size B] [--recv-buf-count N] [--acq-fifo PRIO] [--acq-cpu N]`:
 * acq's ingest measured end to end on loopback. The daemon (the same
 * rtd_acq_run as rtdaq-acq) runs in a forked child; the simulators run in this
 * process. Cases:
 *
 *   packets    N TCP clients x rate x size-byte packets in batch-packet writes,
 *              io_uring loop and epoll loop one after the other, --runs pairs
 *              alternating which goes first: sent, received, lost, p50/p99
 *              sender->ring latency, acq CPU and CPU ns per packet, and the
 *              medians over the runs
 *   maxrate    unpaced senders (100 clients, 804-packet batches): the highest
 *              rate the pair reaches, uring vs epoll interleaved run by run
 *              (alternating which goes first), with the ratio of their medians
 *   frames     256x256 u16 frames at 10 kHz over UDP in 8 KiB datagrams
 *   synthetic  the synthetic camera at 10 kHz straight into the frame ring
 *
 * The machine this was written on has 2 vCPUs shared by the sender, the
 * daemon and everything else: the sender runs out of CPU before acq does, so
 * the CPU columns (acq's share of a core and its ns per packet) are the fair
 * comparison between the two receive loops.
 */
#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rtd_acq.h"
#include "rtd_shm.h"
#include "rtd_sim.h"
#include "rtd_util.h"

#define MAX_RUNS 16

/* io_uring provided-buffer ring for the daemon (0: acq's defaults). */
static uint32_t rbuf_size, rbuf_count;
/* Real-time set-up for the daemon, as a deployment would run it (--acq-fifo, --acq-cpu). */
static int acq_fifo, acq_cpu = -1;

static volatile sig_atomic_t child_stop;

static void child_on_term(int sig)
{
    (void)sig;
    child_stop = 1;
}

struct daemon {
    pid_t pid;
    char instance[32];
    uint64_t cpu_ns0;
};

/* CPU time (user + system, ns) of another process, through its CPU-time clock. */
static uint64_t proc_cpu_ns(pid_t pid)
{
    clockid_t cid;
    struct timespec ts;
    if (clock_getcpuclockid(pid, &cid) || clock_gettime(cid, &ts))
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int daemon_start(struct daemon *d, struct rtd_acq_config *cfg)
{
    snprintf(d->instance, sizeof d->instance, "%s", cfg->instance);
    fflush(NULL);
    d->pid = fork();
    if (d->pid < 0)
        return -errno;
    if (d->pid == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = child_on_term;
        sigaction(SIGTERM, &sa, NULL);
        rtd_log_init("rtdaq-acq(bench)", RTD_LOG_WARN);
        _exit(rtd_acq_run(cfg, &child_stop) ? 1 : 0);
    }
    for (int i = 0; i < 500; i++) {
        struct rtd_stats_view *v;
        if (rtd_stats_open(&v, d->instance, "acq") == 0) {
            rtd_stats_view_close(v);
            usleep(100000);
            d->cpu_ns0 = proc_cpu_ns(d->pid);
            return 0;
        }
        if (waitpid(d->pid, NULL, WNOHANG) == d->pid)
            return -ECHILD;
        usleep(20000);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    return -ETIMEDOUT;
}

static void daemon_stop(struct daemon *d)
{
    kill(d->pid, SIGTERM);
    waitpid(d->pid, NULL, 0);
}

struct snap {
    uint64_t rx, gaps, ring_dropped, frames, partial, fdropped, p99_ns, p50_ns;
    uint64_t buckets[RTD_HIST_BUCKETS]; /* the histogram itself, for a later difference */
};

static void snap_counter(const char *label, enum rtd_counter_kind kind, uint64_t v, void *arg)
{
    struct snap *s = arg;
    (void)kind;
    if (!strcmp(label, "packets.rx"))
        s->rx = v;
    else if (!strcmp(label, "packets.gaps"))
        s->gaps = v;
    else if (!strcmp(label, "ring.dropped"))
        s->ring_dropped = v;
    else if (!strcmp(label, "frames.rx"))
        s->frames = v;
    else if (!strcmp(label, "frames.partial"))
        s->partial = v;
    else if (!strcmp(label, "frames.dropped"))
        s->fdropped = v;
}

static const char *hist_want;

static void snap_hist(const char *label, const uint64_t *b, void *arg)
{
    struct snap *s = arg;
    if (!strcmp(label, hist_want)) {
        s->p99_ns = rtd_hist_percentile(b, 0.99);
        s->p50_ns = rtd_hist_percentile(b, 0.50);
        memcpy(s->buckets, b, sizeof s->buckets);
    }
}

static int snapshot(const char *instance, const char *hist, struct snap *s, int settle)
{
    memset(s, 0, sizeof *s);
    struct rtd_stats_view *v;
    int rc = rtd_stats_open(&v, instance, "acq");
    if (rc)
        return rc;
    /* Let acq drain what is still queued in socket buffers: wait until its counters stop
     * moving for 300 ms (they are flushed every 100 ms), at most 10 s. */
    uint64_t last = UINT64_MAX;
    for (int still = 0, i = 0; settle && still < 3 && i < 100; i++) {
        usleep(100000);
        rtd_stats_view_foreach(v, snap_counter, s);
        uint64_t now = s->rx + s->frames + s->gaps;
        still = now == last ? still + 1 : 0;
        last = now;
    }
    hist_want = hist;
    rtd_stats_view_foreach(v, snap_counter, s);
    rtd_stats_view_foreach_hist(v, snap_hist, s);
    rtd_stats_view_close(v);
    return 0;
}

static void base_config(struct rtd_acq_config *cfg, int port, int run)
{
    rtd_acq_config_defaults(cfg);
    snprintf(cfg->instance, sizeof cfg->instance, "bacq%d_%d", (int)getpid(), run);
    cfg->packet_port = port;
    cfg->frame_port = port + 1;
    cfg->source = RTD_SRC_NONE;
    cfg->overflow = RTD_OVERFLOW_DROP_NEWEST; /* no consumer here: never stall, count drops */
    cfg->packet_ring_bytes = 64ull << 20;
    cfg->quiet = 1;
    if (rbuf_size)
        cfg->recv_buf_size = rbuf_size;
    if (rbuf_count)
        cfg->recv_buf_count = rbuf_count;
    cfg->fifo_prio = acq_fifo;
    cfg->cpu = acq_cpu;
}

struct pk_result {
    double sent, rx, lost, secs, rate, p99_us, p50_us, cpu_pct, ns_per_pkt;
    double p99_steady_us, p50_steady_us; /* packets after the warm-up only */
};

/*
 * The first second of a run is 1000 connects, TCP windows opening from slow start
 * and first-touch page faults: its tail is not the loop's steady state, and at 1 %
 * of a 5 s run it is the whole p99. A thread snapshots the histogram when the
 * warm-up ends; the difference to the final one is the steady state.
 */
#define WARMUP_S 1.0
struct warm {
    const char *instance;
    uint64_t at_ns;
    struct snap s;
    int ok;
};

static void *warm_snapshot(void *arg)
{
    struct warm *w = arg;
    uint64_t now = rtd_now_ns();
    if (w->at_ns > now) {
        struct timespec ts = {(time_t)((w->at_ns - now) / 1000000000u),
                              (long)((w->at_ns - now) % 1000000000u)};
        nanosleep(&ts, NULL);
    }
    w->ok = snapshot(w->instance, "latency.packet", &w->s, 0) == 0;
    return NULL;
}

static int run_packets(enum rtd_acq_io io, int run, uint32_t clients, double rate, uint32_t batch,
                       uint32_t size, double seconds, int port, struct pk_result *r)
{
    struct rtd_acq_config cfg;
    base_config(&cfg, port, run);
    cfg.io = io;
    cfg.max_clients = clients + 16;
    struct daemon d;
    int rc = daemon_start(&d, &cfg);
    if (rc) {
        fprintf(stderr, "rtdaq-bench acq: daemon did not start: %s\n", strerror(-rc));
        return rc;
    }
    struct rtd_sim_packets_opts o = {.host = "127.0.0.1",
                                     .port = port,
                                     .clients = clients,
                                     .rate = rate,
                                     .batch = batch,
                                     .size = size,
                                     .duration = seconds};
    struct rtd_sim_packets_result sr;
    struct warm w = {.instance = d.instance, .at_ns = rtd_now_ns() + (uint64_t)(WARMUP_S * 1e9)};
    pthread_t wt;
    int have_warm = seconds > 2 * WARMUP_S && pthread_create(&wt, NULL, warm_snapshot, &w) == 0;
    uint64_t t0 = proc_cpu_ns(d.pid);
    rc = rtd_sim_packets(&o, NULL, &sr);
    uint64_t t1 = proc_cpu_ns(d.pid);
    if (have_warm)
        pthread_join(wt, NULL);
    struct snap s;
    snapshot(d.instance, "latency.packet", &s, 1);
    r->p99_steady_us = r->p50_steady_us = 0;
    if (have_warm && w.ok) {
        uint64_t diff[RTD_HIST_BUCKETS];
        for (int i = 0; i < RTD_HIST_BUCKETS; i++)
            diff[i] = s.buckets[i] - w.s.buckets[i];
        r->p99_steady_us = (double)rtd_hist_percentile(diff, 0.99) / 1e3;
        r->p50_steady_us = (double)rtd_hist_percentile(diff, 0.50) / 1e3;
    }
    daemon_stop(&d);
    if (rc)
        return rc;
    double cpu_s = (double)(t1 - t0) / 1e9;
    r->sent = (double)sr.packets;
    r->rx = (double)s.rx;
    r->lost = (double)(sr.packets > s.rx ? sr.packets - s.rx : 0) + (double)s.gaps +
              (double)s.ring_dropped;
    r->secs = sr.seconds;
    r->rate = (double)s.rx / sr.seconds;
    r->p99_us = (double)s.p99_ns / 1e3;
    r->p50_us = (double)s.p50_ns / 1e3;
    r->cpu_pct = 100.0 * cpu_s / sr.seconds;
    r->ns_per_pkt = s.rx ? cpu_s * 1e9 / (double)s.rx : 0;
    if (sr.connect_failed)
        fprintf(stderr, "rtdaq-bench acq: %u clients failed to connect\n", sr.connect_failed);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    double t[MAX_RUNS];
    memcpy(t, v, sizeof(double) * (size_t)n);
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static double vmin(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] < m ? v[i] : m;
    return m;
}

static double vmax(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

static void print_packets(int json, const char *cas, const char *impl, uint32_t clients,
                          double rate, uint32_t batch, uint32_t size, const struct pk_result *r)
{
    if (json)
        printf("{\"case\":\"%s\",\"impl\":\"%s\",\"clients\":%u,\"rate_hz\":%.0f,\"batch\":%u,"
               "\"size\":%u,\"seconds\":%.2f,\"sent\":%.0f,\"received\":%.0f,\"lost\":%.0f,"
               "\"packets_per_s\":%.0f,\"p50_latency_us\":%.1f,\"p99_latency_us\":%.1f,"
               "\"p50_steady_latency_us\":%.1f,\"p99_steady_latency_us\":%.1f,"
               "\"warmup_s\":%.1f,\"acq_cpu_pct\":%.1f,\"acq_ns_per_packet\":%.2f,"
               "\"median_of\":1,\"cores\":%d}\n",
               cas, impl, clients, rate, batch, size, r->secs, r->sent, r->rx, r->lost, r->rate,
               r->p50_us, r->p99_us, r->p50_steady_us, r->p99_steady_us, WARMUP_S, r->cpu_pct,
               r->ns_per_pkt, rtd_cpu_count());
    else
        printf("%-9s %-6s %5u clients %8.0f Hz  sent %11.0f  recv %11.0f  lost %6.0f  "
               "%6.2f Mpkt/s  p50 %7.1f us  p99 %8.1f us (after %.0f s: %7.1f)  acq cpu %5.1f%%  "
               "%5.2f ns/pkt\n",
               cas, impl, clients, rate, r->sent, r->rx, r->lost, r->rate / 1e6, r->p50_us,
               r->p99_us, WARMUP_S, r->p99_steady_us, r->cpu_pct, r->ns_per_pkt);
    fflush(stdout);
}

static int case_frames(int json, double seconds, int port, int run)
{
    struct rtd_acq_config cfg;
    base_config(&cfg, port, run);
    cfg.packet_port = 0;
    cfg.source = RTD_SRC_UDP;
    cfg.width = 256;
    cfg.height = 256;
    cfg.frame_slots = 256;
    struct daemon d;
    int rc = daemon_start(&d, &cfg);
    if (rc)
        return rc;
    struct rtd_sim_frames_opts o = {.host = "127.0.0.1",
                                    .port = port + 1,
                                    .width = 256,
                                    .height = 256,
                                    .ions = 10,
                                    .rate = 10000,
                                    .duration = seconds,
                                    .dgram = 8192};
    struct rtd_sim_frames_result fr;
    uint64_t t0 = proc_cpu_ns(d.pid);
    rc = rtd_sim_frames(&o, NULL, &fr);
    uint64_t t1 = proc_cpu_ns(d.pid);
    struct snap s;
    snapshot(d.instance, "latency.frame", &s, 1);
    daemon_stop(&d);
    if (rc)
        return rc;
    double cpu = 100.0 * (double)(t1 - t0) / 1e9 / fr.seconds;
    double lost = fr.frames > s.frames ? (double)(fr.frames - s.frames) : 0;
    if (json)
        printf("{\"case\":\"frames_udp\",\"impl\":\"uring\",\"width\":256,\"height\":256,"
               "\"target_hz\":10000,\"dgram\":8192,\"seconds\":%.2f,\"sent\":%llu,"
               "\"received\":%llu,\"lost\":%.0f,\"partial\":%llu,\"frames_per_s\":%.0f,"
               "\"gb_per_s\":%.3f,\"p99_latency_us\":%.1f,\"acq_cpu_pct\":%.1f,"
               "\"sender_late\":%llu,\"median_of\":1}\n",
               fr.seconds, (unsigned long long)fr.frames, (unsigned long long)s.frames, lost,
               (unsigned long long)s.partial, (double)s.frames / fr.seconds,
               (double)s.frames * 256 * 256 * 2 / fr.seconds / 1e9, (double)s.p99_ns / 1e3, cpu,
               (unsigned long long)fr.late);
    else
        printf("frames    udp    256x256 u16 @10 kHz, 8 KiB datagrams: sent %llu recv %llu lost "
               "%.0f partial %llu  %.0f frames/s (%.2f GB/s)  p99 %.1f us  acq cpu %.1f%%\n",
               (unsigned long long)fr.frames, (unsigned long long)s.frames, lost,
               (unsigned long long)s.partial, (double)s.frames / fr.seconds,
               (double)s.frames * 256 * 256 * 2 / fr.seconds / 1e9, (double)s.p99_ns / 1e3, cpu);
    fflush(stdout);
    return 0;
}

static int case_synthetic(int json, double seconds, int port, int run)
{
    struct rtd_acq_config cfg;
    base_config(&cfg, port, run);
    cfg.packet_port = 0;
    cfg.source = RTD_SRC_SYNTHETIC;
    cfg.synthetic_rate = 10000;
    struct daemon d;
    int rc = daemon_start(&d, &cfg);
    if (rc)
        return rc;
    struct snap s0, s1;
    snapshot(d.instance, "latency.frame", &s0, 0);
    uint64_t t0 = proc_cpu_ns(d.pid), w0 = rtd_now_ns();
    usleep((useconds_t)(seconds * 1e6));
    uint64_t t1 = proc_cpu_ns(d.pid), w1 = rtd_now_ns();
    snapshot(d.instance, "latency.frame", &s1, 0);
    daemon_stop(&d);
    double secs = (double)(w1 - w0) / 1e9;
    double cpu = 100.0 * (double)(t1 - t0) / 1e9 / secs;
    double fps = (double)(s1.frames - s0.frames) / secs;
    if (json)
        printf("{\"case\":\"synthetic\",\"impl\":\"uring\",\"width\":300,\"height\":300,"
               "\"ions\":10,\"target_hz\":10000,\"seconds\":%.2f,\"frames\":%llu,"
               "\"frames_per_s\":%.0f,\"dropped\":%llu,\"acq_cpu_pct\":%.1f,\"median_of\":1}\n",
               secs, (unsigned long long)(s1.frames - s0.frames), fps,
               (unsigned long long)s1.fdropped, cpu);
    else
        printf("synthetic ring   300x300 u16, 10 ions @10 kHz: %.0f frames/s, dropped %llu, acq "
               "cpu %.1f%%\n",
               fps, (unsigned long long)s1.fdropped, cpu);
    fflush(stdout);
    return 0;
}

int rtd_bench_acq(int argc, char **argv)
{
    int json = 0, runs = 2;
    uint32_t clients = 1000, batch = 804, size = 32, max_clients = 100;
    double rate = 10000, seconds = 5, max_seconds = 3;
    const char *cases = "packets,maxrate,frames,synthetic";
    static const struct option opts[] = {{"json", no_argument, 0, 'j'},
                                         {"clients", required_argument, 0, 'c'},
                                         {"seconds", required_argument, 0, 's'},
                                         {"rate", required_argument, 0, 'r'},
                                         {"batch", required_argument, 0, 'b'},
                                         {"size", required_argument, 0, 'z'},
                                         {"runs", required_argument, 0, 'n'},
                                         {"cases", required_argument, 0, 'C'},
                                         {"max-clients", required_argument, 0, 'm'},
                                         {"max-seconds", required_argument, 0, 'M'},
                                         {"recv-buf-size", required_argument, 0, 'S'},
                                         {"recv-buf-count", required_argument, 0, 'N'},
                                         {"acq-fifo", required_argument, 0, 'F'},
                                         {"acq-cpu", required_argument, 0, 'P'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            json = 1;
            break;
        case 'c':
            clients = (uint32_t)atoi(optarg);
            break;
        case 's':
            seconds = atof(optarg);
            break;
        case 'r':
            rate = atof(optarg);
            break;
        case 'b':
            batch = (uint32_t)atoi(optarg);
            break;
        case 'z':
            size = (uint32_t)atoi(optarg);
            break;
        case 'n':
            runs = atoi(optarg);
            break;
        case 'C':
            cases = optarg;
            break;
        case 'm':
            max_clients = (uint32_t)atoi(optarg);
            break;
        case 'M':
            max_seconds = atof(optarg);
            break;
        case 'S':
            rbuf_size = (uint32_t)atoi(optarg);
            break;
        case 'N':
            rbuf_count = (uint32_t)atoi(optarg);
            break;
        case 'F':
            acq_fifo = atoi(optarg);
            break;
        case 'P':
            acq_cpu = atoi(optarg);
            break;
        case 'h':
            printf(
                "usage: rtdaq-bench acq [--json] [--clients N] [--seconds S] [--rate HZ] "
                "[--batch B] [--size S]\n"
                "                        [--runs N] [--cases packets,maxrate,frames,synthetic] "
                "[--max-clients N] [--max-seconds S]\n"
                "                        [--recv-buf-size B] [--recv-buf-count N] [--acq-fifo "
                "PRIO] [--acq-cpu N]\n"
                "defaults: 1000 clients x 10 kHz x 32 B in 804-packet batches for 5 s "
                "(--seconds 30 for the full run); packets and maxrate: --runs 2 pairs, alternating "
                "which loop goes first; maxrate 3 s per loop\n");
            return 0;
        default:
            return 2;
        }
    }
    if (!clients || !batch || !size || !(rate > 0) || !(seconds > 0) || runs < 1 ||
        runs > MAX_RUNS) {
        fprintf(stderr, "rtdaq-bench acq: bad arguments\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* Below the ephemeral range (32768..), where the senders' own sockets live. */
    int port = 12000 + 64 * (int)(getpid() % 120);
    int run = 0, rc = 0;
    if (!json)
        printf("# acq ingest on %d CPUs shared by sender and daemon (sender-bound; compare the "
               "cpu columns)\n",
               rtd_cpu_count());
    if (strstr(cases, "packets")) {
        /* Runs alternate which loop goes first: the first of a pair meets a colder machine
         * (1000 connects, page faults, the host's scheduling), which shows in the tail. */
        static const enum rtd_acq_io ios[2] = {RTD_IO_URING, RTD_IO_EPOLL};
        static const char *const names[2] = {"uring", "epoll"};
        struct pk_result res[2][MAX_RUNS];
        for (int i = 0; i < runs && !rc; i++)
            for (int j = 0; j < 2 && !rc; j++) {
                int k = (i & 1) ? 1 - j : j;
                rc = run_packets(ios[k], run++, clients, rate, batch, size, seconds, port,
                                 &res[k][i]);
                port += 2;
                if (!rc && (!json || runs == 1))
                    print_packets(json, "packets", names[k], clients, rate, batch, size,
                                  &res[k][i]);
            }
        for (int k = 0; k < 2 && !rc && runs > 1; k++) {
            double p99[MAX_RUNS], p50[MAX_RUNS], ns[MAX_RUNS], st[MAX_RUNS], lost = 0;
            for (int i = 0; i < runs; i++) {
                p99[i] = res[k][i].p99_us;
                st[i] = res[k][i].p99_steady_us;
                p50[i] = res[k][i].p50_us;
                ns[i] = res[k][i].ns_per_pkt;
                lost += res[k][i].lost;
            }
            if (json)
                printf("{\"case\":\"packets\",\"impl\":\"%s\",\"clients\":%u,\"rate_hz\":%.0f,"
                       "\"batch\":%u,\"size\":%u,\"lost\":%.0f,\"p50_latency_us\":%.1f,"
                       "\"p99_latency_us\":%.1f,\"p99_min\":%.1f,\"p99_max\":%.1f,"
                       "\"p99_steady_latency_us\":%.1f,\"p99_steady_min\":%.1f,"
                       "\"p99_steady_max\":%.1f,\"warmup_s\":%.1f,\"acq_ns_per_packet\":%.2f,"
                       "\"median_of\":%d,\"cores\":%d}\n",
                       names[k], clients, rate, batch, size, lost, median(p50, runs),
                       median(p99, runs), vmin(p99, runs), vmax(p99, runs), median(st, runs),
                       vmin(st, runs), vmax(st, runs), WARMUP_S, median(ns, runs), runs,
                       rtd_cpu_count());
            else
                printf("packets   %-6s median of %d: lost %.0f, p50 %.1f us, p99 %.1f us (min %.1f "
                       "max %.1f); after %.0f s: p99 %.1f us (min %.1f max %.1f); acq %.2f "
                       "ns/pkt\n",
                       names[k], runs, lost, median(p50, runs), median(p99, runs), vmin(p99, runs),
                       vmax(p99, runs), WARMUP_S, median(st, runs), vmin(st, runs), vmax(st, runs),
                       median(ns, runs));
        }
    }
    if (!rc && strstr(cases, "maxrate")) {
        double rx[2][MAX_RUNS], ns[2][MAX_RUNS], cpu[2][MAX_RUNS];
        static const char *const names[2] = {"uring", "epoll"};
        for (int i = 0; i < runs && !rc; i++)
            for (int j = 0; j < 2 && !rc; j++) {
                int k = (i & 1) ? 1 - j : j; /* alternate which loop goes first */
                struct pk_result r;
                rc = run_packets(k ? RTD_IO_EPOLL : RTD_IO_URING, run++, max_clients, 1e9, 804,
                                 size, max_seconds, port, &r);
                port += 2;
                rx[k][i] = r.rate;
                ns[k][i] = r.ns_per_pkt;
                cpu[k][i] = r.cpu_pct;
                if (!rc && !json)
                    print_packets(0, "maxrate", names[k], max_clients, 0, 804, size, &r);
            }
        for (int k = 0; k < 2 && !rc; k++) {
            double m = median(rx[k], runs), mo = median(rx[1 - k], runs);
            double n = median(ns[k], runs), no = median(ns[1 - k], runs);
            if (json)
                printf("{\"case\":\"maxrate\",\"impl\":\"%s\",\"clients\":%u,\"batch\":804,"
                       "\"size\":%u,\"packets_per_s\":%.0f,\"min\":%.0f,\"max\":%.0f,"
                       "\"gb_per_s\":%.3f,\"acq_cpu_pct\":%.1f,\"acq_ns_per_packet\":%.2f,"
                       "\"ratio_rate_vs_other\":%.3f,\"ratio_cpu_per_packet_vs_other\":%.3f,"
                       "\"median_of\":%d}\n",
                       names[k], max_clients, size, m, vmin(rx[k], runs), vmax(rx[k], runs),
                       m * (32.0 + size) / 1e9, median(cpu[k], runs), n, mo > 0 ? m / mo : 0,
                       no > 0 ? n / no : 0, runs);
            else
                printf("maxrate   %-6s median of %d: %.2f Mpkt/s (min %.2f max %.2f, %.2f GB/s), "
                       "acq %.2f ns/pkt; vs %s: rate x%.2f, cpu/pkt x%.2f\n",
                       names[k], runs, m / 1e6, vmin(rx[k], runs) / 1e6, vmax(rx[k], runs) / 1e6,
                       m * (32.0 + size) / 1e9, n, names[1 - k], mo > 0 ? m / mo : 0,
                       no > 0 ? n / no : 0);
        }
    }
    if (!rc && strstr(cases, "frames")) {
        rc = case_frames(json, seconds, port, run++);
        port += 2;
    }
    if (!rc && strstr(cases, "synthetic"))
        rc = case_synthetic(json, seconds < 3 ? seconds : 3, port, run++);
    if (rc)
        fprintf(stderr, "rtdaq-bench acq: %s\n", strerror(-rc));
    return rc ? 1 : 0;
}
