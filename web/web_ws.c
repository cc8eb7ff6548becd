/* SPDX-License-Identifier: MIT */
/*
 * The WebSocket side of rtdaq-web (RFC 6455, server role): the handshake key,
 * framing, and the clients the live page opens. libmicrohttpd does the HTTP
 * upgrade and hands over the socket; from then on the main thread owns it.
 *
 * Pacing. A client gets a frame only when it has credit: it starts with one
 * and earns one back each time it says "next" (after drawing), so a slow
 * browser, a background tab or a slow link receives frames at its own pace and
 * nothing queues up here; a frame is also never sent sooner than 1/max_fps
 * after the previous one. A client whose socket cannot take a message right now
 * is skipped (counted), never waited for: the sampler must not block.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "rtd_util.h"
#include "web_internal.h"

#define WS_IN_MAX   4096       /* largest message a client may send (commands only) */
#define WS_OUT_HIGH (4u << 20) /* queued bytes above which a client gets no more stats */

struct web_ws_client {
    struct web_ws_client *next;
    int fd;
    struct MHD_UpgradeResponseHandle *urh;
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    uint8_t in[WS_IN_MAX + 16];
    size_t in_len;
    int credit;
    double fps; /* the client's own cap (<= max_fps) */
    int u8;     /* frames as u8 (scaled) rather than u16 */
    uint64_t last_frame_ns;
    int dead;
};

/* ---- SHA-1 (FIPS 180-4) and base64, for the handshake only --------------------------------- */

static uint32_t rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const uint8_t *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5a827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ed9eba1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8f1bbcdc;
        } else {
            f = b ^ c ^ d;
            k = 0xca62c1d6;
        }
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(b, 30);
        b = a;
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

void web_sha1(const void *data, size_t len, uint8_t out[20])
{
    uint32_t h[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
    const uint8_t *p = data;
    size_t n = len;
    for (; n >= 64; n -= 64, p += 64)
        sha1_block(h, p);
    uint8_t tail[128] = {0};
    memcpy(tail, p, n);
    tail[n] = 0x80;
    size_t tl = n + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        tail[tl - 1 - i] = (uint8_t)(bits >> (8 * i));
    sha1_block(h, tail);
    if (tl == 128)
        sha1_block(h, tail + 64);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

size_t web_base64(const uint8_t *in, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < len ? tab[v >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? tab[v & 63] : '=';
    }
    out[o] = 0;
    return o;
}

void web_ws_accept_key(const char *key, char out[29])
{
    char buf[128];
    int n = snprintf(buf, sizeof buf, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    uint8_t d[20];
    web_sha1(buf, n > 0 && (size_t)n < sizeof buf ? (size_t)n : 0, d);
    web_base64(d, sizeof d, out);
}

/* ---- clients ----------------------------------------------------------------------------------
 */

int web_ws_adopt(struct web *w, int fd, void *urh)
{
    struct web_ws_client *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        free(c);
        return -errno;
    }
    c->fd = fd;
    c->urh = urh;
    c->credit = 1;
    c->fps = w->o.max_fps;
    pthread_mutex_lock(&w->ws_lock);
    c->next = w->ws_new;
    w->ws_new = c;
    pthread_mutex_unlock(&w->ws_lock);
    atomic_fetch_add_explicit(&w->ws_count, 1, memory_order_relaxed);
    atomic_store_explicit(w->cnt[W_WS_CLIENTS],
                          (uint64_t)atomic_load_explicit(&w->ws_count, memory_order_relaxed),
                          memory_order_relaxed);
    web_count(w, W_WS_ACCEPTED, 1);
    /* Wake the main thread's poll so it adopts the client now. */
    ssize_t rc = write(w->wake_fd[1], "w", 1);
    (void)rc;
    return 0;
}

static int queue(struct web_ws_client *c, int opcode, const void *data, size_t len)
{
    uint8_t hdr[10];
    size_t hl;
    hdr[0] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        hdr[1] = (uint8_t)len;
        hl = 2;
    } else if (len < 65536) {
        hdr[1] = 126;
        hdr[2] = (uint8_t)(len >> 8);
        hdr[3] = (uint8_t)len;
        hl = 4;
    } else {
        hdr[1] = 127;
        for (int i = 0; i < 8; i++)
            hdr[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    size_t need = c->out_len + hl + len;
    if (need > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 65536;
        while (cap < need)
            cap *= 2;
        uint8_t *b = realloc(c->out, cap);
        if (!b)
            return -ENOMEM;
        c->out = b;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, hdr, hl);
    memcpy(c->out + c->out_len + hl, data, len);
    c->out_len += hl + len;
    return 0;
}

static void flush_out(struct web *w, struct web_ws_client *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            web_count(w, W_WS_BYTES, (uint64_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        c->dead = 1;
        return;
    }
}

/* A text command from the page: "next" (drawn, send another), "fps N" (its own cap),
 * "enc u8" or "enc u16" (the frames' pixel encoding). */
static void command(struct web *w, struct web_ws_client *c, const char *s, size_t len)
{
    if (len == 4 && !memcmp(s, "next", 4)) {
        if (c->credit < 2)
            c->credit++;
    } else if (len > 4 && len < 32 && !memcmp(s, "fps ", 4)) {
        char buf[32];
        memcpy(buf, s + 4, len - 4);
        buf[len - 4] = 0;
        double f = strtod(buf, NULL);
        if (f > 0)
            c->fps = f < w->o.max_fps ? f : w->o.max_fps;
    } else if (len == 6 && !memcmp(s, "enc u8", 6)) {
        c->u8 = 1;
    } else if (len == 7 && !memcmp(s, "enc u16", 7)) {
        c->u8 = 0;
    }
}

/* Parse whole frames from c->in; masked (client to server, RFC 6455 5.3), unfragmented. */
static void parse_in(struct web *w, struct web_ws_client *c)
{
    size_t off = 0;
    while (c->in_len - off >= 2) {
        const uint8_t *p = c->in + off;
        int fin = p[0] & 0x80, op = p[0] & 0x0f, masked = p[1] & 0x80;
        uint64_t len = p[1] & 0x7f;
        size_t hl = 2;
        if (len == 126) {
            if (c->in_len - off < 4)
                break;
            len = (uint64_t)p[2] << 8 | p[3];
            hl = 4;
        } else if (len == 127) {
            c->dead = 1; /* no command is that long */
            return;
        }
        if (!masked || !fin || len > WS_IN_MAX) {
            c->dead = 1;
            return;
        }
        if (c->in_len - off < hl + 4 + len)
            break;
        const uint8_t *mask = p + hl;
        uint8_t data[WS_IN_MAX];
        for (uint64_t i = 0; i < len; i++)
            data[i] = p[hl + 4 + i] ^ mask[i & 3];
        if (op == 1)
            command(w, c, (const char *)data, (size_t)len);
        else if (op == 8) {
            queue(c, 8, data, len >= 2 ? 2 : 0); /* echo the close code, then drop */
            flush_out(w, c);
            c->dead = 1;
            return;
        } else if (op == 9)
            queue(c, 10, data, (size_t)len);
        else if (op != 10) {
            c->dead = 1; /* binary or continuation from a client: not ours */
            return;
        }
        off += hl + 4 + (size_t)len;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
}

static void read_in(struct web *w, struct web_ws_client *c)
{
    for (;;) {
        if (c->in_len >= sizeof c->in) {
            c->dead = 1;
            return;
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            parse_in(w, c);
            if (c->dead)
                return;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        c->dead = 1; /* 0: the peer closed */
        return;
    }
}

static void drop(struct web *w, struct web_ws_client *c)
{
    MHD_upgrade_action(c->urh, MHD_UPGRADE_ACTION_CLOSE);
    free(c->out);
    free(c);
    atomic_fetch_sub_explicit(&w->ws_count, 1, memory_order_relaxed);
    atomic_store_explicit(w->cnt[W_WS_CLIENTS],
                          (uint64_t)atomic_load_explicit(&w->ws_count, memory_order_relaxed),
                          memory_order_relaxed);
    web_count(w, W_WS_CLOSED, 1);
}

void web_ws_poll(struct web *w, int timeout_ms)
{
    pthread_mutex_lock(&w->ws_lock);
    while (w->ws_new) {
        struct web_ws_client *c = w->ws_new;
        w->ws_new = c->next;
        c->next = w->ws;
        w->ws = c;
    }
    pthread_mutex_unlock(&w->ws_lock);

    struct pollfd pfd[WEB_MAX_CONN_DEFAULT * 4 + 1];
    struct web_ws_client *who[WEB_MAX_CONN_DEFAULT * 4 + 1];
    int n = 0;
    pfd[n].fd = w->wake_fd[0];
    pfd[n].events = POLLIN;
    who[n++] = NULL;
    for (struct web_ws_client *c = w->ws; c && n < (int)(sizeof pfd / sizeof pfd[0]); c = c->next) {
        pfd[n].fd = c->fd;
        pfd[n].events = POLLIN | (c->out_off < c->out_len ? POLLOUT : 0);
        who[n++] = c;
    }
    if (poll(pfd, (nfds_t)n, timeout_ms) > 0) {
        if (pfd[0].revents & POLLIN) {
            char buf[64];
            while (read(w->wake_fd[0], buf, sizeof buf) > 0) {
            }
        }
        for (int i = 1; i < n; i++) {
            struct web_ws_client *c = who[i];
            if (pfd[i].revents & (POLLERR | POLLHUP | POLLNVAL))
                c->dead = 1;
            if (!c->dead && (pfd[i].revents & POLLIN))
                read_in(w, c);
            if (!c->dead && (pfd[i].revents & POLLOUT))
                flush_out(w, c);
        }
    }
    for (struct web_ws_client **pp = &w->ws; *pp;) {
        struct web_ws_client *c = *pp;
        if (c->dead) {
            *pp = c->next;
            drop(w, c);
        } else
            pp = &c->next;
    }
}

static int wants(const struct web_ws_client *c, uint64_t now_ns)
{
    return !c->dead && c->credit > 0 && c->out_off == c->out_len &&
           (double)(now_ns - c->last_frame_ns) >= 1e9 / c->fps;
}

int web_ws_want_frame(struct web *w, uint64_t now_ns)
{
    int n = 0;
    for (struct web_ws_client *c = w->ws; c; c = c->next)
        n += wants(c, now_ns);
    return n;
}

void web_ws_broadcast_frame(struct web *w, const void *msg16, size_t len16, const void *msg8,
                            size_t len8, uint64_t now_ns)
{
    for (struct web_ws_client *c = w->ws; c; c = c->next) {
        if (!wants(c, now_ns)) {
            if (!c->dead && c->credit > 0 && c->out_off != c->out_len)
                web_count(w, W_WS_SKIPPED_BUSY, 1);
            continue;
        }
        if (queue(c, 2, c->u8 ? msg8 : msg16, c->u8 ? len8 : len16)) {
            c->dead = 1;
            continue;
        }
        c->credit--;
        c->last_frame_ns = now_ns;
        web_count(w, W_WS_FRAMES, 1);
        flush_out(w, c);
    }
}

void web_ws_broadcast_text(struct web *w, const char *text, size_t len)
{
    for (struct web_ws_client *c = w->ws; c; c = c->next) {
        if (c->dead || c->out_len - c->out_off > WS_OUT_HIGH) {
            web_count(w, W_WS_SKIPPED_BUSY, 1);
            continue;
        }
        if (queue(c, 1, text, len)) {
            c->dead = 1;
            continue;
        }
        web_count(w, W_WS_STATS, 1);
        flush_out(w, c);
    }
}

void web_ws_close_all(struct web *w)
{
    web_ws_poll(w, 0); /* adopt any handed over meanwhile */
    while (w->ws) {
        struct web_ws_client *c = w->ws;
        w->ws = c->next;
        static const uint8_t going_away[2] = {0x03, 0xe9}; /* 1001 */
        queue(c, 8, going_away, 2);
        flush_out(w, c);
        drop(w, c);
    }
}
