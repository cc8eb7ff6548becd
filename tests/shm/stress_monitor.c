/* SPDX-License-Identifier: MIT */
/*
 * A lapped monitor never returns a torn record. A producer overwrites a small
 * drop-newest ring as fast as it can with self-checking records (every payload
 * word derived from the record's seq), while a monitor reads them with
 * rtd_pkt_copy() / rtd_frame_copy() and checks every word of every record it
 * gets, and that the lap count reported with each record is exactly the gap in
 * seq before it. At the end: seen + lapped + unread tail == published.
 *
 *   stress_monitor [--records N] [--mode procs|threads] [--kind packet|frame|both]
 *
 * procs (default): the producer is a forked process. threads: a thread of the
 * same process (on the creator's mapping), so ThreadSanitizer sees both sides.
 * Linked against rtd_shm_novalidate (the copy returned without its check), the
 * same program must fail: that is the negative control stress_monitor_novalidate.
 * Exit 0 pass, 1 fail.
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

#define PKT_RING    (64u << 10) /* 4..8 records of 1..16 KiB: lapped all the time */
#define FRAME_SIZE  (64u << 10)
#define FRAME_SLOTS 2 /* the slot being read is the next but one to be rewritten */

struct ctl {
    _Atomic int go;
    _Atomic uint64_t produced; /* records published so far */
    _Atomic uint64_t seen;     /* records the monitor checked so far */
    _Atomic int done;          /* the producer published its last record */
    _Atomic int stop;          /* the monitor failed: stop producing */
};

/*
 * The producer goes on past --records until the monitor has checked this many
 * (a loaded machine may starve the monitor): a run that checked nothing proves
 * nothing. It gives up after PRODUCE_MAX_NS.
 */
#define MIN_SEEN       2000
#define PRODUCE_MAX_NS 60000000000ull

static char inst[32];
static struct ctl *ctl;
static uint64_t nrec = 200000;
static struct rtd_ring *shared_ring; /* threads mode: the creator's mapping */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* Payload bytes of record seq: 1 KiB .. 16 KiB, a multiple of 8. */
static uint32_t rec_len(uint64_t seq)
{
    return 1024 + (uint32_t)(mix(seq ^ 0x5555) % 1921) * 8;
}

static void fill(uint64_t *p, uint64_t seq, uint32_t len)
{
    p[0] = seq;
    for (uint32_t i = 1; i < len / 8; i++)
        p[i] = mix(seq * 4099 + i);
}

/* Index of the first word that does not belong to record seq, or -1. */
static long check(const uint64_t *p, uint64_t seq, uint32_t len)
{
    if (len != rec_len(seq))
        return 0;
    if (p[0] != seq)
        return 0;
    for (uint32_t i = 1; i < len / 8; i++)
        if (p[i] != mix(seq * 4099 + i))
            return i;
    return -1;
}

static const char *ring_name(bool frames)
{
    return frames ? "mon_f" : "mon_p";
}

static int run_producer(bool frames)
{
    struct rtd_ring *r = shared_ring;
    if (!r && rtd_ring_attach(&r, inst, ring_name(frames)))
        return 1;
    while (!atomic_load(&ctl->go))
        sched_yield();
    const uint64_t t0 = rtd_now_ns();
    for (uint64_t seq = 0; !atomic_load_explicit(&ctl->stop, memory_order_relaxed); seq++) {
        if (seq >= nrec && (atomic_load_explicit(&ctl->seen, memory_order_relaxed) >= MIN_SEEN ||
                            rtd_now_ns() - t0 > PRODUCE_MAX_NS))
            break;
        uint32_t len = rec_len(seq);
        if (frames) {
            struct rtd_frame f;
            if (rtd_frame_claim(r, &f))
                return 1; /* no reliable consumer: never full */
            f.hdr->len = len;
            f.hdr->frame_id = seq;
            fill((uint64_t *)(void *)f.data, seq, len);
            rtd_frame_publish(r, &f);
        } else {
            int err;
            uint64_t *p = rtd_pkt_reserve(r, len, 1, &err);
            if (!p)
                return 1;
            fill(p, seq, len);
            rtd_pkt_publish(r);
        }
        atomic_store_explicit(&ctl->produced, seq + 1, memory_order_release);
    }
    atomic_store(&ctl->done, 1);
    if (r != shared_ring)
        rtd_ring_close(r);
    return 0;
}

static void *thread_producer(void *arg)
{
    return (void *)(intptr_t)run_producer(arg != NULL);
}

/* The monitor: every record it gets is checked word by word. 0 pass, 1 fail. */
static int run_monitor(struct rtd_consumer *c, bool frames)
{
    static uint64_t buf[(sizeof(struct rtd_pkt_hdr) + FRAME_SIZE) / 8 + 1];
    const char *kind = frames ? "frame" : "packet";
    uint64_t seen = 0, lapped = 0, expect = 0, lap;
    for (;;) {
        uint64_t seq;
        uint32_t len;
        const uint64_t *p;
        int rc;
        /* Loaded before the copy: done is stored after the last publish. */
        const bool was_done = atomic_load(&ctl->done);
        if (frames) {
            struct rtd_frame_hdr hd;
            rc = rtd_frame_copy(c, &hd, buf, sizeof buf, &lap);
            seq = hd.frame_id;
            len = hd.len;
            p = buf;
            if (rc >= 0 && hd.seq != hd.frame_id) {
                fprintf(stderr, "stress_monitor: frame at position %lu says frame_id %lu\n",
                        (unsigned long)hd.seq, (unsigned long)hd.frame_id);
                return 1;
            }
        } else {
            rc = rtd_pkt_copy(c, buf, sizeof buf, &lap);
            const struct rtd_pkt_hdr *h = (const struct rtd_pkt_hdr *)buf;
            seq = h->seq;
            len = h->len;
            p = (const uint64_t *)rtd_pkt_payload(h);
        }
        if (rc == -EAGAIN) {
            if (was_done)
                break; /* drained: nothing more will come */
            continue;
        }
        if (rc < 0) {
            fprintf(stderr, "stress_monitor: %s copy: %d\n", kind, rc);
            return 1;
        }
        long bad = check(p, seq, len);
        if (bad >= 0) {
            fprintf(stderr,
                    "stress_monitor: TORN %s record returned: seq %lu len %u, word %ld is not "
                    "the record's (after %lu good records)\n",
                    kind, (unsigned long)seq, len, bad, (unsigned long)seen);
            return 1;
        }
        if (seq < expect || lap != seq - expect) {
            fprintf(stderr, "stress_monitor: %s seq %lu after %lu reported %lu lapped\n", kind,
                    (unsigned long)seq, (unsigned long)expect, (unsigned long)lap);
            return 1;
        }
        seen++;
        atomic_store_explicit(&ctl->seen, seen, memory_order_relaxed);
        lapped += lap;
        expect = seq + 1;
        if ((seen & 255) == 0 && !frames)
            rtd_pkt_release(c);
    }
    const uint64_t total = atomic_load(&ctl->produced);
    uint64_t tail = total - expect;
    printf(
        "stress_monitor %s: %lu records: %lu seen (each checked) + %lu lapped + %lu unread tail; "
        "consumer lapped %lu\n",
        kind, (unsigned long)total, (unsigned long)seen, (unsigned long)lapped, (unsigned long)tail,
        (unsigned long)rtd_consumer_lapped(c));
    if (seen + lapped + tail != total || lapped != rtd_consumer_lapped(c)) {
        fprintf(stderr, "stress_monitor: %s accounting open\n", kind);
        return 1;
    }
    if (lapped == 0 || seen < MIN_SEEN) {
        /* Nothing was overwritten under the monitor, or it checked too little: proves nothing. */
        fprintf(stderr, "stress_monitor: %s monitor checked %lu records and was lapped %lu times\n",
                kind, (unsigned long)seen, (unsigned long)lapped);
        return 1;
    }
    return 0;
}

static int run_kind(bool frames, bool threads)
{
    struct rtd_ring_config cfg = {.overflow = RTD_OVERFLOW_DROP_NEWEST};
    if (frames) {
        cfg.kind = RTD_RING_FRAME;
        cfg.slot_payload = FRAME_SIZE;
        cfg.slot_count = FRAME_SLOTS;
    } else {
        cfg.kind = RTD_RING_PACKET;
        cfg.data_bytes = PKT_RING;
    }
    struct rtd_ring *r;
    int rc = rtd_ring_create(&r, inst, ring_name(frames), &cfg);
    if (rc) {
        fprintf(stderr, "stress_monitor: create: %d\n", rc);
        return 1;
    }
    atomic_store(&ctl->go, 0);
    atomic_store(&ctl->done, 0);
    atomic_store(&ctl->stop, 0);
    atomic_store(&ctl->seen, 0);
    atomic_store(&ctl->produced, 0);
    /* Registered before the first record: every record is seen, lapped or in the tail. */
    struct rtd_consumer *c;
    rc = rtd_consumer_open(&c, r, RTD_CONSUMER_MONITOR, "mon");
    if (rc) {
        fprintf(stderr, "stress_monitor: open: %d\n", rc);
        rtd_ring_close(r);
        return 1;
    }
    int fail = 0;
    pthread_t tp;
    pid_t pp = -1;
    if (threads) {
        shared_ring = r;
        pthread_create(&tp, NULL, thread_producer, frames ? (void *)1 : NULL);
    } else if ((pp = fork()) == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        _exit(run_producer(frames));
    }
    atomic_store(&ctl->go, 1);
    fail |= run_monitor(c, frames);
    if (threads) {
        void *ret;
        atomic_store(&ctl->stop, 1);
        pthread_join(tp, &ret);
        fail |= ret != NULL;
    } else {
        int st;
        if (fail)
            kill(pp, SIGKILL);
        waitpid(pp, &st, 0);
        fail |= !fail && (!WIFEXITED(st) || WEXITSTATUS(st));
    }
    shared_ring = NULL;
    rtd_consumer_close(c);
    rtd_ring_close(r);
    return fail;
}

int main(int argc, char **argv)
{
    bool threads = false, packets = true, frames = true;
    static const struct option opts[] = {{"records", required_argument, NULL, 'n'},
                                         {"mode", required_argument, NULL, 'm'},
                                         {"kind", required_argument, NULL, 'k'},
                                         {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "n:m:k:", opts, NULL)) != -1) {
        if (o == 'n')
            nrec = strtoull(optarg, NULL, 0);
        else if (o == 'm')
            threads = !strcmp(optarg, "threads");
        else if (o == 'k') {
            packets = strcmp(optarg, "frame") != 0;
            frames = strcmp(optarg, "packet") != 0;
        } else
            return 2;
    }
    snprintf(inst, sizeof inst, "sm%d", (int)getpid());
    alarm(240);
    ctl = mmap(NULL, sizeof *ctl, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ctl == MAP_FAILED)
        return 1;
    int fail = 0;
    if (packets)
        fail |= run_kind(false, threads);
    if (frames)
        fail |= run_kind(true, threads);
    rtd_shm_cleanup(inst, 1);
    return fail ? 1 : 0;
}
