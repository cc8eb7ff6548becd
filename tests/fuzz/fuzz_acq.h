/* SPDX-License-Identifier: MIT */
/*
 * Shared by the fuzz targets that drive acq's parsers: one real acq state (its
 * frames and packets rings and stats segment, named after the pid, unlinked at
 * exit) set up on first use and reset between inputs, so that an input behaves
 * the same whichever inputs ran before it; a reliable consumer on each ring so
 * a target can check what acq published; and the splitter that cuts one fuzz
 * input into a sequence of datagrams ([u16 length LE][bytes], repeated).
 * Header-only: each target is one .c file, built both as a libFuzzer binary
 * (clang, RTD_FUZZ=ON) and with fuzz_main.c as a plain regression runner.
 */
#ifndef FUZZ_ACQ_H
#define FUZZ_ACQ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acq_internal.h"
#include "rtd_util.h"

/* The property a fuzz target checks beyond the sanitizers: abort() makes it a crash. */
#define FUZZ_ASSERT(cond, ...)                                                                     \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz: %s:%d: %s: ", __FILE__, __LINE__, #cond);                       \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct fuzz_acq {
    struct acq a;
    struct rtd_acq_config cfg;
    struct rtd_ring *fring, *pring;
    struct rtd_consumer *fc, *pc;
    int ready;
};

static struct fuzz_acq fz;
static volatile sig_atomic_t fz_stop;

static inline void fuzz_acq_exit(void)
{
    if (!fz.ready)
        return;
    rtd_consumer_close(fz.fc);
    rtd_consumer_close(fz.pc);
    rtd_ring_close(fz.fring);
    rtd_ring_close(fz.pring);
    acq_teardown(&fz.a);
    fz.ready = 0;
}

/* Rings small enough to set up once per process, large enough for any one input. */
static inline struct acq *fuzz_acq_get(void)
{
    if (!fz.ready) {
        rtd_log_init("fuzz", RTD_LOG_ERR);
        rtd_acq_config_defaults(&fz.cfg);
        snprintf(fz.cfg.instance, sizeof fz.cfg.instance, "fuzz%d", (int)getpid());
        fz.cfg.packet_port = 0;
        fz.cfg.frame_slots = 16;
        fz.cfg.packet_ring_bytes = 1 << 20;
        fz.cfg.max_clients = 16;
        fz.cfg.max_payload = 1024;
        fz.cfg.overflow = RTD_OVERFLOW_DROP_NEWEST; /* never wait: nobody else reads */
        fz.cfg.quiet = 1;
        if (acq_setup(&fz.a, &fz.cfg, &fz_stop) ||
            rtd_ring_attach(&fz.fring, fz.cfg.instance, "frames") ||
            rtd_ring_attach(&fz.pring, fz.cfg.instance, "packets") ||
            rtd_consumer_open(&fz.fc, fz.fring, RTD_CONSUMER_RELIABLE, "fuzz") ||
            rtd_consumer_open(&fz.pc, fz.pring, RTD_CONSUMER_RELIABLE, "fuzz")) {
            fprintf(stderr, "fuzz: acq set-up failed (shared memory?)\n");
            abort();
        }
        fz.ready = 1;
        atexit(fuzz_acq_exit);
    }
    /* Per input: no frame in assembly, no known client, counters from zero. */
    struct acq *a = &fz.a;
    a->fasm.active = a->fasm.skip = a->fasm.have_last = 0;
    memset(a->clients, 0, (size_t)(a->client_mask + 1) * sizeof *a->clients);
    a->n_clients = 0;
    memset(a->cnt, 0, sizeof a->cnt);
    a->frames_out = 0;
    a->acquiring = 1;
    return a;
}

/* Next datagram of a split input: [u16 len][len bytes]; a short tail is the last datagram. */
static inline int fuzz_next_piece(const uint8_t **p, size_t *n, const uint8_t **piece, size_t *len)
{
    if (*n < 2)
        return 0;
    size_t l = (size_t)(*p)[0] | (size_t)(*p)[1] << 8;
    *p += 2;
    *n -= 2;
    if (l > *n)
        l = *n;
    *piece = *p;
    *len = l;
    *p += l;
    *n -= l;
    return 1;
}

/* Every record in the packets ring is a whole packet as documented in rtd_wire.h. */
static inline void fuzz_check_packets(struct acq *a)
{
    acq_publish_packets(a);
    const struct rtd_pkt_hdr *rec;
    while (rtd_pkt_next(fz.pc, &rec) == 0) {
        FUZZ_ASSERT(rec->type == RTD_ACQ_REC_PACKET && rec->len >= sizeof(struct rtd_acq_pkt),
                    "record type %u len %u", rec->type, rec->len);
        struct rtd_acq_pkt pk;
        memcpy(&pk, rec + 1, sizeof pk);
        FUZZ_ASSERT(pk.len >= 1 && pk.len <= fz.cfg.max_payload && rec->len == sizeof pk + pk.len,
                    "record len %u, packet len %u", rec->len, pk.len);
    }
    rtd_pkt_release(fz.pc);
}

#endif
