/* SPDX-License-Identifier: MIT */
/*
 * State shared by acq's ingest pieces: the io_uring loop (acq.c), the epoll
 * fallback (acq_epoll.c), the packet parser, frame reassembly and the frame
 * sources (ingest.c). One thread owns all of it; nothing here is shared
 * between processes except through the rings and the stats segment.
 */
#ifndef RTD_ACQ_INTERNAL_H
#define RTD_ACQ_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "rtd_acq.h"
#include "rtd_rec.h"
#include "rtd_shm.h"
#include "rtd_synth.h"

enum acq_counter {
    C_PKT_RX,
    C_PKT_BYTES,
    C_PKT_GAPS,
    C_PKT_REORDER,
    C_BAD_MAGIC,
    C_BAD_VERSION,
    C_BAD_LENGTH,
    C_OVERSIZE,
    C_CLIENTS_ACTIVE,
    C_CLIENTS_ACCEPTED,
    C_CLIENTS_REJECTED,
    C_CLIENTS_VANISHED,
    C_CLIENTS_UNTRACKED,
    C_FRAMES_RX,
    C_FRAMES_PARTIAL,
    C_FRAMES_DROPPED,
    C_FRAMES_TIMEOUT,
    C_FRAGS_RX,
    C_FRAGS_BAD,
    C_FRAGS_LATE,
    C_FRAGS_DUP,
    C_FRAGS_MISMATCH,
    C_FRAGS_MM_COUNT,
    C_FRAGS_MM_GEOMETRY,
    C_FRAGS_MM_LAYOUT,
    C_FRAMES_ID_RESTARTS,
    C_RING_DROPPED,
    C_RING_FULL_WAITS,
    C_RING_FRAMES_DROPPED,
    C_UDP_DGRAMS,
    C_UDP_TRUNC,
    C_REC_RECORDS,
    C_REC_DROPPED,
    C_REC_BYTES,
    C_FRAMES_RATE_LIMITED,
    C_IO_ENOBUFS,
    C_IO_CQES,
    C_IO_BATCHES,
    C_PKT_RATE_LIMITED,
    C_FRAMES_ROI_OUTSIDE,
    C_CTL_READ_BUSY,
    /* Reasons within frames.dropped (with ring.frames_dropped): see docs/operate.md. */
    C_FRAMES_CAMERA_SKIPPED,
    C_FRAMES_DROPPED_PARTIAL,
    C_FRAMES_TOO_LARGE,
    C_N
};

struct acq_client {
    uint32_t id, used;
    uint64_t next_seq;
    uint64_t rx, bytes, gaps, reorder;
    uint64_t lat_sum_ns, lat_max_ns; /* sender -> acq; the max is per 1 s window */
    _Atomic uint64_t *c_rx, *c_bytes, *c_gaps, *c_reorder, *c_lat_sum, *c_lat_max;
};

/* One TCP connection's reassembly state: a packet split across reads waits in part. */
struct acq_stream {
    uint32_t have;
    uint8_t *part; /* sizeof(struct rtd_wire_pkt) + max_payload bytes */
    struct acq_client *cl;
};

/*
 * The frame being reassembled. Its first fragment fixes count, geometry and the
 * fragment size `chunk` (fragment i covers [i*chunk, min((i+1)*chunk, frame_bytes))),
 * so count distinct indices cover the frame exactly once; every later fragment must
 * agree with all of them or it is refused (frames.mismatch_*).
 */
struct acq_fasm {
    int active, skip, have_last;
    uint64_t frame_id, skip_id, last_id;
    struct rtd_frame f;
    uint32_t count, got, frame_bytes, width, height, pixfmt, chunk;
    uint64_t ts_real, start_ns;
    uint64_t *bits;
    uint32_t bits_words;
};

struct acq {
    const struct rtd_acq_config *cfg;
    volatile sig_atomic_t *stop;
    struct rtd_ring *pring, *fring;
    struct rtd_stats *stats;
    struct rtd_hist *h_pkt, *h_frame;
    /* Packet latency buckets counted locally (a locked add per packet costs ~7 % of a core
     * at 10 M packets/s) and stored into the shared histogram every 100 ms. */
    uint64_t lat_pkt[RTD_HIST_BUCKETS];
    uint64_t cnt[C_N];
    _Atomic uint64_t *shm_cnt[C_N];
    _Atomic uint64_t dummy;

    struct acq_client *clients;
    uint32_t client_mask, n_clients, client_limit;

    int pending_publish;
    uint64_t now_real, now_mono;

    struct acq_fasm fasm;
    uint32_t slot_payload;
    uint64_t frames_out; /* frames the source published (for --frames) */
    int source_done;

    struct rtd_synth synth;
    uint64_t synth_next_ns, synth_period_ns, synth_id;
    uint64_t synth_backlog; /* frames the synthetic camera buffers before it drops */
    struct rtd_rec_reader *replay;
    uint64_t replay_t0_rec, replay_t0_now;
    struct rtd_rec_record replay_rec; /* next frame, waiting for its time */
    int replay_have;

    struct rtd_rec_writer *rec;
    char rec_path[512];

    /* Acquisition state driven by rtdaq-ctl (ctlpoll.c); acquiring from start-up without it. */
    int acquiring;
    uint64_t acq_target, acq_done; /* target 0: continuous */
    uint64_t frame_min_interval_ns, last_frame_ns;
    uint64_t frame_next_due_ns; /* frame pacing: the next frame accepted at or after this */
    uint64_t pkt_rate;          /* acq.packet_rate_limit, packets/s (0 = unlimited) */
    uint64_t pkt_tokens_milli;  /* token bucket in thousandths of a packet */
    uint64_t pkt_tokens_ns;     /* when the bucket was last filled */
    /* acq.roi.*: published region (w/h 0 = to the frame's edge; all 0 = whole frame). */
    uint32_t roi_x, roi_y, roi_w, roi_h;
    uint32_t geom_w, geom_h; /* last frame geometry seen (0 = none yet) */
    struct acq_ctl *ctl;
};

/* ingest.c */
int acq_setup(struct acq *a, const struct rtd_acq_config *cfg, volatile sig_atomic_t *stop);
void acq_teardown(struct acq *a);
/* Parse n stream bytes of one TCP connection. 0, or -EBADMSG: close this connection. */
int acq_parse_stream(struct acq *a, struct acq_stream *s, const uint8_t *p, size_t n);
/* One UDP datagram of packets. */
void acq_parse_datagram(struct acq *a, const uint8_t *p, size_t n);
void acq_publish_packets(struct acq *a);
/* One frame-fragment datagram. */
void acq_frame_fragment(struct acq *a, const uint8_t *p, size_t n);
/* Run the synthetic/replay source; returns ns until its next frame (UINT64_MAX: none). */
uint64_t acq_source_poll(struct acq *a);
/* Every ~100 ms: counters, timeouts, recorder, liveness. */
void acq_housekeeping(struct acq *a, int second);
void acq_stream_init(struct acq *a, struct acq_stream *s);
void acq_stream_free(struct acq_stream *s);
int acq_udp_socket(const struct rtd_acq_config *cfg, int port);
int acq_tcp_listener(const struct rtd_acq_config *cfg);

/* Recording on/off at run time (path NULL: --record DIR, else the working directory). */
int acq_recording_start(struct acq *a, const char *path);
int acq_recording_stop(struct acq *a);

/* ctlpoll.c: poll rtdaq-ctl's control block (every ~10 ms). */
#define ACQ_CTL_POLL_NS 10000000ull
void acq_ctl_poll(struct acq *a);
void acq_ctl_close(struct acq *a);

/* acq_epoll.c */
int acq_run_epoll(struct acq *a);

#endif
