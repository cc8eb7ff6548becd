/* SPDX-License-Identifier: MIT */
/*
 * A consumer SIGSTOPped past its reaping and resumed registers again and never
 * writes another consumer's cursor. Real processes:
 *
 *   stress_reap [--rounds N]
 *
 * A forked producer fills a blocking packet ring; the parent runs the rounds. "A" (a forked
 * reliable consumer) reads and releases after every record, so a stop often lands between its
 * ownership check and its cursor store. Each round: SIGSTOP A, wait until its heartbeat is stale,
 * reap it (rtd_ring_reap), fork "B" (a new reliable consumer) which must get another slot, SIGCONT
 * A, and let both read. B checks before every release that its slot's cursor never went back, and
 * its gen and pid never changed: a store by A into B's slot is caught there. A must report one more
 * re-registration per round, in its own slot, and every record it kept must check out (records read
 * between its resume and the release that told it it had been reaped are discarded: -ESTALE). Exit
 * 0 pass, 1 fail.
 */
#include <errno.h>
#include <getopt.h>
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

#define STALE_NS 50000000ull /* reap limit: A has been stopped at least twice this */

#define GFRAMES (1u << 20) /* group mode: frames counted (processed per frame) */

struct ctl {
    _Atomic int stop_producer;
    _Atomic uint64_t produced;
    _Atomic int b_index, a_member;
    _Atomic int a_ready, a_quit;
    _Atomic uint64_t a_got, a_stale, a_rereg;
    _Atomic int a_index;
    _Atomic int b_ready, b_quit;
    _Atomic uint64_t b_got;
    _Atomic int fail;
    _Atomic uint8_t count[GFRAMES]; /* group mode: times each frame was processed */
};

static char inst[32];
static struct ctl *ctl;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "stress_reap: " __VA_ARGS__);                                              \
        fputc('\n', stderr);                                                                       \
        atomic_store(&ctl->fail, 1);                                                               \
    } while (0)

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

/* 32-byte records: seq, two words derived from it, a checksum. */
static bool record_ok(const struct rtd_pkt_hdr *h)
{
    const uint64_t *p = rtd_pkt_payload(h);
    return h->len == 32 && p[0] == h->seq && p[1] == mix(h->seq) && p[2] == mix(h->seq + 1) &&
           p[3] == (p[0] ^ p[1] ^ p[2]);
}

static int run_producer(void)
{
    struct rtd_ring *r;
    if (rtd_ring_attach(&r, inst, "reap"))
        return 1;
    uint64_t seq = 0;
    while (!atomic_load(&ctl->stop_producer)) {
        int err;
        uint64_t *p = rtd_pkt_reserve(r, 32, 1, &err);
        if (!p) {
            rtd_pkt_publish(r);
            rtd_ring_wait_space(r, 1000000);
            continue;
        }
        p[0] = seq;
        p[1] = mix(seq);
        p[2] = mix(seq + 1);
        p[3] = p[0] ^ p[1] ^ p[2];
        seq++;
        if ((seq & 15) == 0)
            rtd_pkt_publish(r);
    }
    rtd_pkt_publish(r);
    rtd_ring_close(r);
    return 0;
}

static int slot_of(const struct rtd_ring_hdr *h, const char *label)
{
    for (int i = 0; i < RTD_MAX_CONSUMERS; i++)
        if (atomic_load(&h->consumers[i].pid) == (int32_t)getpid() &&
            !strcmp(h->consumers[i].label, label))
            return i;
    return -1;
}

/* A: reads, checks, releases after every record. */
static int run_a(void)
{
    struct rtd_ring *r;
    struct rtd_consumer *c;
    if (rtd_ring_attach(&r, inst, "reap") || rtd_consumer_open(&c, r, RTD_CONSUMER_RELIABLE, "A"))
        return 1;
    const struct rtd_ring_hdr *h = rtd_ring_header(r);
    atomic_store(&ctl->a_index, slot_of(h, "A"));
    atomic_store(&ctl->a_ready, 1);
    uint64_t got = 0, stale = 0;
    while (!atomic_load_explicit(&ctl->a_quit, memory_order_relaxed)) {
        const struct rtd_pkt_hdr *rec;
        int rc = rtd_pkt_next(c, &rec);
        if (rc == -EAGAIN) {
            rtd_consumer_heartbeat(c);
            sched_yield();
            continue;
        }
        if (rc) {
            FAIL("A next: %d", rc);
            return 1;
        }
        bool ok = record_ok(rec);
        uint64_t seq = rec->seq;
        if (rtd_pkt_release(c) == -ESTALE) {
            stale++; /* reaped while we read it: no licence, discard */
            continue;
        }
        if (!ok) {
            FAIL("A kept a bad record (seq %lu)", (unsigned long)seq);
            return 1;
        }
        got++;
        if ((got & 63) == 0) {
            rtd_consumer_heartbeat(c);
            atomic_store(&ctl->a_got, got);
            atomic_store(&ctl->a_stale, stale);
            atomic_store(&ctl->a_rereg, rtd_consumer_reregistered(c));
        }
    }
    atomic_store(&ctl->a_got, got);
    atomic_store(&ctl->a_stale, stale);
    atomic_store(&ctl->a_rereg, rtd_consumer_reregistered(c));
    int idx = slot_of(h, "A");
    if (idx != atomic_load(&ctl->a_index)) {
        FAIL("A registered again in slot %d, not its own %d", idx, atomic_load(&ctl->a_index));
        return 1;
    }
    rtd_consumer_close(c);
    rtd_ring_close(r);
    return 0;
}

/* B: reads; before every release, checks that nobody else wrote its slot. */
static int run_b(const char *label)
{
    struct rtd_ring *r;
    struct rtd_consumer *c;
    if (rtd_ring_attach(&r, inst, "reap") || rtd_consumer_open(&c, r, RTD_CONSUMER_RELIABLE, label))
        return 1;
    const struct rtd_ring_hdr *h = rtd_ring_header(r);
    int i = slot_of(h, label);
    if (i < 0 || i == atomic_load(&ctl->a_index)) {
        FAIL("%s got slot %d, the reaped A's slot (reserved to A while it lives) is %d", label, i,
             atomic_load(&ctl->a_index));
        return 1;
    }
    const struct rtd_consumer_slot *s = &h->consumers[i];
    uint32_t gen = atomic_load(&s->gen);
    uint64_t last = atomic_load(&s->cursor), got = 0;
    atomic_store(&ctl->b_ready, 1);
    while (!atomic_load_explicit(&ctl->b_quit, memory_order_relaxed)) {
        const struct rtd_pkt_hdr *rec;
        int rc = rtd_pkt_next(c, &rec);
        rtd_consumer_heartbeat(c);
        if (rc == -EAGAIN) {
            sched_yield();
            continue;
        }
        if (rc) {
            FAIL("%s next: %d", label, rc);
            return 1;
        }
        uint64_t cur = atomic_load(&s->cursor);
        if ((int64_t)(cur - last) < 0 || atomic_load(&s->gen) != gen ||
            atomic_load(&s->pid) != (int32_t)getpid()) {
            FAIL("%s's slot %d was written by someone else: cursor %lu after %lu, gen %u (was "
                 "%u), pid %d",
                 label, i, (unsigned long)cur, (unsigned long)last, atomic_load(&s->gen), gen,
                 (int)atomic_load(&s->pid));
            return 1;
        }
        if (!record_ok(rec)) {
            FAIL("%s: bad record", label);
            return 1;
        }
        if (rtd_pkt_release(c)) {
            FAIL("%s was reaped (it never stopped)", label);
            return 1;
        }
        last = atomic_load(&s->cursor);
        got++;
        if ((got & 63) == 0)
            atomic_store(&ctl->b_got, got);
    }
    rtd_consumer_close(c);
    rtd_ring_close(r);
    return 0;
}

/* ---- group mode ------------------------------------------------------------------ */

static int run_frame_producer(void)
{
    struct rtd_ring *r;
    if (rtd_ring_attach(&r, inst, "reap"))
        return 1;
    uint64_t i = 0;
    while (!atomic_load(&ctl->stop_producer) && i < GFRAMES) {
        struct rtd_frame f;
        int rc = rtd_frame_claim(r, &f);
        if (rc == -EAGAIN) {
            rtd_ring_wait_space(r, 1000000);
            continue;
        }
        if (rc)
            return 1;
        uint64_t *p = (uint64_t *)(void *)f.data;
        p[0] = i;
        p[1] = mix(i);
        p[2] = mix(i + 1);
        p[3] = p[0] ^ p[1] ^ p[2];
        f.hdr->len = 32;
        f.hdr->frame_id = i;
        rtd_frame_publish(r, &f);
        atomic_store(&ctl->produced, ++i);
    }
    rtd_ring_close(r);
    return 0;
}

static bool frame_ok(const struct rtd_frame *f)
{
    const uint64_t *p = (const uint64_t *)(const void *)f->data;
    return p[0] == f->hdr->frame_id && p[1] == mix(p[0]) && p[2] == mix(p[0] + 1) &&
           p[3] == (p[0] ^ p[1] ^ p[2]) && p[0] < GFRAMES;
}

static int member_of(const struct rtd_group_slot *g, const char *label)
{
    for (int i = 0; i < RTD_GROUP_MAX_MEMBERS; i++)
        if (atomic_load(&g->members[i].pid) == (int32_t)getpid() &&
            !strncmp(g->members[i].label, label, sizeof g->members[i].label))
            return i;
    return -1;
}

/* A (is_a) or a B: take, check, done; B checks its own entry before every done. */
static int run_member(const char *label, bool is_a)
{
    struct rtd_ring *r;
    struct rtd_group *g;
    if (rtd_ring_attach(&r, inst, "reap") || rtd_group_join(&g, r, "g", label))
        return 1;
    const struct rtd_ring_hdr *h = rtd_ring_header(r);
    const struct rtd_group_slot *gs = &h->groups[0];
    int mi = member_of(gs, label);
    if (is_a) {
        atomic_store(&ctl->a_member, mi);
        atomic_store(&ctl->a_ready, 1);
    } else {
        if (mi < 0 || mi == atomic_load(&ctl->a_member)) {
            FAIL("%s got member entry %d; the stopped A's entry %d is reserved to it", label, mi,
                 atomic_load(&ctl->a_member));
            return 1;
        }
        atomic_store(&ctl->b_index, mi);
        atomic_store(&ctl->b_ready, 1);
    }
    const struct rtd_group_member *m = &gs->members[mi];
    uint32_t gen = atomic_load(&m->gen);
    uint64_t got = 0, stale = 0;
    _Atomic int *quit = is_a ? &ctl->a_quit : &ctl->b_quit;
    while (!atomic_load_explicit(quit, memory_order_relaxed)) {
        struct rtd_frame f;
        int rc = rtd_group_take(g, &f);
        if (rc == -EAGAIN) {
            rtd_group_wait(g, 1000000);
            continue;
        }
        if (rc) {
            FAIL("%s take: %d", label, rc);
            return 1;
        }
        /* A works on each frame for 20 us, so a stop often finds it holding one. */
        for (uint64_t until = is_a ? rtd_now_ns() + 20000 : 0; rtd_now_ns() < until;) {
        }
        bool ok = frame_ok(&f);
        uint64_t id = f.hdr->frame_id;
        if (!is_a && (atomic_load(&m->holding) != f.hdr->seq || atomic_load(&m->gen) != gen ||
                      atomic_load(&m->pid) != (int32_t)getpid())) {
            FAIL("%s's member entry %d was written by someone else (holding %lu, frame %lu)", label,
                 mi, (unsigned long)atomic_load(&m->holding), (unsigned long)f.hdr->seq);
            return 1;
        }
        if (rtd_group_done(g, &f) == -ESTALE) {
            stale++; /* revived while we held it: counted lost, discard */
            continue;
        }
        if (!ok) {
            FAIL("%s kept a bad frame (%lu)", label, (unsigned long)id);
            return 1;
        }
        if (id < GFRAMES)
            atomic_fetch_add(&ctl->count[id], 1);
        got++;
        if (is_a && (got & 63) == 0) {
            atomic_store(&ctl->a_got, got);
            atomic_store(&ctl->a_rereg, rtd_group_rejoined(g));
        }
        if (!is_a && (got & 63) == 0)
            atomic_store(&ctl->b_got, got);
    }
    if (is_a) {
        atomic_store(&ctl->a_got, got);
        atomic_store(&ctl->a_stale, stale);
        atomic_store(&ctl->a_rereg, rtd_group_rejoined(g));
        if (member_of(gs, label) != mi) {
            FAIL("A lost its member entry %d", mi);
            return 1;
        }
    }
    rtd_group_leave(g);
    rtd_ring_close(r);
    return 0;
}

static bool stopped(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && (rp[2] == 'T' || rp[2] == 't');
}

/* Wait for *v >= want (or a failure, or 20 s). */
static bool wait_for(_Atomic uint64_t *v, uint64_t want)
{
    uint64_t t0 = rtd_now_ns();
    while (atomic_load(v) < want && !atomic_load(&ctl->fail)) {
        if (rtd_now_ns() - t0 > 20000000000ull)
            return false;
        usleep(1000);
    }
    return !atomic_load(&ctl->fail);
}

static int run_group(struct rtd_ring *r, int rounds)
{
    const struct rtd_ring_hdr *h = rtd_ring_header(r);
    int fail = 0, st;
    pid_t pa = fork();
    if (pa == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        _exit(run_member("A", true));
    }
    while (!atomic_load(&ctl->a_ready) && !atomic_load(&ctl->fail))
        usleep(1000);
    pid_t pp = fork();
    if (pp == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        _exit(run_frame_producer());
    }
    const int ci = h->groups[0].consumer;
    for (int k = 0; k < rounds && !fail; k++) {
        fail |= !wait_for(&ctl->a_got, atomic_load(&ctl->a_got) + 1000);
        usleep((useconds_t)(mix((uint64_t)k) % 500));
        kill(pa, SIGSTOP);
        while (!stopped(pa))
            usleep(100);
        usleep(2 * STALE_NS / 1000);
        if (rtd_ring_reap(r, STALE_NS) < 1 ||
            atomic_load(&h->consumers[ci].state) != RTD_CSLOT_DEAD) {
            FAIL("round %d: the stopped group's cursor was not reaped", k);
            fail = 1;
        }
        char label[16];
        snprintf(label, sizeof label, "B%d", k);
        atomic_store(&ctl->b_ready, 0);
        atomic_store(&ctl->b_quit, 0);
        atomic_store(&ctl->b_got, 0);
        pid_t pb = fork();
        if (pb == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            _exit(run_member(label, false));
        }
        while (!atomic_load(&ctl->b_ready) && !atomic_load(&ctl->fail))
            usleep(100);
        if (h->groups[0].consumer != ci ||
            atomic_load(&h->consumers[ci].state) != RTD_CSLOT_ACTIVE) {
            FAIL("round %d: the revived group moved off its cursor slot %d (now %d)", k, ci,
                 h->groups[0].consumer);
            fail = 1;
        }
        kill(pa, SIGCONT);
        fail |= !wait_for(&ctl->a_rereg, (uint64_t)k + 1);
        fail |= !wait_for(&ctl->b_got, 1000);
        fail |= !wait_for(&ctl->a_got, atomic_load(&ctl->a_got) + 1000);
        atomic_store(&ctl->b_quit, 1);
        waitpid(pb, &st, 0);
        fail |= !WIFEXITED(st) || WEXITSTATUS(st);
        fail |= atomic_load(&ctl->fail);
        if (fail)
            fprintf(stderr, "stress_reap --group: round %d failed (A rejoined %lu times)\n", k,
                    (unsigned long)atomic_load(&ctl->a_rereg));
    }
    /* Stop producing; A takes what is left, then every frame is accounted for. */
    atomic_store(&ctl->stop_producer, 1);
    kill(pa, SIGCONT);
    waitpid(pp, &st, 0);
    fail |= !WIFEXITED(st) || WEXITSTATUS(st);
    uint64_t total = atomic_load(&ctl->produced), t0 = rtd_now_ns();
    while (!fail &&
           (int64_t)(atomic_load(&h->consumers[h->groups[0].consumer].cursor) - total) < 0) {
        if (rtd_now_ns() - t0 > 20000000000ull) {
            FAIL("the group's cursor is stuck");
            fail = 1;
        }
        usleep(1000);
    }
    atomic_store(&ctl->a_quit, 1);
    waitpid(pa, &st, 0);
    fail |= !WIFEXITED(st) || WEXITSTATUS(st);
    uint64_t zero = 0, twice = 0;
    for (uint64_t i = 0; i < total; i++) {
        zero += atomic_load(&ctl->count[i]) == 0;
        twice += atomic_load(&ctl->count[i]) > 1;
    }
    uint64_t lost = atomic_load(&h->groups[0].lost_dead), rereg = atomic_load(&ctl->a_rereg);
    printf("stress_reap --group: %d rounds, %lu frames: unprocessed %lu, lost_dead %lu, twice %lu; "
           "A rejoined %lu times, discarded %lu frames it held across a revival; group slot %d "
           "reregistered %u\n",
           rounds, (unsigned long)total, (unsigned long)zero, (unsigned long)lost,
           (unsigned long)twice, (unsigned long)rereg, (unsigned long)atomic_load(&ctl->a_stale),
           ci, atomic_load(&h->consumers[ci].reregistered));
    if (!fail && (zero != lost || twice || rereg != (uint64_t)rounds)) {
        fprintf(stderr, "stress_reap --group: frames not accounted exactly, or A did not rejoin "
                        "once per round\n");
        fail = 1;
    }
    return fail | atomic_load(&ctl->fail);
}

int main(int argc, char **argv)
{
    int rounds = 20;
    bool group = false;
    static const struct option opts[] = {{"rounds", required_argument, NULL, 'n'},
                                         {"group", no_argument, NULL, 'g'},
                                         {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "n:g", opts, NULL)) != -1) {
        if (o == 'n')
            rounds = atoi(optarg);
        else if (o == 'g')
            group = true;
        else
            return 2;
    }
    snprintf(inst, sizeof inst, "sr%d", (int)getpid());
    alarm(240);
    ctl = mmap(NULL, sizeof *ctl, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ctl == MAP_FAILED)
        return 1;
    struct rtd_ring_config cfg = {
        .kind = RTD_RING_PACKET, .data_bytes = 1u << 16, .overflow = RTD_OVERFLOW_BLOCK};
    if (group) {
        cfg.kind = RTD_RING_FRAME;
        cfg.slot_payload = 64;
        cfg.slot_count = 16;
    }
    struct rtd_ring *r;
    int rc = rtd_ring_create(&r, inst, "reap", &cfg);
    if (rc) {
        fprintf(stderr, "stress_reap: create: %d\n", rc);
        return 1;
    }
    if (group) {
        int fail = run_group(r, rounds);
        rtd_ring_close(r);
        rtd_shm_cleanup(inst, 1);
        return fail ? 1 : 0;
    }
    const struct rtd_ring_hdr *h = rtd_ring_header(r);
    pid_t pa = fork();
    if (pa == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        _exit(run_a());
    }
    while (!atomic_load(&ctl->a_ready))
        usleep(1000);
    pid_t pp = fork();
    if (pp == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        _exit(run_producer());
    }
    int fail = 0, ai = atomic_load(&ctl->a_index);
    for (int k = 0; k < rounds && !fail; k++) {
        /* A is reading at full speed; stop it wherever it is. */
        fail |= !wait_for(&ctl->a_got, atomic_load(&ctl->a_got) + 2000);
        usleep((useconds_t)(mix((uint64_t)k) % 500));
        kill(pa, SIGSTOP);
        while (!stopped(pa))
            usleep(100);
        usleep(2 * STALE_NS / 1000);
        if (rtd_ring_reap(r, STALE_NS) < 1 ||
            atomic_load(&h->consumers[ai].state) != RTD_CSLOT_DEAD) {
            FAIL("round %d: the stopped A was not reaped", k);
            fail = 1;
        }
        char label[16];
        snprintf(label, sizeof label, "B%d", k);
        atomic_store(&ctl->b_ready, 0);
        atomic_store(&ctl->b_quit, 0);
        atomic_store(&ctl->b_got, 0);
        pid_t pb = fork();
        if (pb == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            _exit(run_b(label));
        }
        while (!atomic_load(&ctl->b_ready) && !atomic_load(&ctl->fail))
            usleep(100);
        kill(pa, SIGCONT);
        /* Both read on: A registers again, B must see its slot untouched. */
        fail |= !wait_for(&ctl->a_rereg, (uint64_t)k + 1);
        fail |= !wait_for(&ctl->b_got, 4096);
        fail |= !wait_for(&ctl->a_got, atomic_load(&ctl->a_got) + 4096);
        atomic_store(&ctl->b_quit, 1);
        int st;
        waitpid(pb, &st, 0);
        fail |= !WIFEXITED(st) || WEXITSTATUS(st);
        fail |= atomic_load(&ctl->fail);
        if (fail)
            fprintf(stderr, "stress_reap: round %d failed (A re-registered %lu times)\n", k,
                    (unsigned long)atomic_load(&ctl->a_rereg));
    }
    atomic_store(&ctl->a_quit, 1);
    int st;
    kill(pa, SIGCONT);
    waitpid(pa, &st, 0);
    fail |= !WIFEXITED(st) || WEXITSTATUS(st);
    atomic_store(&ctl->stop_producer, 1);
    waitpid(pp, &st, 0);
    fail |= !WIFEXITED(st) || WEXITSTATUS(st);
    uint64_t rereg = atomic_load(&ctl->a_rereg);
    printf("stress_reap: %d rounds; A read %lu records, discarded %lu read while reaped, "
           "re-registered %lu times in its own slot %d; slot shows reregistered %u\n",
           rounds, (unsigned long)atomic_load(&ctl->a_got),
           (unsigned long)atomic_load(&ctl->a_stale), (unsigned long)rereg, ai,
           atomic_load(&h->consumers[ai].reregistered));
    if (!fail && rereg != (uint64_t)rounds) {
        fprintf(stderr, "stress_reap: A re-registered %lu times in %d rounds\n",
                (unsigned long)rereg, rounds);
        fail = 1;
    }
    fail |= atomic_load(&ctl->fail);
    rtd_ring_close(r);
    rtd_shm_cleanup(inst, 1);
    return fail ? 1 : 0;
}
