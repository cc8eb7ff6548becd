/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of shm/: ABI layout, names, attach errors, frame and packet rings
 * (wrap-around, full/empty, overflow policies, lapping, batch publish),
 * consumers, reaping, groups, stats segments, listing and cleanup. Each test
 * runs in its own process (Criterion forks) with an instance named after its pid.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rtd_shm.h"
#include "rtd_util.h"

static char inst[32];

static void setup(void)
{
    snprintf(inst, sizeof inst, "ut%d", (int)getpid());
}

static void teardown(void)
{
    rtd_shm_cleanup(inst, 1);
}

TestSuite(abi, .init = setup, .fini = teardown);
TestSuite(names, .init = setup, .fini = teardown);
TestSuite(attach, .init = setup, .fini = teardown);
TestSuite(frame, .init = setup, .fini = teardown);
TestSuite(packet, .init = setup, .fini = teardown);
TestSuite(consumer, .init = setup, .fini = teardown);
TestSuite(group, .init = setup, .fini = teardown);
TestSuite(stats, .init = setup, .fini = teardown);

static struct rtd_ring *mk_frame(const char *name, uint32_t slots, uint32_t payload, int overflow)
{
    struct rtd_ring_config cfg = {
        .kind = RTD_RING_FRAME, .slot_payload = payload, .slot_count = slots, .overflow = overflow};
    struct rtd_ring *r = NULL;
    int rc = rtd_ring_create(&r, inst, name, &cfg);
    cr_assert_eq(rc, 0, "create frame ring: %d", rc);
    return r;
}

static struct rtd_ring *mk_packet(const char *name, uint64_t bytes, int overflow)
{
    struct rtd_ring_config cfg = {
        .kind = RTD_RING_PACKET, .data_bytes = bytes, .overflow = overflow};
    struct rtd_ring *r = NULL;
    int rc = rtd_ring_create(&r, inst, name, &cfg);
    cr_assert_eq(rc, 0, "create packet ring: %d", rc);
    return r;
}

/* ---- ABI ------------------------------------------------------------------------ */

Test(abi, header_sizes_and_offsets_match_the_byte_map)
{
    cr_assert_eq(sizeof(struct rtd_ring_hdr), 8192);
    cr_assert_eq(offsetof(struct rtd_ring_hdr, published), 192);
    cr_assert_eq(offsetof(struct rtd_ring_hdr, consumers), 512);
    cr_assert_eq(offsetof(struct rtd_ring_hdr, groups), 2560);
    cr_assert_eq(sizeof(struct rtd_frame_hdr), 128);
    cr_assert_eq(sizeof(struct rtd_pkt_hdr), 24);
    cr_assert_eq(sizeof(struct rtd_stats_hdr), 512);
    cr_assert_eq(rtd_pkt_stride(32), 56);
    cr_assert_eq(rtd_pkt_stride(0), 24);
}

Test(abi, frame_payloads_are_4k_aligned)
{
    struct rtd_ring *r = mk_frame("f", 8, 1000, RTD_OVERFLOW_BLOCK);
    const struct rtd_ring_hdr *h = rtd_ring_header(r);
    cr_assert_eq(h->data_off % 4096, 0);
    cr_assert_eq(h->slot_stride, 4096);
    struct rtd_frame f;
    cr_assert_eq(rtd_frame_claim(r, &f), 0);
    cr_assert_eq((uintptr_t)f.data % 4096, 0);
    cr_assert_eq(h->magic, RTD_MAGIC_RING);
    cr_assert_eq(h->abi_major, RTD_ABI_MAJOR);
    cr_assert_eq(h->creator_pid, getpid());
    cr_assert_eq(atomic_load(&h->state), RTD_STATE_READY);
    struct rtd_ring_config cfg = {.kind = RTD_RING_FRAME,
                                  .slot_payload = 1000,
                                  .slot_count = 8,
                                  .overflow = RTD_OVERFLOW_BLOCK};
    cr_assert_eq(rtd_ring_memsize(&cfg), h->seg_bytes);
    rtd_ring_close(r);
}

/* ---- names ---------------------------------------------------------------------- */

Test(names, valid_names_build_the_segment_path)
{
    char out[128];
    cr_assert_eq(rtd_shm_name(out, sizeof out, "lab-1", "results.w0"), 0);
    cr_assert_str_eq(out, "/rtdaq.lab-1.results.w0");
}

Test(names, slashes_empty_dots_and_long_names_are_refused)
{
    char out[128];
    cr_assert_eq(rtd_shm_name(out, sizeof out, "a/b", "r"), -EINVAL);
    cr_assert_eq(rtd_shm_name(out, sizeof out, "a", "r/x"), -EINVAL);
    cr_assert_eq(rtd_shm_name(out, sizeof out, "", "r"), -EINVAL);
    cr_assert_eq(rtd_shm_name(out, sizeof out, "a", ""), -EINVAL);
    cr_assert_eq(rtd_shm_name(out, sizeof out, "a", ".."), -EINVAL);
    cr_assert_eq(rtd_shm_name(out, sizeof out, "a.b", "r"), -EINVAL);
    cr_assert_eq(rtd_shm_name(out, sizeof out, "a", "sp ace"), -EINVAL);
    char longi[40], longr[60];
    memset(longi, 'i', 32);
    longi[32] = 0;
    memset(longr, 'r', 48);
    longr[48] = 0;
    cr_assert_eq(rtd_shm_name(out, sizeof out, longi, "r"), -ENAMETOOLONG);
    cr_assert_eq(rtd_shm_name(out, sizeof out, "a", longr), -ENAMETOOLONG);
    longi[31] = 0;
    longr[47] = 0;
    cr_assert_eq(rtd_shm_name(out, sizeof out, longi, longr), 0);
}

Test(names, instance_defaults_to_env_then_default)
{
    unsetenv("RTDAQ_INSTANCE");
    cr_assert_str_eq(rtd_instance_name(NULL), "default");
    setenv("RTDAQ_INSTANCE", "x1", 1);
    cr_assert_str_eq(rtd_instance_name(NULL), "x1");
    cr_assert_str_eq(rtd_instance_name("y"), "y");
}

/* ---- attach errors --------------------------------------------------------------- */

/* Size of the 4 KiB packet ring the fake segments describe. */
static size_t fake_len(void)
{
    struct rtd_ring_config cfg = {
        .kind = RTD_RING_PACKET, .data_bytes = 4096, .overflow = RTD_OVERFLOW_BLOCK};
    return rtd_ring_memsize(&cfg);
}

/* Write a fake ring segment: a valid header from a real ring, then one field spoiled. */
static void write_fake(const char *ring, size_t file_len, void (*spoil)(struct rtd_ring_hdr *))
{
    char name[128];
    cr_assert_eq(rtd_shm_name(name, sizeof name, inst, ring), 0);
    struct rtd_ring_hdr h;
    memset(&h, 0, sizeof h);
    h.magic = RTD_MAGIC_RING;
    h.abi_major = RTD_ABI_MAJOR;
    h.seg_type = 1;
    h.kind = RTD_RING_PACKET;
    h.overflow = RTD_OVERFLOW_BLOCK;
    h.data_bytes = 4096;
    h.data_off = RTD_RING_HDR_BYTES;
    h.seg_bytes = fake_len();
    h.hdr_bytes = RTD_RING_HDR_BYTES;
    h.creator_pid = getpid();
    atomic_store(&h.state, RTD_STATE_READY);
    if (spoil)
        spoil(&h);
    int fd = shm_open(name, O_RDWR | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, (off_t)file_len), 0);
    size_t n = file_len < sizeof h ? file_len : sizeof h;
    cr_assert_eq(pwrite(fd, &h, n, 0), (ssize_t)n);
    close(fd);
}

static void spoil_magic(struct rtd_ring_hdr *h)
{
    h->magic ^= 1;
}
static void spoil_major(struct rtd_ring_hdr *h)
{
    h->abi_major = RTD_ABI_MAJOR + 1;
}
static void spoil_minor(struct rtd_ring_hdr *h)
{
    h->abi_minor = RTD_ABI_MINOR + 7;
}
static void spoil_state(struct rtd_ring_hdr *h)
{
    atomic_store(&h->state, RTD_STATE_INIT);
}

Test(attach, missing_segment_is_enoent)
{
    struct rtd_ring *r;
    cr_assert_eq(rtd_ring_attach(&r, inst, "nope"), -ENOENT);
}

Test(attach, bad_magic_is_eproto)
{
    struct rtd_ring *r;
    write_fake("m", fake_len(), spoil_magic);
    cr_assert_eq(rtd_ring_attach(&r, inst, "m"), -EPROTO);
}

Test(attach, major_mismatch_is_eproto_but_newer_minor_is_accepted)
{
    struct rtd_ring *r;
    write_fake("maj", fake_len(), spoil_major);
    cr_assert_eq(rtd_ring_attach(&r, inst, "maj"), -EPROTO);
    write_fake("min", fake_len(), spoil_minor);
    cr_assert_eq(rtd_ring_attach(&r, inst, "min"), 0);
    rtd_ring_close(r);
}

Test(attach, short_segment_is_ebadmsg)
{
    struct rtd_ring *r;
    write_fake("short", RTD_RING_HDR_BYTES, NULL); /* its header says more than the file holds */
    cr_assert_eq(rtd_ring_attach(&r, inst, "short"), -EBADMSG);
    write_fake("tiny", 40, NULL);
    cr_assert_eq(rtd_ring_attach(&r, inst, "tiny"), -EBADMSG);
}

Test(attach, not_ready_is_eagain)
{
    struct rtd_ring *r;
    write_fake("init", fake_len(), spoil_state);
    cr_assert_eq(rtd_ring_attach(&r, inst, "init"), -EAGAIN);
    write_fake("empty", 0, NULL);
    cr_assert_eq(rtd_ring_attach(&r, inst, "empty"), -EAGAIN);
}

Test(attach, create_refuses_a_live_creators_segment_and_replaces_a_dead_ones)
{
    struct rtd_ring *a = mk_packet("p", 4096, RTD_OVERFLOW_BLOCK), *b = NULL;
    struct rtd_ring_config cfg = {
        .kind = RTD_RING_PACKET, .data_bytes = 4096, .overflow = RTD_OVERFLOW_BLOCK};
    cr_assert_eq(rtd_ring_create(&b, inst, "p", &cfg), -EEXIST);
    /* A child creates a ring and dies without closing it. */
    pid_t pid = fork();
    if (pid == 0) {
        struct rtd_ring *c;
        _exit(rtd_ring_create(&c, inst, "orphan", &cfg) ? 1 : 0);
    }
    int st;
    waitpid(pid, &st, 0);
    cr_assert_eq(WEXITSTATUS(st), 0);
    cr_assert_eq(rtd_ring_create(&b, inst, "orphan", &cfg), 0);
    rtd_ring_close(b);
    rtd_ring_close(a);
}

Test(attach, bad_config_is_einval)
{
    struct rtd_ring *r;
    struct rtd_ring_config cfg = {.kind = RTD_RING_FRAME,
                                  .slot_payload = 100,
                                  .slot_count = 6,
                                  .overflow = RTD_OVERFLOW_BLOCK};
    cr_assert_eq(rtd_ring_create(&r, inst, "x", &cfg), -EINVAL);
    cfg = (struct rtd_ring_config){
        .kind = RTD_RING_PACKET, .data_bytes = 5000, .overflow = RTD_OVERFLOW_BLOCK};
    cr_assert_eq(rtd_ring_create(&r, inst, "x", &cfg), -EINVAL);
    cfg.data_bytes = 8192;
    cfg.overflow = 0;
    cr_assert_eq(rtd_ring_create(&r, inst, "x", &cfg), -EINVAL);
}

Test(attach, an_attached_consumer_sees_the_creators_data)
{
    struct rtd_ring *p = mk_frame("f", 4, 4096, RTD_OVERFLOW_BLOCK), *q;
    cr_assert_eq(rtd_ring_attach(&q, inst, "f"), 0);
    struct rtd_consumer *c;
    cr_assert_eq(rtd_consumer_open(&c, q, RTD_CONSUMER_RELIABLE, "att"), 0);
    struct rtd_frame f;
    cr_assert_eq(rtd_frame_claim(p, &f), 0);
    memcpy(f.data, "hello", 6);
    cr_assert_eq(rtd_frame_publish(p, &f), 0);
    struct rtd_frame g;
    cr_assert_eq(rtd_frame_peek(c, &g), 0);
    cr_assert_str_eq((const char *)g.data, "hello");
    rtd_frame_release(c);
    rtd_consumer_close(c);
    rtd_ring_close(q);
    cr_assert_eq(rtd_ring_closed(p), 0);
    rtd_ring_close(p);
}

/* ---- frame rings ------------------------------------------------------------------ */

Test(frame, empty_ring_peek_is_eagain_and_frames_arrive_in_order_across_wraps)
{
    struct rtd_ring *r = mk_frame("f", 4, 8192, RTD_OVERFLOW_BLOCK);
    struct rtd_consumer *c;
    cr_assert_eq(rtd_consumer_open(&c, r, RTD_CONSUMER_RELIABLE, "rel"), 0);
    struct rtd_frame f;
    cr_assert_eq(rtd_frame_peek(c, &f), -EAGAIN);
    for (uint64_t i = 0; i < 50; i++) {
        cr_assert_eq(rtd_frame_claim(r, &f), 0);
        f.hdr->len = 8;
        f.hdr->frame_id = 1000 + i;
        f.hdr->width = 3;
        memcpy(f.data, &i, 8);
        cr_assert_eq(rtd_frame_publish(r, &f), 0);
        struct rtd_frame g;
        cr_assert_eq(rtd_frame_peek(c, &g), 0);
        cr_assert_eq(g.hdr->seq, i);
        cr_assert_eq(g.hdr->frame_id, 1000 + i);
        cr_assert_neq(g.hdr->ts_mono_ns, 0);
        cr_assert_neq(g.hdr->ts_real_ns, 0);
        uint64_t v;
        memcpy(&v, g.data, 8);
        cr_assert_eq(v, i);
        rtd_frame_release(c);
        cr_assert_eq(rtd_frame_peek(c, &g), -EAGAIN);
    }
    cr_assert_eq(atomic_load(&rtd_ring_header(r)->published), 50);
    rtd_consumer_close(c);
    rtd_ring_close(r);
}

Test(frame, full_ring_blocks_the_producer_until_the_reliable_consumer_releases)
{
    struct rtd_ring *r = mk_frame("f", 4, 4096, RTD_OVERFLOW_BLOCK);
    struct rtd_consumer *c;
    cr_assert_eq(rtd_consumer_open(&c, r, RTD_CONSUMER_RELIABLE, "rel"), 0);
    struct rtd_frame f;
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(rtd_frame_claim(r, &f), 0);
        cr_assert_eq(rtd_frame_publish(r, &f), 0);
    }
    cr_assert_eq(rtd_frame_claim(r, &f), -EAGAIN);
    cr_assert_eq(rtd_frame_claim(r, &f), -EAGAIN);
    cr_assert_eq(atomic_load(&rtd_ring_header(r)->full), 1, "a full episode counts once");
    cr_assert_eq(atomic_load(&rtd_ring_header(r)->dropped), 0);
    cr_assert_eq(rtd_ring_wait_space(r, 1000000), -ETIMEDOUT);
    cr_assert_eq(rtd_frame_peek(c, &f), 0);
    rtd_frame_release(c);
    cr_assert_eq(rtd_frame_claim(r, &f), 0);
    rtd_consumer_close(c);
    rtd_ring_close(r);
}

Test(frame, drop_newest_refuses_and_counts_every_dropped_frame)
{
    struct rtd_ring *r = mk_frame("f", 2, 4096, RTD_OVERFLOW_DROP_NEWEST);
    struct rtd_consumer *c;
    cr_assert_eq(rtd_consumer_open(&c, r, RTD_CONSUMER_RELIABLE, "rel"), 0);
    struct rtd_frame f;
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(rtd_frame_claim(r, &f), 0);
        cr_assert_eq(rtd_frame_publish(r, &f), 0);
    }
    for (int i = 0; i < 5; i++)
        cr_assert_eq(rtd_frame_claim(r, &f), -ENOBUFS);
    cr_assert_eq(atomic_load(&rtd_ring_header(r)->dropped), 5);
    /* The frames already published are intact: drop-newest never overwrites. */
    cr_assert_eq(rtd_frame_peek(c, &f), 0);
    cr_assert_eq(f.hdr->seq, 0);
    rtd_frame_release(c);
    cr_assert_eq(rtd_frame_claim(r, &f), 0);
    rtd_consumer_close(c);
    rtd_ring_close(r);
}

Test(frame, without_reliable_consumers_the_producer_never_waits)
{
    struct rtd_ring *r = mk_frame("f", 2, 4096, RTD_OVERFLOW_BLOCK);
    struct rtd_consumer *m;
    cr_assert_eq(rtd_consumer_open(&m, r, RTD_CONSUMER_MONITOR, "mon"), 0);
    struct rtd_frame f;
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(rtd_frame_claim(r, &f), 0);
        cr_assert_eq(rtd_frame_publish(r, &f), 0);
    }
    rtd_consumer_close(m);
    rtd_ring_close(r);
}

static void publish_frames(struct rtd_ring *r, uint64_t from, uint64_t to)
{
    struct rtd_frame f;
    for (uint64_t i = from; i < to; i++) {
        cr_assert_eq(rtd_frame_claim(r, &f), 0);
        f.hdr->len = 16;
        f.hdr->frame_id = i;
        memset(f.data, (int)(i & 0xff), 16);
        cr_assert_eq(rtd_frame_publish(r, &f), 0);
    }
}

Test(frame, a_lapped_monitor_copies_the_oldest_valid_frame_and_reports_what_it_missed)
{
    struct rtd_ring *r = mk_frame("f", 4, 4096, RTD_OVERFLOW_BLOCK);
    struct rtd_consumer *m;
    cr_assert_eq(rtd_consumer_open(&m, r, RTD_CONSUMER_MONITOR, "mon"), 0);
    struct rtd_frame f;
    cr_assert_eq(rtd_frame_peek(m, &f), -EINVAL, "monitors never read in place");
    publish_frames(r, 0, 10);
    /* published 10, 4 slots: frames 7, 8, 9 are safe (slot of 10 may be rewriting). */
    struct rtd_frame_hdr hd;
    uint8_t buf[64];
    uint64_t lap = 99;
    cr_assert_eq(rtd_frame_copy(m, &hd, buf, sizeof buf, &lap), 16);
    cr_assert_eq(hd.seq, 7);
    cr_assert_eq(hd.frame_id, 7);
    cr_assert_eq(buf[0], 7);
    cr_assert_eq(buf[15], 7);
    cr_assert_eq(lap, 7);
    cr_assert_eq(rtd_frame_copy(m, &hd, NULL, 0, &lap), 0, "descriptor only");
    cr_assert_eq(hd.seq, 8);
    cr_assert_eq(lap, 0);
    publish_frames(r, 10, 20);
    cr_assert_eq(rtd_frame_copy(m, &hd, buf, 8, &lap), 8, "at most cap bytes");
    cr_assert_eq(hd.seq, 17);
    cr_assert_eq(lap, 8, "frames 9..16 missed");
    cr_assert_eq(rtd_consumer_lapped(m), 15);
    cr_assert_eq(rtd_frame_copy(m, &hd, buf, sizeof buf, &lap), 16);
    cr_assert_eq(rtd_frame_copy(m, &hd, buf, sizeof buf, &lap), 16);
    cr_assert_eq(hd.seq, 19);
    cr_assert_eq(rtd_frame_copy(m, &hd, buf, sizeof buf, &lap), -EAGAIN);
    rtd_consumer_close(m);
    rtd_ring_close(r);
}

/* ---- packet rings ------------------------------------------------------------------ */

Test(packet, a_batch_becomes_visible_at_once_on_publish)
{
    struct rtd_ring *r = mk_packet("p", 65536, RTD_OVERFLOW_BLOCK);
    struct rtd_consumer *c;
    cr_assert_eq(rtd_consumer_open(&c, r, RTD_CONSUMER_RELIABLE, "rel"), 0);
    int err = 0;
    for (uint32_t i = 0; i < 100; i++) {
        uint32_t *p = rtd_pkt_reserve(r, 32, 7, &err);
        cr_assert_not_null(p, "reserve %u: %d", i, err);
        p[0] = i;
    }
    const struct rtd_pkt_hdr *rec;
    cr_assert_eq(rtd_pkt_next(c, &rec), -EAGAIN, "nothing is visible before publish");
    cr_assert_eq(rtd_pkt_publish(r), 100);
    for (uint32_t i = 0; i < 100; i++) {
        cr_assert_eq(rtd_pkt_next(c, &rec), 0);
        cr_assert_eq(rec->len, 32);
        cr_assert_eq(rec->type, 7);
        cr_assert_eq(rec->seq, i);
        cr_assert_eq(*(const uint32_t *)rtd_pkt_payload(rec), i);
    }
    cr_assert_eq(rtd_pkt_next(c, &rec), -EAGAIN);
    rtd_pkt_release(c);
    cr_assert_eq(atomic_load(&rtd_ring_header(r)->published_records), 100);
    rtd_consumer_close(c);
    rtd_ring_close(r);
}

Test(packet, variable_records_wrap_with_padding_and_arrive_intact)
{
    struct rtd_ring *r = mk_packet("p", 4096, RTD_OVERFLOW_BLOCK);
    struct rtd_consumer *c;
    cr_assert_eq(rtd_consumer_open(&c, r, RTD_CONSUMER_RELIABLE, "rel"), 0);
    uint64_t seed = 1, sent = 0, got = 0;
    for (int round = 0; round < 2000; round++) {
        int err;
        uint32_t len = (uint32_t)(16 + (seed = seed * 6364136223846793005ull + 1) % 1500);
        uint8_t *p = rtd_pkt_reserve(r, len, 1, &err);
        cr_assert_not_null(p, "round %d: %d", round, err);
        for (uint32_t k = 0; k < len; k++)
            p[k] = (uint8_t)(sent + k);
        sent++;
        rtd_pkt_publish(r);
        const struct rtd_pkt_hdr *rec;
        cr_assert_eq(rtd_pkt_next(c, &rec), 0);
        cr_assert_eq(rec->len, len);
        cr_assert_eq(rec->seq, got);
        const uint8_t *q = rtd_pkt_payload(rec);
        for (uint32_t k = 0; k < len; k++)
            cr_assert_eq(q[k], (uint8_t)(got + k));
        got++;
        rtd_pkt_release(c);
    }
    cr_assert_gt(atomic_load(&rtd_ring_header(r)->published), 4 * 4096);
    rtd_consumer_close(c);
    rtd_ring_close(r);
}

Test(packet, full_ring_blocks_or_drops_by_policy)
{
    struct rtd_ring *b = mk_packet("b", 4096, RTD_OVERFLOW_BLOCK);
    struct rtd_ring *d = mk_packet("d", 4096, RTD_OVERFLOW_DROP_NEWEST);
    struct rtd_consumer *cb, *cd;
    cr_assert_eq(rtd_consumer_open(&cb, b, RTD_CONSUMER_RELIABLE, "rb"), 0);
    cr_assert_eq(rtd_consumer_open(&cd, d, RTD_CONSUMER_RELIABLE, "rd"), 0);
    int err = 0, n = 0;
    while (rtd_pkt_reserve(b, 40, 1, &err))
        n++;
    cr_assert_eq(err, -EAGAIN);
    cr_assert_eq(n, 4096 / 64);
    rtd_pkt_publish(b);
    for (int i = 0; i < n; i++)
        cr_assert_not_null(rtd_pkt_reserve(d, 40, 1, &err));
    for (int i = 0; i < 9; i++) {
        cr_assert_null(rtd_pkt_reserve(d, 40, 1, &err));
        cr_assert_eq(err, -ENOBUFS);
    }
    cr_assert_eq(atomic_load(&rtd_ring_header(d)->dropped), 9);
    cr_assert_eq(atomic_load(&rtd_ring_header(b)->dropped), 0);
    rtd_pkt_publish(d);
    const struct rtd_pkt_hdr *rec;
    cr_assert_eq(rtd_pkt_next(cb, &rec), 0);
    rtd_pkt_release(cb);
    cr_assert_not_null(rtd_pkt_reserve(b, 40, 1, &err));
    cr_assert_null(rtd_pkt_reserve(b, 70000, 1, &err));
    cr_assert_eq(err, -EINVAL);
    cr_assert_null(rtd_pkt_reserve(b, 3000, 1, &err));
    cr_assert_eq(err, -EMSGSIZE);
    rtd_consumer_close(cb);
    rtd_consumer_close(cd);
    rtd_ring_close(b);
    rtd_ring_close(d);
}

Test(packet, a_lapped_monitor_copies_records_out_and_counts_exactly_the_records_it_missed)
{
    struct rtd_ring *r = mk_packet("p", 4096, RTD_OVERFLOW_BLOCK);
    struct rtd_consumer *m;
    cr_assert_eq(rtd_consumer_open(&m, r, RTD_CONSUMER_MONITOR, "mon"), 0);
    int err;
    uint64_t buf[64];
    const struct rtd_pkt_hdr *rec = (const struct rtd_pkt_hdr *)buf;
    uint64_t lap = 99;
    /* Read the first record, then fall far behind. */
    void *p = rtd_pkt_reserve(r, 32, 1, &err);
    cr_assert_not_null(p);
    memset(p, 0xab, 32);
    rtd_pkt_publish(r);
    cr_assert_eq(rtd_pkt_next(m, &rec), -EINVAL, "monitors never read in place");
    cr_assert_eq(rtd_pkt_copy(m, buf, sizeof buf, &lap), 32);
    cr_assert_eq(rec->seq, 0);
    cr_assert_eq(rec->len, 32);
    cr_assert_eq(((const uint8_t *)rtd_pkt_payload(rec))[31], 0xab);
    cr_assert_eq(lap, 0);
    rtd_pkt_release(m);
    for (int i = 0; i < 1000; i++) {
        cr_assert_not_null(rtd_pkt_reserve(r, 32, 1, &err));
        rtd_pkt_publish(r);
    }
    /*
     * The monitor resumes at the newest boundary; the lap count is settled by
     * the seq of the next record it reads.
     */
    cr_assert_eq(rtd_pkt_copy(m, buf, sizeof buf, &lap), -EAGAIN);
    for (int i = 0; i < 3; i++)
        cr_assert_not_null(rtd_pkt_reserve(r, 32, 1, &err));
    cr_assert_not_null(rtd_pkt_reserve(r, 600, 1, &err)); /* larger than the buffer */
    cr_assert_not_null(rtd_pkt_reserve(r, 32, 1, &err));
    rtd_pkt_publish(r);
    cr_assert_eq(rtd_pkt_copy(m, buf, sizeof buf, &lap), 32);
    cr_assert_eq(rec->seq, 1001);
    cr_assert_eq(lap, 1000, "records 1..1000 were lapped");
    cr_assert_eq(rtd_pkt_copy(m, buf, sizeof buf, &lap), 32);
    cr_assert_eq(rec->seq, 1002);
    cr_assert_eq(lap, 0);
    cr_assert_eq(rtd_pkt_copy(m, buf, sizeof buf, &lap), 32);
    cr_assert_eq(rec->seq, 1003);
    cr_assert_eq(rtd_pkt_copy(m, buf, sizeof buf, &lap), 32);
    cr_assert_eq(rec->seq, 1005);
    cr_assert_eq(lap, 1, "the record too large for the buffer counts as missed");
    cr_assert_eq(rtd_pkt_copy(m, buf, sizeof buf, &lap), -EAGAIN);
    cr_assert_eq(rtd_consumer_lapped(m), 1001);
    rtd_consumer_close(m);
    rtd_ring_close(r);
}

/* ---- consumers ---------------------------------------------------------------------- */

Test(consumer, the_seventeenth_consumer_is_refused)
{
    struct rtd_ring *r = mk_packet("p", 4096, RTD_OVERFLOW_BLOCK);
    struct rtd_consumer *c[17];
    for (int i = 0; i < 16; i++)
        cr_assert_eq(rtd_consumer_open(&c[i], r, RTD_CONSUMER_MONITOR, "m"), 0);
    cr_assert_eq(rtd_consumer_open(&c[16], r, RTD_CONSUMER_MONITOR, "m"), -EBUSY);
    rtd_consumer_close(c[3]);
    cr_assert_eq(rtd_consumer_open(&c[3], r, RTD_CONSUMER_RELIABLE, "again"), 0);
    cr_assert_str_eq(rtd_ring_header(r)->consumers[3].label, "again");
    for (int i = 0; i < 16; i++)
        rtd_consumer_close(c[i]);
    rtd_ring_close(r);
}

Test(consumer, a_dead_consumer_stops_gating_and_its_slot_is_reclaimed)
{
    struct rtd_ring *r = mk_frame("f", 4, 4096, RTD_OVERFLOW_BLOCK);
    pid_t pid = fork();
    if (pid == 0) {
        struct rtd_ring *a;
        struct rtd_consumer *c;
        if (rtd_ring_attach(&a, inst, "f") ||
            rtd_consumer_open(&c, a, RTD_CONSUMER_RELIABLE, "doomed"))
            _exit(1);
        pause();
        _exit(0);
    }
    while (atomic_load(&rtd_ring_header(r)->consumers[0].state) != RTD_CSLOT_ACTIVE)
        usleep(1000);
    struct rtd_frame f;
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(rtd_frame_claim(r, &f), 0);
        rtd_frame_publish(r, &f);
    }
    cr_assert_eq(rtd_frame_claim(r, &f), -EAGAIN);
    cr_assert_eq(rtd_ring_reap(r, 0), 0, "alive: not reaped");
    kill(pid, SIGKILL);
    /* Still a zombie (not waited for): counts as dead. */
    int rc;
    uint64_t t0 = rtd_now_ns();
    while ((rc = rtd_frame_claim(r, &f)) == -EAGAIN && rtd_now_ns() - t0 < 2000000000ull)
        usleep(1000);
    cr_assert_eq(rc, 0, "the producer goes on after the consumer died");
    cr_assert_eq(atomic_load(&rtd_ring_header(r)->consumers[0].state), RTD_CSLOT_DEAD);
    waitpid(pid, NULL, 0);
    struct rtd_consumer *c;
    cr_assert_eq(rtd_consumer_open(&c, r, RTD_CONSUMER_RELIABLE, "new"), 0);
    cr_assert_str_eq(rtd_ring_header(r)->consumers[0].label, "new");
    rtd_consumer_close(c);
    rtd_ring_close(r);
}

Test(consumer, a_stale_heartbeat_is_reaped_on_request)
{
    struct rtd_ring *r = mk_packet("p", 4096, RTD_OVERFLOW_BLOCK);
    struct rtd_consumer *c;
    cr_assert_eq(rtd_consumer_open(&c, r, RTD_CONSUMER_RELIABLE, "slow"), 0);
    usleep(20000);
    cr_assert_eq(rtd_ring_reap(r, 1000000000ull), 0);
    cr_assert_eq(rtd_ring_reap(r, 5000000ull), 1);
    cr_assert_eq(atomic_load(&rtd_ring_header(r)->consumers[0].state), RTD_CSLOT_DEAD);
    rtd_consumer_close(c);
    rtd_ring_close(r);
}

Test(consumer, a_reaped_live_consumer_keeps_its_slot_and_registers_again_on_its_next_read)
{
    struct rtd_ring *r = mk_frame("f", 4, 4096, RTD_OVERFLOW_BLOCK);
    const struct rtd_ring_hdr *h = rtd_ring_header(r);
    struct rtd_consumer *a, *b;
    cr_assert_eq(rtd_consumer_open(&a, r, RTD_CONSUMER_RELIABLE, "a"), 0);
    uint32_t gen0 = atomic_load(&h->consumers[0].gen);
    publish_frames(r, 0, 2);
    struct rtd_frame f;
    cr_assert_eq(rtd_frame_peek(a, &f), 0);
    usleep(20000);
    cr_assert_eq(rtd_ring_reap(r, 5000000ull), 1);
    cr_assert_eq(atomic_load(&h->consumers[0].state), RTD_CSLOT_DEAD);
    /* Reaped, but our pid lives: nobody else may take the slot. */
    cr_assert_eq(rtd_consumer_open(&b, r, RTD_CONSUMER_RELIABLE, "b"), 0);
    cr_assert_str_eq(h->consumers[1].label, "b");
    cr_assert_str_eq(h->consumers[0].label, "a");
    /* The release after the reap stores nothing. */
    uint64_t cur = atomic_load(&h->consumers[0].cursor);
    rtd_frame_release(a);
    cr_assert_eq(atomic_load(&h->consumers[0].cursor), cur);
    publish_frames(r, 2, 3);
    cr_assert_eq(rtd_frame_peek(a, &f), -EAGAIN, "re-registered at the newest frame");
    cr_assert_eq(atomic_load(&h->consumers[0].state), RTD_CSLOT_ACTIVE);
    cr_assert_eq(atomic_load(&h->consumers[0].gen), gen0 + 1);
    cr_assert_eq(atomic_load(&h->consumers[0].reregistered), 1);
    cr_assert_eq(rtd_consumer_reregistered(a), 1);
    cr_assert_eq(atomic_load(&h->consumers[0].cursor), 3);
    publish_frames(r, 3, 4);
    cr_assert_eq(rtd_frame_peek(a, &f), 0);
    cr_assert_eq(f.hdr->seq, 3);
    rtd_frame_release(a);
    cr_assert_eq(atomic_load(&h->consumers[0].cursor), 4);
    rtd_consumer_close(a);
    rtd_consumer_close(b);
    rtd_ring_close(r);
}

static void *late_publisher(void *arg)
{
    struct rtd_ring *r = arg;
    usleep(20000);
    int err;
    rtd_pkt_reserve(r, 16, 1, &err);
    rtd_pkt_publish(r);
    return NULL;
}

Test(consumer, wait_times_out_when_idle_and_wakes_on_publish)
{
    struct rtd_ring *r = mk_packet("p", 4096, RTD_OVERFLOW_BLOCK);
    struct rtd_consumer *c;
    cr_assert_eq(rtd_consumer_open(&c, r, RTD_CONSUMER_RELIABLE, "w"), 0);
    cr_assert_eq(rtd_consumer_wait(c, 1000000), -ETIMEDOUT);
    pthread_t t;
    pthread_create(&t, NULL, late_publisher, r);
    uint64_t t0 = rtd_now_ns();
    const struct rtd_pkt_hdr *rec;
    while (rtd_pkt_next(c, &rec) == -EAGAIN)
        rtd_consumer_wait(c, 5000000000ull);
    cr_assert_lt(rtd_now_ns() - t0, 2000000000ull);
    pthread_join(t, NULL);
    rtd_consumer_close(c);
    rtd_ring_close(r);
}

/* ---- groups ------------------------------------------------------------------------ */

Test(group, members_take_distinct_frames_and_the_cursor_follows_the_oldest_held)
{
    struct rtd_ring *r = mk_frame("f", 8, 4096, RTD_OVERFLOW_BLOCK);
    struct rtd_group *a, *b;
    cr_assert_eq(rtd_group_join(&a, r, "workers", "a"), 0);
    cr_assert_eq(rtd_group_join(&b, r, "workers", "b"), 0);
    struct rtd_frame f;
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(rtd_frame_claim(r, &f), 0);
        rtd_frame_publish(r, &f);
    }
    struct rtd_frame fa, fb;
    cr_assert_eq(rtd_group_take(a, &fa), 0);
    cr_assert_eq(rtd_group_take(b, &fb), 0);
    cr_assert_eq(fa.hdr->seq, 0);
    cr_assert_eq(fb.hdr->seq, 1);
    cr_assert_eq(rtd_group_take(a, &f), -EBUSY);
    const struct rtd_ring_hdr *h = rtd_ring_header(r);
    int ci = h->groups[0].consumer;
    rtd_group_done(b, &fb);
    cr_assert_eq(atomic_load(&h->consumers[ci].cursor), 0, "frame 0 still held");
    rtd_group_done(a, &fa);
    cr_assert_eq(atomic_load(&h->consumers[ci].cursor), 2);
    cr_assert_eq(rtd_group_take(b, &fb), 0);
    cr_assert_eq(fb.hdr->seq, 2);
    rtd_group_done(b, &fb);
    rtd_group_leave(a);
    rtd_group_leave(b);
    cr_assert_eq(atomic_load(&h->groups[0].state), RTD_GROUP_FREE);
    rtd_ring_close(r);
}

Test(group, a_killed_members_frame_is_adopted_by_a_survivor)
{
    struct rtd_ring *r = mk_frame("f", 8, 4096, RTD_OVERFLOW_BLOCK);
    struct rtd_group *a;
    cr_assert_eq(rtd_group_join(&a, r, "workers", "survivor"), 0);
    struct rtd_frame f;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(rtd_frame_claim(r, &f), 0);
        rtd_frame_publish(r, &f);
    }
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        struct rtd_ring *q;
        struct rtd_group *g;
        struct rtd_frame x;
        if (rtd_ring_attach(&q, inst, "f") || rtd_group_join(&g, q, "workers", "victim") ||
            rtd_group_take(g, &x))
            _exit(1);
        (void)!write(pfd[1], &x.hdr->seq, 8);
        pause();
        _exit(0);
    }
    uint64_t victim_seq = 99;
    cr_assert_eq(read(pfd[0], &victim_seq, 8), 8);
    cr_assert_eq(victim_seq, 0);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    uint64_t seen = 0;
    int got = 0;
    uint64_t t0 = rtd_now_ns();
    while (got < 3 && rtd_now_ns() - t0 < 2000000000ull) {
        if (rtd_group_take(a, &f) == 0) {
            seen |= 1ull << f.hdr->seq;
            got++;
            rtd_group_done(a, &f);
        } else {
            usleep(1000);
        }
    }
    cr_assert_eq(got, 3);
    cr_assert_eq(seen, 7, "frames 0 (adopted), 1 and 2");
    cr_assert_eq(rtd_group_adopted(a), 1);
    cr_assert_eq(rtd_group_lost_dead(a), 0);
    rtd_group_leave(a);
    rtd_ring_close(r);
}

/* ---- stats ------------------------------------------------------------------------- */

struct seen_counters {
    int n;
    uint64_t rx;
    enum rtd_counter_kind kind;
};

static void on_counter(const char *label, enum rtd_counter_kind kind, uint64_t value, void *arg)
{
    struct seen_counters *s = arg;
    s->n++;
    if (!strcmp(label, "packets.rx")) {
        s->rx = value;
        s->kind = kind;
    }
}

static void on_hist(const char *label, const uint64_t *b, void *arg)
{
    uint64_t *p99 = arg;
    if (!strcmp(label, "latency"))
        *p99 = rtd_hist_percentile(b, 0.99);
}

Test(stats, counters_histograms_and_status_are_readable_from_a_read_only_view)
{
    struct rtd_stats *s;
    cr_assert_eq(rtd_stats_create(&s, inst, "acq", 8), 0);
    _Atomic uint64_t *rx = rtd_stats_counter(s, "packets.rx", RTD_COUNTER);
    cr_assert_not_null(rx);
    cr_assert_eq(rtd_stats_counter(s, "packets.rx", RTD_COUNTER), rx, "same label, same counter");
    atomic_fetch_add_explicit(rx, 42, memory_order_relaxed);
    cr_assert_not_null(rtd_stats_counter(s, "ring.fill", RTD_GAUGE));
    struct rtd_hist *h = rtd_stats_hist(s, "latency");
    for (int i = 0; i < 1000; i++)
        rtd_hist_record(h, 1000); /* bucket 9: [512, 1024) */
    rtd_hist_record(h, 1u << 20);
    rtd_stats_set_status(s, "acquiring");
    rtd_stats_heartbeat(s);

    struct rtd_stats_view *v;
    cr_assert_eq(rtd_stats_open(&v, inst, "acq"), 0);
    const struct rtd_stats_hdr *sh = rtd_stats_view_header(v);
    cr_assert_str_eq(sh->process, "acq");
    cr_assert_eq(sh->pid, getpid());
    struct seen_counters seen = {0};
    rtd_stats_view_foreach(v, on_counter, &seen);
    cr_assert_eq(seen.n, 2);
    cr_assert_eq(seen.rx, 42);
    cr_assert_eq(seen.kind, RTD_COUNTER);
    uint64_t p99 = 0;
    rtd_stats_view_foreach_hist(v, on_hist, &p99);
    cr_assert(p99 >= 512 && p99 < 1024, "p99 %lu", (unsigned long)p99);
    char st[64];
    cr_assert_eq(rtd_stats_view_status(v, st, sizeof st), 0);
    cr_assert_str_eq(st, "acquiring");
    rtd_stats_view_close(v);
    /* The table is full at max_counters. */
    for (int i = 0; i < 6; i++) {
        char l[16];
        snprintf(l, sizeof l, "c%d", i);
        cr_assert_not_null(rtd_stats_counter(s, l, RTD_COUNTER));
    }
    cr_assert_null(rtd_stats_counter(s, "one.too.many", RTD_COUNTER));
    rtd_stats_close(s);
    cr_assert_eq(rtd_stats_open(&v, inst, "acq"), -ENOENT);
}

Test(stats, percentiles_interpolate_within_log2_buckets)
{
    uint64_t b[RTD_HIST_BUCKETS] = {0};
    cr_assert_eq(rtd_hist_percentile(b, 0.5), 0);
    b[10] = 100; /* [1024, 2048) */
    cr_assert_eq(rtd_hist_percentile(b, 0.5), 1536);
    cr_assert_eq(rtd_hist_percentile(b, 1.0), 2048);
    b[20] = 100;
    cr_assert_geq(rtd_hist_percentile(b, 0.99), 1u << 20);
}

/* ---- listing and cleanup ------------------------------------------------------------- */

static void count_ring(const char *ring, void *arg)
{
    (void)ring;
    (*(int *)arg)++;
}

Test(stats, list_finds_the_instances_segments_and_cleanup_removes_dead_ones)
{
    struct rtd_ring *r = mk_packet("p", 4096, RTD_OVERFLOW_BLOCK);
    struct rtd_stats *s;
    cr_assert_eq(rtd_stats_create(&s, inst, "x", 4), 0);
    int n = 0;
    cr_assert_eq(rtd_shm_list(inst, count_ring, &n), 2);
    cr_assert_eq(n, 2);
    cr_assert_eq(rtd_shm_cleanup(inst, 0), 0, "live creator: kept");
    pid_t pid = fork();
    if (pid == 0) {
        struct rtd_ring *q;
        struct rtd_ring_config cfg = {
            .kind = RTD_RING_PACKET, .data_bytes = 4096, .overflow = RTD_OVERFLOW_BLOCK};
        _exit(rtd_ring_create(&q, inst, "leak", &cfg) ? 1 : 0);
    }
    waitpid(pid, NULL, 0);
    cr_assert_eq(rtd_shm_list(inst, NULL, NULL), 3);
    cr_assert_eq(rtd_shm_cleanup(inst, 0), 1);
    cr_assert_eq(rtd_shm_list(inst, NULL, NULL), 2);
    rtd_stats_close(s);
    rtd_ring_close(r);
    cr_assert_eq(rtd_shm_list(inst, NULL, NULL), 0);
}
