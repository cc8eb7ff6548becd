/* SPDX-License-Identifier: MIT */
/*
 * `rtdaq run`: the one-command system. Starts rtdaq-acq (synthetic camera at
 * 10 kHz), rtdaq-proc (fit workers, optionally streaming wavelets), rtdaq-ctl
 * (ZeroMQ) and the built-in packet simulator as separate processes, supervises
 * them (a process that dies unexpectedly is restarted with back-off), prints a
 * live one-line summary every second from the stats segments, and on Ctrl-C,
 * SIGTERM or --duration stops everything in reverse order and prints a final
 * report.
 *
 * Readiness and liveness use the systemd notification protocol itself: the
 * launcher binds an abstract AF_UNIX datagram socket and hands it to the
 * children as $NOTIFY_SOCKET, so the same sd_notify() calls that systemd sees
 * in a deployment tell the launcher READY=1, STATUS= and WATCHDOG=1 here. A
 * child that stops pinging its watchdog is killed and restarted.
 *
 * --single runs the same daemons as threads of this process instead (their
 * library entries rtd_acq_run, rtd_proc_main with worker threads,
 * rtd_ctl_main, rtd_sim_packets), started one after the other on the same
 * READY=1 notifications, stopped in reverse order through their stop flags.
 * Nothing is restarted there: a thread that ends early ends the run.
 */
#include "rtdaq_cli.h"

#include "ctl_internal.h"
#include "rtd_acq.h"
#include "rtd_config.h"
#include "rtd_procd.h"
#include "rtd_shm.h"
#include "rtd_sim.h"
#include "rtd_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

enum { CH_ACQ, CH_PROC, CH_CTL, CH_SIM, CH_N };

struct child {
    const char *name; /* acq, proc, ctl, sim */
    char path[PATH_MAX];
    char *argv[64];
    int argc;
    pid_t pid;
    int enabled;
    int ready;
    int restarts;
    int essential;    /* restart when it dies; sim is allowed to finish */
    int housekeeping; /* off the hot path: runs on hk_cpus (ctl, sim) */
    int hot;          /* the hot path (acq, proc): gets --nice */
    uint64_t started_ns, last_ping_ns, restart_at_ns;
};

struct run_opts {
    const char *config;
    const char *instance;
    double duration;
    const char *workers;
    double rate;
    double frames;
    int frame_slots;
    int ions;
    int sim_clients;
    double sim_rate;
    int sim_batch;
    int no_sim;
    int packet_port, frame_port;
    const char *pub, *ctl;
    const char *record;
    const char *mode;
    int json, quiet;
    int watchdog_s;
    int single;
    int nice; /* of acq and proc (the hot path); 0 = leave as inherited */
};

static atomic_int run_stop;
/* Cores for the processes off the hot path: every allowed core but the fit workers'. */
static cpu_set_t hk_cpus;
static int hk_pin;
static char **volatile run_argv;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store_explicit(&run_stop, 1, memory_order_relaxed);
}

/*
 * Find a sibling program: next to this binary when installed (bin/), or in the
 * build tree's folder for it (tools/../acq/rtdaq-acq), else on $PATH.
 */
static int find_program(const char *name, const char *subdir, char *out, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = 0;
            int len = snprintf(out, cap, "%s/%s", self, name);
            if (len > 0 && (size_t)len < cap && access(out, X_OK) == 0)
                return 0;
            len = snprintf(out, cap, "%s/../%s/%s", self, subdir, name);
            if (len > 0 && (size_t)len < cap && access(out, X_OK) == 0)
                return 0;
        }
    }
    const char *path = getenv("PATH");
    if (path) {
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", path);
        for (char *save, *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
            int len = snprintf(out, cap, "%s/%s", d, name);
            if (len > 0 && (size_t)len < cap && access(out, X_OK) == 0)
                return 0;
        }
    }
    return -ENOENT;
}

static void child_arg(struct child *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void child_arg(struct child *c, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (c->argc < (int)(sizeof c->argv / sizeof c->argv[0]) - 1) {
        c->argv[c->argc++] = strdup(buf);
        c->argv[c->argc] = NULL;
    }
}

static int notify_fd = -1;
static char notify_name[108];

/* Abstract-namespace socket: nothing to clean up in the file system if we die. */
static int notify_open(void)
{
    notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (notify_fd < 0)
        return -errno;
    int one = 1;
    setsockopt(notify_fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(notify_name, sizeof notify_name, "@rtdaq-run-%d", (int)getpid());
    size_t len = strlen(notify_name);
    memcpy(sa.sun_path, notify_name, len);
    sa.sun_path[0] = 0;
    if (bind(notify_fd, (struct sockaddr *)&sa,
             (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) != 0)
        return -errno;
    return 0;
}

static int child_start(struct child *c, const struct run_opts *o)
{
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        /* The launcher owns Ctrl-C: children stop when it tells them, in order. */
        signal(SIGINT, SIG_IGN);
        setenv("NOTIFY_SOCKET", notify_name, 1);
        char buf[32];
        snprintf(buf, sizeof buf, "%d", (int)getpid());
        setenv("WATCHDOG_PID", buf, 1);
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)o->watchdog_s * 1000000ull);
        setenv("WATCHDOG_USEC", buf, 1);
        /* ctl and the simulator would otherwise be scheduled onto a fit worker's core and
         * preempt it for whole time slices: at 10 kHz that is frames the ring must absorb. */
        if (c->housekeeping && hk_pin && sched_setaffinity(0, sizeof hk_cpus, &hk_cpus) != 0)
            fprintf(stderr, "rtdaq run: %s: cannot set its cores: %s (running unpinned)\n", c->name,
                    strerror(errno));
        /* The hot path outranks whatever else the machine runs at nice 0 (a build, a
         * notebook): at -10 its share of a contended core is ~90 %, and it needs ~60 %. */
        if (c->hot && o->nice && setpriority(PRIO_PROCESS, 0, o->nice) != 0)
            fprintf(stderr,
                    "rtdaq run: %s: cannot set nice %d: %s (running at the inherited priority; "
                    "needs root or CAP_SYS_NICE)\n",
                    c->name, o->nice, strerror(errno));
        execv(c->path, c->argv);
        fprintf(stderr, "rtdaq run: exec %s: %s\n", c->path, strerror(errno));
        _exit(127);
    }
    c->pid = pid;
    c->ready = 0;
    c->started_ns = c->last_ping_ns = rtd_now_ns();
    return 0;
}

static struct child *child_by_pid(struct child *ch, pid_t pid)
{
    for (int i = 0; i < CH_N; i++)
        if (ch[i].enabled && ch[i].pid == pid)
            return &ch[i];
    return NULL;
}

/* Drain sd_notify datagrams; the sender is identified by SCM_CREDENTIALS. */
static void notify_poll(struct child *ch, int quiet)
{
    for (;;) {
        char buf[1024];
        union {
            struct cmsghdr h;
            char b[CMSG_SPACE(sizeof(struct ucred))];
        } cm;
        struct iovec iov = {buf, sizeof buf - 1};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &cm, .msg_controllen = sizeof cm};
        ssize_t n = recvmsg(notify_fd, &mh, MSG_DONTWAIT);
        if (n <= 0)
            return;
        buf[n] = 0;
        pid_t pid = 0;
        for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h))
            if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_CREDENTIALS) {
                struct ucred uc;
                memcpy(&uc, CMSG_DATA(h), sizeof uc);
                pid = uc.pid;
            }
        struct child *c = child_by_pid(ch, pid);
        if (!c)
            continue;
        c->last_ping_ns = rtd_now_ns();
        if (strstr(buf, "READY=1") && !c->ready) {
            c->ready = 1;
            if (!quiet)
                fprintf(stderr, "rtdaq run: %s ready (pid %d)\n", c->name, (int)c->pid);
        }
    }
}

/* Wait until a child said READY=1, or died, or timeout. */
static int wait_ready(struct child *ch, struct child *c, double timeout_s, int quiet)
{
    uint64_t end = rtd_now_ns() + (uint64_t)(timeout_s * 1e9);
    while (!c->ready && rtd_now_ns() < end && !atomic_load(&run_stop)) {
        notify_poll(ch, quiet);
        int st;
        if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
            c->pid = 0;
            return -ECHILD;
        }
        usleep(10000);
    }
    return c->ready ? 0 : -ETIMEDOUT;
}

/* ---- the live summary, read straight from the stats segments ------------- */

/*
 * The run's accounting (docs/operate.md): every frame the camera produced is
 * published into the frames ring, dropped by acq for a named reason, or held
 * back by the rate limit; every published frame is processed, lost (a dead
 * consumer's), or still waiting at the moment of the snapshot. Packets and
 * results have their own drop counters, never mixed into the frames'.
 */
struct snapshot {
    uint64_t frames; /* published into the frames ring */
    uint64_t packets, fits, processed, lost;
    uint64_t never_offered; /* published before the fit workers' group existed */
    uint64_t dropped;       /* acq's frames.dropped: the sum of the reasons below */
    uint64_t ring_full, camera_skipped, partial, too_large;
    uint64_t rate_limited;
    uint64_t packets_dropped, results_dropped;
    uint64_t rec_records, rec_dropped;
    uint64_t lat_buckets[RTD_HIST_BUCKETS];
    int procs;
};

struct snap_ctx {
    struct snapshot *s;
    const char *process;
};

static void snap_counter(const char *label, enum rtd_counter_kind kind, uint64_t v, void *arg)
{
    struct snap_ctx *c = arg;
    if (kind != RTD_COUNTER)
        return;
    int acq = !strcmp(c->process, "acq");
    int proc = !strncmp(c->process, "proc", 4);
    static const struct {
        int acq;
        const char *label;
        size_t off;
    } map[] = {
        {1, "packets.rx", offsetof(struct snapshot, packets)},
        {1, "frames.dropped", offsetof(struct snapshot, dropped)},
        {1, "ring.frames_dropped", offsetof(struct snapshot, ring_full)},
        {1, "frames.camera_skipped", offsetof(struct snapshot, camera_skipped)},
        {1, "frames.dropped_partial", offsetof(struct snapshot, partial)},
        {1, "frames.too_large", offsetof(struct snapshot, too_large)},
        {1, "frames.rate_limited", offsetof(struct snapshot, rate_limited)},
        {1, "ring.dropped", offsetof(struct snapshot, packets_dropped)},
        {1, "record.records", offsetof(struct snapshot, rec_records)},
        {1, "record.dropped", offsetof(struct snapshot, rec_dropped)},
        {0, "fits.converged", offsetof(struct snapshot, fits)},
        {0, "fits.failed", offsetof(struct snapshot, fits)},
        {0, "frames.processed", offsetof(struct snapshot, processed)},
        {0, "results.dropped", offsetof(struct snapshot, results_dropped)},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if ((map[i].acq ? acq : proc) && !strcmp(label, map[i].label))
            *(uint64_t *)(void *)((char *)c->s + map[i].off) += v;
}

static void snap_hist(const char *label, const uint64_t *b, void *arg)
{
    struct snap_ctx *c = arg;
    if (strncmp(c->process, "proc", 4) || strncmp(label, "latency", 7))
        return;
    for (int i = 0; i < RTD_HIST_BUCKETS; i++)
        c->s->lat_buckets[i] += b[i];
}

struct list_ctx {
    const char *instance;
    struct snapshot *s;
    const char *dead_prefix; /* non-NULL: only dead creators' stats.<dead_prefix>*, unlinked */
};

static void snap_segment(const char *ring, void *arg)
{
    struct list_ctx *l = arg;
    if (strncmp(ring, "stats.", 6))
        return;
    if (l->dead_prefix) {
        struct rtd_seg_hdr id;
        if (strncmp(ring + 6, l->dead_prefix, strlen(l->dead_prefix)) ||
            rtd_shm_identity(l->instance, ring, &id) != 0 || rtd_shm_pid_alive(id.creator_pid))
            return;
    }
    struct rtd_stats_view *v;
    if (rtd_stats_open(&v, l->instance, ring + 6) != 0)
        return;
    struct snap_ctx c = {l->s, ring + 6};
    rtd_stats_view_foreach(v, snap_counter, &c);
    rtd_stats_view_foreach_hist(v, snap_hist, &c);
    if (!strncmp(ring + 6, "proc", 4))
        l->s->procs++;
    rtd_stats_view_close(v);
    char name[128];
    if (l->dead_prefix && rtd_shm_name(name, sizeof name, l->instance, ring) == 0)
        shm_unlink(name); /* counted in `carried` now: never twice */
}

static void snap_add(struct snapshot *a, const struct snapshot *b)
{
    /* Every field before lat_buckets is a uint64_t count. */
    uint64_t *x = (uint64_t *)(void *)a;
    const uint64_t *y = (const uint64_t *)(const void *)b;
    for (size_t i = 0; i < offsetof(struct snapshot, lat_buckets) / sizeof(uint64_t); i++)
        x[i] += y[i];
    for (int i = 0; i < RTD_HIST_BUCKETS; i++)
        a->lat_buckets[i] += b->lat_buckets[i];
}

/* p-th percentile of the latency recorded between two snapshots (a recent window). */
static uint64_t window_percentile(const struct snapshot *now, const struct snapshot *then, double p)
{
    uint64_t d[RTD_HIST_BUCKETS];
    for (int i = 0; i < RTD_HIST_BUCKETS; i++)
        d[i] = now->lat_buckets[i] >= then->lat_buckets[i]
                   ? now->lat_buckets[i] - then->lat_buckets[i]
                   : now->lat_buckets[i];
    return rtd_hist_percentile(d, p);
}

/*
 * Counters of processes the launcher restarted. A restarted daemon starts its
 * stats segments (and acq its rings, with the groups' lost_dead) from zero;
 * without this the final report would lose everything the dead one counted.
 */
static struct snapshot carried;

/*
 * From the frames ring: frames published (exact at any moment; acq's frames.rx
 * counter is refreshed every 100 ms, which skews a report by up to 1000 frames at
 * 10 kHz) and frames a killed worker held or that no live member could take.
 */
static void ring_counts(const char *instance, struct snapshot *s)
{
    struct rtd_ring *r;
    if (rtd_ring_attach_readonly(&r, instance, "frames") == 0) {
        const struct rtd_ring_hdr *h = rtd_ring_header(r);
        s->frames += atomic_load_explicit(&h->published_records, memory_order_relaxed);
        for (int g = 0; g < RTD_MAX_GROUPS; g++) {
            const struct rtd_group_slot *gs = &h->groups[g];
            if (atomic_load_explicit(&gs->state, memory_order_acquire) != RTD_GROUP_ACTIVE)
                continue;
            s->lost += atomic_load_explicit(&gs->lost_dead, memory_order_relaxed);
            /* The fit workers' group (one per frames ring under rtdaq run). */
            if (gs->consumer >= 0 && gs->consumer < RTD_MAX_CONSUMERS)
                s->never_offered += h->consumers[gs->consumer].start;
        }
        rtd_ring_close(r);
    }
}

/* Before restarting a dead daemon: carry what it (and, for proc, its workers) counted. */
static void carry_dead(const char *instance, const char *process)
{
    struct snapshot s;
    memset(&s, 0, sizeof s);
    struct list_ctx l = {instance, &s, process};
    rtd_shm_list(instance, snap_segment, &l);
    if (!strcmp(process, "acq"))
        ring_counts(instance, &s); /* the new acq makes new rings */
    snap_add(&carried, &s);
}

static void snapshot_take(const char *instance, struct snapshot *s)
{
    memset(s, 0, sizeof *s);
    struct list_ctx l = {instance, s, NULL};
    rtd_shm_list(instance, snap_segment, &l);
    ring_counts(instance, s);
    snap_add(s, &carried);
}

static double rate(uint64_t now, uint64_t then, double dt)
{
    return dt > 0 && now >= then ? (double)(now - then) / dt : 0.0;
}

/* ---- options ------------------------------------------------------------ */

static const char run_usage[] =
    "usage: rtdaq run [options]\n"
    "Start acq (synthetic camera), proc workers, ctl and a packet simulator as supervised\n"
    "processes, print a live summary every second and a final report at the end.\n"
    "  --config FILE        configuration file (keys of [run] are these options)\n"
    "  --check-config       validate the configuration of every process and exit\n"
    "  --instance NAME      shared-memory instance (default: $RTDAQ_INSTANCE or 'default')\n"
    "  --duration S         stop after S seconds (default: run until Ctrl-C)\n"
    "  --workers N|auto     proc workers (auto = cores minus the ingest core)\n"
    "  --mode fits|wavelet|both   what proc computes (default both)\n"
    "  --rate HZ            synthetic camera frame rate (default 10000)\n"
    "  --ions N             ions per synthetic frame (default 10)\n"
    "  --frames N           stop the camera after N frames (the rest keeps running)\n"
    "  --frame-slots N      frame ring slots, a power of two (default 1024: ~100 ms at 10 kHz)\n"
    "  --sim-clients N      simulated sensor clients (default 16; --no-sim for none)\n"
    "  --sim-rate HZ        packets/s per client (default 1000)\n"
    "  --sim-batch B        packets per write (default 10)\n"
    "  --packet-port P --frame-port P --pub EP --ctl EP   endpoints (defaults 7000, 7001,\n"
    "                       tcp://127.0.0.1:5556, tcp://127.0.0.1:5557)\n"
    "  --record DIR         record the rings to DIR\n"
    "  --watchdog S         restart a child that sends no watchdog ping for S s (default 10)\n"
    "  --nice N             nice value of acq and proc, -20..19 (default -10; 0 = inherit)\n"
    "  --single             one process: every component as a thread (no restarts)\n"
    "  --json               final report as one JSON object on stdout\n"
    "  --quiet              no live summary\n";

static const struct option run_long[] = {{"instance", required_argument, 0, 'I'},
                                         {"duration", required_argument, 0, 'd'},
                                         {"workers", required_argument, 0, 'w'},
                                         {"rate", required_argument, 0, 'r'},
                                         {"ions", required_argument, 0, 'i'},
                                         {"sim-clients", required_argument, 0, 'c'},
                                         {"sim-rate", required_argument, 0, 'R'},
                                         {"sim-batch", required_argument, 0, 'B'},
                                         {"no-sim", no_argument, 0, 'n'},
                                         {"packet-port", required_argument, 0, 'p'},
                                         {"frame-port", required_argument, 0, 'f'},
                                         {"pub", required_argument, 0, 'P'},
                                         {"ctl", required_argument, 0, 'C'},
                                         {"record", required_argument, 0, 'o'},
                                         {"mode", required_argument, 0, 'm'},
                                         {"json", no_argument, 0, 'j'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"watchdog", required_argument, 0, 'W'},
                                         {"frames", required_argument, 0, 'N'},
                                         {"frame-slots", required_argument, 0, 'S'},
                                         {"nice", required_argument, 0, 'Z'},
                                         {"single", no_argument, 0, 'T'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};

static int parse_num(const char *key, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || d < lo || d > hi) {
        fprintf(stderr, "rtdaq run: --%s: '%s' is not a number in [%g, %g]\n", key, v, lo, hi);
        return -EINVAL;
    }
    *out = d;
    return 0;
}

static int run_parse(int argc, char **argv, struct run_opts *o)
{
    *o = (struct run_opts){.duration = 0,
                           .workers = "auto",
                           .rate = 10000,
                           .ions = 10,
                           .sim_clients = 16,
                           .sim_rate = 1000,
                           .sim_batch = 10,
                           .packet_port = 7000,
                           .frame_port = 7001,
                           .pub = "tcp://127.0.0.1:5556",
                           .ctl = "tcp://127.0.0.1:5557",
                           .mode = "both",
                           .watchdog_s = 10,
                           .frame_slots = 1024,
                           .nice = -10};
    int c;
    double d;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", run_long, NULL)) != -1) {
        const char *key = NULL;
        for (const struct option *lo = run_long; lo->name; lo++)
            if (lo->val == c)
                key = lo->name;
        switch (c) {
        case 'I':
            o->instance = optarg;
            break;
        case 'd':
            if (parse_num(key, optarg, 0, 1e9, &o->duration))
                return -EINVAL;
            break;
        case 'w':
            if (strcmp(optarg, "auto") && (parse_num(key, optarg, 1, 64, &d)))
                return -EINVAL;
            o->workers = optarg;
            break;
        case 'r':
            if (parse_num(key, optarg, 1, 1e6, &o->rate))
                return -EINVAL;
            break;
        case 'i':
            if (parse_num(key, optarg, 0, 1000, &d))
                return -EINVAL;
            o->ions = (int)d;
            break;
        case 'c':
            if (parse_num(key, optarg, 0, 100000, &d))
                return -EINVAL;
            o->sim_clients = (int)d;
            break;
        case 'R':
            if (parse_num(key, optarg, 1, 1e8, &o->sim_rate))
                return -EINVAL;
            break;
        case 'B':
            if (parse_num(key, optarg, 1, 100000, &d))
                return -EINVAL;
            o->sim_batch = (int)d;
            break;
        case 'N':
            if (parse_num(key, optarg, 0, 1e15, &o->frames))
                return -EINVAL;
            break;
        case 'Z':
            if (parse_num(key, optarg, -20, 19, &d))
                return -EINVAL;
            o->nice = (int)d;
            break;
        case 'S':
            if (parse_num(key, optarg, 2, 65536, &d) || ((int)d & ((int)d - 1))) {
                fprintf(stderr, "rtdaq run: --frame-slots: want a power of two in [2, 65536]\n");
                return -EINVAL;
            }
            o->frame_slots = (int)d;
            break;
        case 'n':
            o->no_sim = 1;
            break;
        case 'p':
            if (parse_num(key, optarg, 1, 65535, &d))
                return -EINVAL;
            o->packet_port = (int)d;
            break;
        case 'f':
            if (parse_num(key, optarg, 1, 65535, &d))
                return -EINVAL;
            o->frame_port = (int)d;
            break;
        case 'P':
            o->pub = optarg;
            break;
        case 'C':
            o->ctl = optarg;
            break;
        case 'o':
            o->record = optarg;
            break;
        case 'm':
            if (strcmp(optarg, "fits") && strcmp(optarg, "wavelet") && strcmp(optarg, "both")) {
                fprintf(stderr, "rtdaq run: --mode: '%s' is not fits, wavelet or both\n", optarg);
                return -EINVAL;
            }
            o->mode = optarg;
            break;
        case 'j':
            o->json = 1;
            break;
        case 'q':
            o->quiet = 1;
            break;
        case 'T':
            o->single = 1;
            break;
        case 'W':
            if (parse_num(key, optarg, 1, 3600, &d))
                return -EINVAL;
            o->watchdog_s = (int)d;
            break;
        case 'h':
            fputs(run_usage, stdout);
            exit(0);
        default:
            fputs(run_usage, stderr);
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rtdaq run: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    return 0;
}

/*
 * The fit workers take rtdaq-proc's default cores (rtd_pick_cpu, from the second allowed
 * core on); ctl and the simulator get the rest, which always includes the ingest core.
 * With every core but the ingest core taken by a fit worker (--workers auto) that is the
 * ingest core alone: acq's loop sleeps between frames, a fit worker does not.
 */
static void housekeeping_cpus(const struct run_opts *o)
{
    hk_pin = 0;
    int n = rtd_cpu_count();
    if (o->single || n < 2 || !strcmp(o->mode, "wavelet") ||
        sched_getaffinity(0, sizeof hk_cpus, &hk_cpus) != 0)
        return;
    int fit = strcmp(o->workers, "auto") ? atoi(o->workers) : n - 1;
    const int first = rtd_pick_cpu(-1, 1);
    for (int i = 0; i < fit && i < n - 1; i++)
        CPU_CLR(rtd_pick_cpu(first, i), &hk_cpus);
    hk_pin = fit >= 1 && CPU_COUNT(&hk_cpus) > 0;
}

/* Build each child's argv; the config file goes to every child so [acq] etc. apply. */
static int children_init(struct child *ch, const struct run_opts *o, const char *instance)
{
    static const char *names[CH_N] = {"acq", "proc", "ctl", "sim"};
    static const char *progs[CH_N] = {"rtdaq-acq", "rtdaq-proc", "rtdaq-ctl", "rtdaq"};
    static const char *dirs[CH_N] = {"acq", "proc/daemon", "ctl", "tools"};
    for (int i = 0; i < CH_N; i++) {
        struct child *c = &ch[i];
        memset(c, 0, sizeof *c);
        c->name = names[i];
        c->enabled = i != CH_SIM || (!o->no_sim && o->sim_clients > 0);
        c->essential = i != CH_SIM;
        if (!c->enabled)
            continue;
        if (!o->single && find_program(progs[i], dirs[i], c->path, sizeof c->path)) {
            fprintf(stderr, "rtdaq run: cannot find %s next to rtdaq or on $PATH\n", progs[i]);
            return -ENOENT;
        }
        child_arg(c, "%s", progs[i]);
        if (i == CH_SIM) {
            child_arg(c, "sim");
            child_arg(c, "packets");
        }
        if (o->config && i != CH_SIM)
            child_arg(c, "--config=%s", o->config);
        if (i != CH_SIM)
            child_arg(c, "--instance=%s", instance);
    }
    housekeeping_cpus(o);
    ch[CH_CTL].housekeeping = ch[CH_SIM].housekeeping = 1;
    ch[CH_ACQ].hot = ch[CH_PROC].hot = 1;
    child_arg(&ch[CH_ACQ], "--source=synthetic");
    /* The ingest loop owns core 0 and the fit workers start at core 1 (rtdaq-proc's default).
     * 1024 slots hold ~100 ms of 10 kHz frames: a VM's ms-long preemptions of a worker are
     * absorbed instead of dropped. */
    if (rtd_cpu_count() >= 2)
        child_arg(&ch[CH_ACQ], "--cpu=0");
    child_arg(&ch[CH_ACQ], "--frame-slots=%d", o->frame_slots);
    child_arg(&ch[CH_ACQ], "--synthetic-rate=%g", o->rate);
    child_arg(&ch[CH_ACQ], "--ions=%d", o->ions);
    child_arg(&ch[CH_ACQ], "--packet-port=%d", o->packet_port);
    child_arg(&ch[CH_ACQ], "--frame-port=%d", o->frame_port);
    if (o->frames > 0)
        child_arg(&ch[CH_ACQ], "--frames=%.0f", o->frames);
    if (o->record)
        child_arg(&ch[CH_ACQ], "--record=%s", o->record);
    child_arg(&ch[CH_PROC], "--workers=%s", o->workers);
    child_arg(&ch[CH_PROC], "--mode=%s", o->mode);
    child_arg(&ch[CH_CTL], "--pub=%s", o->pub);
    child_arg(&ch[CH_CTL], "--ctl=%s", o->ctl);
    if (ch[CH_SIM].enabled) {
        child_arg(&ch[CH_SIM], "--clients=%d", o->sim_clients);
        child_arg(&ch[CH_SIM], "--rate=%g", o->sim_rate);
        child_arg(&ch[CH_SIM], "--batch=%d", o->sim_batch);
        child_arg(&ch[CH_SIM], "--port=%d", o->packet_port);
        child_arg(&ch[CH_SIM], "--duration=%g", o->duration > 0 ? o->duration + 5 : 1e6);
    }
    return 0;
}

/* Validate every process's configuration before anything starts. */
static int check_configs(struct child *ch)
{
    for (int i = 0; i < CH_SIM; i++) {
        if (!ch[i].enabled)
            continue;
        pid_t pid = fork();
        if (pid == 0) {
            ch[i].argv[ch[i].argc] = "--check-config";
            ch[i].argv[ch[i].argc + 1] = NULL;
            int devnull = open("/dev/null", O_WRONLY);
            if (devnull >= 0)
                dup2(devnull, STDOUT_FILENO);
            execv(ch[i].path, ch[i].argv);
            _exit(127);
        }
        int st = 0;
        if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "rtdaq run: the configuration of %s is invalid (see above)\n",
                    ch[i].name);
            return -EINVAL;
        }
    }
    return 0;
}

static void stop_child(struct child *c, double timeout_s)
{
    if (!c->enabled || c->pid <= 0)
        return;
    kill(c->pid, SIGTERM);
    uint64_t end = rtd_now_ns() + (uint64_t)(timeout_s * 1e9);
    int st;
    while (rtd_now_ns() < end) {
        if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
            c->pid = 0;
            return;
        }
        usleep(10000);
    }
    fprintf(stderr, "rtdaq run: %s did not stop in %.0f s: killing it\n", c->name, timeout_s);
    kill(c->pid, SIGKILL);
    waitpid(c->pid, &st, 0);
    c->pid = 0;
}

/* ---- --single: the same daemons as threads of this process ------------- */

struct single {
    struct child *ch;
    pthread_t th[CH_N];
    int started[CH_N];
    atomic_int done[CH_N];
    int rc[CH_N];
    volatile sig_atomic_t acq_stop, ctl_stop, sim_stop;
    struct rtd_acq_config acq;
    struct rtd_sim_packets_opts sim;
    struct rtd_sim_packets_result sim_res;
};

static struct single sg;

static void *single_thread(void *arg)
{
    const int i = (int)(intptr_t)arg;
    struct child *c = &sg.ch[i];
    int rc = 0;
    switch (i) {
    case CH_ACQ:
        rc = rtd_acq_run(&sg.acq, &sg.acq_stop) ? 1 : 0;
        break;
    case CH_PROC:
        rc = rtd_proc_main(c->argc, c->argv, 1);
        break;
    case CH_CTL:
        rc = rtd_ctl_main(c->argc, c->argv, &sg.ctl_stop);
        break;
    default:
        rc = rtd_sim_packets(&sg.sim, &sg.sim_stop, &sg.sim_res) ? 1 : 0;
        break;
    }
    sg.rc[i] = rc;
    atomic_store(&sg.done[i], 1);
    return NULL;
}

/* Drain the notification socket; 1 when a READY=1 came (every sender is this process). */
static int single_drain(void)
{
    int ready = 0;
    char buf[1024];
    ssize_t n;
    while ((n = recv(notify_fd, buf, sizeof buf - 1, MSG_DONTWAIT)) > 0) {
        buf[n] = 0;
        ready |= strstr(buf, "READY=1") != NULL;
    }
    return ready;
}

static int single_start_one(int i, double timeout_s, int quiet)
{
    /* Ctrl-C and SIGTERM go to the launcher's thread only; it stops the others in order. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = pthread_create(&sg.th[i], NULL, single_thread, (void *)(intptr_t)i);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc)
        return -rc;
    sg.started[i] = 1;
    if (i == CH_SIM)
        return 0;
    /* One component starts at a time, so the next READY=1 is this one's. */
    uint64_t end = rtd_now_ns() + (uint64_t)(timeout_s * 1e9);
    while (rtd_now_ns() < end && !atomic_load(&run_stop)) {
        if (single_drain()) {
            if (!quiet)
                fprintf(stderr, "rtdaq run: %s ready (thread)\n", sg.ch[i].name);
            return 0;
        }
        if (atomic_load(&sg.done[i]))
            return -ECHILD;
        usleep(10000);
    }
    return -ETIMEDOUT;
}

static int single_init(struct child *ch, const struct run_opts *o)
{
    memset(&sg, 0, sizeof sg);
    sg.ch = ch;
    rtd_acq_config_defaults(&sg.acq);
    if (rtd_acq_config_parse(&sg.acq, ch[CH_ACQ].argc, ch[CH_ACQ].argv))
        return -EINVAL;
    sg.sim = (struct rtd_sim_packets_opts){.host = "127.0.0.1",
                                           .port = o->packet_port,
                                           .clients = (uint32_t)o->sim_clients,
                                           .rate = o->sim_rate,
                                           .batch = (uint32_t)o->sim_batch,
                                           .size = 32,
                                           .duration = 1e9};
    return 0;
}

static int single_start(const struct run_opts *o)
{
    /* The daemons' sd_notify() reaches the launcher's socket, as a child's would. */
    setenv("NOTIFY_SOCKET", notify_name, 1);
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    static const int order[CH_N] = {CH_ACQ, CH_PROC, CH_CTL, CH_SIM};
    for (int k = 0; k < CH_N && !atomic_load(&run_stop); k++) {
        const int i = order[k];
        if (!sg.ch[i].enabled)
            continue;
        int rc = single_start_one(i, 15.0, o->quiet);
        if (rc) {
            fprintf(stderr, "rtdaq run: %s %s\n", sg.ch[i].name,
                    rc == -ECHILD      ? "ended during start-up (see its messages above)"
                    : rc == -ETIMEDOUT ? "did not report ready within 15 s"
                                       : "could not start");
            return RTD_EXIT_FAIL;
        }
    }
    return RTD_EXIT_OK;
}

/* An essential component whose thread ended stops the run (nothing restarts in-process). */
static int single_check(int quiet)
{
    single_drain();
    for (int i = 0; i < CH_SIM; i++)
        if (sg.started[i] && atomic_load(&sg.done[i])) {
            fprintf(stderr, "\nrtdaq run: %s ended (status %d): stopping\n", sg.ch[i].name,
                    sg.rc[i]);
            return sg.rc[i] ? RTD_EXIT_FAIL : RTD_EXIT_OK;
        }
    if (sg.started[CH_SIM] && atomic_load(&sg.done[CH_SIM]) && !quiet) {
        fprintf(stderr, "\nrtdaq run: sim finished\n");
        sg.started[CH_SIM] = 2; /* said once; still joined at the end */
    }
    return -1;
}

static int single_join(int i, double timeout_s)
{
    if (!sg.started[i])
        return 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)timeout_s;
    int rc = pthread_timedjoin_np(sg.th[i], NULL, &ts);
    if (rc) {
        fprintf(stderr, "rtdaq run: %s did not stop in %.0f s\n", sg.ch[i].name, timeout_s);
        return -rc;
    }
    sg.started[i] = 0;
    return sg.rc[i] && i != CH_SIM ? -EIO : 0;
}

/* Reverse order: the simulator first, acq (the rings' creator) last. */
static int single_stop(void)
{
    int bad = 0;
    sg.sim_stop = 1;
    bad |= single_join(CH_SIM, 5) != 0;
    sg.ctl_stop = 1;
    bad |= single_join(CH_CTL, 10) != 0;
    rtd_proc_request_stop();
    bad |= single_join(CH_PROC, 10) != 0;
    sg.acq_stop = 1;
    bad |= single_join(CH_ACQ, 10) != 0;
    single_drain();
    return bad ? RTD_EXIT_FAIL : RTD_EXIT_OK;
}

static void count_left(const char *ring, void *arg)
{
    (void)ring;
    (*(int *)arg)++;
}

/*
 * One `rtdaq run` per instance: an flock on /dev/shm/rtdaq-run.<instance>.lock
 * (outside the instance's segment names, so no tool mistakes it for a ring),
 * held until exit; the kernel drops it when we die, so a crash never leaves a
 * stale lock. The holder's pid is written in it for the message. -EBUSY with
 * *holder set when another run holds it.
 */
static int run_lock(const char *instance, pid_t *holder)
{
    char name[128];
    snprintf(name, sizeof name, "/rtdaq-run.%s.lock", instance);
    int fd = shm_open(name, O_RDWR | O_CREAT | O_CLOEXEC, 0660);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        char buf[32] = "";
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        *holder = n > 0 ? (pid_t)atoi(buf) : 0;
        close(fd);
        return e == EWOULDBLOCK ? -EBUSY : -e;
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
        /* The lock holds without the pid; only the refusal message loses it. */
    }
    return 0; /* fd stays open (and locked) until exit */
}

int rtd_cmd_run(int argc, char **argv)
{
    char err[512];
    if (rtd_config_argv("run", run_long, &argc, &argv, err, sizeof err)) {
        fprintf(stderr, "rtdaq run: %s\n", err);
        return RTD_EXIT_USAGE;
    }
    run_argv = argv; /* lives until exit (rtd_config_argv's contract); reachable for LSan */
    struct run_opts o;
    if (run_parse(argc, argv, &o))
        return RTD_EXIT_USAGE;
    o.config = rtd_config_path();
    const char *instance = rtd_instance_name(o.instance);
    char segname[128];
    if (rtd_shm_name(segname, sizeof segname, instance, "stats")) {
        fprintf(stderr, "rtdaq run: invalid instance name '%s'\n", instance);
        return RTD_EXIT_USAGE;
    }

    /* Static: the children's argv (and the threads' in --single) live until exit, reachable. */
    static struct child ch[CH_N];
    if (children_init(ch, &o, instance))
        return RTD_EXIT_FAIL;
    if (o.single ? single_init(ch, &o) : check_configs(ch))
        return RTD_EXIT_USAGE;
    if (rtd_config_check_only()) {
        printf("config ok\n");
        return RTD_EXIT_OK;
    }
    pid_t holder = 0;
    int lock_rc = run_lock(instance, &holder);
    if (lock_rc) {
        if (lock_rc == -EBUSY)
            fprintf(stderr,
                    "rtdaq run: instance '%s' is already running (rtdaq run pid %d); stop it, or "
                    "use --instance NAME for a second one\n",
                    instance, (int)holder);
        else
            fprintf(stderr, "rtdaq run: instance lock: %s\n", strerror(-lock_rc));
        return RTD_EXIT_FAIL;
    }
    int rc = notify_open();
    if (rc) {
        fprintf(stderr, "rtdaq run: notification socket: %s\n", strerror(-rc));
        return RTD_EXIT_FAIL;
    }
    /* Leftovers of a crashed earlier run (creator dead) would confuse the counters. */
    rtd_shm_cleanup(instance, 0);

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int status = RTD_EXIT_OK;
    if (o.single) {
        rtd_log_init("rtdaq", o.quiet ? RTD_LOG_WARN : RTD_LOG_INFO);
        status = single_start(&o);
    }
    /* Order matters: acq creates the rings the others attach to. */
    static const int order[CH_N] = {CH_ACQ, CH_PROC, CH_CTL, CH_SIM};
    for (int k = 0; k < CH_N && !o.single && !atomic_load(&run_stop); k++) {
        struct child *c = &ch[order[k]];
        if (!c->enabled)
            continue;
        if ((rc = child_start(c, &o))) {
            fprintf(stderr, "rtdaq run: cannot start %s: %s\n", c->name, strerror(-rc));
            status = RTD_EXIT_FAIL;
            break;
        }
        if (c->essential && (rc = wait_ready(ch, c, 15.0, o.quiet))) {
            fprintf(stderr, "rtdaq run: %s %s\n", c->name,
                    rc == -ECHILD ? "exited during start-up (see its messages above)"
                                  : "did not report ready within 15 s");
            status = RTD_EXIT_FAIL;
            break;
        }
    }

    uint64_t t0 = rtd_now_ns(), last = t0;
    /* Totals since the run began (every counter starts at zero with the run); the live
     * latency percentile is over the last 10 s (hist[] keeps one snapshot a second). */
    struct snapshot first, prev, cur;
    static struct snapshot hist[10];
    int n_hist = 0;
    snapshot_take(instance, &first);
    prev = first;
    int tty = isatty(STDERR_FILENO);
    while (status == RTD_EXIT_OK && !atomic_load(&run_stop)) {
        usleep(20000);
        if (o.single) {
            int end = single_check(o.quiet);
            if (end >= 0) {
                status = end;
                break;
            }
        } else {
            notify_poll(ch, o.quiet);
        }
        /* After the poll: a ping stamped later than now would wrap the watchdog check. */
        uint64_t now = rtd_now_ns();
        int st;
        pid_t pid;
        while (!o.single && (pid = waitpid(-1, &st, WNOHANG)) > 0) {
            struct child *c = child_by_pid(ch, pid);
            if (!c)
                continue;
            c->pid = 0;
            if (!c->essential) {
                if (!o.quiet)
                    fprintf(stderr, "\nrtdaq run: %s finished\n", c->name);
                continue;
            }
            c->restarts++;
            c->restart_at_ns = now + (uint64_t)(c->restarts < 5 ? c->restarts : 5) * 500000000ull;
            fprintf(stderr, "\nrtdaq run: %s (pid %d) %s %d: restarting\n", c->name, (int)pid,
                    WIFSIGNALED(st) ? "killed by signal" : "exited with",
                    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        }
        for (int i = 0; i < CH_N && !o.single; i++) {
            struct child *c = &ch[i];
            if (!c->enabled || !c->essential)
                continue;
            if (c->pid == 0 && c->restart_at_ns && now >= c->restart_at_ns) {
                c->restart_at_ns = 0;
                if (i == CH_ACQ || i == CH_PROC)
                    carry_dead(instance, c->name);
                child_start(c, &o);
            } else if (c->pid > 0 && c->ready &&
                       now - c->last_ping_ns > (uint64_t)o.watchdog_s * 1000000000ull) {
                fprintf(stderr, "\nrtdaq run: %s missed its watchdog (%d s): killing it\n", c->name,
                        o.watchdog_s);
                kill(c->pid, SIGKILL);
            }
        }
        if (now - last >= 1000000000ull) {
            snapshot_take(instance, &cur);
            double dt = (double)(now - last) / 1e9;
            const struct snapshot *old = n_hist < 10 ? &first : &hist[n_hist % 10];
            if (!o.quiet) {
                uint64_t p99 = window_percentile(&cur, old, 0.99);
                fprintf(stderr,
                        "%s[%6.1f s] frames/s %9.0f  packets/s %11.0f  fits/s %10.0f  dropped %llu"
                        "  lost %llu  p99 (10 s) %7.1f us  restarts %d%s%s",
                        tty ? "\r" : "", (double)(now - t0) / 1e9,
                        rate(cur.frames, prev.frames, dt), rate(cur.packets, prev.packets, dt),
                        rate(cur.fits, prev.fits, dt), (unsigned long long)cur.dropped,
                        (unsigned long long)cur.lost, (double)p99 / 1e3,
                        ch[CH_ACQ].restarts + ch[CH_PROC].restarts + ch[CH_CTL].restarts,
                        cur.rec_dropped ? "  RECORDING DROPS" : "", tty ? "   " : "\n");
            }
            hist[n_hist++ % 10] = cur;
            rtd_sd_watchdog();
            prev = cur;
            last = now;
        }
        if (o.duration > 0 && now - t0 >= (uint64_t)(o.duration * 1e9))
            break;
    }
    uint64_t t_end = rtd_now_ns();
    snapshot_take(instance, &cur);
    if (!o.quiet && tty)
        fputc('\n', stderr);

    /* Stop in reverse order: the simulator first, acq (the rings' creator) last. */
    if (o.single) {
        if (single_stop() != RTD_EXIT_OK)
            status = RTD_EXIT_FAIL;
    } else {
        stop_child(&ch[CH_SIM], 3);
        stop_child(&ch[CH_CTL], 5);
        stop_child(&ch[CH_PROC], 5);
        stop_child(&ch[CH_ACQ], 5);
    }
    int left = 0;
    rtd_shm_list(instance, count_left, &left);

    /*
     * Totals since the run began: every segment starts at zero with the run (rates subtract
     * nothing either: the first snapshot is taken once everything is up, and the frames in
     * flight then would otherwise count as processed and not published).
     */
    double secs = (double)(t_end - t0) / 1e9;
    uint64_t frames = cur.frames, packets = cur.packets, fits = cur.fits;
    uint64_t produced = cur.frames + cur.dropped + cur.rate_limited;
    int64_t unprocessed =
        (int64_t)cur.frames - (int64_t)(cur.processed + cur.lost + cur.never_offered);
    uint64_t other =
        cur.dropped - (cur.ring_full + cur.camera_skipped + cur.partial + cur.too_large);
    json_t *reasons = json_pack("{s:I, s:I, s:I, s:I, s:I}", "ring_full", (json_int_t)cur.ring_full,
                                "camera_skipped", (json_int_t)cur.camera_skipped, "partial",
                                (json_int_t)cur.partial, "too_large", (json_int_t)cur.too_large,
                                "other", (json_int_t)other);
    json_t *rep = json_pack(
        "{s:s, s:f, s:I, s:f, s:I, s:f, s:I, s:f, s:I, s:I, s:I, s:f, s:f, s:i, s:i, s:i, s:i}",
        "instance", instance, "seconds", secs, "frames", (json_int_t)frames, "frames_per_s",
        secs > 0 ? (double)frames / secs : 0.0, "packets", (json_int_t)packets, "packets_per_s",
        secs > 0 ? (double)packets / secs : 0.0, "fits", (json_int_t)fits, "fits_per_s",
        secs > 0 ? (double)fits / secs : 0.0, "frames_processed", (json_int_t)cur.processed,
        "dropped", (json_int_t)cur.dropped, "lost", (json_int_t)cur.lost, "latency_p50_us",
        (double)rtd_hist_percentile(cur.lat_buckets, 0.5) / 1e3, "latency_p99_us",
        (double)rtd_hist_percentile(cur.lat_buckets, 0.99) / 1e3, "restarts_acq",
        ch[CH_ACQ].restarts, "restarts_proc", ch[CH_PROC].restarts, "restarts_ctl",
        ch[CH_CTL].restarts, "segments_left", left);
    json_object_set_new(rep, "frames_produced", json_integer((json_int_t)produced));
    json_object_set_new(rep, "rate_limited", json_integer((json_int_t)cur.rate_limited));
    json_object_set_new(rep, "dropped_by_reason", reasons);
    json_object_set_new(rep, "unprocessed", json_integer((json_int_t)unprocessed));
    json_object_set_new(rep, "never_offered", json_integer((json_int_t)cur.never_offered));
    json_object_set_new(rep, "packets_dropped", json_integer((json_int_t)cur.packets_dropped));
    json_object_set_new(rep, "results_dropped", json_integer((json_int_t)cur.results_dropped));
    json_object_set_new(rep, "recording",
                        json_pack("{s:I, s:I}", "records", (json_int_t)cur.rec_records, "dropped",
                                  (json_int_t)cur.rec_dropped));
    json_object_set_new(rep, "single", json_boolean(o.single));
    if (o.json) {
        char *js = json_dumps(rep, JSON_COMPACT);
        printf("%s\n", js);
        free(js);
    } else {
        printf("rtdaq run: %.1f s on instance '%s'\n", secs, instance);
        printf("  frames     %12llu produced by the camera = %llu published + %llu dropped + %llu "
               "rate-limited\n",
               (unsigned long long)produced, (unsigned long long)frames,
               (unsigned long long)cur.dropped, (unsigned long long)cur.rate_limited);
        printf("  published  %12llu (%.0f/s) = %llu processed + %llu lost + %llu before the fit "
               "workers joined + %lld not yet processed at the stop\n",
               (unsigned long long)frames, secs > 0 ? (double)frames / secs : 0.0,
               (unsigned long long)cur.processed, (unsigned long long)cur.lost,
               (unsigned long long)cur.never_offered, (long long)unprocessed);
        printf("  dropped    %12llu = ring full %llu + camera skipped %llu + partial %llu + too "
               "large %llu\n",
               (unsigned long long)cur.dropped, (unsigned long long)cur.ring_full,
               (unsigned long long)cur.camera_skipped, (unsigned long long)cur.partial,
               (unsigned long long)cur.too_large);
        printf("  packets    %12llu  (%.0f/s), %llu dropped (packet ring full)\n",
               (unsigned long long)packets, secs > 0 ? (double)packets / secs : 0.0,
               (unsigned long long)cur.packets_dropped);
        printf("  fits       %12llu  (%.0f/s), %llu results dropped (results ring full)\n",
               (unsigned long long)fits, secs > 0 ? (double)fits / secs : 0.0,
               (unsigned long long)cur.results_dropped);
        if (cur.rec_records || cur.rec_dropped)
            printf("  recording  %12llu records kept, %llu dropped%s\n",
                   (unsigned long long)cur.rec_records, (unsigned long long)cur.rec_dropped,
                   cur.rec_dropped ? "  WARNING: the recording is incomplete" : "");
        printf("  latency    p50 %.1f us  p99 %.1f us (frame timestamp -> fit result, whole run)\n",
               (double)rtd_hist_percentile(cur.lat_buckets, 0.5) / 1e3,
               (double)rtd_hist_percentile(cur.lat_buckets, 0.99) / 1e3);
        printf("  restarts   acq %d  proc %d  ctl %d\n", ch[CH_ACQ].restarts, ch[CH_PROC].restarts,
               ch[CH_CTL].restarts);
        printf("  segments left in /dev/shm: %d\n", left);
    }
    json_decref(rep);
    return status;
}
