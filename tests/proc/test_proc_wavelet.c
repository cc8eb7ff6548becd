/* SPDX-License-Identifier: MIT */
/*
 * rtdaq-proc's streaming wavelet worker: this test is the packets producer.
 * Three clients send sines: 1 and 2 the same 6 ms period (2 phase-shifted,
 * so coherent with 1), 3 a 24 ms period. The worker must publish band power
 * that peaks in the right band for each client, and coherence near 1 for the
 * configured pair 1-2 in the 6 ms band. Exit 0 pass, 1 fail, 77 skip.
 */
#include <math.h>

#include "proc_test.h"
#include "rtd_results.h"

#define DT       0.001
#define PER_PKT  4
#define NSAMPLES 1024

int main(void)
{
    if (access(PROC_BIN, X_OK) != 0) {
        printf("skip: %s not built\n", PROC_BIN);
        return 77;
    }
    char inst[32];
    snprintf(inst, sizeof inst, "twave%d", (int)getpid());
    rtd_shm_cleanup(inst, 1);
    struct rtd_ring *pk = NULL;
    struct rtd_ring_config cfg = {
        .kind = RTD_RING_PACKET,
        .data_bytes = 1u << 20,
        .overflow = RTD_OVERFLOW_DROP_NEWEST,
    };
    int rc = rtd_ring_create(&pk, inst, "packets", &cfg);
    if (rc < 0) {
        fprintf(stderr, "create packets ring: %s\n", strerror(-rc));
        return 1;
    }
    /* Bands: [4, 8) ms holds the 6 ms sine, [16, 32) ms the 24 ms one. */
    const char *args[] = {"--instance",  inst,    "--workers",  "1",
                          "--cpu",       "-1",    "--mode",     "wavelet",
                          "--window",    "256",   "--hop",      "128",
                          "--dt",        "0.001", "--bands",    "0.004:0.008,0.016:0.032",
                          "--pairs",     "1-2",   "--duration", "60",
                          "--log-level", "4",     "--reliable", NULL};
    pid_t sup = t_spawn_proc(args);
    if (sup < 0)
        return 1;
    int up = 0;
    for (int t = 0; t < 1500 && !up; t++) {
        up = t_counter(inst, "proc.w0", "pid") > 0 && t_counter(inst, "proc.w0", "clients") >= 0;
        /* The worker attaches its consumer within 100 ms of starting. */
        if (up) {
            const struct rtd_ring_hdr *h = rtd_ring_header(pk);
            up = 0;
            for (int c = 0; c < RTD_MAX_CONSUMERS; c++)
                up |= atomic_load(&h->consumers[c].state) == RTD_CSLOT_ACTIVE;
        }
        t_sleep_ms(10);
    }
    CHECK(up, "wavelet worker did not attach to the packets ring");
    struct rtd_ring *out = NULL;
    struct rtd_consumer *mon = NULL;
    if (!t_failed) {
        rc = rtd_ring_attach(&out, inst, "wavelet.w0");
        CHECK(rc == 0, "attach wavelet.w0: %s", strerror(-rc));
        if (rc == 0)
            rc = rtd_consumer_open(&mon, out, RTD_CONSUMER_MONITOR, "test");
        CHECK(rc == 0, "monitor wavelet.w0: %s", strerror(-rc));
    }
    if (t_failed)
        goto stop;

    /* Publish NSAMPLES samples per client, PER_PKT per packet, interleaved as acq would. */
    for (int s0 = 0; s0 < NSAMPLES; s0 += PER_PKT) {
        for (uint32_t client = 1; client <= 3; client++) {
            int err = 0;
            uint8_t *p;
            while (!(p = rtd_pkt_reserve(pk, 24 + PER_PKT * 8, 1, &err)) && err == -EAGAIN)
                t_sleep_ms(1);
            CHECK(p != NULL, "reserve: %s", strerror(-err));
            if (!p)
                goto stop;
            uint32_t len = PER_PKT * 8;
            uint64_t seq = (uint64_t)(s0 / PER_PKT), ts = (uint64_t)s0 * 1000000u;
            memcpy(p, &client, 4);
            memcpy(p + 4, &len, 4);
            memcpy(p + 8, &seq, 8);
            memcpy(p + 16, &ts, 8);
            for (int i = 0; i < PER_PKT; i++) {
                double t = (s0 + i) * DT;
                double v = client == 3 ? sin(2 * M_PI * t / 0.024)
                                       : sin(2 * M_PI * t / 0.006 + (client == 2 ? 0.7 : 0.0));
                memcpy(p + 24 + 8 * i, &v, 8);
            }
        }
        rtd_pkt_publish(pk);
    }

    /* Hops per client: (1024 - 256) / 128 + 1 = 7; coherence records for the pair: 7. */
    int npow[4] = {0}, ncoh = 0, ok_band[4] = {0};
    double coh_last[2] = {0, 0};
    for (int t = 0; t < 1500 && (npow[1] < 7 || npow[2] < 7 || npow[3] < 7 || ncoh < 6); t++) {
        /* A monitor: records are copied out and validated (rtd_pkt_copy). */
        static uint64_t buf[(sizeof(struct rtd_pkt_hdr) + RTD_PKT_MAX_PAYLOAD) / 8];
        const struct rtd_pkt_hdr *h = (const struct rtd_pkt_hdr *)buf;
        while (rtd_pkt_copy(mon, buf, sizeof buf, NULL) >= 0) {
            if (h->type == RTD_RES_WPOWER && h->len >= sizeof(struct rtd_res_wpower) + 16) {
                struct rtd_res_wpower r;
                double pw[2];
                memcpy(&r, rtd_pkt_payload(h), sizeof r);
                memcpy(pw, (const uint8_t *)rtd_pkt_payload(h) + sizeof r, sizeof pw);
                CHECK(r.n_bands == 2 && r.window == 256 && r.hop == 128 && r.dt == DT,
                      "record header: bands %u window %u hop %u", r.n_bands, r.window, r.hop);
                if (r.client >= 1 && r.client <= 3) {
                    npow[r.client]++;
                    int want = r.client == 3 ? 1 : 0;
                    ok_band[r.client] += pw[want] > 5 * pw[1 - want];
                }
            } else if (h->type == RTD_RES_WCOH && h->len >= sizeof(struct rtd_res_wcoh) + 16) {
                struct rtd_res_wcoh r;
                memcpy(&r, rtd_pkt_payload(h), sizeof r);
                memcpy(coh_last, (const uint8_t *)rtd_pkt_payload(h) + sizeof r, sizeof coh_last);
                CHECK(r.client_a == 1 && r.client_b == 2, "pair %u-%u", r.client_a, r.client_b);
                ncoh++;
            }
        }
        rtd_pkt_release(mon);
        t_sleep_ms(10);
    }
    printf("power records: client1 %d, client2 %d, client3 %d (in the right band: %d %d %d); "
           "coherence records %d, last [%.3f %.3f]\n",
           npow[1], npow[2], npow[3], ok_band[1], ok_band[2], ok_band[3], ncoh, coh_last[0],
           coh_last[1]);
    for (int c = 1; c <= 3; c++) {
        CHECK(npow[c] == 7, "client %d: %d power records, expected 7", c, npow[c]);
        CHECK(ok_band[c] == npow[c], "client %d: power not in its band", c);
    }
    /* Client 2 has a full window from client 1's second hop on (packets interleave 1, 2, 3). */
    CHECK(ncoh >= 6, "%d coherence records, expected 6 or 7", ncoh);
    CHECK(coh_last[0] > 0.9, "coherence in the 6 ms band %.3f", coh_last[0]);
    int64_t hops = t_counter(inst, "proc.w0", "hops");
    CHECK(hops == 21, "hops counter %lld", (long long)hops);

stop:
    if (mon)
        rtd_consumer_close(mon);
    if (out)
        rtd_ring_close(out);
    kill(sup, SIGTERM);
    int st = t_wait_exit(sup, 15000);
    CHECK(st == 0, "rtdaq-proc exit status %d after SIGTERM", st);
    struct t_list l = {0};
    rtd_shm_list(inst, t_list_cb, &l);
    for (int i = 0; i < l.n; i++)
        CHECK(!strcmp(l.names[i], "packets"), "segment %s left behind", l.names[i]);
    rtd_ring_close(pk);
    rtd_shm_cleanup(inst, 1);
    printf("%s\n", t_failed ? "FAIL" : "PASS");
    return t_failed;
}
