/* SPDX-License-Identifier: MIT */
/*
 * Stress test of consumer groups: a producer publishes N frames (payload with
 * a checksum) into a 16-slot frame ring; three members of one group process
 * them. One member is SIGKILLed mid-run while it holds a frame.
 *
 *   stress_group [--frames N] [--mode procs|threads|alldead]
 *
 * The victim is frozen holding a frame, then killed. Pass, exactly as the
 * design says (the ring blocks and a dead member's holding pins the shared
 * cursor): every frame processed exactly once, the victim's frame adopted by a
 * survivor (adopted 1), nothing lost (lost_dead 0). A member killed after
 * processing a frame but before rtd_group_done() would get it processed twice
 * (delivery to a dying member is at-least-once); the victim here is killed
 * before it processes its frame. threads: members are threads (no kill) so
 * ThreadSanitizer sees the group's orderings: adopted 0, lost 0. alldead: see
 * run_alldead(). Exit 0 pass, 1 fail.
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

#define PAYLOAD 4096

struct ctl {
    _Atomic int joined;
    _Atomic int go;
    _Atomic int done;
    _Atomic uint64_t produced;
    _Atomic uint64_t victim_taken;
    _Atomic int freeze;           /* the victim stops (holding a frame) at its next take */
    _Atomic uint64_t victim_held; /* seq + 1 of the frame the victim froze on */
    _Atomic int fail;
    _Atomic uint64_t lost_dead, adopted;
    _Atomic int halt;        /* alldead: members other than the victim stop taking and park */
    _Atomic int parked;      /* members parked holding nothing */
    _Atomic uint8_t count[]; /* times each frame was processed */
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
static uint64_t nframes = 200000;
static struct ctl *ctl;

static int attach(struct rtd_ring **r)
{
    if (shared_ring) {
        *r = shared_ring;
        return 0;
    }
    return rtd_ring_attach(r, inst, "frames");
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

/* Publish frames [from, to): 0, or 1 on an error or when the ring stays full for 10 s. */
static int produce(struct rtd_ring *r, uint64_t from, uint64_t to)
{
    uint64_t t_full = 0;
    for (uint64_t i = from; i < to;) {
        struct rtd_frame f;
        int rc = rtd_frame_claim(r, &f);
        if (rc == -EAGAIN) {
            if (!t_full)
                t_full = rtd_now_ns();
            else if (rtd_now_ns() - t_full > 10000000000ull)
                return 1;
            sched_yield();
            continue;
        }
        if (rc)
            return 1;
        t_full = 0;
        uint64_t *p = (uint64_t *)f.data, sum = 0;
        p[0] = i;
        for (int k = 1; k < 63; k++)
            sum += (p[k] = mix(i * 64 + (uint64_t)k));
        p[63] = sum;
        f.hdr->len = 512;
        f.hdr->frame_id = i;
        rtd_frame_publish(r, &f);
        atomic_store(&ctl->produced, ++i);
    }
    return 0;
}

static int run_producer(void)
{
    struct rtd_ring *r;
    if (attach(&r))
        return 1;
    while (!atomic_load(&ctl->go))
        sched_yield();
    int rc = produce(r, 0, nframes);
    detach(r);
    return rc;
}

static int run_member(int id, bool victim)
{
    struct rtd_ring *r;
    struct rtd_group *g;
    char label[16];
    snprintf(label, sizeof label, "m%d", id);
    if (attach(&r) || rtd_group_join(&g, r, "workers", label)) {
        atomic_store(&ctl->fail, 1);
        return 1;
    }
    atomic_fetch_add(&ctl->joined, 1);
    int ret = 0;
    while (!atomic_load(&ctl->done)) {
        struct rtd_frame f;
        if (!victim && atomic_load(&ctl->halt)) {
            /* Holding nothing: a kill now loses nothing this member processed. */
            atomic_fetch_add(&ctl->parked, 1);
            for (;;)
                pause();
        }
        /* While the victim is asked to freeze, leave it the next frame. */
        if (!victim && atomic_load(&ctl->freeze) && !atomic_load(&ctl->victim_held)) {
            sched_yield();
            continue;
        }
        int rc = rtd_group_take(g, &f);
        if (rc == -EAGAIN) {
            sched_yield();
            continue;
        }
        if (rc) {
            fprintf(stderr, "stress_group: take %d\n", rc);
            ret = 1;
            break;
        }
        const uint64_t *p = (const uint64_t *)f.data;
        uint64_t sum = 0;
        for (int k = 1; k < 63; k++)
            sum += p[k];
        if (sum != p[63] || p[0] != f.hdr->seq || p[0] >= nframes) {
            fprintf(stderr, "stress_group: bad frame at seq %lu\n", (unsigned long)f.hdr->seq);
            ret = 1;
            break;
        }
        if (victim) {
            atomic_fetch_add(&ctl->victim_taken, 1);
            if (atomic_load(&ctl->freeze)) {
                /* Die holding this frame: the survivors must adopt it. */
                atomic_store(&ctl->victim_held, p[0] + 1);
                pause();
            }
            usleep(100);
        }
        atomic_fetch_add(&ctl->count[p[0]], 1);
        rtd_group_done(g, &f);
    }
    atomic_store(&ctl->lost_dead, rtd_group_lost_dead(g));
    atomic_store(&ctl->adopted, rtd_group_adopted(g));
    rtd_group_leave(g);
    detach(r);
    if (ret)
        atomic_store(&ctl->fail, 1);
    return ret;
}

static void *thread_member(void *arg)
{
    return (void *)(intptr_t)run_member((int)(intptr_t)arg, false);
}

static void *thread_producer(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)run_producer();
}

/*
 * Frames published while every member of the group is dead go to lost_dead.
 * Two members take frames; one freezes holding a frame, then both are killed.
 * The producer (this process) publishes more frames: the dead group's cursor
 * stops gating it once its liveness check finds no live member. Then a new
 * member joins (reviving the group) and processes the rest. Exact: the held
 * frame and every frame published while nobody lived are in lost_dead, not
 * processed; every other frame is processed once (checked by main()).
 */
static bool drain(struct rtd_ring *r);

static int run_alldead(struct rtd_ring *r)
{
    const struct rtd_ring_hdr *h = rtd_ring_header(r);
    pid_t pm[3];
    int fail = 0, st;
    for (int i = 0; i < 2; i++)
        if ((pm[i] = fork_child()) == 0)
            _exit(run_member(i, i == 0));
    while (atomic_load(&ctl->joined) < 2)
        usleep(1000);
    const uint64_t n1 = nframes / 3, n2 = 2 * nframes / 3;
    fail |= produce(r, 0, n1);
    /* Frames one by one until the victim holds one (the other member leaves it the next). */
    atomic_store(&ctl->freeze, 1);
    for (uint64_t i = n1; !atomic_load(&ctl->victim_held) && !atomic_load(&ctl->fail) && !fail;) {
        if (i < n1 + 8) {
            fail |= produce(r, i, i + 1);
            i++;
        }
        usleep(1000);
    }
    atomic_store(&ctl->halt, 1);
    while (atomic_load(&ctl->parked) < 1 && !atomic_load(&ctl->fail))
        usleep(1000);
    kill(pm[0], SIGKILL);
    kill(pm[1], SIGKILL);
    waitpid(pm[0], &st, 0);
    waitpid(pm[1], &st, 0);
    /* Nobody alive: these must all be counted lost when the group revives. */
    const uint64_t dead_from = atomic_load(&ctl->produced);
    fail |= produce(r, dead_from, n2);
    atomic_store(&ctl->halt, 0);
    if ((pm[2] = fork_child()) == 0)
        _exit(run_member(2, false));
    while (atomic_load(&ctl->joined) < 3 && !atomic_load(&ctl->fail))
        usleep(1000);
    fail |= produce(r, n2, nframes);
    fail |= !drain(r);
    atomic_store(&ctl->done, 1);
    waitpid(pm[2], &st, 0);
    fail |= !WIFEXITED(st) || WEXITSTATUS(st);
    uint64_t held = atomic_load(&ctl->victim_held), processed_dead = 0;
    for (uint64_t i = dead_from; i < n2; i++)
        processed_dead += atomic_load(&ctl->count[i]) != 0;
    uint64_t lost = atomic_load(&h->groups[0].lost_dead);
    printf("stress_group alldead: frames %lu..%lu published with every member dead, %lu of them "
           "processed; victim's frame %lu processed %u times; lost_dead %lu, adopted %lu\n",
           (unsigned long)dead_from, (unsigned long)n2, (unsigned long)processed_dead,
           (unsigned long)held - 1, (unsigned)atomic_load(&ctl->count[held - 1]),
           (unsigned long)lost, (unsigned long)atomic_load(&h->groups[0].adopted));
    if (processed_dead || atomic_load(&ctl->count[held - 1]) || lost < n2 - dead_from + 1 ||
        atomic_load(&h->groups[0].adopted)) {
        fprintf(stderr, "stress_group: frames published while every member was dead (and the "
                        "dead victim's frame) must be in lost_dead, not processed or adopted\n");
        fail = 1;
    }
    atomic_store(&ctl->lost_dead, lost);
    atomic_store(&ctl->adopted, atomic_load(&h->groups[0].adopted));
    return fail;
}

/* Wait until the group's cursor has passed every frame (or it stalls). */
static bool drain(struct rtd_ring *r)
{
    const struct rtd_ring_hdr *h = rtd_ring_header(r);
    uint64_t last = 0, t_last = rtd_now_ns();
    for (;;) {
        int ci = h->groups[0].consumer;
        uint64_t cur = atomic_load(&h->consumers[ci].cursor);
        if (cur >= nframes)
            return true;
        if (cur != last) {
            last = cur;
            t_last = rtd_now_ns();
        } else if (rtd_now_ns() - t_last > 10000000000ull) {
            fprintf(stderr, "stress_group: cursor stuck at %lu of %lu\n", (unsigned long)cur,
                    (unsigned long)nframes);
            return false;
        }
        usleep(1000);
    }
}

int main(int argc, char **argv)
{
    bool threads = false, alldead = false;
    static const struct option opts[] = {{"frames", required_argument, NULL, 'n'},
                                         {"mode", required_argument, NULL, 'm'},
                                         {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "n:m:", opts, NULL)) != -1) {
        if (o == 'n')
            nframes = strtoull(optarg, NULL, 0);
        else if (o == 'm') {
            threads = !strcmp(optarg, "threads");
            alldead = !strcmp(optarg, "alldead");
        } else
            return 2;
    }
    snprintf(inst, sizeof inst, "sg%d", (int)getpid());
    alarm(240);
    size_t ctl_len = sizeof *ctl + nframes;
    ctl = mmap(NULL, ctl_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ctl == MAP_FAILED)
        return 1;
    struct rtd_ring_config cfg = {.kind = RTD_RING_FRAME,
                                  .slot_payload = PAYLOAD,
                                  .slot_count = 16,
                                  .overflow = RTD_OVERFLOW_BLOCK};
    struct rtd_ring *r;
    int rc = rtd_ring_create(&r, inst, "frames", &cfg);
    if (rc) {
        fprintf(stderr, "create: %d\n", rc);
        return 1;
    }
    uint64_t t0 = rtd_now_ns();
    int fail = 0;
    if (alldead) {
        fail = run_alldead(r);
    } else if (threads) {
        shared_ring = r;
        pthread_t tm[3], tp;
        for (intptr_t i = 0; i < 3; i++)
            pthread_create(&tm[i], NULL, thread_member, (void *)i);
        while (atomic_load(&ctl->joined) < 3)
            sched_yield();
        pthread_create(&tp, NULL, thread_producer, NULL);
        atomic_store(&ctl->go, 1);
        void *ret;
        pthread_join(tp, &ret);
        fail |= ret != NULL;
        fail |= !drain(r);
        atomic_store(&ctl->done, 1);
        for (int i = 0; i < 3; i++) {
            pthread_join(tm[i], &ret);
            fail |= ret != NULL;
        }
    } else {
        pid_t pm[3], pp;
        for (int i = 0; i < 3; i++)
            if ((pm[i] = fork_child()) == 0)
                _exit(run_member(i, i == 2));
        while (atomic_load(&ctl->joined) < 3)
            usleep(1000);
        if ((pp = fork_child()) == 0)
            _exit(run_producer());
        atomic_store(&ctl->go, 1);
        while (atomic_load(&ctl->produced) < nframes / 3 && !atomic_load(&ctl->fail))
            usleep(1000);
        atomic_store(&ctl->freeze, 1);
        while (!atomic_load(&ctl->victim_held) && !atomic_load(&ctl->fail))
            usleep(1000);
        kill(pm[2], SIGKILL);
        int st;
        waitpid(pm[2], &st, 0);
        waitpid(pp, &st, 0);
        fail |= !WIFEXITED(st) || WEXITSTATUS(st);
        fail |= !drain(r);
        atomic_store(&ctl->done, 1);
        for (int i = 0; i < 2; i++) {
            waitpid(pm[i], &st, 0);
            fail |= !WIFEXITED(st) || WEXITSTATUS(st);
        }
    }
    double s = (double)(rtd_now_ns() - t0) / 1e9;
    uint64_t zero = 0, twice = 0, more = 0;
    for (uint64_t i = 0; i < nframes; i++) {
        uint8_t c = atomic_load(&ctl->count[i]);
        zero += c == 0;
        twice += c == 2;
        more += c > 2;
    }
    uint64_t lost = atomic_load(&ctl->lost_dead), adopted = atomic_load(&ctl->adopted);
    printf("stress_group %s: %lu frames in %.2f s; victim took %lu; adopted %lu, lost_dead %lu; "
           "unprocessed %lu, twice %lu\n",
           alldead   ? "alldead"
           : threads ? "threads"
                     : "procs",
           (unsigned long)nframes, s, (unsigned long)atomic_load(&ctl->victim_taken),
           (unsigned long)adopted, (unsigned long)lost, (unsigned long)zero, (unsigned long)twice);
    uint64_t held = atomic_load(&ctl->victim_held);
    if (alldead) {
        /* Exact identity: every frame processed once, or counted lost_dead (checked above too). */
        if (zero != lost || more || twice) {
            fprintf(stderr, "stress_group: %lu unprocessed != %lu lost_dead (twice %lu)\n",
                    (unsigned long)zero, (unsigned long)lost, (unsigned long)twice);
            fail = 1;
        }
    } else if (zero || lost || more || twice ||
               (threads ? adopted != 0
                        : adopted != 1 || !held || atomic_load(&ctl->count[held - 1]) != 1)) {
        /*
         * Exact: the ring blocks and a dead member's holding pins the shared
         * cursor, so the victim's frame is still in its slot when a survivor
         * adopts it: adopted 1, lost 0, every frame processed exactly once.
         */
        fprintf(stderr, "stress_group: frames not processed exactly once, or the victim's frame "
                        "not adopted\n");
        fail = 1;
    }
    fail |= atomic_load(&ctl->fail);
    shared_ring = NULL;
    rtd_ring_close(r);
    rtd_shm_cleanup(inst, 1);
    return fail ? 1 : 0;
}
