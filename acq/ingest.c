/* SPDX-License-Identifier: MIT */
/*
 * The I/O-independent half of acq: rings and stats set-up, the sensor-packet
 * parser (stream reassembly, validation, per-client sequence tracking), UDP
 * frame reassembly into frame-ring slots, the synthetic and replay frame
 * sources, and the periodic housekeeping. Both receive back ends (io_uring in
 * acq.c, epoll in acq_epoll.c) feed bytes into these functions.
 */
#include "acq_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rtd_util.h"

static const char *const counter_label[C_N] = {
    [C_PKT_RX] = "packets.rx",
    [C_PKT_BYTES] = "packets.bytes",
    [C_PKT_GAPS] = "packets.gaps",
    [C_PKT_REORDER] = "packets.reorder",
    [C_BAD_MAGIC] = "packets.bad_magic",
    [C_BAD_VERSION] = "packets.bad_version",
    [C_BAD_LENGTH] = "packets.bad_length",
    [C_OVERSIZE] = "packets.oversize",
    [C_CLIENTS_ACTIVE] = "clients.active",
    [C_CLIENTS_ACCEPTED] = "clients.accepted",
    [C_CLIENTS_REJECTED] = "clients.rejected",
    [C_CLIENTS_VANISHED] = "clients.vanished_mid_packet",
    [C_CLIENTS_UNTRACKED] = "clients.untracked",
    [C_FRAMES_RX] = "frames.rx",
    [C_FRAMES_PARTIAL] = "frames.partial",
    [C_FRAMES_DROPPED] = "frames.dropped",
    [C_FRAMES_TIMEOUT] = "frames.timeout",
    [C_FRAGS_RX] = "frames.fragments",
    [C_FRAGS_BAD] = "frames.bad_fragments",
    [C_FRAGS_LATE] = "frames.late_fragments",
    [C_FRAGS_DUP] = "frames.dup_fragments",
    [C_FRAGS_MISMATCH] = "frames.mismatch_fragments",
    [C_FRAGS_MM_COUNT] = "frames.mismatch_count",
    [C_FRAGS_MM_GEOMETRY] = "frames.mismatch_geometry",
    [C_FRAGS_MM_LAYOUT] = "frames.mismatch_layout",
    [C_FRAMES_ID_RESTARTS] = "frames.id_restarts",
    [C_RING_DROPPED] = "ring.dropped",
    [C_RING_FULL_WAITS] = "ring.full_waits",
    [C_RING_FRAMES_DROPPED] = "ring.frames_dropped",
    [C_UDP_DGRAMS] = "udp.datagrams",
    [C_UDP_TRUNC] = "udp.truncated",
    [C_REC_RECORDS] = "record.records",
    [C_REC_DROPPED] = "record.dropped",
    [C_REC_BYTES] = "record.bytes",
    [C_FRAMES_RATE_LIMITED] = "frames.rate_limited",
    [C_IO_ENOBUFS] = "io.enobufs",
    [C_IO_CQES] = "io.cqes",
    [C_IO_BATCHES] = "io.batches",
    [C_PKT_RATE_LIMITED] = "packets.rate_limited",
    [C_FRAMES_ROI_OUTSIDE] = "frames.roi_outside",
    [C_CTL_READ_BUSY] = "ctl.read_busy",
    [C_FRAMES_CAMERA_SKIPPED] = "frames.camera_skipped",
    [C_FRAMES_DROPPED_PARTIAL] = "frames.dropped_partial",
    [C_FRAMES_TOO_LARGE] = "frames.too_large",
};

/* ---- sockets ------------------------------------------------------------- */

static int acq_addr(const struct rtd_acq_config *cfg, int port, struct sockaddr_in *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, cfg->bind, &sa->sin_addr) != 1) {
        rtd_log(RTD_LOG_ERR, "--bind %s: not an IPv4 address", cfg->bind);
        return -EINVAL;
    }
    return 0;
}

int acq_tcp_listener(const struct rtd_acq_config *cfg)
{
    struct sockaddr_in sa;
    int rc = acq_addr(cfg, cfg->packet_port, &sa);
    if (rc)
        return rc;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 4096)) {
        rc = -errno;
        rtd_log(RTD_LOG_ERR, "tcp %s:%d: %s", cfg->bind, cfg->packet_port, strerror(errno));
        close(fd);
        return rc;
    }
    return fd;
}

int acq_udp_socket(const struct rtd_acq_config *cfg, int port)
{
    struct sockaddr_in sa;
    int rc = acq_addr(cfg, port, &sa);
    if (rc)
        return rc;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* 10-20 ms of data at full rate: the default 208 KiB loses datagrams in host stalls. */
    int sz = (int)cfg->udp_rcvbuf;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz))
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa)) {
        rc = -errno;
        rtd_log(RTD_LOG_ERR, "udp %s:%d: %s", cfg->bind, port, strerror(errno));
        close(fd);
        return rc;
    }
    return fd;
}

/* ---- clients ------------------------------------------------------------- */

static struct acq_client *client_get(struct acq *a, uint32_t id)
{
    uint32_t h = (id * 0x9e3779b1u) & a->client_mask;
    for (;;) {
        struct acq_client *c = &a->clients[h];
        if (c->used && c->id == id)
            return c;
        if (!c->used)
            break;
        h = (h + 1) & a->client_mask;
    }
    if (a->n_clients >= a->client_limit) {
        a->cnt[C_CLIENTS_UNTRACKED]++;
        return NULL;
    }
    struct acq_client *c = &a->clients[h];
    c->used = 1;
    c->id = id;
    a->n_clients++;
    char lbl[64];
    static const char *const what[6] = {"packets", "bytes",          "gaps",
                                        "reorder", "latency_sum_ns", "latency_max_ns"};
    _Atomic uint64_t **dst[6] = {&c->c_rx,      &c->c_bytes,   &c->c_gaps,
                                 &c->c_reorder, &c->c_lat_sum, &c->c_lat_max};
    for (int i = 0; i < 6; i++) {
        snprintf(lbl, sizeof lbl, "client.%u.%s", id, what[i]);
        *dst[i] = rtd_stats_counter(a->stats, lbl, i == 5 ? RTD_GAUGE : RTD_COUNTER);
        if (!*dst[i])
            *dst[i] = &a->dummy;
    }
    return c;
}

/* ---- packets ------------------------------------------------------------- */

void acq_publish_packets(struct acq *a)
{
    if (a->pending_publish) {
        rtd_pkt_publish(a->pring);
        a->pending_publish = 0;
    }
}

static void *reserve_record(struct acq *a, uint32_t len)
{
    int err = 0;
    void *p = rtd_pkt_reserve(a->pring, len, RTD_ACQ_REC_PACKET, &err);
    if (p)
        return p;
    if (err == -ENOBUFS) {
        a->cnt[C_RING_DROPPED]++;
        return NULL;
    }
    if (err != -EAGAIN)
        return NULL;
    /* Blocking policy: a reliable consumer is behind. Publish what we hold so it can
     * progress, then spin; TCP senders feel the back-pressure through the socket. */
    a->cnt[C_RING_FULL_WAITS]++;
    uint64_t t0 = rtd_now_ns(), last_reap = t0;
    for (;;) {
        acq_publish_packets(a);
        p = rtd_pkt_reserve(a->pring, len, RTD_ACQ_REC_PACKET, &err);
        if (p || err != -EAGAIN || *a->stop)
            break;
        uint64_t now = rtd_now_ns();
        if (now - last_reap > 100000000ull) {
            rtd_ring_reap(a->pring, 2000000000ull); /* a dead consumer must not gate us */
            rtd_sd_watchdog();
            last_reap = now;
        }
    }
    if (!p && err == -ENOBUFS)
        a->cnt[C_RING_DROPPED]++;
    return p;
}

/*
 * acq.packet_rate_limit: a token bucket holding at most 10 ms of packets (at
 * least one), refilled from the clock. Integer thousandths keep it exact at any
 * rate up to the 1e9/s the parameter allows.
 */
static int packet_token(struct acq *a)
{
    uint64_t now = a->now_mono ? a->now_mono : rtd_now_ns();
    uint64_t cap = a->pkt_rate / 100 ? a->pkt_rate / 100 * 1000 : 1000;
    if (now > a->pkt_tokens_ns) {
        uint64_t dt = now - a->pkt_tokens_ns;
        /* dt capped at 1 s: rate (<= 1e9) * 1e3 * 1e9 / 1e9 stays far from 2^64. */
        uint64_t add = (dt > 1000000000ull ? 1000000000ull : dt) * a->pkt_rate / 1000000ull;
        a->pkt_tokens_milli = a->pkt_tokens_milli + add > cap ? cap : a->pkt_tokens_milli + add;
        a->pkt_tokens_ns = now;
    }
    if (a->pkt_tokens_milli < 1000)
        return 0;
    a->pkt_tokens_milli -= 1000;
    return 1;
}

static void emit_packet(struct acq *a, struct acq_stream *s, const struct rtd_wire_pkt *h,
                        const uint8_t *payload)
{
    struct acq_client *cl = s && s->cl && s->cl->id == h->client ? s->cl : client_get(a, h->client);
    if (s)
        s->cl = cl;
    a->cnt[C_PKT_RX]++;
    a->cnt[C_PKT_BYTES] += sizeof *h + h->len;
    if (cl) {
        if ((cl->rx == 0 && cl->next_seq == 0) || (h->seq == 0 && cl->next_seq > 1)) {
            /* First packet of this client, or the sensor restarted its numbering. */
            cl->next_seq = h->seq + 1;
        } else if (h->seq == cl->next_seq) {
            cl->next_seq++;
        } else if (h->seq > cl->next_seq) {
            uint64_t g = h->seq - cl->next_seq;
            cl->gaps += g;
            a->cnt[C_PKT_GAPS] += g;
            cl->next_seq = h->seq + 1;
        } else {
            cl->reorder++;
            a->cnt[C_PKT_REORDER]++;
        }
        cl->rx++;
        cl->bytes += sizeof *h + h->len;
    }
    if (a->now_real > h->ts_ns) {
        uint64_t ns = a->now_real - h->ts_ns;
        a->lat_pkt[ns < 2 ? 0 : 63 - __builtin_clzll(ns)]++;
        if (cl) {
            cl->lat_sum_ns += ns;
            if (ns > cl->lat_max_ns)
                cl->lat_max_ns = ns;
        }
    }
    struct rtd_acq_pkt pre = {.client = h->client, .len = h->len, .seq = h->seq, .ts_ns = h->ts_ns};
    if (a->pkt_rate && !packet_token(a)) {
        a->cnt[C_PKT_RATE_LIMITED]++; /* received and counted above, not published */
        return;
    }
    uint32_t len = (uint32_t)sizeof pre + h->len;
    uint8_t *rec = reserve_record(a, len);
    if (rec) {
        ((struct rtd_pkt_hdr *)(void *)rec - 1)->ts_mono_ns = a->now_mono;
        memcpy(rec, &pre, sizeof pre);
        memcpy(rec + sizeof pre, payload, h->len);
        a->pending_publish = 1;
    }
    if (a->rec) {
        if (rtd_rec_write(a->rec, RTD_REC_PACKET, 0, a->now_mono, a->now_real, &pre, sizeof pre,
                          payload, h->len))
            a->cnt[C_REC_DROPPED]++;
        else
            a->cnt[C_REC_RECORDS]++;
    }
}

/* 0 good, else the counter to bump. */
static int check_header(const struct acq *a, const struct rtd_wire_pkt *h)
{
    if (h->magic != RTD_WIRE_PKT_MAGIC)
        return C_BAD_MAGIC;
    if (h->version != RTD_WIRE_PKT_VERSION)
        return C_BAD_VERSION;
    if (h->len == 0 || h->len > RTD_WIRE_PAYLOAD_LIMIT)
        return C_BAD_LENGTH;
    if (h->len > a->cfg->max_payload)
        return C_OVERSIZE;
    return 0;
}

void acq_stream_init(struct acq *a, struct acq_stream *s)
{
    s->have = 0;
    s->cl = NULL;
    if (!s->part)
        s->part = malloc(sizeof(struct rtd_wire_pkt) + a->cfg->max_payload);
}

void acq_stream_free(struct acq_stream *s)
{
    free(s->part);
    s->part = NULL;
}

/*
 * The hot path. Whole packets are copied straight from the receive buffer into
 * ring records; only a packet split across two reads goes through s->part.
 */
int acq_parse_stream(struct acq *a, struct acq_stream *s, const uint8_t *p, size_t n)
{
    struct rtd_wire_pkt h;
    if (s->have) {
        if (s->have < sizeof h) {
            size_t take = sizeof h - s->have < n ? sizeof h - s->have : n;
            memcpy(s->part + s->have, p, take);
            s->have += (uint32_t)take;
            p += take;
            n -= take;
            if (s->have < sizeof h)
                return 0;
            memcpy(&h, s->part, sizeof h);
            int bad = check_header(a, &h);
            if (bad) {
                a->cnt[bad]++;
                s->have = 0;
                return -EBADMSG;
            }
        }
        memcpy(&h, s->part, sizeof h);
        size_t need = sizeof h + h.len - s->have;
        size_t take = need < n ? need : n;
        memcpy(s->part + s->have, p, take);
        s->have += (uint32_t)take;
        p += take;
        n -= take;
        if (take < need)
            return 0;
        emit_packet(a, s, &h, s->part + sizeof h);
        s->have = 0;
    }
    while (n >= sizeof h) {
        memcpy(&h, p, sizeof h);
        int bad = check_header(a, &h);
        if (bad) {
            a->cnt[bad]++;
            return -EBADMSG;
        }
        if (n < sizeof h + h.len)
            break;
        emit_packet(a, s, &h, p + sizeof h);
        p += sizeof h + h.len;
        n -= sizeof h + h.len;
    }
    if (n) {
        if (n >= sizeof h) {
            /* Header already validated above: the payload is what is missing. */
        }
        memcpy(s->part, p, n);
        s->have = (uint32_t)n;
    }
    return 0;
}

void acq_parse_datagram(struct acq *a, const uint8_t *p, size_t n)
{
    struct rtd_wire_pkt h;
    a->cnt[C_UDP_DGRAMS]++;
    while (n >= sizeof h) {
        memcpy(&h, p, sizeof h);
        int bad = check_header(a, &h);
        if (bad) {
            a->cnt[bad]++;
            return;
        }
        if (n < sizeof h + h.len) {
            a->cnt[C_BAD_LENGTH]++;
            return;
        }
        emit_packet(a, NULL, &h, p + sizeof h);
        p += sizeof h + h.len;
        n -= sizeof h + h.len;
    }
    if (n)
        a->cnt[C_BAD_LENGTH]++;
}

/* ---- frames -------------------------------------------------------------- */

/*
 * acq.roi.*: keep only the region of interest of a whole frame that sits in
 * the slot, moving its rows to the front (each row moves down or stays, so in
 * place is safe). The slot's header says where the region lies (origin_x/y).
 * A frame the region does not fit is published whole and counted.
 */
static void roi_crop(struct acq *a, struct acq_fasm *fa, uint32_t *ox, uint32_t *oy)
{
    *ox = *oy = 0;
    a->geom_w = fa->width;
    a->geom_h = fa->height;
    if (!(a->roi_x | a->roi_y | a->roi_w | a->roi_h))
        return;
    uint32_t w = a->roi_w ? a->roi_w : fa->width - (a->roi_x < fa->width ? a->roi_x : fa->width);
    uint32_t h = a->roi_h ? a->roi_h : fa->height - (a->roi_y < fa->height ? a->roi_y : fa->height);
    if (!w || !h || (uint64_t)a->roi_x + w > fa->width || (uint64_t)a->roi_y + h > fa->height) {
        a->cnt[C_FRAMES_ROI_OUTSIDE]++;
        return;
    }
    uint8_t *d = fa->f.data;
    for (uint32_t r = 0; r < h; r++)
        memmove(d + (size_t)r * w * 2, d + ((size_t)(a->roi_y + r) * fa->width + a->roi_x) * 2,
                (size_t)w * 2);
    fa->width = w;
    fa->height = h;
    fa->frame_bytes = w * h * 2;
    *ox = a->roi_x;
    *oy = a->roi_y;
}

static void frame_publish(struct acq *a, struct acq_fasm *fa, uint16_t flags)
{
    struct rtd_frame_hdr *h = fa->f.hdr;
    uint32_t ox, oy;
    roi_crop(a, fa, &ox, &oy);
    h->origin_x = ox;
    h->origin_y = oy;
    h->len = fa->frame_bytes;
    h->type = RTD_ACQ_FRAME_MONO16;
    h->flags = flags;
    h->width = fa->width;
    h->height = fa->height;
    h->pixfmt = fa->pixfmt;
    h->frame_id = fa->frame_id;
    h->ts_real_ns = fa->ts_real;
    h->ts_mono_ns = a->now_mono ? a->now_mono : rtd_now_ns();
    if (a->rec) {
        struct rtd_rec_frame rf = {.frame_id = fa->frame_id,
                                   .width = fa->width,
                                   .height = fa->height,
                                   .pixfmt = fa->pixfmt,
                                   .flags = flags,
                                   .ts_real_ns = fa->ts_real};
        if (rtd_rec_write(a->rec, RTD_REC_FRAME, flags, h->ts_mono_ns, rtd_realtime_ns(), &rf,
                          sizeof rf, fa->f.data, fa->frame_bytes))
            a->cnt[C_REC_DROPPED]++;
        else
            a->cnt[C_REC_RECORDS]++;
    }
    rtd_frame_publish(a->fring, &fa->f);
    uint64_t now = rtd_realtime_ns();
    if (fa->ts_real && now > fa->ts_real)
        rtd_hist_record(a->h_frame, now - fa->ts_real);
    a->cnt[C_FRAMES_RX]++;
    a->frames_out++;
    a->last_frame_ns = rtd_now_ns();
    if (++a->acq_done == a->acq_target)
        a->acquiring = 0; /* single/multiple run complete */
}

/*
 * 1 when the frame source should publish a frame (acquiring, under the rate
 * limit). t_ns is the frame's time on the camera's clock where the source
 * knows it (the synthetic camera's schedule, a replay's timeline), else now:
 * pacing on the camera's clock is exact however late acq handles the frame.
 */
static int frame_wanted(struct acq *a, uint64_t t_ns)
{
    if (!a->acquiring)
        return 0;
    if (a->frame_min_interval_ns) {
        /*
         * Paced against a schedule, not the time since the last frame: frames arrive
         * on the camera's grid (100 us at 10 kHz), and "at least the interval since
         * the last one" loses up to a grid step per frame (2000/s gave ~1400/s). The
         * schedule advances by exactly one interval per accepted frame and never
         * banks more than one interval of credit (no burst after a pause).
         */
        uint64_t now = t_ns;
        if (now < a->frame_next_due_ns) {
            a->cnt[C_FRAMES_RATE_LIMITED]++;
            return 0;
        }
        a->frame_next_due_ns += a->frame_min_interval_ns;
        if (a->frame_next_due_ns + a->frame_min_interval_ns <= now)
            a->frame_next_due_ns = now + a->frame_min_interval_ns;
    }
    return 1;
}

static void frame_end(struct acq *a, int complete, int timeout)
{
    struct acq_fasm *fa = &a->fasm;
    if (complete) {
        frame_publish(a, fa, 0);
    } else {
        a->cnt[C_FRAMES_PARTIAL]++;
        if (timeout)
            a->cnt[C_FRAMES_TIMEOUT]++;
        if (a->cfg->partial == RTD_PARTIAL_DELIVER) {
            /* The slot holds an older frame's bytes where fragments are missing; the layout
             * fixed by the first fragment says exactly which bytes those are. */
            for (uint32_t i = 0; i < fa->count; i++) {
                if (fa->bits[i / 64] & (1ull << (i % 64)))
                    continue;
                uint64_t off = (uint64_t)i * fa->chunk;
                if (off < fa->frame_bytes)
                    memset(fa->f.data + off, 0,
                           off + fa->chunk > fa->frame_bytes ? fa->frame_bytes - off : fa->chunk);
            }
            frame_publish(a, fa, RTD_FRAME_PARTIAL);
        } else {
            a->cnt[C_FRAMES_DROPPED]++; /* the unpublished claim is reused by the next claim */
            a->cnt[C_FRAMES_DROPPED_PARTIAL]++;
        }
    }
    fa->active = 0;
    fa->have_last = 1;
    fa->last_id = fa->frame_id;
}

static int frame_start(struct acq *a, const struct rtd_wire_frag *h, uint32_t chunk)
{
    struct acq_fasm *fa = &a->fasm;
    if (!frame_wanted(a, rtd_now_ns())) {
        fa->skip = 1;
        fa->skip_id = h->frame_id;
        fa->have_last = 1;
        fa->last_id = h->frame_id;
        return -EAGAIN;
    }
    int rc = rtd_frame_claim(a->fring, &fa->f);
    if (rc) {
        a->cnt[C_FRAMES_DROPPED]++;
        a->cnt[C_RING_FRAMES_DROPPED]++;
        fa->skip = 1;
        fa->skip_id = h->frame_id;
        fa->have_last = 1;
        fa->last_id = h->frame_id;
        return rc;
    }
    uint32_t words = (h->count + 63) / 64;
    if (words > fa->bits_words) {
        free(fa->bits);
        fa->bits = calloc(words, sizeof *fa->bits);
        fa->bits_words = fa->bits ? words : 0;
        if (!fa->bits)
            return -ENOMEM;
    } else {
        memset(fa->bits, 0, words * sizeof *fa->bits);
    }
    fa->active = 1;
    fa->skip = 0;
    fa->frame_id = h->frame_id;
    fa->count = h->count;
    fa->got = 0;
    fa->frame_bytes = h->frame_bytes;
    fa->width = h->width;
    fa->height = h->height;
    fa->pixfmt = h->pixfmt;
    fa->chunk = chunk;
    fa->ts_real = h->ts_ns;
    fa->start_ns = a->now_mono ? a->now_mono : rtd_now_ns();
    return 0;
}

/*
 * The fragment size a fragment implies under the senders' layout (acq/sim.c, rtdaq replay):
 * offset = index * chunk, every fragment but the last exactly chunk bytes, the last one ending
 * at frame_bytes, count = ceil(frame_bytes / chunk). 0 when its own offset and length fit no
 * such layout. Under it, count distinct indices cover every byte of the frame exactly once.
 */
static uint32_t frag_chunk(const struct rtd_wire_frag *h)
{
    uint64_t chunk;
    if (!h->len)
        return 0;
    if (h->index + 1 < h->count) {
        chunk = h->len;
        if (h->offset != (uint64_t)h->index * chunk)
            return 0;
    } else if (h->count == 1) {
        if (h->offset != 0)
            return 0;
        chunk = h->len;
    } else {
        if (h->offset % (h->count - 1))
            return 0;
        chunk = h->offset / (h->count - 1);
        if (h->len > chunk)
            return 0;
    }
    if ((uint64_t)h->offset + h->len > h->frame_bytes ||
        (h->index + 1 == h->count && (uint64_t)h->offset + h->len != h->frame_bytes) ||
        (uint64_t)(h->count - 1) * chunk >= h->frame_bytes ||
        (uint64_t)h->count * chunk < h->frame_bytes)
        return 0;
    return (uint32_t)chunk;
}

/*
 * A frame id this far below the newest one is not a late fragment but a sender that restarted
 * its counter (a camera reboot) or a stray id far ahead that came before (one datagram with
 * frame id 2^64-1 would otherwise make every later frame "late" until acq restarts): acq
 * follows the new ids and counts frames.id_restarts.
 */
#define ACQ_FRAME_ID_WINDOW 1024

/* 0 when fragment h (implying chunk) belongs to the frame being assembled, else -EPROTO
 * with the cause counted: a fragment that disagrees on any of these would write outside
 * the bitmap or the frame, or leave bytes of an older frame standing in a "complete" one. */
static int frag_matches(struct acq *a, const struct rtd_wire_frag *h, uint32_t chunk)
{
    const struct acq_fasm *fa = &a->fasm;
    enum acq_counter cause;
    if (h->count != fa->count)
        cause = C_FRAGS_MM_COUNT;
    else if (h->width != fa->width || h->height != fa->height || h->pixfmt != fa->pixfmt ||
             h->frame_bytes != fa->frame_bytes)
        cause = C_FRAGS_MM_GEOMETRY;
    else if (chunk != fa->chunk)
        cause = C_FRAGS_MM_LAYOUT;
    else
        return 0;
    a->cnt[C_FRAGS_MISMATCH]++;
    a->cnt[cause]++;
    return -EPROTO;
}

void acq_frame_fragment(struct acq *a, const uint8_t *p, size_t n)
{
    struct acq_fasm *fa = &a->fasm;
    struct rtd_wire_frag h;
    if (a->cfg->frames && a->frames_out >= a->cfg->frames)
        return;
    a->cnt[C_FRAGS_RX]++;
    if (n < sizeof h) {
        a->cnt[C_FRAGS_BAD]++;
        return;
    }
    memcpy(&h, p, sizeof h);
    uint32_t chunk = 0;
    if (h.magic != RTD_WIRE_FRAG_MAGIC || h.version != RTD_WIRE_FRAG_VERSION ||
        h.hdr_len < sizeof h || h.hdr_len > n || h.len != n - h.hdr_len || !h.count ||
        h.count > 65536 || h.index >= h.count || h.pixfmt != RTD_PIXFMT_MONO16 ||
        (uint64_t)h.width * h.height * 2 != h.frame_bytes || h.frame_bytes > a->slot_payload ||
        !(chunk = frag_chunk(&h))) {
        a->cnt[C_FRAGS_BAD]++;
        return;
    }
    if (fa->skip && h.frame_id == fa->skip_id)
        return;
    if (fa->active && h.frame_id != fa->frame_id) {
        if (h.frame_id < fa->frame_id && fa->frame_id - h.frame_id <= ACQ_FRAME_ID_WINDOW) {
            a->cnt[C_FRAGS_LATE]++;
            return;
        }
        frame_end(a, 0, 0); /* a newer frame began: the current one will not complete */
    }
    if (!fa->active) {
        if (fa->have_last && h.frame_id <= fa->last_id) {
            if (fa->last_id - h.frame_id <= ACQ_FRAME_ID_WINDOW) {
                a->cnt[C_FRAGS_LATE]++;
                return;
            }
            a->cnt[C_FRAMES_ID_RESTARTS]++; /* follow the new ids */
            fa->have_last = 0;
        }
        if (frame_start(a, &h, chunk))
            return;
    } else if (frag_matches(a, &h, chunk)) {
        return;
    }
    uint64_t bit = 1ull << (h.index % 64);
    if (fa->bits[h.index / 64] & bit) {
        a->cnt[C_FRAGS_DUP]++;
        return;
    }
    fa->bits[h.index / 64] |= bit;
    memcpy(fa->f.data + h.offset, p + h.hdr_len, h.len);
    if (++fa->got == fa->count)
        frame_end(a, 1, 0);
}

/* ---- synthetic and replay sources ---------------------------------------- */

static int source_frame(struct acq *a, uint64_t id, const uint16_t *px, uint32_t w, uint32_t h,
                        uint64_t ts_real, const struct rtd_synth_truth *truth, uint16_t flags)
{
    struct acq_fasm *fa = &a->fasm;
    uint64_t bytes = (uint64_t)w * h * 2;
    if (bytes > a->slot_payload) {
        a->cnt[C_FRAMES_DROPPED]++;
        a->cnt[C_FRAMES_TOO_LARGE]++;
        return -EMSGSIZE;
    }
    if (rtd_frame_claim(a->fring, &fa->f)) {
        a->cnt[C_FRAMES_DROPPED]++;
        a->cnt[C_RING_FRAMES_DROPPED]++;
        return -ENOBUFS;
    }
    memcpy(fa->f.data, px, bytes);
    size_t toff = (bytes + 7) & ~(size_t)7;
    if (truth && toff + sizeof *truth <= a->slot_payload &&
        !(a->roi_x | a->roi_y | a->roi_w | a->roi_h))
        memcpy(fa->f.data + toff, truth, sizeof *truth);
    fa->frame_id = id;
    fa->frame_bytes = (uint32_t)bytes;
    fa->width = w;
    fa->height = h;
    fa->pixfmt = RTD_PIXFMT_MONO16;
    fa->ts_real = ts_real;
    frame_publish(a, fa, flags);
    return 0;
}

uint64_t acq_source_poll(struct acq *a)
{
    const struct rtd_acq_config *cfg = a->cfg;
    if (a->source_done || (cfg->source != RTD_SRC_SYNTHETIC && cfg->source != RTD_SRC_REPLAY))
        return UINT64_MAX;
    uint64_t now = rtd_now_ns();
    if (cfg->source == RTD_SRC_SYNTHETIC) {
        /*
         * Behind the camera's clock by more than its buffer holds (a host stall of acq):
         * like a real camera overrunning its buffer, the frames beyond it are lost. They are
         * dropped frames (counted, and the frame ids jump as a camera's counter would); the
         * buffered ones are delivered late, 64 per call, as acq catches up.
         */
        if (now >= a->synth_next_ns) {
            uint64_t behind = (now - a->synth_next_ns) / a->synth_period_ns + 1;
            if (behind > a->synth_backlog) {
                uint64_t skip = behind - a->synth_backlog;
                a->synth_id += skip;
                a->synth_next_ns += skip * a->synth_period_ns;
                if (a->acquiring) {
                    a->cnt[C_FRAMES_DROPPED] += skip;
                    a->cnt[C_FRAMES_CAMERA_SKIPPED] += skip;
                }
            }
        }
        int burst = 0;
        while (now >= a->synth_next_ns && burst++ < 64) {
            if (cfg->frames && a->frames_out >= cfg->frames) {
                a->source_done = 1;
                return UINT64_MAX;
            }
            uint64_t id = a->synth_id++;
            uint64_t t_frame = a->synth_next_ns;
            a->synth_next_ns += a->synth_period_ns;
            if (!frame_wanted(a, t_frame))
                continue; /* the camera runs on; nobody wants this frame */
            source_frame(a, id, rtd_synth_frame(&a->synth, id), a->synth.width, a->synth.height,
                         rtd_realtime_ns(), rtd_synth_truth_of(&a->synth, id), 0);
        }
        return a->synth_next_ns > now ? a->synth_next_ns - now : 0;
    }
    /* Replay: frames of a recording at their original spacing. */
    for (;;) {
        if (cfg->frames && a->frames_out >= cfg->frames) {
            a->source_done = 1;
            return UINT64_MAX;
        }
        if (!a->replay_have) {
            int rc = rtd_rec_next(a->replay, &a->replay_rec);
            if (rc <= 0) {
                if (rc < 0)
                    rtd_log(RTD_LOG_ERR, "replay %s: %s", cfg->replay_file,
                            rtd_rec_error(a->replay));
                else
                    rtd_log(RTD_LOG_INFO, "replay %s: end of recording", cfg->replay_file);
                a->source_done = 1;
                return UINT64_MAX;
            }
            if (a->replay_rec.hdr->type != RTD_REC_FRAME ||
                a->replay_rec.hdr->len < sizeof(struct rtd_rec_frame))
                continue;
            a->replay_have = 1;
        }
        struct rtd_rec_record rec = a->replay_rec;
        const struct rtd_rec_hdr *peek = rec.hdr;
        if (!a->replay_t0_now) {
            a->replay_t0_now = now;
            a->replay_t0_rec = peek->ts_mono_ns;
        }
        uint64_t due = a->replay_t0_now + (peek->ts_mono_ns - a->replay_t0_rec);
        if (due > now)
            return due - now;
        a->replay_have = 0;
        if (!frame_wanted(a, due))
            continue;
        struct rtd_rec_frame rf;
        memcpy(&rf, rec.payload, sizeof rf);
        if ((uint64_t)rf.width * rf.height * 2 + sizeof rf > peek->len)
            continue;
        source_frame(a, rf.frame_id, (const uint16_t *)((const uint8_t *)rec.payload + sizeof rf),
                     rf.width, rf.height, rf.ts_real_ns, NULL, (uint16_t)rf.flags);
    }
}

/* ---- housekeeping -------------------------------------------------------- */

void acq_housekeeping(struct acq *a, int second)
{
    uint64_t now = rtd_now_ns();
    struct acq_fasm *fa = &a->fasm;
    if (fa->active && now - fa->start_ns > (uint64_t)a->cfg->frame_timeout_ms * 1000000ull)
        frame_end(a, 0, 1);
    if (a->rec) {
        rtd_rec_flush(a->rec);
        uint64_t bytes;
        rtd_rec_writer_stats(a->rec, NULL, NULL, &bytes);
        a->cnt[C_REC_BYTES] = bytes;
    }
    for (int i = 0; i < C_N; i++)
        atomic_store_explicit(a->shm_cnt[i], a->cnt[i], memory_order_relaxed);
    /* rtd_shm.h has no bulk add: acq is the histogram's only writer, so it stores its
     * cumulative buckets into the slot that rtd_stats_hist() handed out (rtd_abi.h layout). */
    struct rtd_hist_slot *hs = (struct rtd_hist_slot *)(void *)a->h_pkt;
    for (int i = 0; i < RTD_HIST_BUCKETS; i++)
        if (a->lat_pkt[i])
            atomic_store_explicit(&hs->buckets[i], a->lat_pkt[i], memory_order_relaxed);
    for (uint32_t i = 0; i <= a->client_mask && a->n_clients; i++) {
        struct acq_client *c = &a->clients[i];
        if (!c->used)
            continue;
        atomic_store_explicit(c->c_rx, c->rx, memory_order_relaxed);
        atomic_store_explicit(c->c_bytes, c->bytes, memory_order_relaxed);
        atomic_store_explicit(c->c_gaps, c->gaps, memory_order_relaxed);
        atomic_store_explicit(c->c_reorder, c->reorder, memory_order_relaxed);
        atomic_store_explicit(c->c_lat_sum, c->lat_sum_ns, memory_order_relaxed);
        if (second) {
            atomic_store_explicit(c->c_lat_max, c->lat_max_ns, memory_order_relaxed);
            c->lat_max_ns = 0;
        }
    }
    rtd_stats_heartbeat(a->stats);
    rtd_sd_watchdog();
    if (second) {
        rtd_ring_reap(a->pring, 5000000000ull);
        rtd_ring_reap(a->fring, 5000000000ull);
        char line[200];
        snprintf(line, sizeof line,
                 "packets %llu clients %llu gaps %llu bad %llu frames %llu partial %llu "
                 "dropped %llu",
                 (unsigned long long)a->cnt[C_PKT_RX], (unsigned long long)a->cnt[C_CLIENTS_ACTIVE],
                 (unsigned long long)a->cnt[C_PKT_GAPS],
                 (unsigned long long)(a->cnt[C_BAD_MAGIC] + a->cnt[C_BAD_VERSION] +
                                      a->cnt[C_BAD_LENGTH] + a->cnt[C_OVERSIZE]),
                 (unsigned long long)a->cnt[C_FRAMES_RX],
                 (unsigned long long)a->cnt[C_FRAMES_PARTIAL],
                 (unsigned long long)(a->cnt[C_FRAMES_DROPPED] + a->cnt[C_RING_DROPPED]));
        rtd_sd_status("%s", line);
        rtd_stats_set_status(a->stats, line);
    }
}

/* ---- set-up -------------------------------------------------------------- */

static char *config_json(const struct rtd_acq_config *c)
{
    static const char *const src[] = {"none", "udp", "synthetic", "replay", "gvsp"};
    json_t *o = json_pack(
        "{s:s, s:s, s:i, s:i, s:I, s:I, s:s, s:f, s:I, s:I, s:I, s:I, s:I, s:s, s:s, s:I}",
        "instance", c->instance, "bind", c->bind, "packet_port", c->packet_port, "frame_port",
        c->frame_port, "max_clients", (json_int_t)c->max_clients, "max_payload",
        (json_int_t)c->max_payload, "source", src[c->source], "synthetic_rate", c->synthetic_rate,
        "width", (json_int_t)c->width, "height", (json_int_t)c->height, "ions", (json_int_t)c->ions,
        "frame_slots", (json_int_t)c->frame_slots, "packet_ring_bytes",
        (json_int_t)c->packet_ring_bytes, "overflow",
        c->overflow == RTD_OVERFLOW_BLOCK ? "block" : "drop-newest", "partial",
        c->partial == RTD_PARTIAL_DELIVER ? "deliver" : "drop", "frame_timeout_ms",
        (json_int_t)c->frame_timeout_ms);
    if (!o)
        return NULL;
    char *txt = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return txt;
}

int acq_recording_start(struct acq *a, const char *path)
{
    const struct rtd_acq_config *cfg = a->cfg;
    if (a->rec)
        return -EBUSY;
    const char *dir = path ? path : cfg->record_dir[0] ? cfg->record_dir : cfg->record_default;
    size_t l = strlen(dir);
    if (l > 7 && !strcmp(dir + l - 7, ".rtdrec")) {
        snprintf(a->rec_path, sizeof a->rec_path, "%s", dir);
    } else {
        if (mkdir(dir, 0755) && errno != EEXIST) {
            int e = errno;
            rtd_log(RTD_LOG_ERR, "recording directory %s: %s", dir, strerror(e));
            return -e;
        }
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        char stamp[32];
        strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
        snprintf(a->rec_path, sizeof a->rec_path, "%s/acq-%s-%s-%d.rtdrec", dir, cfg->instance,
                 stamp, (int)getpid());
    }
    char *js = config_json(cfg);
    int rc = rtd_rec_writer_open(&a->rec, a->rec_path, cfg->instance, js, 0);
    free(js);
    if (rc) {
        rtd_log(RTD_LOG_ERR, "recording %s: %s", a->rec_path, strerror(-rc));
        a->rec = NULL;
        return rc;
    }
    rtd_log(RTD_LOG_INFO, "recording to %s", a->rec_path);
    return 0;
}

int acq_recording_stop(struct acq *a)
{
    if (!a->rec)
        return 0;
    int rc = rtd_rec_writer_close(a->rec);
    rtd_log(rc ? RTD_LOG_ERR : RTD_LOG_INFO, "recording %s closed: %llu records%s%s", a->rec_path,
            (unsigned long long)a->cnt[C_REC_RECORDS], rc ? ": " : "", rc ? strerror(-rc) : "");
    a->rec = NULL;
    return rc;
}

int acq_setup(struct acq *a, const struct rtd_acq_config *cfg, volatile sig_atomic_t *stop)
{
    memset(a, 0, sizeof *a);
    a->cfg = cfg;
    a->stop = stop;
    int rc;
    /* Slots hold the largest expected frame plus the synthetic ground truth. */
    uint64_t fb = (uint64_t)cfg->width * cfg->height * 2;
    uint64_t sp = fb < 300 * 300 * 2 ? 300 * 300 * 2 : fb;
    sp = ((sp + 7) & ~7ull) + sizeof(struct rtd_synth_truth);
    if (sp < 128 * 1024)
        sp = 128 * 1024;
    sp = (sp + 4095) & ~4095ull;
    a->slot_payload = (uint32_t)sp;
    struct rtd_ring_config fc = {.kind = RTD_RING_FRAME,
                                 .slot_payload = a->slot_payload,
                                 .slot_count = cfg->frame_slots,
                                 .overflow = cfg->overflow,
                                 .mlock = cfg->mlock};
    rc = rtd_ring_create(&a->fring, cfg->instance, "frames", &fc);
    if (rc) {
        rtd_log(RTD_LOG_ERR, "create ring %s/frames: %s", cfg->instance, strerror(-rc));
        return rc;
    }
    a->slot_payload = rtd_ring_header(a->fring)->slot_payload;
    struct rtd_ring_config pc = {.kind = RTD_RING_PACKET,
                                 .data_bytes = cfg->packet_ring_bytes,
                                 .overflow = cfg->overflow,
                                 .mlock = cfg->mlock};
    rc = rtd_ring_create(&a->pring, cfg->instance, "packets", &pc);
    if (rc) {
        rtd_log(RTD_LOG_ERR, "create ring %s/packets: %s", cfg->instance, strerror(-rc));
        return rc;
    }
    uint32_t limit = cfg->max_clients * 2 < 1024 ? 1024 : cfg->max_clients * 2;
    /* Six counters per client; clients beyond the segment's room are tracked locally only. */
    uint64_t ncount = 64 + 6 * (uint64_t)limit;
    rc = rtd_stats_create(&a->stats, cfg->instance, "acq",
                          (uint32_t)(ncount > 65536 ? 65536 : ncount));
    if (rc) {
        rtd_log(RTD_LOG_ERR, "create stats %s/stats.acq: %s", cfg->instance, strerror(-rc));
        return rc;
    }
    for (int i = 0; i < C_N; i++) {
        a->shm_cnt[i] = rtd_stats_counter(a->stats, counter_label[i],
                                          i == C_CLIENTS_ACTIVE ? RTD_GAUGE : RTD_COUNTER);
        if (!a->shm_cnt[i])
            a->shm_cnt[i] = &a->dummy;
    }
    a->h_pkt = rtd_stats_hist(a->stats, "latency.packet");
    a->h_frame = rtd_stats_hist(a->stats, "latency.frame");
    if (!a->h_pkt || !a->h_frame) {
        rtd_log(RTD_LOG_ERR, "stats segment has no room for histograms");
        return -ENOSPC;
    }
    rtd_stats_set_status(a->stats, "starting");
    uint32_t cap = 1;
    while (cap < 2 * limit)
        cap <<= 1;
    a->clients = calloc(cap, sizeof *a->clients);
    if (!a->clients)
        return -ENOMEM;
    a->client_mask = cap - 1;
    a->client_limit = limit;
    if (cfg->source == RTD_SRC_SYNTHETIC) {
        rc = rtd_synth_init(&a->synth, cfg->width, cfg->height, cfg->ions, 32, 12345);
        if (rc) {
            rtd_log(RTD_LOG_ERR, "synthetic camera %ux%u with %u ions: %s", cfg->width, cfg->height,
                    cfg->ions, strerror(-rc));
            return rc;
        }
        a->synth_period_ns = (uint64_t)(1e9 / cfg->synthetic_rate);
        /* The camera buffers what acq's UDP camera socket would hold (32 MiB: ~18 ms of
         * 300x300 frames at 10 kHz by default), at least 64 frames. */
        a->synth_backlog = fb ? cfg->udp_rcvbuf / fb : 0;
        if (a->synth_backlog < 64)
            a->synth_backlog = 64;
        a->synth_next_ns = rtd_now_ns();
    } else if (cfg->source == RTD_SRC_REPLAY) {
        rc = rtd_rec_open(&a->replay, cfg->replay_file);
        if (rc) {
            rtd_log(RTD_LOG_ERR, "--source replay:%s: %s", cfg->replay_file, strerror(-rc));
            return rc;
        }
    } else if (cfg->source == RTD_SRC_GVSP) {
        rtd_log(RTD_LOG_ERR, "--source gvsp: GigE Vision is not implemented yet");
        return -ENOTSUP;
    }
    a->acquiring = 1;
    if (cfg->record_dir[0] && (rc = acq_recording_start(a, NULL)))
        return rc;
    return 0;
}

void acq_teardown(struct acq *a)
{
    if (a->stats)
        rtd_log(RTD_LOG_INFO,
                "stopped: frames published %llu, dropped %llu (ring full %llu, camera skipped "
                "%llu, partial %llu, too large %llu), rate-limited %llu, partial delivered %llu; "
                "packets %llu (gaps %llu, bad %llu, ring full %llu), clients accepted %llu "
                "rejected %llu",
                (unsigned long long)a->cnt[C_FRAMES_RX],
                (unsigned long long)a->cnt[C_FRAMES_DROPPED],
                (unsigned long long)a->cnt[C_RING_FRAMES_DROPPED],
                (unsigned long long)a->cnt[C_FRAMES_CAMERA_SKIPPED],
                (unsigned long long)a->cnt[C_FRAMES_DROPPED_PARTIAL],
                (unsigned long long)a->cnt[C_FRAMES_TOO_LARGE],
                (unsigned long long)a->cnt[C_FRAMES_RATE_LIMITED],
                (unsigned long long)(a->cnt[C_FRAMES_PARTIAL] - a->cnt[C_FRAMES_DROPPED_PARTIAL]),
                (unsigned long long)a->cnt[C_PKT_RX], (unsigned long long)a->cnt[C_PKT_GAPS],
                (unsigned long long)(a->cnt[C_BAD_MAGIC] + a->cnt[C_BAD_VERSION] +
                                     a->cnt[C_BAD_LENGTH] + a->cnt[C_OVERSIZE]),
                (unsigned long long)a->cnt[C_RING_DROPPED],
                (unsigned long long)a->cnt[C_CLIENTS_ACCEPTED],
                (unsigned long long)a->cnt[C_CLIENTS_REJECTED]);
    acq_ctl_close(a);
    acq_recording_stop(a);
    if (a->replay)
        rtd_rec_close(a->replay);
    rtd_synth_free(&a->synth);
    free(a->fasm.bits);
    free(a->clients);
    if (a->stats)
        rtd_stats_close(a->stats);
    if (a->pring)
        rtd_ring_close(a->pring);
    if (a->fring)
        rtd_ring_close(a->fring);
}
