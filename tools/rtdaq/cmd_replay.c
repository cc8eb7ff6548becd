/* SPDX-License-Identifier: MIT */
/*
 * `rtdaq replay FILE`: feed a recording back into an instance's rings (this
 * process creates "frames" and "packets" in place of rtdaq-acq) or, with
 * --to HOST:PORT, over the network to a running rtdaq-acq (packets over TCP
 * to PORT, frames as UDP fragments to --frame-port, default PORT+1). Timing:
 * original, xN or max. A damaged or cut-short file replays every record
 * before the first bad one, then says where and why it stopped (exit 1).
 */
#include "rtdaq_cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rtd_rec.h"
#include "rtd_shm.h"
#include "rtd_util.h"
#include "rtd_wire.h"

static volatile sig_atomic_t replay_stop;

static void replay_on_signal(int sig)
{
    (void)sig;
    replay_stop = 1;
}

static const char replay_usage[] =
    "usage: rtdaq replay FILE [--speed original|xN|max] [--instance NAME]\n"
    "                         [--to HOST:PORT [--frame-port P]] [--wait-consumers N] [--linger S]\n"
    "                         [--json] [--quiet]\n"
    "Replays a recording (*.rtdrec) into the instance's rings \"frames\" and \"packets\"\n"
    "(rtdaq-acq must not be running on that instance), or with --to over the network to a\n"
    "running rtdaq-acq. --linger S: keep the rings S seconds after the end (default 1)\n"
    "so consumers can drain them. --wait-consumers N: wait (up to 30 s) until N consumers\n"
    "have attached to the rings before replaying.\n";

struct replay_out {
    /* rings */
    struct rtd_ring *fring, *pring;
    int pending;
    /* network */
    int tcp, udp;
    uint8_t *tbuf;
    size_t tlen;
    uint8_t *dbuf;
};

static int net_flush(struct replay_out *o)
{
    size_t off = 0;
    while (off < o->tlen) {
        ssize_t w = send(o->tcp, o->tbuf + off, o->tlen - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        off += (size_t)w;
    }
    o->tlen = 0;
    return 0;
}

static int out_flush(struct replay_out *o)
{
    if (o->pring && o->pending) {
        rtd_pkt_publish(o->pring);
        o->pending = 0;
    }
    if (o->tcp >= 0 && o->tlen)
        return net_flush(o);
    return 0;
}

static int out_packet(struct replay_out *o, const struct rtd_rec_record *rec)
{
    const struct rtd_rec_hdr *h = rec->hdr;
    if (h->len < sizeof(struct rtd_acq_pkt))
        return 0;
    if (o->pring) {
        int err = 0;
        void *p;
        while (!(p = rtd_pkt_reserve(o->pring, h->len, RTD_ACQ_REC_PACKET, &err))) {
            if (err != -EAGAIN || replay_stop)
                return err == -ENOBUFS ? 0 : err;
            rtd_pkt_publish(o->pring);
            o->pending = 0;
        }
        ((struct rtd_pkt_hdr *)p - 1)->ts_mono_ns = rtd_now_ns();
        memcpy(p, rec->payload, h->len);
        o->pending = 1;
        return 0;
    }
    struct rtd_acq_pkt ap;
    memcpy(&ap, rec->payload, sizeof ap);
    if (ap.len > h->len - sizeof ap)
        return 0;
    /* Stamped now: acq measures its latency from this timestamp. */
    struct rtd_wire_pkt w = {.magic = RTD_WIRE_PKT_MAGIC,
                             .version = RTD_WIRE_PKT_VERSION,
                             .client = ap.client,
                             .len = ap.len,
                             .seq = ap.seq,
                             .ts_ns = rtd_realtime_ns()};
    if (o->tlen + sizeof w + ap.len > (1u << 16)) {
        int rc = net_flush(o);
        if (rc)
            return rc;
    }
    memcpy(o->tbuf + o->tlen, &w, sizeof w);
    memcpy(o->tbuf + o->tlen + sizeof w, (const uint8_t *)rec->payload + sizeof ap, ap.len);
    o->tlen += sizeof w + ap.len;
    return 0;
}

static int out_frame(struct replay_out *o, const struct rtd_rec_record *rec)
{
    const struct rtd_rec_hdr *h = rec->hdr;
    struct rtd_rec_frame rf;
    if (h->len < sizeof rf)
        return 0;
    memcpy(&rf, rec->payload, sizeof rf);
    uint64_t bytes = (uint64_t)rf.width * rf.height * 2;
    if (bytes > h->len - sizeof rf)
        return 0;
    const uint8_t *px = (const uint8_t *)rec->payload + sizeof rf;
    if (o->fring) {
        struct rtd_frame f;
        int rc;
        while ((rc = rtd_frame_claim(o->fring, &f)) == -EAGAIN && !replay_stop)
            ;
        if (rc)
            return rc == -ENOBUFS ? 0 : rc;
        if (bytes > rtd_ring_header(o->fring)->slot_payload)
            return -EMSGSIZE;
        memcpy(f.data, px, bytes);
        f.hdr->len = (uint32_t)bytes;
        f.hdr->type = RTD_ACQ_FRAME_MONO16;
        f.hdr->flags = (uint16_t)rf.flags;
        f.hdr->width = rf.width;
        f.hdr->height = rf.height;
        f.hdr->pixfmt = rf.pixfmt;
        f.hdr->frame_id = rf.frame_id;
        f.hdr->ts_real_ns = rf.ts_real_ns;
        return rtd_frame_publish(o->fring, &f);
    }
    const uint32_t hl = sizeof(struct rtd_wire_frag), chunk = 8192 - hl - 8;
    uint32_t count = (uint32_t)((bytes + chunk - 1) / chunk);
    uint64_t ts = rtd_realtime_ns();
    for (uint32_t i = 0; i < count; i++) {
        uint32_t off = i * chunk;
        uint32_t len = (uint32_t)(bytes - off < chunk ? bytes - off : chunk);
        struct rtd_wire_frag w = {.magic = RTD_WIRE_FRAG_MAGIC,
                                  .version = RTD_WIRE_FRAG_VERSION,
                                  .hdr_len = (uint16_t)hl,
                                  .frame_id = rf.frame_id,
                                  .index = i,
                                  .count = count,
                                  .width = rf.width,
                                  .height = rf.height,
                                  .pixfmt = rf.pixfmt,
                                  .frame_bytes = (uint32_t)bytes,
                                  .offset = off,
                                  .len = len,
                                  .ts_ns = ts};
        memcpy(o->dbuf, &w, hl);
        memcpy(o->dbuf + hl, px + off, len);
        if (send(o->udp, o->dbuf, hl + len, 0) < 0 && errno != EINTR)
            return -errno;
    }
    return 0;
}

static int connect_to(const char *host, int port, int type)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -EINVAL;
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

static int count_consumers(struct rtd_ring *r)
{
    const struct rtd_ring_hdr *h = rtd_ring_header(r);
    int n = 0;
    for (int i = 0; i < RTD_MAX_CONSUMERS; i++)
        n += atomic_load_explicit(&h->consumers[i].state, memory_order_acquire) == RTD_CSLOT_ACTIVE;
    return n;
}

/* Largest frame in the file's first frame record decides the slot size (0: none). */
static uint32_t first_frame_bytes(const char *path)
{
    struct rtd_rec_reader *r;
    if (rtd_rec_open(&r, path))
        return 0;
    struct rtd_rec_record rec;
    uint32_t n = 0;
    while (rtd_rec_next(r, &rec) > 0)
        if (rec.hdr->type == RTD_REC_FRAME) {
            n = rec.hdr->len;
            break;
        }
    rtd_rec_close(r);
    return n;
}

static void progress(uint64_t off, uint64_t size, uint64_t n, double secs)
{
    int pct = size ? (int)(100.0 * (double)off / (double)size) : 100;
    char bar[41];
    int fill = pct * 40 / 100;
    for (int i = 0; i < 40; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[40] = 0;
    fprintf(stderr, "\r[%s] %3d%% %llu records %.1f s", bar, pct, (unsigned long long)n, secs);
}

int rtd_cmd_replay(int argc, char **argv)
{
    const char *instance = NULL, *to = NULL;
    double speed = 1.0, linger = 1.0;
    int json = 0, quiet = 0, frame_port = 0, wait_consumers = 0;
    static const struct option opts[] = {{"speed", required_argument, 0, 's'},
                                         {"instance", required_argument, 0, 'i'},
                                         {"to", required_argument, 0, 't'},
                                         {"frame-port", required_argument, 0, 'f'},
                                         {"linger", required_argument, 0, 'l'},
                                         {"json", no_argument, 0, 'j'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {"wait-consumers", required_argument, 0, 'w'},
                                         {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "hq", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (!strcmp(optarg, "original"))
                speed = 1.0;
            else if (!strcmp(optarg, "max"))
                speed = 0;
            else if (optarg[0] == 'x' && (speed = strtod(optarg + 1, NULL)) > 0)
                ;
            else {
                fprintf(stderr, "rtdaq replay: --speed %s: expected original, xN or max\n", optarg);
                return RTD_EXIT_USAGE;
            }
            break;
        case 'i':
            instance = optarg;
            break;
        case 't':
            to = optarg;
            break;
        case 'f':
            frame_port = atoi(optarg);
            break;
        case 'l':
            linger = strtod(optarg, NULL);
            break;
        case 'j':
            json = 1;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'w':
            wait_consumers = atoi(optarg);
            break;
        case 'h':
            fputs(replay_usage, stdout);
            return RTD_EXIT_OK;
        default:
            fputs(replay_usage, stderr);
            return RTD_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        fputs(replay_usage, stderr);
        return RTD_EXIT_USAGE;
    }
    const char *path = argv[optind];
    struct rtd_rec_reader *rd;
    int rc = rtd_rec_open(&rd, path);
    if (rc) {
        fprintf(stderr, "rtdaq replay: %s: %s\n", path,
                rc == -EPROTO    ? "not an rtdaq recording (or an unsupported major version)"
                : rc == -EBADMSG ? "damaged file header"
                                 : strerror(-rc));
        return RTD_EXIT_USAGE;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = replay_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct replay_out o = {.tcp = -1, .udp = -1};
    const char *inst = rtd_instance_name(instance);
    int exit_code = RTD_EXIT_OK;
    if (to) {
        char host[64];
        const char *colon = strrchr(to, ':');
        int port = colon ? atoi(colon + 1) : 0;
        if (!colon || port <= 0 || port > 65535 || (size_t)(colon - to) >= sizeof host) {
            fprintf(stderr, "rtdaq replay: --to %s: expected HOST:PORT\n", to);
            rtd_rec_close(rd);
            return RTD_EXIT_USAGE;
        }
        memcpy(host, to, (size_t)(colon - to));
        host[colon - to] = 0;
        o.tcp = connect_to(host, port, SOCK_STREAM);
        o.udp = connect_to(host, frame_port ? frame_port : port + 1, SOCK_DGRAM);
        o.tbuf = malloc(1u << 16);
        o.dbuf = malloc(8192);
        if (o.tcp < 0 || o.udp < 0 || !o.tbuf || !o.dbuf) {
            fprintf(stderr, "rtdaq replay: cannot reach %s: %s\n", to,
                    strerror(o.tcp < 0   ? -o.tcp
                             : o.udp < 0 ? -o.udp
                                         : ENOMEM));
            exit_code = RTD_EXIT_UNREACHABLE;
            goto out;
        }
    } else {
        uint32_t fb = first_frame_bytes(path);
        struct rtd_ring_config fc = {.kind = RTD_RING_FRAME,
                                     .slot_payload = fb > 128 * 1024 ? fb : 128 * 1024,
                                     .slot_count = 64,
                                     .overflow = RTD_OVERFLOW_BLOCK};
        struct rtd_ring_config pc = {
            .kind = RTD_RING_PACKET, .data_bytes = 64u << 20, .overflow = RTD_OVERFLOW_BLOCK};
        if ((rc = rtd_ring_create(&o.fring, inst, "frames", &fc)) ||
            (rc = rtd_ring_create(&o.pring, inst, "packets", &pc))) {
            fprintf(stderr,
                    "rtdaq replay: cannot create the rings of instance %s: %s (is rtdaq-acq "
                    "running there? replay through it with --to HOST:PORT)\n",
                    inst, strerror(-rc));
            exit_code = RTD_EXIT_FAIL;
            goto out;
        }
    }
    /* Consumers start at the newest record: let the analysis attach before the first one. */
    for (int waited = 0; (o.fring || o.pring) && wait_consumers > 0 && !replay_stop; waited++) {
        int n = count_consumers(o.fring) + count_consumers(o.pring);
        if (n >= wait_consumers)
            break;
        if (waited == 3000) {
            fprintf(stderr, "rtdaq replay: only %d of %d consumers attached after 30 s\n", n,
                    wait_consumers);
            exit_code = RTD_EXIT_FAIL;
            goto out;
        }
        usleep(10000);
    }
    int tty = !quiet && !json && isatty(2);
    uint64_t start = rtd_now_ns(), t0 = 0, n = 0, npk = 0, nfr = 0, last_bar = 0;
    struct rtd_rec_record rec;
    int r = 0;
    while (!replay_stop && (r = rtd_rec_next(rd, &rec)) > 0) {
        if (!n)
            t0 = rec.hdr->ts_mono_ns;
        if (speed > 0) {
            uint64_t due = start + (uint64_t)((double)(rec.hdr->ts_mono_ns - t0) / speed);
            uint64_t now = rtd_now_ns();
            if (due > now + 50000) {
                out_flush(&o);
                struct timespec ts = {.tv_sec = (time_t)(due / 1000000000ull),
                                      .tv_nsec = (long)(due % 1000000000ull)};
                clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
            }
        }
        rc = rec.hdr->type == RTD_REC_PACKET ? out_packet(&o, &rec) : out_frame(&o, &rec);
        if (rc) {
            fprintf(stderr, "\nrtdaq replay: output failed: %s\n", strerror(-rc));
            exit_code = RTD_EXIT_FAIL;
            break;
        }
        npk += rec.hdr->type == RTD_REC_PACKET;
        nfr += rec.hdr->type == RTD_REC_FRAME;
        n++;
        if ((n & 255) == 0) {
            if (o.pring && o.pending) {
                rtd_pkt_publish(o.pring);
                o.pending = 0;
            }
            uint64_t now = rtd_now_ns();
            if (tty && now - last_bar > 100000000ull) {
                progress(rtd_rec_offset(rd), rtd_rec_file_size(rd), n, (double)(now - start) / 1e9);
                last_bar = now;
            }
        }
    }
    out_flush(&o);
    double secs = (double)(rtd_now_ns() - start) / 1e9;
    if (tty) {
        progress(rtd_rec_offset(rd), rtd_rec_file_size(rd), n, secs);
        fputc('\n', stderr);
    }
    const char *stop_reason = NULL;
    if (!replay_stop && r < 0 && exit_code == RTD_EXIT_OK) {
        stop_reason = rtd_rec_error(rd);
        fprintf(stderr, "rtdaq replay: %s: %s; replayed the %llu records before it\n", path,
                stop_reason, (unsigned long long)n);
        exit_code = RTD_EXIT_FAIL;
    } else if (!replay_stop && r == 0 && !rtd_rec_complete(rd) && !quiet) {
        fprintf(stderr,
                "rtdaq replay: %s: no end marker (the recorder did not close it cleanly); "
                "replayed every complete record\n",
                path);
    }
    if (json)
        printf("{\"file\":\"%s\",\"records\":%llu,\"packets\":%llu,\"frames\":%llu,"
               "\"seconds\":%.3f,\"complete\":%s,\"error\":%s%s%s}\n",
               path, (unsigned long long)n, (unsigned long long)npk, (unsigned long long)nfr, secs,
               rtd_rec_complete(rd) ? "true" : "false", stop_reason ? "\"" : "",
               stop_reason ? stop_reason : "null", stop_reason ? "\"" : "");
    else if (!quiet)
        printf("replayed %llu records (%llu packets, %llu frames) from %s in %.2f s\n",
               (unsigned long long)n, (unsigned long long)npk, (unsigned long long)nfr, path, secs);
    if (o.fring || o.pring) {
        /* Let reliable consumers drain before the rings go away with us. */
        uint64_t until = rtd_now_ns() + (uint64_t)(linger * 1e9);
        while (!replay_stop && rtd_now_ns() < until)
            usleep(10000);
    }
out:
    if (o.fring)
        rtd_ring_close(o.fring);
    if (o.pring)
        rtd_ring_close(o.pring);
    if (o.tcp >= 0)
        close(o.tcp);
    if (o.udp >= 0)
        close(o.udp);
    free(o.tbuf);
    free(o.dbuf);
    rtd_rec_close(rd);
    return exit_code;
}
