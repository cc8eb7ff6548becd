/* SPDX-License-Identifier: MIT */
/*
 * rtdaq-acq as a library: the configuration (filled with defaults, then from
 * argv, later also from a config file by ctl/), and the daemon's run function.
 * The executable is a thin main() over these, so benchmarks and tests can run
 * the same ingest loop in a forked child.
 */
#ifndef RTD_ACQ_H
#define RTD_ACQ_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "rtd_wire.h"

/* Where camera frames come from. GigE Vision (GVSP) is the next source to add. */
enum rtd_acq_source {
    RTD_SRC_NONE = 0,
    RTD_SRC_UDP = 1,       /* the rtd_wire_frag stream on --frame-port */
    RTD_SRC_SYNTHETIC = 2, /* rendered in-process: Gaussian ions + Poisson noise */
    RTD_SRC_REPLAY = 3,    /* frames of a recording (--source replay:FILE) */
    RTD_SRC_GVSP = 4,      /* reserved: GigE Vision stream (not implemented) */
};

/* Receive back end for sensor packets. */
enum rtd_acq_io { RTD_IO_URING = 0, RTD_IO_EPOLL = 1 };

enum rtd_acq_partial { RTD_PARTIAL_DROP = 0, RTD_PARTIAL_DELIVER = 1 };

struct rtd_acq_config {
    char instance[32];
    char bind[64];        /* IPv4 address, default 127.0.0.1 */
    int packet_port;      /* TCP and UDP; 0 disables packet input */
    int frame_port;       /* UDP frame stream */
    uint32_t max_clients; /* concurrent TCP connections */
    uint32_t max_payload; /* bytes; larger packets are "oversize" */
    enum rtd_acq_source source;
    char replay_file[256];
    double synthetic_rate;  /* Hz */
    uint32_t width, height; /* synthetic camera */
    uint32_t ions;
    uint32_t frame_slots;       /* power of two */
    uint64_t packet_ring_bytes; /* power of two */
    int overflow;               /* enum rtd_overflow */
    enum rtd_acq_partial partial;
    uint32_t frame_timeout_ms;
    char record_dir[256];     /* empty: no recording */
    char record_default[256]; /* where `rtdaq record start` without a path writes */
    int cpu;                  /* -1: not pinned */
    int fifo_prio;            /* 0: leave the policy alone */
    int mlock;
    double duration_s; /* 0: run until signalled */
    uint64_t frames;   /* 0: unlimited */
    enum rtd_acq_io io;
    uint32_t recv_buf_size;  /* provided-buffer size for TCP receives */
    uint32_t recv_buf_count; /* power of two */
    uint32_t udp_rcvbuf;     /* SO_RCVBUFFORCE bytes for the UDP sockets */
    int quiet;
};

/* Defaults (documented in docs/acq.md); instance from $RTDAQ_INSTANCE or "default". */
void rtd_acq_config_defaults(struct rtd_acq_config *cfg);
/*
 * Parse command-line options into cfg (over the defaults or a file's values).
 * 0 ok, 1 for --help (usage printed), -EINVAL for bad usage (message printed).
 */
int rtd_acq_config_parse(struct rtd_acq_config *cfg, int argc, char **argv);
void rtd_acq_usage(FILE *out);

/*
 * Run the daemon until *stop becomes non-zero, --duration passes or (with
 * --frames and no packet input) the frame source ends. 0 on a clean stop,
 * -errno when start-up failed (the reason was logged).
 */
int rtd_acq_run(const struct rtd_acq_config *cfg, volatile sig_atomic_t *stop);

#endif
