/* SPDX-License-Identifier: MIT */
/*
 * rtdaq-acq's configuration: defaults and command-line parsing into struct
 * rtd_acq_config. A config file (ctl/) fills the same struct before argv.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rtd_acq.h"
#include "rtd_config.h"
#include "rtd_shm.h"

void rtd_acq_config_defaults(struct rtd_acq_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->instance, sizeof c->instance, "%s", rtd_instance_name(NULL));
    snprintf(c->bind, sizeof c->bind, "127.0.0.1");
    c->packet_port = 7000;
    c->frame_port = 7001;
    c->max_clients = 4096;
    c->max_payload = RTD_WIRE_PAYLOAD_DEFAULT;
    c->source = RTD_SRC_UDP;
    c->synthetic_rate = 10000.0;
    c->width = 300;
    c->height = 300;
    c->ions = 10;
    c->frame_slots = 64;
    c->packet_ring_bytes = 64ull << 20;
    c->overflow = RTD_OVERFLOW_BLOCK;
    c->partial = RTD_PARTIAL_DROP;
    c->frame_timeout_ms = 100;
    c->cpu = -1;
    /* systemd's StateDirectory= (the unit's writable place), else the working directory. */
    const char *sd = getenv("STATE_DIRECTORY");
    snprintf(c->record_default, sizeof c->record_default, "%s", sd && *sd ? sd : ".");
    c->io = RTD_IO_URING;
    c->recv_buf_size = 65536;
    c->recv_buf_count = 512;
    c->udp_rcvbuf = 32u << 20;
}

void rtd_acq_usage(FILE *out)
{
    fputs("usage: rtdaq-acq [options]\n"
          "  --instance NAME        shared-memory instance ($RTDAQ_INSTANCE or 'default')\n"
          "  --bind ADDR            IPv4 address to listen on (127.0.0.1)\n"
          "  --packet-port P        sensor packets, TCP and UDP (7000; 0 = off)\n"
          "  --frame-port P         camera frame stream, UDP (7001)\n"
          "  --max-clients N        concurrent TCP clients (4096)\n"
          "  --max-payload BYTES    larger packets are rejected as oversize (1024)\n"
          "  --source S             frames: udp | synthetic | replay:FILE | none (udp)\n"
          "  --synthetic-rate HZ    synthetic camera rate (10000)\n"
          "  --width W --height H   synthetic frame size / expected frame size (300x300)\n"
          "  --ions N               ions in synthetic frames (10)\n"
          "  --frame-slots N        frame ring slots, power of two (64)\n"
          "  --packet-ring-bytes N  packet ring size, power of two (64 MiB)\n"
          "  --overflow block|drop-newest   full ring policy (block)\n"
          "  --partial drop|deliver incomplete frames after the timeout (drop)\n"
          "  --frame-timeout-ms MS  frame reassembly timeout (100)\n"
          "  --record DIR           record everything published to DIR/*.rtdrec\n"
          "  --record-dir DIR       where `rtdaq record start` without a path records\n"
          "                         ($STATE_DIRECTORY or the working directory)\n"
          "  --cpu N                pin to CPU N\n"
          "  --fifo PRIO            SCHED_FIFO priority\n"
          "  --mlock                lock memory\n"
          "  --duration S           exit after S seconds\n"
          "  --frames N             stop the frame source after N frames\n"
          "  --io uring|epoll       receive back end (uring; epoll where io_uring is blocked)\n"
          "  --recv-buf-size B      TCP provided-buffer size (65536)\n"
          "  --recv-buf-count N     TCP provided buffers, power of two (512)\n"
          "  --quiet                log warnings and errors only\n",
          out);
}

static int is_pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

static int parse_u64(const char *opt, const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "rtdaq-acq: %s %s: expected an integer in [%llu, %llu]\n", opt, s,
                (unsigned long long)lo, (unsigned long long)hi);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

int rtd_acq_config_parse(struct rtd_acq_config *c, int argc, char **argv)
{
    enum {
        O_INSTANCE = 256,
        O_BIND,
        O_PPORT,
        O_FPORT,
        O_MAXCL,
        O_MAXPL,
        O_SOURCE,
        O_SRATE,
        O_W,
        O_H,
        O_IONS,
        O_SLOTS,
        O_PRB,
        O_OVF,
        O_PARTIAL,
        O_FTO,
        O_RECORD,
        O_CPU,
        O_FIFO,
        O_MLOCK,
        O_DUR,
        O_FRAMES,
        O_IO,
        O_RBS,
        O_RBC,
        O_QUIET,
        O_RECDIR,
        O_HELP
    };
    static const struct option opts[] = {
        {"instance", required_argument, 0, O_INSTANCE},
        {"bind", required_argument, 0, O_BIND},
        {"packet-port", required_argument, 0, O_PPORT},
        {"frame-port", required_argument, 0, O_FPORT},
        {"max-clients", required_argument, 0, O_MAXCL},
        {"max-payload", required_argument, 0, O_MAXPL},
        {"source", required_argument, 0, O_SOURCE},
        {"synthetic-rate", required_argument, 0, O_SRATE},
        {"width", required_argument, 0, O_W},
        {"height", required_argument, 0, O_H},
        {"ions", required_argument, 0, O_IONS},
        {"frame-slots", required_argument, 0, O_SLOTS},
        {"packet-ring-bytes", required_argument, 0, O_PRB},
        {"overflow", required_argument, 0, O_OVF},
        {"partial", required_argument, 0, O_PARTIAL},
        {"frame-timeout-ms", required_argument, 0, O_FTO},
        {"record", required_argument, 0, O_RECORD},
        {"cpu", required_argument, 0, O_CPU},
        {"fifo", required_argument, 0, O_FIFO},
        {"mlock", no_argument, 0, O_MLOCK},
        {"duration", required_argument, 0, O_DUR},
        {"frames", required_argument, 0, O_FRAMES},
        {"io", required_argument, 0, O_IO},
        {"recv-buf-size", required_argument, 0, O_RBS},
        {"recv-buf-count", required_argument, 0, O_RBC},
        {"quiet", no_argument, 0, O_QUIET},
        {"record-dir", required_argument, 0, O_RECDIR},
        {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0},
    };
    /* The configuration file ([rtdaq] and [acq]) and RTDAQ_* variables come before the flags.
     * The merged vector stays reachable until the next parse (the config copies every string
     * out of it, so the previous one can go). */
    static char **volatile merged; /* volatile: the store must stay for LeakSanitizer */
    char err[512];
    if (rtd_config_argv("acq", opts, &argc, &argv, err, sizeof err)) {
        fprintf(stderr, "rtdaq-acq: %s\n", err);
        return -EINVAL;
    }
    rtd_config_argv_free(merged);
    merged = argv;
    optind = 0; /* 0, not 1: glibc then also forgets a half-scanned option of a previous parse */
    int o;
    uint64_t v;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        const char *name = o >= O_INSTANCE && o <= O_HELP ? opts[o - O_INSTANCE].name : "?";
        char flag[40];
        snprintf(flag, sizeof flag, "--%s", name);
        switch (o) {
        case O_INSTANCE: {
            char tmp[128];
            if (rtd_shm_name(tmp, sizeof tmp, optarg, "frames")) {
                fprintf(stderr, "rtdaq-acq: --instance %s: invalid name\n", optarg);
                return -EINVAL;
            }
            snprintf(c->instance, sizeof c->instance, "%s", optarg);
            break;
        }
        case O_BIND:
            snprintf(c->bind, sizeof c->bind, "%s", optarg);
            break;
        case O_PPORT:
        case O_FPORT:
            if (parse_u64(flag, optarg, 0, 65535, &v))
                return -EINVAL;
            *(o == O_PPORT ? &c->packet_port : &c->frame_port) = (int)v;
            break;
        case O_MAXCL:
            if (parse_u64(flag, optarg, 1, 1 << 20, &v))
                return -EINVAL;
            c->max_clients = (uint32_t)v;
            break;
        case O_MAXPL:
            if (parse_u64(flag, optarg, 1, RTD_WIRE_PAYLOAD_LIMIT, &v))
                return -EINVAL;
            c->max_payload = (uint32_t)v;
            break;
        case O_SOURCE:
            if (!strcmp(optarg, "udp"))
                c->source = RTD_SRC_UDP;
            else if (!strcmp(optarg, "synthetic"))
                c->source = RTD_SRC_SYNTHETIC;
            else if (!strcmp(optarg, "none"))
                c->source = RTD_SRC_NONE;
            else if (!strcmp(optarg, "gvsp")) {
                /* Refused here, so --check-config says so too: nothing is accepted that the
                 * run would then fail on. */
                fprintf(stderr, "rtdaq-acq: --source gvsp: GigE Vision is not built into this "
                                "rtdaq-acq (not implemented yet; use udp, synthetic or replay)\n");
                return -EINVAL;
            } else if (!strncmp(optarg, "replay:", 7) && optarg[7]) {
                c->source = RTD_SRC_REPLAY;
                snprintf(c->replay_file, sizeof c->replay_file, "%s", optarg + 7);
            } else {
                fprintf(stderr,
                        "rtdaq-acq: --source %s: expected udp, synthetic, replay:FILE "
                        "or none\n",
                        optarg);
                return -EINVAL;
            }
            break;
        case O_SRATE:
        case O_DUR: {
            char *end;
            double d = strtod(optarg, &end);
            if (end == optarg || *end || !(d > 0) || d > 1e7) {
                fprintf(stderr, "rtdaq-acq: %s %s: expected a positive number\n", flag, optarg);
                return -EINVAL;
            }
            *(o == O_SRATE ? &c->synthetic_rate : &c->duration_s) = d;
            break;
        }
        case O_W:
        case O_H:
            if (parse_u64(flag, optarg, 8, 8192, &v))
                return -EINVAL;
            *(o == O_W ? &c->width : &c->height) = (uint32_t)v;
            break;
        case O_IONS:
            if (parse_u64(flag, optarg, 0, 64, &v))
                return -EINVAL;
            c->ions = (uint32_t)v;
            break;
        case O_SLOTS:
            if (parse_u64(flag, optarg, 2, 1 << 16, &v) || !is_pow2(v)) {
                fprintf(stderr, "rtdaq-acq: --frame-slots must be a power of two\n");
                return -EINVAL;
            }
            c->frame_slots = (uint32_t)v;
            break;
        case O_PRB:
            if (parse_u64(flag, optarg, 1 << 16, 1ull << 34, &v) || !is_pow2(v)) {
                fprintf(stderr,
                        "rtdaq-acq: --packet-ring-bytes must be a power of two >= 64 KiB\n");
                return -EINVAL;
            }
            c->packet_ring_bytes = v;
            break;
        case O_OVF:
            if (!strcmp(optarg, "block"))
                c->overflow = RTD_OVERFLOW_BLOCK;
            else if (!strcmp(optarg, "drop-newest"))
                c->overflow = RTD_OVERFLOW_DROP_NEWEST;
            else {
                fprintf(stderr, "rtdaq-acq: --overflow %s: expected block or drop-newest\n",
                        optarg);
                return -EINVAL;
            }
            break;
        case O_PARTIAL:
            if (!strcmp(optarg, "drop"))
                c->partial = RTD_PARTIAL_DROP;
            else if (!strcmp(optarg, "deliver"))
                c->partial = RTD_PARTIAL_DELIVER;
            else {
                fprintf(stderr, "rtdaq-acq: --partial %s: expected drop or deliver\n", optarg);
                return -EINVAL;
            }
            break;
        case O_FTO:
            if (parse_u64(flag, optarg, 1, 60000, &v))
                return -EINVAL;
            c->frame_timeout_ms = (uint32_t)v;
            break;
        case O_RECORD:
            snprintf(c->record_dir, sizeof c->record_dir, "%s", optarg);
            break;
        case O_CPU:
            if (parse_u64(flag, optarg, 0, 4095, &v))
                return -EINVAL;
            c->cpu = (int)v;
            break;
        case O_FIFO:
            if (parse_u64(flag, optarg, 1, 99, &v))
                return -EINVAL;
            c->fifo_prio = (int)v;
            break;
        case O_MLOCK:
            c->mlock = 1;
            break;
        case O_FRAMES:
            if (parse_u64(flag, optarg, 1, UINT64_MAX, &v))
                return -EINVAL;
            c->frames = v;
            break;
        case O_IO:
            if (!strcmp(optarg, "uring"))
                c->io = RTD_IO_URING;
            else if (!strcmp(optarg, "epoll"))
                c->io = RTD_IO_EPOLL;
            else {
                fprintf(stderr, "rtdaq-acq: --io %s: expected uring or epoll\n", optarg);
                return -EINVAL;
            }
            break;
        case O_RBS:
            if (parse_u64(flag, optarg, 4096, 1 << 20, &v))
                return -EINVAL;
            c->recv_buf_size = (uint32_t)v;
            break;
        case O_RBC:
            if (parse_u64(flag, optarg, 16, 32768, &v) || !is_pow2(v)) {
                fprintf(stderr, "rtdaq-acq: --recv-buf-count must be a power of two\n");
                return -EINVAL;
            }
            c->recv_buf_count = (uint32_t)v;
            break;
        case O_QUIET:
            c->quiet = 1;
            break;
        case O_RECDIR:
            snprintf(c->record_default, sizeof c->record_default, "%s", optarg);
            break;
        case O_HELP:
        case 'h':
            rtd_acq_usage(stdout);
            return 1;
        default:
            rtd_acq_usage(stderr);
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rtdaq-acq: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    return 0;
}
