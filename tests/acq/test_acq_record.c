/* SPDX-License-Identifier: MIT */
/*
 * Recording and replay. (1) rtdaq-acq records packets (rtdaq sim) and frames
 * (synthetic camera) and is killed with SIGKILL: the file reads back to its
 * last complete record, and `rtdaq replay --to` feeds it through a second
 * rtdaq-acq, which receives every packet and frame in it. (2) A clean SIGTERM
 * finalises the file (END record, sidecar with "finalized": true). (3) A file
 * cut mid-record and one with a flipped byte: the reader and `rtdaq replay`
 * stop with a clear error at the first bad record after replaying all before.
 */
#include <dirent.h>
#include <sys/stat.h>

#include "acq_test.h"
#include "rtd_rec.h"
#include "rtd_wire.h"

static int find_rec(const char *dir, char *out, size_t n)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    int found = -1;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l > 7 && !strcmp(e->d_name + l - 7, ".rtdrec")) {
            snprintf(out, n, "%s/%s", dir, e->d_name);
            found = 0;
        }
    }
    closedir(d);
    return found;
}

struct counts {
    uint64_t packets, frames;
    int end_rc;
};

static struct counts read_back(const char *path)
{
    struct counts c = {0, 0, -999};
    struct rtd_rec_reader *r;
    if (rtd_rec_open(&r, path))
        return c;
    struct rtd_rec_record rec;
    int rc;
    while ((rc = rtd_rec_next(r, &rec)) > 0) {
        if (rec.hdr->type == RTD_REC_PACKET)
            c.packets++;
        else if (rec.hdr->type == RTD_REC_FRAME)
            c.frames++;
    }
    c.end_rc = rc;
    if (rc < 0)
        fprintf(stderr, "read_back %s: %s\n", path, rtd_rec_error(r));
    rtd_rec_close(r);
    return c;
}

static void rm_rf(char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

static void test_sigkill_and_replay(char *dir)
{
    char inst[48], ps[16], fs[16], out[300];
    t_instance(inst, sizeof inst, "r");
    int port = t_port(6);
    snprintf(ps, sizeof ps, "%d", port);
    snprintf(fs, sizeof fs, "%d", port + 1);
    char *argv[] = {
        ACQ_BIN,   "--instance", inst,        "--packet-port",    ps,    "--frame-port",
        fs,        "--source",   "synthetic", "--synthetic-rate", "200", "--width",
        "64",      "--height",   "64",        "--record",         dir,   "--packet-ring-bytes",
        "4194304", "--duration", "60",        "--quiet",          NULL};
    pid_t acq = t_spawn(argv, NULL);
    if (acq < 0 || t_wait_acq(inst, acq, 10000))
        exit(1);
    snprintf(out, sizeof out, "%s/sim.json", dir);
    char *sim[] = {CLI_BIN, "sim",     "packets", "--port",     ps,  "--clients", "5", "--rate",
                   "1000",  "--batch", "10",      "--duration", "1", "--json",    NULL};
    CHECK(t_run(sim, out, 20000) == 0, "sim failed");
    char txt[1024];
    t_read_text(out, txt, sizeof txt);
    long long sent = t_json_int(txt, "packets");
    t_counter_wait(inst, "packets.rx", (uint64_t)sent, 3000);
    t_sleep_ms(400); /* the recorder submits its chunk at least every 100 ms */
    kill(acq, SIGKILL);
    t_wait(acq, 5000);
    rtd_shm_cleanup(inst, 1);
    unlink(out);

    char path[400];
    CHECK(find_rec(dir, path, sizeof path) == 0, "no recording in %s", dir);
    char side[420];
    snprintf(side, sizeof side, "%s.json", path);
    CHECK(access(side, R_OK) == 0, "no sidecar %s", side);
    struct counts c = read_back(path);
    CHECK(c.end_rc == 0, "SIGKILLed recording does not end at a record boundary (%d)", c.end_rc);
    CHECK((long long)c.packets == sent, "recording holds %llu of %lld packets",
          (unsigned long long)c.packets, sent);
    CHECK(c.frames > 50, "recording holds only %llu frames", (unsigned long long)c.frames);

    /* Replay it through a second acq over the network. */
    char inst2[48], ps2[16], fs2[16], to[64];
    t_instance(inst2, sizeof inst2, "q");
    snprintf(ps2, sizeof ps2, "%d", port + 2);
    snprintf(fs2, sizeof fs2, "%d", port + 3);
    snprintf(to, sizeof to, "127.0.0.1:%d", port + 2);
    char *argv2[] = {ACQ_BIN,   "--instance",
                     inst2,     "--packet-port",
                     ps2,       "--frame-port",
                     fs2,       "--source",
                     "udp",     "--width",
                     "64",      "--height",
                     "64",      "--packet-ring-bytes",
                     "4194304", "--duration",
                     "60",      "--quiet",
                     NULL};
    pid_t acq2 = t_spawn(argv2, NULL);
    if (acq2 < 0 || t_wait_acq(inst2, acq2, 10000))
        exit(1);
    snprintf(out, sizeof out, "%s/replay.json", dir);
    char *rp[] = {CLI_BIN, "replay", path, "--speed", "x4", "--to", to, "--json", NULL};
    int st = t_run(rp, out, 30000);
    t_read_text(out, txt, sizeof txt);
    unlink(out);
    CHECK(st == 0, "replay exit %d: %s", st, txt);
    CHECK(t_json_int(txt, "packets") == (long long)c.packets &&
              t_json_int(txt, "frames") == (long long)c.frames,
          "replay reports %s", txt);
    uint64_t rx = t_counter_wait(inst2, "packets.rx", c.packets, 3000);
    uint64_t fr = t_counter_wait(inst2, "frames.rx", c.frames, 3000);
    CHECK(rx == c.packets, "replayed packets received %llu of %llu", (unsigned long long)rx,
          (unsigned long long)c.packets);
    CHECK(fr == c.frames, "replayed frames received %llu of %llu", (unsigned long long)fr,
          (unsigned long long)c.frames);
    kill(acq2, SIGTERM);
    CHECK(t_wait(acq2, 10000) == 0, "second acq did not stop cleanly");
    unlink(side);
    unlink(path);
}

static void test_clean_stop(char *dir)
{
    char inst[48], ps[16];
    t_instance(inst, sizeof inst, "c");
    int port = t_port(7);
    snprintf(ps, sizeof ps, "%d", port);
    char *argv[] = {ACQ_BIN, "--instance", inst, "--packet-port",       ps,        "--source",
                    "none",  "--record",   dir,  "--packet-ring-bytes", "4194304", "--duration",
                    "60",    "--quiet",    NULL};
    pid_t acq = t_spawn(argv, NULL);
    if (acq < 0 || t_wait_acq(inst, acq, 10000))
        exit(1);
    char simout[300], stxt[1024];
    snprintf(simout, sizeof simout, "%s/sim2.json", dir);
    char *sim[] = {CLI_BIN, "sim",     "packets", "--port",     ps,    "--clients", "3", "--rate",
                   "1000",  "--batch", "10",      "--duration", "0.5", "--json",    NULL};
    CHECK(t_run(sim, simout, 20000) == 0, "sim failed");
    t_read_text(simout, stxt, sizeof stxt);
    unlink(simout);
    long long sent = t_json_int(stxt, "packets");
    t_counter_wait(inst, "packets.rx", (uint64_t)sent, 3000);
    kill(acq, SIGTERM);
    CHECK(t_wait(acq, 10000) == 0, "acq did not stop cleanly");
    char path[400], side[420], txt[4096];
    CHECK(find_rec(dir, path, sizeof path) == 0, "no recording");
    struct rtd_rec_reader *r;
    CHECK(rtd_rec_open(&r, path) == 0, "open %s", path);
    struct rtd_rec_record rec;
    uint64_t n = 0;
    while (rtd_rec_next(r, &rec) > 0)
        n++;
    CHECK(rtd_rec_complete(r), "no END record after SIGTERM");
    CHECK((long long)n == sent, "%llu records, want %lld", (unsigned long long)n, sent);
    rtd_rec_close(r);
    snprintf(side, sizeof side, "%s.json", path);
    t_read_text(side, txt, sizeof txt);
    char want[64];
    snprintf(want, sizeof want, "\"records\": %lld", sent);
    CHECK(strstr(txt, "\"finalized\": true") && strstr(txt, want) && strstr(txt, "\"config\""),
          "sidecar: %s", txt);
    unlink(side);
    unlink(path);
}

static void copy_file(const char *from, const char *to, long cut)
{
    void *buf;
    size_t len;
    if (rtd_read_file(from, &buf, &len))
        return;
    rtd_write_file(to, buf, cut >= 0 && (size_t)cut < len ? (size_t)cut : len);
    free(buf);
}

static void test_damaged(char *dir)
{
    char good[300], cut[300], bad[300], out[300], txt[2048];
    snprintf(good, sizeof good, "%s/good.rtdrec", dir);
    snprintf(cut, sizeof cut, "%s/cut.rtdrec", dir);
    snprintf(bad, sizeof bad, "%s/bad.rtdrec", dir);
    snprintf(out, sizeof out, "%s/out.json", dir);
    struct rtd_rec_writer *w;
    CHECK(rtd_rec_writer_open(&w, good, "t", "{\"x\":1}", 65536) == 0, "writer open");
    uint64_t offs[10000];
    for (uint32_t i = 0; i < 10000; i++) {
        struct rtd_acq_pkt p = {.client = 1, .len = 32, .seq = i, .ts_ns = rtd_realtime_ns()};
        double v[4] = {i, i + 0.5, -1.0 * i, 0};
        while (rtd_rec_write(w, RTD_REC_PACKET, 0, rtd_now_ns(), rtd_realtime_ns(), &p, sizeof p, v,
                             sizeof v) == -ENOBUFS)
            rtd_rec_flush(w);
    }
    CHECK(rtd_rec_writer_close(w) == 0, "writer close");
    struct rtd_rec_reader *r;
    CHECK(rtd_rec_open(&r, good) == 0, "open good");
    struct rtd_rec_record rec;
    uint64_t n = 0;
    while (rtd_rec_next(r, &rec) > 0)
        offs[n++] = rec.offset;
    CHECK(n == 10000 && rtd_rec_complete(r), "good file: %llu records", (unsigned long long)n);
    /* Seeking by time lands on a record. */
    CHECK(rtd_rec_seek(r, 0) == 0 && rtd_rec_next(r, &rec) == 1 && rec.offset == offs[0],
          "seek to start");
    rtd_rec_close(r);

    /* Replay into the rings of an instance, read back by a reliable consumer. */
    {
        char rinst[48];
        t_instance(rinst, sizeof rinst, "y");
        char *rr[] = {CLI_BIN,  "replay",           good, "--speed",  "max", "--instance", rinst,
                      "--json", "--wait-consumers", "1",  "--linger", "0.5", NULL};
        pid_t rp = t_spawn(rr, "/dev/null");
        struct rtd_ring *ring = NULL;
        struct rtd_consumer *cons = NULL;
        for (int i = 0; i < 500 && rtd_ring_attach(&ring, rinst, "packets"); i++)
            t_sleep_ms(10);
        uint64_t got = 0, wrong = 0;
        if (ring && rtd_consumer_open(&cons, ring, RTD_CONSUMER_RELIABLE, "test") == 0) {
            for (int idle = 0; got < 10000 && idle < 1000;) {
                const struct rtd_pkt_hdr *h;
                if (rtd_pkt_next(cons, &h)) {
                    rtd_pkt_release(cons);
                    t_sleep_ms(5);
                    idle++;
                    continue;
                }
                const struct rtd_acq_pkt *p = rtd_pkt_payload(h);
                double v;
                memcpy(&v, p->payload + 8, sizeof v);
                wrong += p->seq != got || p->len != 32 || v != got + 0.5;
                got++;
            }
            rtd_pkt_release(cons);
            rtd_consumer_close(cons);
        }
        if (ring)
            rtd_ring_close(ring);
        CHECK(got == 10000 && wrong == 0, "replay into rings: %llu of 10000 records, %llu bad",
              (unsigned long long)got, (unsigned long long)wrong);
        CHECK(t_wait(rp, 20000) == 0, "replay into rings failed");
    }

    /* Cut in the middle of record 7000. */
    copy_file(good, cut, (long)offs[7000] + 20);
    struct counts c = read_back(cut);
    CHECK(c.packets == 7000 && c.end_rc == -ENODATA, "cut file: %llu records, rc %d",
          (unsigned long long)c.packets, c.end_rc);
    char inst[48];
    t_instance(inst, sizeof inst, "d");
    char *rp[] = {CLI_BIN, "replay", cut,        "--speed", "max", "--instance",
                  inst,    "--json", "--linger", "0",       NULL};
    int st = t_run(rp, out, 20000);
    t_read_text(out, txt, sizeof txt);
    CHECK(st == 1 && t_json_int(txt, "records") == 7000 && strstr(txt, "cut short"),
          "replay of cut file: exit %d, %s", st, txt);

    /* Flip one payload byte of record 5000. */
    copy_file(good, bad, -1);
    FILE *f = fopen(bad, "r+b");
    fseek(f, (long)offs[5000] + 40 + 3, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, (long)offs[5000] + 40 + 3, SEEK_SET);
    fputc(ch ^ 0x40, f);
    fclose(f);
    c = read_back(bad);
    CHECK(c.packets == 5000 && c.end_rc == -EBADMSG, "corrupt file: %llu records, rc %d",
          (unsigned long long)c.packets, c.end_rc);
    rp[2] = bad;
    st = t_run(rp, out, 20000);
    t_read_text(out, txt, sizeof txt);
    CHECK(st == 1 && t_json_int(txt, "records") == 5000 && strstr(txt, "checksum"),
          "replay of corrupt file: exit %d, %s", st, txt);
    char side[320];
    unlink(good);
    unlink(cut);
    unlink(bad);
    unlink(out);
    snprintf(side, sizeof side, "%s.json", good);
    unlink(side);
}

int main(void)
{
    /* The Castagnoli check value, whichever implementation (SSE4.2 or table) runs here. */
    CHECK(rtd_crc32c(0, "123456789", 9) == 0xe3069283u, "crc32c(\"123456789\") = %08x",
          rtd_crc32c(0, "123456789", 9));
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/acqt%d.rec", (int)getpid());
    mkdir(dir, 0755);
    test_sigkill_and_replay(dir);
    test_clean_stop(dir);
    test_damaged(dir);
    rm_rf(dir);
    printf("%s\n", t_failures ? "FAIL" : "ok");
    return t_failures ? 1 : 0;
}
