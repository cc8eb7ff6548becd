/* SPDX-License-Identifier: MIT */
/*
 * Zero loss at moderate rates: rtdaq-acq plus `rtdaq sim packets` (50 TCP
 * clients, 10 UDP clients, then 1000 TCP clients at once) on loopback, this process reading the
 * "packets" ring as a reliable consumer. Every packet arrives once, in order per client, with the
 * record layout of rtd_wire.h; the counters agree; SIGTERM unlinks the segments.
 */
#include <math.h>

#include "acq_test.h"
#include "rtd_wire.h"

#define CLIENTS 50
#define MANY    1000 /* the many-connections run: client ids 10000.. */
#define SLOTS   (2 * CLIENTS + MANY)

/* Index of a client id in the tracking table: TCP 1000.., UDP 5000.., many 10000... */
static uint32_t slot_of(uint32_t client)
{
    if (client >= 10000)
        return client - 10000 < MANY ? 2 * CLIENTS + client - 10000 : SLOTS;
    if (client >= 5000)
        return client - 5000 < CLIENTS ? CLIENTS + client - 5000 : SLOTS;
    return client >= 1000 && client - 1000 < CLIENTS ? client - 1000 : SLOTS;
}

struct seen {
    uint64_t next_seq[SLOTS];
    uint64_t count, bad;
};

static void drain(struct rtd_consumer *c, struct seen *s)
{
    const struct rtd_pkt_hdr *h;
    int n = 0;
    while (rtd_pkt_next(c, &h) == 0) {
        const struct rtd_acq_pkt *p = rtd_pkt_payload(h);
        uint32_t k = slot_of(p->client);
        int ok = h->type == RTD_ACQ_REC_PACKET && h->len == sizeof *p + 32 && p->len == 32 &&
                 k < SLOTS && p->seq == s->next_seq[k] && p->ts_ns != 0 && h->ts_mono_ns != 0;
        if (ok) {
            double v[4];
            memcpy(v, p->payload, sizeof v);
            for (int i = 0; i < 4; i++)
                ok &= isfinite(v[i]) && fabs(v[i]) < 2.0;
        }
        if (!ok && s->bad++ < 5)
            fprintf(stderr, "bad record: type %u len %u client %u seq %llu (want %llu)\n", h->type,
                    h->len, p->client, (unsigned long long)p->seq,
                    (unsigned long long)(k < SLOTS ? s->next_seq[k] : 0));
        if (k < SLOTS)
            s->next_seq[k] = p->seq + 1;
        s->count++;
        if (++n == 256) {
            rtd_pkt_release(c);
            n = 0;
        }
    }
    rtd_pkt_release(c);
}

static long long run_sim(struct rtd_consumer *c, struct seen *s, char **argv, const char *out)
{
    uint64_t base = s->count;
    pid_t sim = t_spawn(argv, out);
    int st = -1;
    for (;;) {
        drain(c, s);
        int w;
        if (waitpid(sim, &w, WNOHANG) == sim) {
            st = WIFEXITED(w) ? WEXITSTATUS(w) : -1;
            break;
        }
        t_sleep_ms(1);
    }
    char txt[1024];
    t_read_text(out, txt, sizeof txt);
    long long sent = t_json_int(txt, "packets");
    CHECK(st == 0 && sent > 0, "sim exit %d, output %s", st, txt);
    for (int i = 0; i < 500 && (long long)(s->count - base) < sent; i++) {
        drain(c, s);
        t_sleep_ms(10);
    }
    return sent;
}

int main(int argc, char **argv)
{
    char *io = argc > 1 ? argv[1] : "uring"; /* receive back end under test */
    char inst[48], port[16], out[256];
    t_instance(inst, sizeof inst, io[0] == 'e' ? "e" : "p");
    int p = t_port(io[0] == 'e' ? 10 : 0);
    snprintf(port, sizeof port, "%d", p);
    snprintf(out, sizeof out, "/tmp/%s.sim.json", inst);
    char fport[16];
    snprintf(fport, sizeof fport, "%d", p + 1);
    char *acq_argv[] = {ACQ_BIN,   "--instance",
                        inst,      "--packet-port",
                        port,      "--frame-port",
                        fport,     "--source",
                        "none",    "--packet-ring-bytes",
                        "8388608", "--duration",
                        "60",      "--quiet",
                        "--io",    io,
                        NULL};
    pid_t acq = t_spawn(acq_argv, NULL);
    if (acq < 0 || t_wait_acq(inst, acq, 10000))
        return 1;
    struct rtd_ring *ring;
    struct rtd_consumer *c;
    if (rtd_ring_attach(&ring, inst, "packets") ||
        rtd_consumer_open(&c, ring, RTD_CONSUMER_RELIABLE, "test")) {
        fprintf(stderr, "cannot attach the packets ring\n");
        kill(acq, SIGKILL);
        return 1;
    }
    struct seen s;
    memset(&s, 0, sizeof s);

    char *tcp_argv[] = {CLI_BIN, "sim",        "packets", "--port",        port,   "--clients",
                        "50",    "--rate",     "2000",    "--batch",       "40",   "--size",
                        "32",    "--duration", "2",       "--client-base", "1000", "--json",
                        NULL};
    long long sent_tcp = run_sim(c, &s, tcp_argv, out);
    CHECK((long long)s.count == sent_tcp, "TCP: received %llu of %lld packets",
          (unsigned long long)s.count, sent_tcp);
    uint64_t before_udp = s.count;

    char *udp_argv[] = {CLI_BIN,  "sim",        "packets", "--port",        port,   "--clients",
                        "10",     "--rate",     "2000",    "--batch",       "20",   "--size",
                        "32",     "--duration", "1",       "--client-base", "5000", "--udp",
                        "--json", NULL};
    long long sent_udp = run_sim(c, &s, udp_argv, out);
    CHECK((long long)(s.count - before_udp) == sent_udp, "UDP: received %llu of %lld packets",
          (unsigned long long)(s.count - before_udp), sent_udp);
    uint64_t before_many = s.count;

    /* Many connections at once: 1000 TCP clients (acq's default limit is 4096). */
    char *many_argv[] = {CLI_BIN, "sim",        "packets", "--port",        port,    "--clients",
                         "1000",  "--rate",     "200",     "--batch",       "20",    "--size",
                         "32",    "--duration", "1",       "--client-base", "10000", "--json",
                         NULL};
    long long sent_many = run_sim(c, &s, many_argv, out);
    CHECK((long long)(s.count - before_many) == sent_many,
          "1000 clients: received %llu of %lld packets",
          (unsigned long long)(s.count - before_many), sent_many);
    CHECK(s.bad == 0, "%llu malformed or out-of-order records", (unsigned long long)s.bad);

    uint64_t rx = t_counter_wait(inst, "packets.rx", s.count, 2000);
    CHECK(rx == s.count, "packets.rx %llu, consumer saw %llu", (unsigned long long)rx,
          (unsigned long long)s.count);
    CHECK(t_counter(inst, "packets.gaps") == 0, "gaps counted");
    uint64_t per = t_counter(inst, "client.1000.packets");
    CHECK(per == s.next_seq[0], "client.1000.packets %llu, consumer saw %llu",
          (unsigned long long)per, (unsigned long long)s.next_seq[0]);
    CHECK(t_counter(inst, "clients.accepted") == 1050, "clients.accepted %llu",
          (unsigned long long)t_counter(inst, "clients.accepted"));

    rtd_consumer_close(c);
    rtd_ring_close(ring);
    kill(acq, SIGTERM);
    int st = t_wait(acq, 10000);
    CHECK(st == 0, "rtdaq-acq exit status %d after SIGTERM", st);
    struct rtd_ring *gone;
    int rc = rtd_ring_attach(&gone, inst, "packets");
    CHECK(rc == -ENOENT, "packets ring still there after SIGTERM (%d)", rc);
    unlink(out);
    printf("%s (%s): %llu packets (tcp %lld, udp %lld, 1000 clients %lld)\n",
           t_failures ? "FAIL" : "ok", io, (unsigned long long)s.count, sent_tcp, sent_udp,
           sent_many);
    return t_failures ? 1 : 0;
}
