/* SPDX-License-Identifier: MIT */
/*
 * Stream reassembly and bad input, against a real rtdaq-acq on loopback:
 * packets split across receive boundaries at every kind of offset arrive
 * intact; wrong magic, wrong version, impossible length, oversized packet, a
 * client vanishing mid-packet and one client too many are each counted, only
 * the offending connection is closed, the good packets it sent before are
 * kept, and the daemon keeps serving the other clients.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include "acq_test.h"
#include "rtd_wire.h"

static int port;
static char inst[48];
static struct rtd_consumer *cons;
static uint64_t per_client[256];
static uint8_t last_payload[256][512];
static uint32_t last_len[256];

static void drain(void)
{
    const struct rtd_pkt_hdr *h;
    while (rtd_pkt_next(cons, &h) == 0) {
        const struct rtd_acq_pkt *p = rtd_pkt_payload(h);
        if (p->client < 256) {
            per_client[p->client]++;
            last_len[p->client] = p->len;
            memcpy(last_payload[p->client], p->payload, p->len < 512 ? p->len : 512);
        }
    }
    rtd_pkt_release(cons);
}

static void settle(void)
{
    for (int i = 0; i < 20; i++) {
        t_sleep_ms(10);
        drain();
    }
}

static int tcp_connect(int type)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, type, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        perror("connect");
        exit(1);
    }
    int one = 1;
    if (type == SOCK_STREAM)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static size_t make_pkt(uint8_t *buf, uint32_t client, uint64_t seq, uint32_t len)
{
    struct rtd_wire_pkt h = {.magic = RTD_WIRE_PKT_MAGIC,
                             .version = RTD_WIRE_PKT_VERSION,
                             .client = client,
                             .len = len,
                             .seq = seq,
                             .ts_ns = rtd_realtime_ns()};
    memcpy(buf, &h, sizeof h);
    for (uint32_t i = 0; i < len; i++)
        buf[sizeof h + i] = (uint8_t)(seq * 31 + i);
    return sizeof h + len;
}

static void send_all(int fd, const void *b, size_t n)
{
    const uint8_t *p = b;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* 1 when the peer closed the connection within timeout_ms. */
static int closed_by_peer(int fd, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 10) > 0) {
            char b[16];
            ssize_t r = recv(fd, b, sizeof b, MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno == ECONNRESET))
                return 1;
        }
    }
    return 0;
}

static void test_reassembly(void)
{
    uint8_t stream[64 * 1024];
    size_t n = 0;
    for (uint64_t s = 0; s < 200; s++)
        n += make_pkt(stream + n, 7, s, 8 + (uint32_t)(s * 8) % 200);
    int fd = tcp_connect(SOCK_STREAM);
    /* Chunks of 1..97 bytes with pauses so they land in separate receives: splits fall
     * inside headers, inside payloads and exactly on packet boundaries. */
    uint32_t r = 12345;
    for (size_t off = 0; off < n;) {
        r = r * 1103515245 + 12345;
        size_t k = 1 + (r >> 16) % 97;
        if (k > n - off)
            k = n - off;
        send_all(fd, stream + off, k);
        off += k;
        if ((r >> 8) % 4 == 0)
            t_sleep_ms(1);
    }
    settle();
    CHECK(per_client[7] == 200, "split stream: %llu of 200 packets",
          (unsigned long long)per_client[7]);
    uint8_t want[512];
    make_pkt(want, 7, 199, 8 + (199 * 8) % 200);
    CHECK(last_len[7] == 8 + (199 * 8) % 200 &&
              !memcmp(last_payload[7], want + sizeof(struct rtd_wire_pkt), last_len[7]),
          "payload of the last split packet differs");
    close(fd);

    /* UDP: one datagram carries several whole packets. */
    int u = tcp_connect(SOCK_DGRAM);
    n = 0;
    for (uint64_t s = 0; s < 5; s++)
        n += make_pkt(stream + n, 8, s, 32);
    send(u, stream, n, 0);
    close(u);
    settle();
    CHECK(per_client[8] == 5, "udp datagram: %llu of 5 packets", (unsigned long long)per_client[8]);
}

enum bad_kind { BAD_MAGIC, BAD_VERSION, BAD_LEN_ZERO, BAD_LEN_HUGE, OVERSIZE, VANISH };

static void test_bad(enum bad_kind kind, const char *counter, int good_fd)
{
    uint64_t before = t_counter(inst, counter);
    uint32_t client = 100 + (uint32_t)kind;
    int fd = tcp_connect(SOCK_STREAM);
    uint8_t buf[4096];
    size_t n = 0;
    for (uint64_t s = 0; s < 3; s++)
        n += make_pkt(buf + n, client, s, 32);
    size_t bad_at = n;
    n += make_pkt(buf + n, client, 3, kind == OVERSIZE ? 300 : 32);
    struct rtd_wire_pkt *h = (struct rtd_wire_pkt *)(buf + bad_at);
    switch (kind) {
    case BAD_MAGIC:
        h->magic = 0xdeadbeef;
        break;
    case BAD_VERSION:
        h->version = 9;
        break;
    case BAD_LEN_ZERO:
        h->len = 0;
        break;
    case BAD_LEN_HUGE:
        h->len = 1u << 30;
        break;
    case OVERSIZE:
    case VANISH:
        break;
    }
    if (kind == VANISH)
        n = bad_at + sizeof *h + 10; /* header and part of the payload, then gone */
    send_all(fd, buf, n);
    if (kind == VANISH) {
        t_sleep_ms(20);
        close(fd);
    } else {
        CHECK(closed_by_peer(fd, 2000), "%s: offending connection not closed", counter);
        close(fd);
    }
    uint64_t after = t_counter_wait(inst, counter, before + 1, 2000);
    CHECK(after == before + 1, "%s: %llu -> %llu", counter, (unsigned long long)before,
          (unsigned long long)after);
    settle();
    CHECK(per_client[client] == 3, "%s: %llu of the 3 good packets before it kept", counter,
          (unsigned long long)per_client[client]);
    /* The well-behaved client is unaffected. */
    static uint64_t good_seq = 0;
    uint64_t had = per_client[9];
    n = 0;
    for (int i = 0; i < 10; i++)
        n += make_pkt(buf + n, 9, good_seq++, 32);
    send_all(good_fd, buf, n);
    settle();
    CHECK(per_client[9] == had + 10, "%s: good client got %llu of 10 afterwards", counter,
          (unsigned long long)(per_client[9] - had));
}

static void test_max_clients(int already_open)
{
    int fds[8], n = 0;
    for (int i = already_open; i < 4; i++)
        fds[n++] = tcp_connect(SOCK_STREAM);
    t_counter_wait(inst, "clients.active", 4, 2000);
    uint64_t rej = t_counter(inst, "clients.rejected");
    int extra = tcp_connect(SOCK_STREAM);
    CHECK(closed_by_peer(extra, 2000), "5th client (max 4) not closed");
    close(extra);
    uint64_t rej2 = t_counter_wait(inst, "clients.rejected", rej + 1, 2000);
    CHECK(rej2 == rej + 1, "clients.rejected %llu -> %llu", (unsigned long long)rej,
          (unsigned long long)rej2);
    /* The accepted ones still work. */
    uint8_t buf[256];
    size_t k = make_pkt(buf, 20, 0, 32);
    send_all(fds[0], buf, k);
    settle();
    CHECK(per_client[20] == 1, "a client within the limit was affected");
    for (int i = 0; i < n; i++)
        close(fds[i]);
    t_sleep_ms(200);
    uint64_t act = t_counter(inst, "clients.active");
    CHECK(act == (uint64_t)already_open, "clients.active %llu after closing, want %d",
          (unsigned long long)act, already_open);
}

int main(void)
{
    t_instance(inst, sizeof inst, "i");
    port = t_port(2);
    char ps[16], fs[16];
    snprintf(ps, sizeof ps, "%d", port);
    snprintf(fs, sizeof fs, "%d", port + 1);
    char *acq_argv[] = {
        ACQ_BIN, "--instance",    inst,   "--packet-port",       ps,        "--frame-port",
        fs,      "--source",      "none", "--packet-ring-bytes", "4194304", "--max-clients",
        "4",     "--max-payload", "256",  "--duration",          "60",      "--quiet",
        NULL};
    pid_t acq = t_spawn(acq_argv, NULL);
    if (acq < 0 || t_wait_acq(inst, acq, 10000))
        return 1;
    struct rtd_ring *ring;
    if (rtd_ring_attach(&ring, inst, "packets") ||
        rtd_consumer_open(&cons, ring, RTD_CONSUMER_RELIABLE, "test")) {
        kill(acq, SIGKILL);
        return 1;
    }
    test_reassembly();
    int good = tcp_connect(SOCK_STREAM);
    test_bad(BAD_MAGIC, "packets.bad_magic", good);
    test_bad(BAD_VERSION, "packets.bad_version", good);
    test_bad(BAD_LEN_ZERO, "packets.bad_length", good);
    test_bad(BAD_LEN_HUGE, "packets.bad_length", good);
    test_bad(OVERSIZE, "packets.oversize", good);
    test_bad(VANISH, "clients.vanished_mid_packet", good);
    test_max_clients(1);
    close(good);
    int alive = waitpid(acq, NULL, WNOHANG) == 0;
    CHECK(alive, "rtdaq-acq died");
    rtd_consumer_close(cons);
    rtd_ring_close(ring);
    kill(acq, SIGTERM);
    CHECK(t_wait(acq, 10000) == 0, "rtdaq-acq did not exit cleanly");
    printf("%s\n", t_failures ? "FAIL" : "ok");
    return t_failures ? 1 : 0;
}
