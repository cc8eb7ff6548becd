/* SPDX-License-Identifier: MIT */
/*
 * Network simulators behind `rtdaq sim` and the acq benchmark: many paced
 * sensor clients from one process (TCP or UDP, the rtd_wire_pkt format with
 * sequence numbers, timestamps and float64 samples of a sum of sines plus
 * noise per client), and a UDP camera streaming rtd_wire_frag fragments of
 * synthetic ion frames.
 */
#ifndef RTD_SIM_H
#define RTD_SIM_H

#include <signal.h>
#include <stdint.h>

struct rtd_sim_packets_opts {
    const char *host; /* IPv4, default 127.0.0.1 */
    int port;
    uint32_t clients;
    double rate;     /* packets per second per client */
    uint32_t batch;  /* packets per write */
    uint32_t size;   /* payload bytes per packet (float64 samples; multiple of 8 advised) */
    double duration; /* seconds */
    int udp;
    uint32_t client_base; /* client ids are client_base + i */
};

struct rtd_sim_packets_result {
    uint64_t packets, bytes, writes, late_batches;
    uint32_t connected, connect_failed, send_errors;
    uint32_t reconnects;     /* connections made again after acq went away (restart) */
    uint64_t packets_unsent; /* generated but never sent: the batch in flight at a loss */
    double seconds;
};

/* Run until duration passes or *stop. 0 or -errno (connect failures are counted, not fatal). */
int rtd_sim_packets(const struct rtd_sim_packets_opts *o, volatile sig_atomic_t *stop,
                    struct rtd_sim_packets_result *res);

struct rtd_sim_frames_opts {
    const char *host;
    int port;
    uint32_t width, height, ions;
    double rate;         /* frames per second */
    double duration;     /* seconds, 0: until count */
    uint64_t count;      /* frames, 0: until duration */
    uint32_t dgram;      /* datagram bytes including the 56-byte header (8192) */
    int reorder;         /* send each frame's fragments in reverse order */
    uint32_t drop_every; /* omit one fragment of every N-th frame (tests partial frames) */
    uint64_t first_id;
};

struct rtd_sim_frames_result {
    uint64_t frames, datagrams, bytes, late, send_errors, omitted;
    double seconds;
};

int rtd_sim_frames(const struct rtd_sim_frames_opts *o, volatile sig_atomic_t *stop,
                   struct rtd_sim_frames_result *res);

#endif
