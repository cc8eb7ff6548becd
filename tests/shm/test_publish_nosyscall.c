/* SPDX-License-Identifier: MIT */
/*
 * Publishing makes no system call unless a consumer sleeps. This program
 * defines syscall(), so shm's futex and membarrier calls (all made through
 * syscall(), linked statically from rtd_shm) come here first: each is counted
 * and passed on to libc's. Then:
 *
 *   1. packet and frame rings, a reliable consumer that reads everything and
 *      never sleeps: 100 000 publishes each must make no futex call (one
 *      membarrier registration, if shm decides this process wakes often, is
 *      allowed: it happens once per process, not per publish);
 *   2. control: a consumer thread asleep in rtd_consumer_wait must get a
 *      FUTEX_WAKE from the next publish, so the counting is shown to work.
 *
 * Exit 0 pass, 1 fail.
 */
#include <dlfcn.h>
#include <errno.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "rtd_shm.h"
#include "rtd_util.h"

#define N 100000

static _Atomic uint64_t n_futex_wake, n_futex_other, n_membarrier_reg, n_other;

long syscall(long number, ...);

static long (*real)(long, ...); /* libc's, set by main() before any thread starts */

long syscall(long number, ...)
{
    va_list ap;
    va_start(ap, number);
    long a[6];
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_futex) {
        if ((a[1] & FUTEX_CMD_MASK) == FUTEX_WAKE)
            atomic_fetch_add(&n_futex_wake, 1);
        else
            atomic_fetch_add(&n_futex_other, 1);
    } else if (number == SYS_membarrier && a[0] == MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) {
        atomic_fetch_add(&n_membarrier_reg, 1);
    } else {
        atomic_fetch_add(&n_other, 1);
    }
    return real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

static char inst[32];

static void counts(uint64_t *c)
{
    c[0] = atomic_load(&n_futex_wake);
    c[1] = atomic_load(&n_futex_other);
    c[2] = atomic_load(&n_membarrier_reg);
    c[3] = atomic_load(&n_other);
}

/* 0 if the publishes between before and now made no system call (but one registration). */
static int judge(const char *what, const uint64_t *before)
{
    uint64_t now[4];
    counts(now);
    uint64_t wake = now[0] - before[0], fut = now[1] - before[1], reg = now[2] - before[2],
             other = now[3] - before[3];
    printf("test_publish_nosyscall %s: %d publishes: %lu futex wakes, %lu other futex calls, %lu "
           "membarrier registrations, %lu other syscalls\n",
           what, N, (unsigned long)wake, (unsigned long)fut, (unsigned long)reg,
           (unsigned long)other);
    if (wake || fut || other || reg > 1) {
        fprintf(stderr,
                "test_publish_nosyscall %s: publishing with no sleeping consumer made "
                "system calls\n",
                what);
        return 1;
    }
    return 0;
}

static int packets(void)
{
    struct rtd_ring_config cfg = {
        .kind = RTD_RING_PACKET, .data_bytes = 1u << 16, .overflow = RTD_OVERFLOW_BLOCK};
    struct rtd_ring *r;
    struct rtd_consumer *c;
    if (rtd_ring_create(&r, inst, "p", &cfg) ||
        rtd_consumer_open(&c, r, RTD_CONSUMER_RELIABLE, "c"))
        return 1;
    uint64_t before[4];
    counts(before);
    int fail = 0;
    for (uint64_t i = 0; i < N && !fail; i++) {
        int err;
        uint64_t *p = rtd_pkt_reserve(r, 8, 1, &err);
        if (!p)
            return 1;
        *p = i;
        rtd_pkt_publish(r);
        const struct rtd_pkt_hdr *h;
        fail = rtd_pkt_next(c, &h) != 0 || *(const uint64_t *)rtd_pkt_payload(h) != i;
        rtd_pkt_release(c);
    }
    fail |= judge("packets", before);
    rtd_consumer_close(c);
    rtd_ring_close(r);
    return fail;
}

static int frames(void)
{
    struct rtd_ring_config cfg = {.kind = RTD_RING_FRAME,
                                  .slot_payload = 64,
                                  .slot_count = 8,
                                  .overflow = RTD_OVERFLOW_BLOCK};
    struct rtd_ring *r;
    struct rtd_consumer *c;
    if (rtd_ring_create(&r, inst, "f", &cfg) ||
        rtd_consumer_open(&c, r, RTD_CONSUMER_RELIABLE, "c"))
        return 1;
    uint64_t before[4];
    counts(before);
    int fail = 0;
    for (uint64_t i = 0; i < N && !fail; i++) {
        struct rtd_frame f;
        if (rtd_frame_claim(r, &f))
            return 1;
        f.hdr->frame_id = i;
        rtd_frame_publish(r, &f);
        fail = rtd_frame_peek(c, &f) != 0 || f.hdr->frame_id != i;
        rtd_frame_release(c);
    }
    fail |= judge("frames", before);
    rtd_consumer_close(c);
    rtd_ring_close(r);
    return fail;
}

static _Atomic int sleeping;

static void *sleeper(void *arg)
{
    struct rtd_consumer *c = arg;
    const struct rtd_pkt_hdr *h;
    atomic_store(&sleeping, 1);
    while (rtd_pkt_next(c, &h) == -EAGAIN)
        rtd_consumer_wait(c, 5000000000ull);
    return NULL;
}

/* The control: a publish to a sleeping consumer must be seen making its futex wake. */
static int control(void)
{
    struct rtd_ring_config cfg = {
        .kind = RTD_RING_PACKET, .data_bytes = 1u << 16, .overflow = RTD_OVERFLOW_BLOCK};
    struct rtd_ring *r;
    struct rtd_consumer *c;
    if (rtd_ring_create(&r, inst, "s", &cfg) ||
        rtd_consumer_open(&c, r, RTD_CONSUMER_RELIABLE, "c"))
        return 1;
    pthread_t t;
    pthread_create(&t, NULL, sleeper, c);
    /* Wait until it is counted as a sleeper (then it is in, or about to enter, futex_wait). */
    const struct rtd_ring_hdr *h = rtd_ring_header(r);
    while (!atomic_load(&sleeping) || atomic_load(&h->data_sleepers) == 0)
        sched_yield();
    uint64_t w0 = atomic_load(&n_futex_wake);
    int err;
    uint64_t *p = rtd_pkt_reserve(r, 8, 1, &err);
    if (!p)
        return 1;
    *p = 1;
    rtd_pkt_publish(r);
    uint64_t woke = atomic_load(&n_futex_wake) - w0;
    pthread_join(t, NULL);
    printf("test_publish_nosyscall control: a publish to a sleeping consumer made %lu futex "
           "wake(s)\n",
           (unsigned long)woke);
    rtd_consumer_close(c);
    rtd_ring_close(r);
    if (woke < 1) {
        fprintf(stderr, "test_publish_nosyscall: the control saw no futex wake: the counting "
                        "does not work, so the test proves nothing\n");
        return 1;
    }
    return 0;
}

int main(void)
{
    *(void **)&real = dlsym(RTLD_NEXT, "syscall");
    if (!real) {
        fprintf(stderr, "test_publish_nosyscall: no libc syscall(): %s\n", dlerror());
        return 1;
    }
    snprintf(inst, sizeof inst, "ns%d", (int)getpid());
    alarm(120);
    int fail = packets();
    fail |= frames();
    fail |= control();
    rtd_shm_cleanup(inst, 1);
    return fail ? 1 : 0;
}
