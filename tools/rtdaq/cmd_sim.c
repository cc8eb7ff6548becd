/* SPDX-License-Identifier: MIT */
/*
 * `rtdaq sim packets|frames`: the sensor-client and camera simulators (the
 * engines are in acq/sim.c). Prints what was sent, or one JSON object with --json.
 */
#include "rtdaq_cli.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rtd_sim.h"

static volatile sig_atomic_t sim_stop;

static void sim_on_signal(int sig)
{
    (void)sig;
    sim_stop = 1;
}

static const char sim_usage[] =
    "usage: rtdaq sim packets [--clients N] [--rate HZ] [--batch B] [--size S] [--duration T]\n"
    "                         [--udp] [--host H] [--port P] [--client-base ID] [--json]\n"
    "       rtdaq sim frames [--width W] [--height H] [--rate HZ] [--duration T] [--count N]\n"
    "                        [--host H] [--port P] [--dgram BYTES] [--ions N] [--reorder]\n"
    "                        [--drop-every N] [--first-id ID] [--json]\n"
    "packets: N TCP (or UDP) clients, each sending B packets of S payload bytes per write at\n"
    "HZ packets/s per client, for T seconds (defaults 10 clients, 1000 Hz, batch 10, 32 B, 5 s,\n"
    "127.0.0.1:7000). frames: a UDP camera (defaults 300x300 u16, 100 Hz, 5 s, port 7001,\n"
    "8192-byte datagrams).\n";

static int num(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "rtdaq sim: %s %s: expected a number in [%g, %g]\n", opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int sim_packets(int argc, char **argv)
{
    struct rtd_sim_packets_opts o = {.host = "127.0.0.1",
                                     .port = 7000,
                                     .clients = 10,
                                     .rate = 1000,
                                     .batch = 10,
                                     .size = 32,
                                     .duration = 5};
    int json = 0;
    static const struct option opts[] = {{"clients", required_argument, 0, 'c'},
                                         {"rate", required_argument, 0, 'r'},
                                         {"batch", required_argument, 0, 'b'},
                                         {"size", required_argument, 0, 's'},
                                         {"duration", required_argument, 0, 'd'},
                                         {"udp", no_argument, 0, 'u'},
                                         {"host", required_argument, 0, 'H'},
                                         {"port", required_argument, 0, 'p'},
                                         {"client-base", required_argument, 0, 'B'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    double v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (num("--clients", optarg, 1, 100000, &v))
                return RTD_EXIT_USAGE;
            o.clients = (uint32_t)v;
            break;
        case 'r':
            if (num("--rate", optarg, 0.001, 1e9, &v))
                return RTD_EXIT_USAGE;
            o.rate = v;
            break;
        case 'b':
            if (num("--batch", optarg, 1, 100000, &v))
                return RTD_EXIT_USAGE;
            o.batch = (uint32_t)v;
            break;
        case 's':
            if (num("--size", optarg, 1, 65000, &v))
                return RTD_EXIT_USAGE;
            o.size = (uint32_t)v;
            break;
        case 'd':
            if (num("--duration", optarg, 0.001, 1e6, &v))
                return RTD_EXIT_USAGE;
            o.duration = v;
            break;
        case 'u':
            o.udp = 1;
            break;
        case 'H':
            o.host = optarg;
            break;
        case 'p':
            if (num("--port", optarg, 1, 65535, &v))
                return RTD_EXIT_USAGE;
            o.port = (int)v;
            break;
        case 'B':
            if (num("--client-base", optarg, 0, 4294967295.0, &v))
                return RTD_EXIT_USAGE;
            o.client_base = (uint32_t)v;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            fputs(sim_usage, stdout);
            return RTD_EXIT_OK;
        default:
            fputs(sim_usage, stderr);
            return RTD_EXIT_USAGE;
        }
    }
    struct rtd_sim_packets_result r;
    int rc = rtd_sim_packets(&o, &sim_stop, &r);
    if (rc) {
        fprintf(stderr, "rtdaq sim packets: %s:%d: %s\n", o.host, o.port, strerror(-rc));
        return rc == -EINVAL ? RTD_EXIT_USAGE : RTD_EXIT_FAIL;
    }
    if (!r.connected) {
        fprintf(stderr, "rtdaq sim packets: no client could connect to %s:%d\n", o.host, o.port);
        return RTD_EXIT_UNREACHABLE;
    }
    double s = r.seconds > 0 ? r.seconds : 1;
    if (json)
        printf("{\"sim\":\"packets\",\"transport\":\"%s\",\"clients\":%u,\"connected\":%u,"
               "\"connect_failed\":%u,\"packets\":%llu,\"bytes\":%llu,\"writes\":%llu,"
               "\"late_batches\":%llu,\"send_errors\":%u,\"reconnects\":%u,"
               "\"packets_unsent\":%llu,\"seconds\":%.3f,"
               "\"packets_per_s\":%.0f,\"mb_per_s\":%.1f}\n",
               o.udp ? "udp" : "tcp", o.clients, r.connected, r.connect_failed,
               (unsigned long long)r.packets, (unsigned long long)r.bytes,
               (unsigned long long)r.writes, (unsigned long long)r.late_batches, r.send_errors,
               r.reconnects, (unsigned long long)r.packets_unsent, r.seconds, (double)r.packets / s,
               (double)r.bytes / s / 1e6);
    else
        printf("sent %llu packets (%llu bytes, %llu writes) from %u/%u %s clients in %.2f s: "
               "%.0f packets/s, %.1f MB/s; late batches %llu, send errors %u, reconnects %u "
               "(%llu packets lost in flight)\n",
               (unsigned long long)r.packets, (unsigned long long)r.bytes,
               (unsigned long long)r.writes, r.connected, o.clients, o.udp ? "UDP" : "TCP",
               r.seconds, (double)r.packets / s, (double)r.bytes / s / 1e6,
               (unsigned long long)r.late_batches, r.send_errors, r.reconnects,
               (unsigned long long)r.packets_unsent);
    return r.send_errors || r.connect_failed ? RTD_EXIT_FAIL : RTD_EXIT_OK;
}

static int sim_frames(int argc, char **argv)
{
    struct rtd_sim_frames_opts o = {.host = "127.0.0.1",
                                    .port = 7001,
                                    .width = 300,
                                    .height = 300,
                                    .ions = 10,
                                    .rate = 100,
                                    .dgram = 8192};
    int json = 0;
    static const struct option opts[] = {{"width", required_argument, 0, 'W'},
                                         {"height", required_argument, 0, 'E'},
                                         {"rate", required_argument, 0, 'r'},
                                         {"duration", required_argument, 0, 'd'},
                                         {"count", required_argument, 0, 'n'},
                                         {"host", required_argument, 0, 'H'},
                                         {"port", required_argument, 0, 'p'},
                                         {"dgram", required_argument, 0, 'g'},
                                         {"ions", required_argument, 0, 'i'},
                                         {"reorder", no_argument, 0, 'R'},
                                         {"drop-every", required_argument, 0, 'D'},
                                         {"first-id", required_argument, 0, 'F'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    double v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'W':
        case 'E':
            if (num(c == 'W' ? "--width" : "--height", optarg, 8, 8192, &v))
                return RTD_EXIT_USAGE;
            *(c == 'W' ? &o.width : &o.height) = (uint32_t)v;
            break;
        case 'r':
            if (num("--rate", optarg, 0.001, 1e6, &v))
                return RTD_EXIT_USAGE;
            o.rate = v;
            break;
        case 'd':
            if (num("--duration", optarg, 0.001, 1e6, &v))
                return RTD_EXIT_USAGE;
            o.duration = v;
            break;
        case 'n':
            if (num("--count", optarg, 1, 1e15, &v))
                return RTD_EXIT_USAGE;
            o.count = (uint64_t)v;
            break;
        case 'H':
            o.host = optarg;
            break;
        case 'p':
            if (num("--port", optarg, 1, 65535, &v))
                return RTD_EXIT_USAGE;
            o.port = (int)v;
            break;
        case 'g':
            if (num("--dgram", optarg, 256, 65507, &v))
                return RTD_EXIT_USAGE;
            o.dgram = (uint32_t)v;
            break;
        case 'i':
            if (num("--ions", optarg, 0, 64, &v))
                return RTD_EXIT_USAGE;
            o.ions = (uint32_t)v;
            break;
        case 'R':
            o.reorder = 1;
            break;
        case 'D':
            if (num("--drop-every", optarg, 1, 1e9, &v))
                return RTD_EXIT_USAGE;
            o.drop_every = (uint32_t)v;
            break;
        case 'F':
            if (num("--first-id", optarg, 0, 1e15, &v))
                return RTD_EXIT_USAGE;
            o.first_id = (uint64_t)v;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            fputs(sim_usage, stdout);
            return RTD_EXIT_OK;
        default:
            fputs(sim_usage, stderr);
            return RTD_EXIT_USAGE;
        }
    }
    if (!o.count && !(o.duration > 0))
        o.duration = 5;
    struct rtd_sim_frames_result r;
    int rc = rtd_sim_frames(&o, &sim_stop, &r);
    if (rc) {
        fprintf(stderr, "rtdaq sim frames: %s:%d: %s\n", o.host, o.port, strerror(-rc));
        return rc == -EINVAL ? RTD_EXIT_USAGE : RTD_EXIT_FAIL;
    }
    double s = r.seconds > 0 ? r.seconds : 1;
    if (json)
        printf("{\"sim\":\"frames\",\"width\":%u,\"height\":%u,\"frames\":%llu,\"datagrams\":%llu,"
               "\"bytes\":%llu,\"omitted\":%llu,\"late\":%llu,\"send_errors\":%llu,"
               "\"seconds\":%.3f,\"frames_per_s\":%.1f,\"mb_per_s\":%.1f}\n",
               o.width, o.height, (unsigned long long)r.frames, (unsigned long long)r.datagrams,
               (unsigned long long)r.bytes, (unsigned long long)r.omitted,
               (unsigned long long)r.late, (unsigned long long)r.send_errors, r.seconds,
               (double)r.frames / s, (double)r.bytes / s / 1e6);
    else
        printf("sent %llu frames %ux%u (%llu datagrams, %llu bytes) in %.2f s: %.1f frames/s, "
               "%.1f MB/s; late %llu, send errors %llu\n",
               (unsigned long long)r.frames, o.width, o.height, (unsigned long long)r.datagrams,
               (unsigned long long)r.bytes, r.seconds, (double)r.frames / s,
               (double)r.bytes / s / 1e6, (unsigned long long)r.late,
               (unsigned long long)r.send_errors);
    return r.send_errors ? RTD_EXIT_FAIL : RTD_EXIT_OK;
}

int rtd_cmd_sim(int argc, char **argv)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = sim_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (argc >= 2 && !strcmp(argv[1], "packets"))
        return sim_packets(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "frames"))
        return sim_frames(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(sim_usage, stdout);
        return RTD_EXIT_OK;
    }
    fputs(sim_usage, stderr);
    return RTD_EXIT_USAGE;
}
