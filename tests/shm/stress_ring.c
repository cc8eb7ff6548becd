/* SPDX-License-Identifier: MIT */
/*
 * Stress test of the packet ring: one producer and three consumers exchange
 * N variable-length records with checksums.
 *
 *   stress_ring [--records N] [--mode procs|threads]
 *
 * procs (default): a forked producer (attached, not the creator) and three
 * forked consumers: "reliable" must see every record in order; "monitor" must
 * report a lap count equal to the records it did not see; "victim" (reliable,
 * slow) is SIGKILLed mid-run and the producer must keep going. threads: the
 * same roles as threads of one process (victim closes instead of dying), so
 * that ThreadSanitizer sees both sides of every ordering. Exit 0 pass, 1 fail.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rtd_shm.h"
#include "rtd_util.h"

#define TYPE_DATA 1
#define TYPE_END  2

/* Control block shared by every role (MAP_SHARED, inherited over fork). */
struct ctl {
    _Atomic int registered;
    _Atomic int go;
    _Atomic int victim_stop; /* threads mode: the victim leaves */
    _Atomic uint64_t produced;
    _Atomic uint64_t reliable_got, monitor_got, monitor_gaps, monitor_lapped, victim_got;
    _Atomic uint64_t monitor_next; /* seq after the last record the monitor saw */
    _Atomic int fail;
};

static char inst[32];
/*
 * threads mode: every thread uses the creator's mapping. ThreadSanitizer knows
 * memory by address; separate mappings of one segment would hide every race.
 */
static struct rtd_ring *shared_ring;

/* Children die with the parent (its alarm() is the test's time limit). */
static pid_t fork_child(void)
{
    pid_t pid = fork();
    if (pid == 0)
        prctl(PR_SET_PDEATHSIG, SIGKILL);
    return pid;
}
static uint64_t nrec = 10000000;
static struct ctl *ctl;

static int attach(struct rtd_ring **r)
{
    if (shared_ring) {
        *r = shared_ring;
        return 0;
    }
    return rtd_ring_attach(r, inst, "stress");
}

static void detach(struct rtd_ring *r)
{
    if (r != shared_ring)
        rtd_ring_close(r);
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static uint32_t rec_len(uint64_t seq)
{
    return 16 + (uint32_t)(mix(seq) % 7) * 8; /* 16..64 bytes */
}

/* Payload: seq, then words derived from it, the last word a checksum of the rest. */
static void fill(uint64_t *p, uint64_t seq, uint32_t len)
{
    uint32_t n = len / 8;
    uint64_t sum = 0;
    p[0] = seq;
    for (uint32_t i = 1; i + 1 < n; i++)
        p[i] = mix(seq + i);
    for (uint32_t i = 0; i + 1 < n; i++)
        sum = sum * 31 + p[i];
    p[n - 1] = sum;
}

/* Reliable consumers read in place; the monitor checks its own copy (rtd_pkt_copy). */
static int check(const struct rtd_pkt_hdr *h, uint64_t *seq_out, bool *is_end)
{
    struct rtd_pkt_hdr v = *h;
    *is_end = v.type == TYPE_END;
    const uint64_t *p = rtd_pkt_payload(h);
    uint32_t n = v.len / 8;
    *seq_out = UINT64_MAX;
    if (v.len < 16 || v.len > 64 || v.len % 8)
        return -1;
    uint64_t sum = 0;
    for (uint32_t i = 0; i + 1 < n; i++)
        sum = sum * 31 + p[i];
    *seq_out = p[0];
    return sum == p[n - 1] && p[0] == v.seq ? 0 : -1;
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "stress_ring: " __VA_ARGS__);                                              \
        fputc('\n', stderr);                                                                       \
        atomic_store(&ctl->fail, 1);                                                               \
        return 1;                                                                                  \
    } while (0)

static int run_producer(void)
{
    struct rtd_ring *r;
    int rc = attach(&r);
    if (rc)
        FAIL("producer attach: %d", rc);
    while (!atomic_load(&ctl->go))
        sched_yield();
    uint64_t seq = 0, batch = 0;
    while (seq <= nrec) {
        int err = 0;
        bool end = seq == nrec;
        uint32_t len = end ? 16 : rec_len(seq);
        uint64_t *p = rtd_pkt_reserve(r, len, end ? TYPE_END : TYPE_DATA, &err);
        if (!p) {
            if (err != -EAGAIN)
                FAIL("reserve: %d", err);
            rtd_pkt_publish(r);
            batch = 0;
            sched_yield();
            continue;
        }
        fill(p, seq, len);
        seq++;
        if (++batch >= 1 + (mix(seq) & 63) || end) {
            rtd_pkt_publish(r);
            atomic_store_explicit(&ctl->produced, seq, memory_order_relaxed);
            batch = 0;
        }
    }
    rtd_pkt_publish(r);
    atomic_store(&ctl->produced, seq);
    detach(r);
    return 0;
}

static int run_consumer(int role) /* 0 reliable, 1 monitor, 2 victim */
{
    static const char *labels[] = {"reliable", "monitor", "victim"};
    struct rtd_ring *r;
    struct rtd_consumer *c;
    int rc = attach(&r);
    if (rc)
        FAIL("%s attach: %d", labels[role], rc);
    rc = rtd_consumer_open(&c, r, role == 1 ? RTD_CONSUMER_MONITOR : RTD_CONSUMER_RELIABLE,
                           labels[role]);
    if (rc)
        FAIL("%s open: %d", labels[role], rc);
    atomic_fetch_add(&ctl->registered, 1);
    uint64_t expect = 0, got = 0, gaps = 0, lap = 0;
    uint64_t mbuf[16]; /* the monitor's copy: header + at most 64 payload bytes */
    for (;;) {
        const struct rtd_pkt_hdr *h;
        if (role == 1) {
            rc = rtd_pkt_copy(c, mbuf, sizeof mbuf, &lap);
            h = (const struct rtd_pkt_hdr *)mbuf;
            rc = rc > 0 ? 0 : rc;
        } else {
            rc = rtd_pkt_next(c, &h);
        }
        if (rc == -EAGAIN) {
            rtd_pkt_release(c);
            if (role == 2 && atomic_load(&ctl->victim_stop))
                break;
            /* A monitor lapped near the end may have jumped past the end record. */
            if (role == 1 && atomic_load(&ctl->produced) == nrec + 1)
                break;
            sched_yield();
            continue;
        }
        if (rc)
            FAIL("%s next: %d", labels[role], rc);
        uint64_t seq = UINT64_MAX;
        bool is_end;
        int bad = check(h, &seq, &is_end);
        if (role == 1) {
            if (bad)
                FAIL("monitor: torn record (bad checksum) at seq %lu", (unsigned long)seq);
            if (seq < expect)
                FAIL("monitor: seq went back %lu -> %lu", (unsigned long)expect,
                     (unsigned long)seq);
            /* It registered before the first record: every gap from seq 0 on is a lap. */
            if (lap != seq - expect)
                FAIL("monitor: seq %lu after %lu reported %lu lapped", (unsigned long)seq,
                     (unsigned long)expect - 1, (unsigned long)lap);
            gaps += seq - expect;
        } else {
            if (bad)
                FAIL("%s: bad checksum at seq %lu", labels[role], (unsigned long)h->seq);
            if (seq != expect)
                FAIL("%s: expected seq %lu, got %lu", labels[role], (unsigned long)expect,
                     (unsigned long)seq);
        }
        expect = seq + 1;
        got++;
        if ((got & 63) == 0)
            rtd_pkt_release(c);
        if (role == 2 && (got & 1023) == 0) {
            usleep(50); /* slow: it gates the producer */
            /* procs: stop reading a third of the way, so the producer is held back until the kill.
             */
            while (!shared_ring && atomic_load(&ctl->produced) >= nrec / 3)
                usleep(1000);
        }
        if (is_end)
            break;
    }
    rtd_pkt_release(c);
    if (role == 0) {
        atomic_store(&ctl->reliable_got, got);
    } else if (role == 1) {
        atomic_store(&ctl->monitor_got, got);
        atomic_store(&ctl->monitor_gaps, gaps);
        atomic_store(&ctl->monitor_next, expect);
        atomic_store(&ctl->monitor_lapped, rtd_consumer_lapped(c));
    } else {
        atomic_store(&ctl->victim_got, got);
    }
    rtd_consumer_close(c);
    detach(r);
    return 0;
}

static void *thread_consumer(void *arg)
{
    return (void *)(intptr_t)run_consumer((int)(intptr_t)arg);
}

static void *thread_producer(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)run_producer();
}

int main(int argc, char **argv)
{
    bool threads = false;
    static const struct option opts[] = {{"records", required_argument, NULL, 'n'},
                                         {"mode", required_argument, NULL, 'm'},
                                         {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "n:m:", opts, NULL)) != -1) {
        if (o == 'n')
            nrec = strtoull(optarg, NULL, 0);
        else if (o == 'm')
            threads = !strcmp(optarg, "threads");
        else
            return 2;
    }
    snprintf(inst, sizeof inst, "st%d", (int)getpid());
    alarm(240);
    ctl = mmap(NULL, sizeof *ctl, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ctl == MAP_FAILED)
        return 1;
    struct rtd_ring_config cfg = {
        .kind = RTD_RING_PACKET, .data_bytes = 1u << 20, .overflow = RTD_OVERFLOW_BLOCK};
    struct rtd_ring *r;
    int rc = rtd_ring_create(&r, inst, "stress", &cfg);
    if (rc) {
        fprintf(stderr, "create: %d\n", rc);
        return 1;
    }
    uint64_t t0 = rtd_now_ns();
    int fail = 0;
    if (threads) {
        shared_ring = r;
        pthread_t tc[3], tp;
        for (intptr_t i = 0; i < 3; i++)
            pthread_create(&tc[i], NULL, thread_consumer, (void *)i);
        while (atomic_load(&ctl->registered) < 3)
            sched_yield();
        pthread_create(&tp, NULL, thread_producer, NULL);
        atomic_store(&ctl->go, 1);
        while (atomic_load(&ctl->produced) < nrec / 3)
            usleep(1000);
        atomic_store(&ctl->victim_stop, 1);
        for (int i = 0; i < 3; i++) {
            void *ret;
            pthread_join(tc[i], &ret);
            fail |= ret != NULL;
        }
        void *ret;
        pthread_join(tp, &ret);
        fail |= ret != NULL;
    } else {
        pid_t pc[3], pp;
        for (int i = 0; i < 3; i++)
            if ((pc[i] = fork_child()) == 0)
                _exit(run_consumer(i));
        while (atomic_load(&ctl->registered) < 3)
            usleep(1000);
        if ((pp = fork_child()) == 0)
            _exit(run_producer());
        atomic_store(&ctl->go, 1);
        while (atomic_load(&ctl->produced) < nrec / 3 && !atomic_load(&ctl->fail))
            usleep(1000);
        kill(pc[2], SIGKILL);
        uint64_t at_kill = atomic_load(&ctl->produced);
        int st;
        waitpid(pc[2], &st, 0);
        for (int i = 0; i < 2; i++) {
            waitpid(pc[i], &st, 0);
            fail |= !WIFEXITED(st) || WEXITSTATUS(st);
        }
        waitpid(pp, &st, 0);
        fail |= !WIFEXITED(st) || WEXITSTATUS(st);
        if (atomic_load(&ctl->produced) <= at_kill) {
            fprintf(stderr, "stress_ring: the producer stopped at the kill\n");
            fail = 1;
        }
        const struct rtd_ring_hdr *h = rtd_ring_header(r);
        int vi = 0;
        while (vi < RTD_MAX_CONSUMERS - 1 && strcmp(h->consumers[vi].label, "victim"))
            vi++;
        if (atomic_load(&h->consumers[vi].state) != RTD_CSLOT_DEAD) {
            fprintf(stderr, "stress_ring: the victim was not marked dead\n");
            fail = 1;
        }
    }
    double s = (double)(rtd_now_ns() - t0) / 1e9;
    uint64_t total = nrec + 1;
    uint64_t rg = atomic_load(&ctl->reliable_got), mg = atomic_load(&ctl->monitor_got);
    uint64_t gaps = atomic_load(&ctl->monitor_gaps), lapped = atomic_load(&ctl->monitor_lapped);
    printf("stress_ring %s: %lu records in %.2f s (%.1f M/s); reliable %lu; monitor %lu seen, "
           "%lu gaps, lapped %lu; victim %lu%s\n",
           threads ? "threads" : "procs", (unsigned long)total, s, (double)total / s / 1e6,
           (unsigned long)rg, (unsigned long)mg, (unsigned long)gaps, (unsigned long)lapped,
           (unsigned long)atomic_load(&ctl->victim_got),
           threads ? " before it left" : " (then SIGKILLed)");
    if (rg != total) {
        fprintf(stderr, "stress_ring: reliable consumer saw %lu of %lu\n", (unsigned long)rg,
                (unsigned long)total);
        fail = 1;
    }
    /*
     * Monitor accounting, closed: it registered before the first record, so
     * every record is seen, counted lapped (gaps from seq 0 on), or in the
     * unread tail after the last record it saw (lapped at the very end, when no
     * later record tells the gap).
     */
    uint64_t tail = total - atomic_load(&ctl->monitor_next);
    printf("stress_ring: monitor %lu seen + %lu lapped + %lu unread tail = %lu of %lu\n",
           (unsigned long)mg, (unsigned long)lapped, (unsigned long)tail,
           (unsigned long)(mg + lapped + tail), (unsigned long)total);
    if (gaps != lapped || mg + lapped + tail != total) {
        fprintf(stderr, "stress_ring: monitor accounting open: gaps %lu, lapped %lu\n",
                (unsigned long)gaps, (unsigned long)lapped);
        fail = 1;
    }
    fail |= atomic_load(&ctl->fail);
    shared_ring = NULL;
    rtd_ring_close(r);
    rtd_shm_cleanup(inst, 1);
    return fail ? 1 : 0;
}
