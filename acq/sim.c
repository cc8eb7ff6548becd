/* SPDX-License-Identifier: MIT */
/*
 * The simulators (see rtd_sim.h). One thread paces every client: each client
 * sends a batch every batch/rate seconds, the clients' phases spread evenly so
 * the load is smooth. Samples come from per-sensor tables (sum of two sines
 * plus noise, periodic over 1024 samples) so sending costs no libm calls.
 */
#include "rtd_sim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rtd_synth.h"
#include "rtd_util.h"
#include "rtd_wire.h"

#define SIM_TABLE   1024
#define SIM_SENSORS 64

struct sim_client {
    int fd;
    uint32_t id;
    uint64_t seq, next_due;
    uint64_t retry_at; /* disconnected: next connect attempt */
    uint8_t *buf;
    size_t len, off; /* pending bytes of the current batch */
};

static int sim_addr(const char *host, int port, struct sockaddr_in *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host ? host : "127.0.0.1", &sa->sin_addr) == 1 ? 0 : -EINVAL;
}

static void sleep_until(uint64_t t)
{
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000ull),
                          .tv_nsec = (long)(t % 1000000000ull)};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

static double *sim_tables(void)
{
    double *t = malloc(sizeof(double) * SIM_TABLE * SIM_SENSORS);
    if (!t)
        return NULL;
    uint64_t st = 0x1234567;
    for (int s = 0; s < SIM_SENSORS; s++) {
        /* Integer cycles per table so the series wraps seamlessly. */
        double f1 = 4 + s % 16, f2 = 37 + 3 * (s % 11);
        for (int i = 0; i < SIM_TABLE; i++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            double noise = ((double)(st >> 11) / 9007199254740992.0 - 0.5) * 0.2;
            t[s * SIM_TABLE + i] = sin(2 * M_PI * f1 * i / SIM_TABLE) +
                                   0.5 * sin(2 * M_PI * f2 * i / SIM_TABLE) + noise;
        }
    }
    return t;
}

static size_t build_batch(struct sim_client *c, const struct rtd_sim_packets_opts *o,
                          const double *tab, uint32_t n, uint64_t ts)
{
    const double *t = tab + (size_t)(c->id % SIM_SENSORS) * SIM_TABLE;
    uint8_t *p = c->buf;
    uint32_t nsamp = o->size / 8;
    for (uint32_t k = 0; k < n; k++) {
        struct rtd_wire_pkt h = {.magic = RTD_WIRE_PKT_MAGIC,
                                 .version = RTD_WIRE_PKT_VERSION,
                                 .client = c->id,
                                 .len = o->size,
                                 .seq = c->seq,
                                 .ts_ns = ts};
        memcpy(p, &h, sizeof h);
        p += sizeof h;
        for (uint32_t j = 0; j < nsamp; j++) {
            double v = t[(c->seq * nsamp + j) % SIM_TABLE];
            memcpy(p + 8 * j, &v, 8);
        }
        if (o->size % 8)
            memset(p + 8 * nsamp, 0, o->size % 8);
        p += o->size;
        c->seq++;
    }
    return (size_t)(p - c->buf);
}

/* A connected socket for one client, or -errno. */
static int client_connect(const struct rtd_sim_packets_opts *o, const struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, (o->udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa)) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (!o->udp) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    int sz = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    return fd;
}

/*
 * A connection lost (acq restarted, or gone): the batch in flight is lost with
 * it (counted; acq sees the gap in the sequence numbers), and the client tries
 * again every 200 ms, as a sensor that reconnects would.
 */
static void client_lost(struct sim_client *c, size_t pkt, struct rtd_sim_packets_result *res,
                        uint64_t now)
{
    res->send_errors++;
    if (c->off < c->len)
        res->packets_unsent += (c->len - c->off + pkt - 1) / pkt;
    c->len = c->off = 0;
    close(c->fd);
    c->fd = -1;
    c->retry_at = now + 200000000ull;
}

int rtd_sim_packets(const struct rtd_sim_packets_opts *o, volatile sig_atomic_t *stop,
                    struct rtd_sim_packets_result *res)
{
    memset(res, 0, sizeof *res);
    struct sockaddr_in sa;
    if (!o->clients || !o->batch || !o->size || !(o->rate > 0) || sim_addr(o->host, o->port, &sa))
        return -EINVAL;
    size_t pkt = sizeof(struct rtd_wire_pkt) + o->size;
    uint32_t batch = o->batch;
    if (o->udp && pkt * batch > 65000)
        batch = (uint32_t)(65000 / pkt); /* one datagram per batch */
    if (!batch)
        return -EMSGSIZE;
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    double *tab = sim_tables();
    struct sim_client *cl = calloc(o->clients, sizeof *cl);
    if (!tab || !cl) {
        free(tab);
        free(cl);
        return -ENOMEM;
    }
    uint64_t interval = (uint64_t)(1e9 * batch / o->rate);
    if (!interval)
        interval = 1;
    uint64_t t0 = rtd_now_ns() + 20000000ull;
    for (uint32_t i = 0; i < o->clients; i++) {
        struct sim_client *c = &cl[i];
        c->id = o->client_base + i;
        c->fd = -1;
        c->buf = malloc(pkt * batch);
        c->next_due = t0 + interval * i / o->clients;
        int fd = c->buf ? client_connect(o, &sa) : -ENOMEM;
        if (fd < 0) {
            res->connect_failed++;
            c->retry_at = t0 + 200000000ull;
            continue;
        }
        c->fd = fd;
        res->connected++;
    }
    uint64_t start = rtd_now_ns();
    uint64_t end = t0 + (uint64_t)(o->duration * 1e9);
    while (!(stop && *stop)) {
        uint64_t now = rtd_now_ns();
        if (now >= end)
            break;
        uint64_t next = end;
        for (uint32_t i = 0; i < o->clients; i++) {
            struct sim_client *c = &cl[i];
            if (c->fd < 0) {
                if (!c->buf)
                    continue;
                if (now < c->retry_at) {
                    if (c->retry_at < next)
                        next = c->retry_at;
                    continue;
                }
                int fd = client_connect(o, &sa);
                if (fd < 0) {
                    c->retry_at = now + 200000000ull;
                    if (c->retry_at < next)
                        next = c->retry_at;
                    continue;
                }
                c->fd = fd;
                res->reconnects++;
                /* Batches due while disconnected were never generated: start from now. */
                if (c->next_due < now)
                    c->next_due = now;
            }
            if (c->off < c->len) {
                ssize_t w =
                    send(c->fd, c->buf + c->off, c->len - c->off, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (w > 0)
                    c->off += (size_t)w;
                else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                    client_lost(c, pkt, res, now);
                    next = c->retry_at < next ? c->retry_at : next;
                    continue;
                }
                if (c->off < c->len) {
                    next = now;
                    continue;
                }
            }
            if (now >= c->next_due) {
                if (now > c->next_due + interval)
                    res->late_batches++;
                /* Stamped per batch: a pass over many clients can take milliseconds. */
                c->len = build_batch(c, o, tab, batch, rtd_realtime_ns());
                c->off = 0;
                res->packets += batch;
                res->bytes += c->len;
                res->writes++;
                ssize_t w = send(c->fd, c->buf, c->len, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (w > 0)
                    c->off = (size_t)w;
                else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                    c->next_due += interval;
                    client_lost(c, pkt, res, now);
                    next = c->retry_at < next ? c->retry_at : next;
                    continue;
                }
                if (o->udp)
                    c->off = c->len; /* a datagram is all or nothing */
                c->next_due += interval;
                if (c->off < c->len)
                    next = now;
            }
            if (c->next_due < next)
                next = c->next_due;
        }
        now = rtd_now_ns();
        if (next > now + 20000)
            sleep_until(next > end ? end : next);
    }
    res->seconds = (double)(rtd_now_ns() - start) / 1e9;
    for (uint32_t i = 0; i < o->clients; i++) {
        if (cl[i].fd >= 0) {
            /* Finish the batch in flight so the receiver sees whole packets. */
            int flags = 0;
            while (cl[i].off < cl[i].len) {
                ssize_t w = send(cl[i].fd, cl[i].buf + cl[i].off, cl[i].len - cl[i].off,
                                 flags | MSG_NOSIGNAL);
                if (w <= 0)
                    break;
                cl[i].off += (size_t)w;
            }
            close(cl[i].fd);
        }
        free(cl[i].buf);
    }
    free(cl);
    free(tab);
    return 0;
}

int rtd_sim_frames(const struct rtd_sim_frames_opts *o, volatile sig_atomic_t *stop,
                   struct rtd_sim_frames_result *res)
{
    memset(res, 0, sizeof *res);
    struct sockaddr_in sa;
    size_t hl = sizeof(struct rtd_wire_frag);
    if (!(o->rate > 0) || o->dgram <= hl + 64 || sim_addr(o->host, o->port, &sa))
        return -EINVAL;
    struct rtd_synth syn;
    int rc = rtd_synth_init(&syn, o->width, o->height, o->ions, 16, 777);
    if (rc)
        return rc;
    uint32_t frame_bytes = o->width * o->height * 2;
    uint32_t chunk = (uint32_t)(o->dgram - hl) & ~1u;
    uint32_t count = (frame_bytes + chunk - 1) / chunk;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    uint8_t *bufs = malloc((size_t)count * hl); /* headers; pixels go straight from the bank */
    struct mmsghdr *msgs = calloc(count, sizeof *msgs);
    struct iovec *iov = calloc(2 * (size_t)count, sizeof *iov);
    if (fd < 0 || !bufs || !msgs || !iov || connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        rc = fd < 0 || !bufs || !msgs || !iov ? -ENOMEM : -errno;
        goto out;
    }
    int sz = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    uint64_t period = (uint64_t)(1e9 / o->rate);
    uint64_t start = rtd_now_ns(), due = start;
    uint64_t end = o->duration > 0 ? start + (uint64_t)(o->duration * 1e9) : UINT64_MAX;
    for (uint64_t f = 0; !(stop && *stop); f++) {
        if (o->count && f >= o->count)
            break;
        uint64_t now = rtd_now_ns();
        if (now >= end)
            break;
        if (due > now + 50000)
            sleep_until(due);
        else if (now > due + period)
            res->late++;
        const uint8_t *px = (const uint8_t *)rtd_synth_frame(&syn, f);
        uint64_t ts = rtd_realtime_ns();
        uint32_t omit = o->drop_every && (f + 1) % o->drop_every == 0 ? count / 2 : UINT32_MAX;
        uint32_t n = 0;
        for (uint32_t k = 0; k < count; k++) {
            uint32_t i = o->reorder ? count - 1 - k : k;
            if (i == omit) {
                res->omitted++;
                continue;
            }
            uint32_t off = i * chunk;
            uint32_t len = frame_bytes - off < chunk ? frame_bytes - off : chunk;
            uint8_t *b = bufs + (size_t)n * hl;
            struct rtd_wire_frag h = {.magic = RTD_WIRE_FRAG_MAGIC,
                                      .version = RTD_WIRE_FRAG_VERSION,
                                      .hdr_len = (uint16_t)hl,
                                      .frame_id = o->first_id + f,
                                      .index = i,
                                      .count = count,
                                      .width = o->width,
                                      .height = o->height,
                                      .pixfmt = RTD_PIXFMT_MONO16,
                                      .frame_bytes = frame_bytes,
                                      .offset = off,
                                      .len = len,
                                      .ts_ns = ts};
            memcpy(b, &h, hl);
            iov[2 * n].iov_base = b;
            iov[2 * n].iov_len = hl;
            iov[2 * n + 1].iov_base = (void *)(uintptr_t)(px + off);
            iov[2 * n + 1].iov_len = len;
            msgs[n].msg_hdr.msg_iov = &iov[2 * n];
            msgs[n].msg_hdr.msg_iovlen = 2;
            n++;
        }
        for (uint32_t sent = 0; sent < n;) {
            int r = sendmmsg(fd, msgs + sent, n - sent, 0);
            if (r <= 0) {
                if (errno == EINTR)
                    continue;
                res->send_errors++;
                break;
            }
            for (int k = 0; k < r; k++)
                res->bytes += msgs[sent + (uint32_t)k].msg_len;
            sent += (uint32_t)r;
            res->datagrams += (uint64_t)r;
        }
        res->frames++;
        due += period;
    }
    res->seconds = (double)(rtd_now_ns() - start) / 1e9;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    free(bufs);
    free(msgs);
    free(iov);
    rtd_synth_free(&syn);
    return rc;
}
