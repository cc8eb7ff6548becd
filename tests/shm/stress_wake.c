/* SPDX-License-Identifier: MIT */
/*
 * Stress test of the futex wake-up handshakes (F1/F2 and F5/F6 in shm/): two
 * processes play ping-pong so that one side goes to sleep at the very moment
 * the other publishes, again and again. A lost wake-up leaves the sleeper
 * asleep until its timeout. Every sleep asks for 5 ms (shm caps it at 1 ms
 * where membarrier is refused), and the waker notes when its publish (or
 * release), wake-up included, had returned. A sleep that ends in -ETIMEDOUT
 * although that had returned before the shortest possible sleep could expire
 * (call time + 1 ms) is a lost wake-up: had the wake-up been issued, the sleep
 * would have ended woken; had the waker seen no sleeper, the sleeper's own
 * re-check would have seen the work. The test fails on the first one, and
 * also when a round trip takes over 2 s.
 *
 *   stress_wake [--rounds N] [--mode procs|threads] [--membarrier register|off]
 *
 * Three cases, each N rounds:
 *   data:  packet ring; the producer publishes one record, the reliable
 *          consumer (which never spins, it sleeps at once) acks it.
 *   group: frame ring; the same with a consumer-group member (rtd_group_wait).
 *   space: 2-slot frame ring under RTD_OVERFLOW_BLOCK; the producer keeps it
 *          full and sleeps for space, the consumer releases one frame per ack.
 * The waker sometimes waits a random few microseconds first, so the two sides
 * meet at every point of each other's sleep path. threads: both sides are
 * threads of one process, on one mapping, so ThreadSanitizer sees the orderings.
 * At ~50 k round trips/s the wakers would keep fencing (shm registers only
 * frequent wakers for membarrier); --membarrier register makes every process
 * register at once, so the fence-free waker path is what is tested; the test
 * then checks that both processes did register (77 if the kernel refuses).
 * Exit 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "rtd_shm.h"
#include "rtd_util.h"

#define STALL_NS 2000000000ull /* a round trip longer than this is a lost wake-up */
#define SLEEP_NS 5000000ull    /* the timeout every sleep asks for */
/* The shortest a sleep of SLEEP_NS can last: shm's cap where membarrier is refused. */
#define MIN_SLEEP_NS 1000000ull

enum wcase { W_DATA, W_GROUP, W_SPACE };
static const char *const case_name[] = {"data", "group", "space"};

struct ctl {
    _Atomic uint64_t ack;  /* rounds the consumer has finished */
    _Atomic int ready;     /* the consumer is attached */
    _Atomic int fail;      /* the consumer saw something wrong */
    _Atomic uint64_t slow; /* the longest round trip (ns) */
    /* The waker's last publish (data, group: the producer) or release (space: the consumer):
     * how many so far, and when the last one had returned (its wake-up included). */
    _Atomic uint64_t woke_count, woke_ns;
    _Atomic uint64_t timeouts; /* sleeps that ended in -ETIMEDOUT (fine while not lost) */
    _Atomic int mb_state;      /* the consumer's rtd_shm_membarrier_state() */
};

static struct ctl *ctl;
static char inst[32];
static uint64_t rounds = 20000;
static struct rtd_ring *shared_ring; /* threads mode: one mapping for both sides */
static bool want_registered;         /* --membarrier register: check it happened */

/*
 * --membarrier register: did this side (process) register? 0 yes, 77 the kernel
 * has no membarrier or refuses it here (skip), 1 shm did not register though
 * the kernel lets this process (fail).
 */
static int check_registered(const char *side, int state)
{
    if (state == 1)
        return 0;
    if (state < 0) {
        printf("stress_wake: skipped: membarrier unavailable or refused (%s)\n", side);
        return 77;
    }
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) != 0) {
        printf("stress_wake: skipped: the kernel refuses membarrier registration: %s (%s)\n",
               strerror(errno), side);
        return 77;
    }
    fprintf(stderr,
            "stress_wake: the %s did not register for membarrier, though the kernel "
            "allows it\n",
            side);
    return 1;
}

/*
 * A busy wait before waking: none in a quarter of the rounds, up to 20 us in one
 * in sixteen (the sleeper is then really asleep in futex_wait), and otherwise
 * 0-600 ns, spread over the sleeper's way from its last check to the futex,
 * where a lost wake-up can happen.
 */
static void jitter(uint64_t i)
{
    uint64_t x = i * 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    if ((x & 3) == 0)
        return;
    uint64_t ns = (x & 60) == 0 ? (x >> 40) % 20000 : (x >> 40) % 600;
    uint64_t until = rtd_now_ns() + ns;
    while (rtd_now_ns() < until) {
    }
}

/* The producer's side: wait for the consumer's ack of round i, or fail after STALL_NS. */
static int wait_ack(uint64_t want, enum wcase wc)
{
    uint64_t t0 = rtd_now_ns();
    while (atomic_load_explicit(&ctl->ack, memory_order_acquire) < want) {
        uint64_t dt = rtd_now_ns() - t0;
        if (dt > STALL_NS) {
            fprintf(stderr, "stress_wake %s: round %llu: no answer in %.1f s: lost wake-up\n",
                    case_name[wc], (unsigned long long)want, (double)dt / 1e9);
            return -1;
        }
        if (atomic_load_explicit(&ctl->fail, memory_order_relaxed))
            return -1;
    }
    uint64_t dt = rtd_now_ns() - t0;
    if (dt > atomic_load_explicit(&ctl->slow, memory_order_relaxed))
        atomic_store_explicit(&ctl->slow, dt, memory_order_relaxed);
    return 0;
}

static int ring_get(struct rtd_ring **r, const char *name)
{
    if (shared_ring) {
        *r = shared_ring;
        return 0;
    }
    return rtd_ring_attach(r, inst, name);
}

static void ring_put(struct rtd_ring *r)
{
    if (r != shared_ring)
        rtd_ring_close(r);
}

static void waker_done(void)
{
    atomic_store_explicit(&ctl->woke_ns, rtd_now_ns(), memory_order_relaxed);
    atomic_fetch_add_explicit(&ctl->woke_count, 1, memory_order_release);
}

/*
 * A sleep called at t_call ended in -ETIMEDOUT: lost if the waker's action
 * number `want` (1-based) had returned before t_call + MIN_SLEEP_NS.
 */
static bool lost_wakeup(uint64_t want, uint64_t t_call)
{
    atomic_fetch_add_explicit(&ctl->timeouts, 1, memory_order_relaxed);
    uint64_t n = atomic_load_explicit(&ctl->woke_count, memory_order_acquire);
    uint64_t t = atomic_load_explicit(&ctl->woke_ns, memory_order_relaxed);
    /* woke_ns is stored before woke_count; n >= want with a later t only makes this stricter. */
    return n >= want && t < t_call + MIN_SLEEP_NS;
}

static void consumer_fail(const char *what, uint64_t i, long got)
{
    fprintf(stderr, "stress_wake: consumer: %s at round %llu (%ld)\n", what, (unsigned long long)i,
            got);
    atomic_store(&ctl->fail, 1);
}

/* ---- consumers: never spin; sleep as soon as there is nothing ---------------- */

/*
 * data: a reliable packet consumer; group: a consumer-group member; space: a
 * reliable frame consumer that frees a slot of the full 2-slot ring per round
 * just as the producer goes to sleep for space.
 */
static void consume(enum wcase wc)
{
    struct rtd_ring *r;
    struct rtd_consumer *c = NULL;
    struct rtd_group *g = NULL;
    int rc = ring_get(&r, "wake");
    if (rc == 0)
        rc = wc == W_GROUP ? rtd_group_join(&g, r, "workers", "sleeper")
                           : rtd_consumer_open(&c, r, RTD_CONSUMER_RELIABLE, "sleeper");
    if (rc) {
        consumer_fail("attach", 0, rc);
        return;
    }
    atomic_store(&ctl->mb_state, rtd_shm_membarrier_state());
    atomic_store(&ctl->ready, 1);
    for (uint64_t i = 0; i < rounds;) {
        const struct rtd_pkt_hdr *h;
        struct rtd_frame f;
        const void *data = NULL;
        if (wc == W_DATA) {
            if ((rc = rtd_pkt_next(c, &h)) == 0)
                data = h + 1;
        } else {
            if ((rc = g ? rtd_group_take(g, &f) : rtd_frame_peek(c, &f)) == 0)
                data = f.data;
        }
        if (rc == -EAGAIN) {
            uint64_t t_call = rtd_now_ns();
            rc = g ? rtd_group_wait(g, SLEEP_NS) : rtd_consumer_wait(c, SLEEP_NS);
            if (rc == -ETIMEDOUT && wc != W_SPACE && lost_wakeup(i + 1, t_call)) {
                consumer_fail("lost wake-up: slept to its timeout though the round had been "
                              "published before that timeout could expire",
                              i, rc);
                break;
            }
            if (rc < 0 && rc != -ETIMEDOUT) {
                consumer_fail("wait", i, rc);
                break;
            }
            continue;
        }
        uint64_t v = 0;
        if (data)
            memcpy(&v, data, sizeof v);
        if (rc || v != i) {
            consumer_fail("record out of order", i, rc ? rc : (long)v);
            break;
        }
        if (wc == W_DATA) {
            rtd_pkt_release(c);
        } else if (wc == W_GROUP) {
            rtd_group_done(g, &f);
        } else {
            jitter(i); /* meet the producer at a random point of its way to sleep */
            rtd_frame_release(c);
            waker_done();
        }
        atomic_store_explicit(&ctl->ack, ++i, memory_order_release);
    }
    if (g)
        rtd_group_leave(g);
    else
        rtd_consumer_close(c);
    ring_put(r);
}

/* ---- producers ------------------------------------------------------------ */

static int produce(struct rtd_ring *r, enum wcase wc)
{
    for (uint64_t i = 0; i < rounds; i++) {
        jitter(i);
        if (wc == W_DATA) {
            int err;
            uint64_t *p = rtd_pkt_reserve(r, sizeof(uint64_t), 1, &err);
            if (!p) {
                fprintf(stderr, "stress_wake data: reserve: %d\n", err);
                return -1;
            }
            *p = i;
            rtd_pkt_publish(r);
            waker_done();
        } else {
            struct rtd_frame f;
            int rc;
            /* space: the ring holds 2 frames, so from round 2 on this sleeps for space. */
            uint64_t t0 = rtd_now_ns();
            uint64_t released = atomic_load_explicit(&ctl->woke_count, memory_order_acquire);
            while ((rc = rtd_frame_claim(r, &f)) == -ENOBUFS || rc == -EAGAIN) {
                if (rtd_now_ns() - t0 > STALL_NS) {
                    fprintf(stderr, "stress_wake %s: round %llu: no space in 2 s: lost wake-up\n",
                            case_name[wc], (unsigned long long)i);
                    return -1;
                }
                uint64_t t_call = rtd_now_ns();
                rc = rtd_ring_wait_space(r, SLEEP_NS);
                /* Any release after the failed claim frees a slot of the full 2-slot ring. */
                if (rc == -ETIMEDOUT && lost_wakeup(released + 1, t_call)) {
                    fprintf(stderr,
                            "stress_wake space: round %llu: lost wake-up: slept to its timeout "
                            "though a frame was released before it could expire\n",
                            (unsigned long long)i);
                    return -1;
                }
                released = atomic_load_explicit(&ctl->woke_count, memory_order_acquire);
                if (rc < 0 && rc != -ETIMEDOUT) {
                    fprintf(stderr, "stress_wake space: wait: %d\n", rc);
                    return -1;
                }
            }
            if (rc) {
                fprintf(stderr, "stress_wake %s: claim: %d\n", case_name[wc], rc);
                return -1;
            }
            memcpy(f.data, &i, sizeof i);
            f.hdr->len = sizeof i;
            f.hdr->type = 1;
            rtd_frame_publish(r, &f);
            if (wc == W_GROUP)
                waker_done();
        }
        /* space: the consumer answers round i - 1 while we wait for room for round i + 1. */
        if (wc != W_SPACE && wait_ack(i + 1, wc))
            return -1;
    }
    return wait_ack(rounds, wc);
}

struct thread_arg {
    enum wcase wc;
};

static void *consumer_thread(void *arg)
{
    consume(((struct thread_arg *)arg)->wc);
    return NULL;
}

static int run_case(enum wcase wc, bool threads)
{
    struct rtd_ring_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (wc == W_DATA) {
        cfg.kind = RTD_RING_PACKET;
        cfg.data_bytes = 1u << 16;
        cfg.overflow = RTD_OVERFLOW_BLOCK;
    } else {
        cfg.kind = RTD_RING_FRAME;
        cfg.slot_payload = 64;
        cfg.slot_count = wc == W_SPACE ? 2 : 16;
        cfg.overflow = RTD_OVERFLOW_BLOCK;
    }
    struct rtd_ring *r;
    int rc = rtd_ring_create(&r, inst, "wake", &cfg);
    if (rc) {
        fprintf(stderr, "stress_wake: create: %d\n", rc);
        return -1;
    }
    memset(ctl, 0, sizeof *ctl);
    struct thread_arg ta = {wc};
    pthread_t th;
    pid_t pid = -1;
    if (threads) {
        shared_ring = r;
        pthread_create(&th, NULL, consumer_thread, &ta);
    } else {
        pid = fork();
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            consumer_thread(&ta);
            _exit(atomic_load(&ctl->fail) ? 1 : 0);
        }
    }
    while (!atomic_load(&ctl->ready) && !atomic_load(&ctl->fail))
        usleep(100);
    if (want_registered) {
        int rc1 = check_registered("producer", rtd_shm_membarrier_state());
        int rc2 = check_registered(threads ? "consumer thread" : "consumer process",
                                   atomic_load(&ctl->mb_state));
        if (rc1 || rc2) {
            if (pid > 0)
                kill(pid, SIGKILL);
            _exit(rc1 == 1 || rc2 == 1 ? 1 : 77);
        }
    }
    uint64_t t0 = rtd_now_ns();
    int fail = atomic_load(&ctl->fail) || produce(r, wc) != 0;
    double secs = (double)(rtd_now_ns() - t0) / 1e9;
    if (threads) {
        if (fail) {
            /* The consumer may sleep for SLEEP_NS; closing the ring wakes it with end of stream. */
            rtd_ring_close(r);
            r = NULL;
            _exit(1);
        }
        pthread_join(th, NULL);
    } else {
        int st = 0;
        if (fail)
            kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        fail |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    }
    fail |= atomic_load(&ctl->fail);
    shared_ring = NULL;
    rtd_ring_close(r);
    printf("stress_wake %-5s %s: %llu rounds in %.2f s (%.1f us each), slowest %.3f ms, %llu "
           "sleeps timed out%s: %s\n",
           case_name[wc], threads ? "threads" : "procs", (unsigned long long)rounds, secs,
           secs * 1e6 / (double)rounds, (double)atomic_load(&ctl->slow) / 1e6,
           (unsigned long long)atomic_load(&ctl->timeouts), fail ? "" : " (none lost)",
           fail ? "FAIL" : "ok");
    return fail ? -1 : 0;
}

int main(int argc, char **argv)
{
    bool threads = false;
    static const struct option opts[] = {{"rounds", required_argument, NULL, 'n'},
                                         {"mode", required_argument, NULL, 'm'},
                                         {"membarrier", required_argument, NULL, 'b'},
                                         {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "n:m:", opts, NULL)) != -1) {
        if (o == 'n')
            rounds = strtoull(optarg, NULL, 0);
        else if (o == 'm')
            threads = !strcmp(optarg, "threads");
        else if (o == 'b') {
            setenv("RTD_MEMBARRIER", optarg, 1); /* register: wakers stop fencing at once */
            want_registered = !strcmp(optarg, "register");
        } else
            return 2;
    }
    if (rounds < 4)
        rounds = 4;
    snprintf(inst, sizeof inst, "sw%d", (int)getpid());
    alarm(240);
    ctl = mmap(NULL, sizeof *ctl, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ctl == MAP_FAILED)
        return 1;
    int fail = 0;
    for (int wc = W_DATA; wc <= W_SPACE; wc++)
        fail |= run_case((enum wcase)wc, threads) != 0;
    return fail ? 1 : 0;
}
