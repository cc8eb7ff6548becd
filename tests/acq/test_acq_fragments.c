/* SPDX-License-Identifier: MIT */
/*
 * Hostile frame fragments (issue 13). Every fragment must agree with the frame
 * being assembled (count, geometry, offset layout) or be refused and counted by
 * cause; a frame is complete only when every byte came from its own fragments.
 * First in-process, through acq_frame_fragment() on a real acq state (rings and
 * stats segments), reading the frames ring from outside: the two-datagram
 * bitmap overflow (an ASan abort before the fix), fragments claiming another
 * count, geometry or layout (once "completed" frames with stale pixels), a
 * frame id far ahead (once every later frame was "late" for ever), and
 * --partial deliver with only the last fragment received (once zeroed whole).
 * Then over real UDP on loopback against rtdaq-acq with both back ends: 64 of
 * the crash pairs (once `free(): invalid next size`), after which acq still
 * runs, its counters say why, and a good frame arrives bit-exact.
 */
#include "acq_internal.h"
#include "acq_test.h"
#include "rtd_wire.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* 65536-byte frames: one fragment of a 65536-fragment frame is then self-consistent (1 byte). */
#define W  256
#define H  128
#define FB (W * H * 2)

static uint8_t px[FB];
static uint8_t dgram[sizeof(struct rtd_wire_frag) + FB];

/* Pixels of frame id: never zero, different per frame, so stale bytes always show. */
static void pattern(uint64_t id)
{
    for (uint32_t i = 0; i < FB / 2; i++) {
        uint16_t v = (uint16_t)(0x8000u | ((id * 2654435761u + i * 40503u) & 0x7fffu));
        memcpy(px + 2 * i, &v, 2);
    }
}

/* One datagram; payload from px at off (or at 0 when off is past it). */
static size_t frag(uint64_t id, uint32_t index, uint32_t count, uint32_t w, uint32_t h,
                   uint32_t off, uint32_t len)
{
    struct rtd_wire_frag f = {.magic = RTD_WIRE_FRAG_MAGIC,
                              .version = RTD_WIRE_FRAG_VERSION,
                              .hdr_len = sizeof f,
                              .frame_id = id,
                              .index = index,
                              .count = count,
                              .width = w,
                              .height = h,
                              .pixfmt = RTD_PIXFMT_MONO16,
                              .frame_bytes = w * h * 2,
                              .offset = off,
                              .len = len,
                              .ts_ns = rtd_realtime_ns()};
    memcpy(dgram, &f, sizeof f);
    memcpy(dgram + sizeof f, px + (off + len <= FB ? off : 0), len);
    return sizeof f + len;
}

/* Frames in the ring: complete ones must hold exactly their own pixels. */
struct seen {
    uint64_t frames, complete, partial, stale, last_id;
};

static void drain(struct rtd_consumer *c, struct seen *s, uint32_t keep_off, uint32_t keep_len)
{
    struct rtd_frame f;
    while (rtd_frame_peek(c, &f) == 0) {
        s->frames++;
        s->last_id = f.hdr->frame_id;
        pattern(f.hdr->frame_id);
        if (f.hdr->flags & RTD_FRAME_PARTIAL) {
            s->partial++;
            /* Delivered partial: the received bytes intact, every other byte zero. */
            for (uint32_t i = 0; i < FB; i++) {
                int mine = i >= keep_off && i < keep_off + keep_len;
                if (f.data[i] != (mine ? px[i] : 0)) {
                    s->stale++;
                    break;
                }
            }
        } else {
            s->complete++;
            if (f.hdr->len != FB || memcmp(f.data, px, FB))
                s->stale++;
        }
        rtd_frame_release(c);
    }
}

static struct acq a;
static struct rtd_acq_config cfg;
static volatile sig_atomic_t stop_flag;

static void feed(size_t n)
{
    acq_frame_fragment(&a, dgram, n);
}

static int setup(const char *tag, enum rtd_acq_partial partial, struct rtd_ring **ring,
                 struct rtd_consumer **c)
{
    rtd_acq_config_defaults(&cfg);
    t_instance(cfg.instance, sizeof cfg.instance, tag);
    cfg.packet_port = 0;
    cfg.frame_slots = 16;
    cfg.packet_ring_bytes = 1 << 20;
    cfg.max_clients = 16;
    cfg.partial = partial;
    cfg.quiet = 1;
    if (acq_setup(&a, &cfg, &stop_flag) || rtd_ring_attach(ring, cfg.instance, "frames") ||
        rtd_consumer_open(c, *ring, RTD_CONSUMER_RELIABLE, "test")) {
        fprintf(stderr, "acq set-up for %s failed\n", cfg.instance);
        return -1;
    }
    return 0;
}

static void in_process(void)
{
    struct rtd_ring *ring;
    struct rtd_consumer *c;
    if (setup("u", RTD_PARTIAL_DROP, &ring, &c))
        exit(1);
    struct seen s = {0};

    /* The two datagrams: fragment 65535 of 65536 into a frame of 2 fragments. The
     * bitmap holds one word; before the fix ASan aborts here (heap-buffer-overflow). */
    pattern(7);
    feed(frag(7, 0, 2, W, H, 0, FB / 2));
    feed(frag(7, 65535, 65536, W, H, 65535, 1));
    /* The same index with a layout that is wrong on its own: refused as a bad fragment. */
    feed(frag(7, 65535, 65536, W, H, 0, 16));
    CHECK(a.cnt[C_FRAGS_MM_COUNT] == 1 && a.cnt[C_FRAGS_BAD] == 1,
          "crash pair: mismatch_count %llu (want 1), bad %llu (want 1)",
          (unsigned long long)a.cnt[C_FRAGS_MM_COUNT], (unsigned long long)a.cnt[C_FRAGS_BAD]);

    /* Another count: fragment 1 of 2 covering the second half lands in a 4-fragment frame;
     * before the fix the frame "completed" with [FB/4, FB/2) stale. */
    pattern(8);
    feed(frag(8, 0, 4, W, H, 0, FB / 4));
    feed(frag(8, 1, 2, W, H, FB / 2, FB / 2));
    feed(frag(8, 2, 4, W, H, FB / 2, FB / 4));
    feed(frag(8, 3, 4, W, H, 3 * FB / 4, FB / 4));
    CHECK(a.cnt[C_FRAGS_MM_COUNT] == 2, "count variant: mismatch_count %llu (want 2)",
          (unsigned long long)a.cnt[C_FRAGS_MM_COUNT]);

    /* Another geometry: three fragments of a frame half as high; before the fix the frame
     * "completed" with its second half (and a quarter more) stale. */
    pattern(9);
    feed(frag(9, 0, 4, W, H, 0, FB / 4));
    for (uint32_t i = 1; i < 4; i++)
        feed(frag(9, i, 4, W, H / 2, i * FB / 8, FB / 8));
    CHECK(a.cnt[C_FRAGS_MM_GEOMETRY] == 3, "geometry variant: mismatch_geometry %llu (want 3)",
          (unsigned long long)a.cnt[C_FRAGS_MM_GEOMETRY]);

    /* Another layout: a last fragment consistent on its own with 20000-byte fragments, in a
     * frame of 16384-byte ones; before the fix [49152, 60000) stayed stale. */
    pattern(10);
    feed(frag(10, 0, 4, W, H, 0, FB / 4));
    feed(frag(10, 1, 4, W, H, FB / 4, FB / 4));
    feed(frag(10, 2, 4, W, H, FB / 2, FB / 4));
    feed(frag(10, 3, 4, W, H, 60000, FB - 60000));
    feed(frag(10, 2, 4, W, H, FB / 2, FB / 4)); /* and a duplicate stays a duplicate */
    CHECK(a.cnt[C_FRAGS_MM_LAYOUT] == 1 && a.cnt[C_FRAGS_DUP] == 1,
          "layout variant: mismatch_layout %llu (want 1), dup %llu (want 1)",
          (unsigned long long)a.cnt[C_FRAGS_MM_LAYOUT], (unsigned long long)a.cnt[C_FRAGS_DUP]);
    CHECK(a.cnt[C_FRAGS_MISMATCH] == 6, "mismatch_fragments %llu (want 6 = 2 + 3 + 1)",
          (unsigned long long)a.cnt[C_FRAGS_MISMATCH]);

    /* A good frame, fragments reversed: it alone reaches the ring, bit-exact. */
    pattern(11);
    for (uint32_t i = 4; i-- > 0;)
        feed(frag(11, i, 4, W, H, i * FB / 4, FB / 4));
    drain(c, &s, 0, 0);
    CHECK(s.frames == 1 && s.complete == 1 && s.stale == 0 && s.last_id == 11,
          "ring: %llu frames (%llu complete, %llu with stale pixels, last id %llu); want only "
          "frame 11, whole",
          (unsigned long long)s.frames, (unsigned long long)s.complete, (unsigned long long)s.stale,
          (unsigned long long)s.last_id);
    CHECK(a.cnt[C_FRAMES_RX] == 1 && a.cnt[C_FRAMES_PARTIAL] == 4,
          "frames.rx %llu (want 1), frames.partial %llu (want 4: ids 7-10)",
          (unsigned long long)a.cnt[C_FRAMES_RX], (unsigned long long)a.cnt[C_FRAMES_PARTIAL]);

    /* One frame id far ahead (a stray datagram, or the counter before a camera reboot): the
     * frames after it are not "late" for ever; acq follows them and counts the restart. */
    uint64_t far = 1ull << 62;
    pattern(far);
    feed(frag(far, 0, 1, W, H, 0, FB));
    pattern(12);
    feed(frag(12, 0, 1, W, H, 0, FB));
    pattern(5);
    feed(frag(5, 0, 1, W, H, 0, FB)); /* 7 below 12: late */
    memset(&s, 0, sizeof s);
    drain(c, &s, 0, 0);
    CHECK(s.frames == 2 && s.complete == 2 && s.stale == 0 && s.last_id == 12 &&
              a.cnt[C_FRAMES_ID_RESTARTS] == 1 && a.cnt[C_FRAGS_LATE] == 1,
          "after frame id 2^62: %llu frames (want 2), last id %llu (want 12), id_restarts %llu "
          "(want 1), late %llu (want 1)",
          (unsigned long long)s.frames, (unsigned long long)s.last_id,
          (unsigned long long)a.cnt[C_FRAMES_ID_RESTARTS], (unsigned long long)a.cnt[C_FRAGS_LATE]);
    rtd_consumer_close(c);
    rtd_ring_close(ring);
    acq_teardown(&a);

    /* --partial deliver with only the last fragment: it survives, the rest is zeroed (before
     * the fix the whole frame was zeroed, for want of a fragment size). */
    if (setup("v", RTD_PARTIAL_DELIVER, &ring, &c))
        exit(1);
    memset(&s, 0, sizeof s);
    pattern(1);
    feed(frag(1, 3, 4, W, H, 3 * FB / 4, FB / 4));
    pattern(2);
    feed(frag(2, 0, 1, W, H, 0, FB)); /* a newer frame ends frame 1 as partial */
    drain(c, &s, 3 * FB / 4, FB / 4);
    CHECK(s.frames == 2 && s.partial == 1 && s.complete == 1 && s.stale == 0,
          "partial deliver: %llu frames, %llu partial, %llu complete, %llu with wrong bytes",
          (unsigned long long)s.frames, (unsigned long long)s.partial,
          (unsigned long long)s.complete, (unsigned long long)s.stale);
    rtd_consumer_close(c);
    rtd_ring_close(ring);
    acq_teardown(&a);
}

/* 64 crash pairs over UDP to a running rtdaq-acq, then one good frame. */
static void over_udp(const char *io, int port)
{
    char inst[48], ps[16], iob[16];
    t_instance(inst, sizeof inst, io);
    snprintf(iob, sizeof iob, "%s", io);
    snprintf(ps, sizeof ps, "%d", port);
    char *argv[] = {ACQ_BIN, "--instance", inst,  "--packet-port", "0",    "--source",
                    "udp",   "--io",       iob,   "--frame-port",  ps,     "--width",
                    "256",   "--height",   "128", "--partial",     "drop", "--frame-timeout-ms",
                    "100",   "--duration", "60",  "--quiet",       NULL};
    pid_t acq = t_spawn(argv, NULL);
    if (acq < 0 || t_wait_acq(inst, acq, 10000))
        exit(1);
    struct rtd_ring *ring;
    struct rtd_consumer *c;
    if (rtd_ring_attach(&ring, inst, "frames") ||
        rtd_consumer_open(&c, ring, RTD_CONSUMER_RELIABLE, "test"))
        exit(1);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa))
        exit(1);
    for (uint64_t id = 1; id <= 64; id++) {
        pattern(id);
        size_t n = frag(id, 0, 2, W, H, 0, FB / 2);
        CHECK(send(fd, dgram, n, 0) == (ssize_t)n, "send: %s", strerror(errno));
        n = frag(id, 65535, 65536, W, H, 65535, 1);
        CHECK(send(fd, dgram, n, 0) == (ssize_t)n, "send: %s", strerror(errno));
        if (id % 16 == 0)
            t_sleep_ms(5); /* well inside the socket buffer anyway */
    }
    uint64_t mm = t_counter_wait(inst, "frames.mismatch_count", 64, 5000);
    CHECK(mm == 64, "%s: frames.mismatch_count %llu after 64 crash pairs (want 64)", io,
          (unsigned long long)mm);
    CHECK(t_counter(inst, "frames.mismatch_fragments") == 64, "%s: frames.mismatch_fragments %llu",
          io, (unsigned long long)t_counter(inst, "frames.mismatch_fragments"));
    int st;
    CHECK(waitpid(acq, &st, WNOHANG) == 0, "%s: rtdaq-acq died from the crash pairs", io);
    pattern(1000);
    for (uint32_t i = 0; i < 4; i++) {
        size_t n = frag(1000, i, 4, W, H, i * FB / 4, FB / 4);
        CHECK(send(fd, dgram, n, 0) == (ssize_t)n, "send: %s", strerror(errno));
    }
    struct seen s = {0};
    for (int i = 0; i < 500 && !s.frames; i++) {
        t_sleep_ms(10);
        drain(c, &s, 0, 0);
    }
    CHECK(s.frames == 1 && s.complete == 1 && s.stale == 0 && s.last_id == 1000,
          "%s: after the attack %llu frames (%llu complete, %llu stale, last id %llu); want the "
          "good frame 1000 only",
          io, (unsigned long long)s.frames, (unsigned long long)s.complete,
          (unsigned long long)s.stale, (unsigned long long)s.last_id);
    CHECK(t_counter_wait(inst, "frames.partial", 64, 3000) == 64,
          "%s: frames.partial %llu (want 64: every attacked frame)", io,
          (unsigned long long)t_counter(inst, "frames.partial"));
    close(fd);
    rtd_consumer_close(c);
    rtd_ring_close(ring);
    kill(acq, SIGTERM);
    CHECK(t_wait(acq, 10000) == 0, "%s: rtdaq-acq did not stop cleanly", io);
}

int main(void)
{
    in_process();
    over_udp("uring", t_port(6));
    over_udp("epoll", t_port(7));
    printf("%s\n", t_failures ? "FAIL" : "ok");
    return t_failures ? 1 : 0;
}
