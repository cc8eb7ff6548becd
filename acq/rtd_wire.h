/* SPDX-License-Identifier: MIT */
/*
 * Wire formats that rtdaq-acq accepts on the network, and the layout of the
 * records it publishes into the "packets" ring. Everything here is
 * little-endian, fixed-width and naturally aligned; senders on other
 * architectures must byte-swap. Changing a layout bumps its version field.
 *
 * 1. Sensor packets (TCP stream or UDP datagrams on the packet port, default 7000)
 *
 *    offset size field
 *         0    4 magic    RTD_WIRE_PKT_MAGIC ("RTDP" in memory order)
 *         4    2 version  RTD_WIRE_PKT_VERSION
 *         6    2 flags    0 (reserved)
 *         8    4 client   sender's client id (any u32; unique per sensor)
 *        12    4 len      payload bytes that follow the header (1 .. --max-payload)
 *        16    8 seq      per-client sequence number, +1 per packet
 *        24    8 ts_ns    sender CLOCK_REALTIME when the sample was taken (ns)
 *        32  len payload  samples: little-endian float64 values (len/8 of them;
 *                         trailing bytes of an incomplete sample are opaque)
 *
 *    On TCP the packets follow each other back to back in the stream; a write
 *    may carry any number of them (804 is typical) and a packet may be split
 *    across reads. A UDP datagram carries one or more whole packets.
 *
 * 2. Camera frame fragments (UDP datagrams on the frame port, default 7001)
 *
 *    offset size field
 *         0    4 magic      RTD_WIRE_FRAG_MAGIC ("RTDF")
 *         4    2 version    RTD_WIRE_FRAG_VERSION
 *         6    2 hdr_len    sizeof(struct rtd_wire_frag) (lets v1 readers skip v1.x additions)
 *         8    8 frame_id   camera frame counter
 *        16    4 index      fragment index, 0 .. count-1
 *        20    4 count      fragments in this frame
 *        24    4 width      pixels per row
 *        28    4 height     rows
 *        32    4 pixfmt     RTD_PIXFMT_* of shm/rtd_abi.h (RTD_PIXFMT_MONO16 = 2)
 *        36    4 frame_bytes total pixel bytes of the frame
 *        40    4 offset     byte offset of this fragment's payload in the frame
 *        44    4 len        payload bytes in this datagram
 *        48    8 ts_ns      sender CLOCK_REALTIME at exposure (ns)
 *        56  len payload    pixels, row-major [row][col]
 *
 * 3. Records in the "packets" ring (type RTD_ACQ_REC_PACKET): the ring's own
 *    struct rtd_pkt_hdr (len, type, flags, seq, ts_mono_ns = acq receive time),
 *    then struct rtd_acq_pkt below (24 bytes), then the sensor payload exactly
 *    as received (float64 samples). The ring header's len = 24 + payload bytes.
 */
#ifndef RTD_WIRE_H
#define RTD_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "rtd_abi.h" /* RTD_PIXFMT_*, RTD_FRAME_PARTIAL */

#define RTD_WIRE_PKT_MAGIC    0x50445452u /* "RTDP" little-endian */
#define RTD_WIRE_PKT_VERSION  1
#define RTD_WIRE_FRAG_MAGIC   0x46445452u /* "RTDF" little-endian */
#define RTD_WIRE_FRAG_VERSION 1

/* Largest payload any configuration accepts: a ring record is at most 64 KiB. */
#define RTD_WIRE_PAYLOAD_LIMIT 65000u
/* Default --max-payload: sensors send 16-32 B; anything far larger is a broken sender. */
#define RTD_WIRE_PAYLOAD_DEFAULT 1024u

/* Frame-ring record type written by acq (hdr->type) for u16 mono frames. */
enum { RTD_ACQ_FRAME_MONO16 = 1 };
/* Packet-ring record types written by acq. */
enum { RTD_ACQ_REC_PACKET = 1 };

struct rtd_wire_pkt {
    uint32_t magic;
    uint16_t version;
    uint16_t flags;
    uint32_t client;
    uint32_t len;
    uint64_t seq;
    uint64_t ts_ns;
};
_Static_assert(sizeof(struct rtd_wire_pkt) == 32, "wire packet header is 32 bytes");
_Static_assert(offsetof(struct rtd_wire_pkt, seq) == 16, "wire layout");
_Static_assert(offsetof(struct rtd_wire_pkt, ts_ns) == 24, "wire layout");

struct rtd_wire_frag {
    uint32_t magic;
    uint16_t version;
    uint16_t hdr_len;
    uint64_t frame_id;
    uint32_t index;
    uint32_t count;
    uint32_t width;
    uint32_t height;
    uint32_t pixfmt;
    uint32_t frame_bytes;
    uint32_t offset;
    uint32_t len;
    uint64_t ts_ns;
};
_Static_assert(sizeof(struct rtd_wire_frag) == 56, "frame fragment header is 56 bytes");
_Static_assert(offsetof(struct rtd_wire_frag, ts_ns) == 48, "wire layout");

/* Payload of a RTD_ACQ_REC_PACKET record in the "packets" ring (after struct rtd_pkt_hdr). */
struct rtd_acq_pkt {
    uint32_t client;   /* from the wire header */
    uint32_t len;      /* sensor payload bytes that follow */
    uint64_t seq;      /* sender's sequence number */
    uint64_t ts_ns;    /* sender CLOCK_REALTIME (ns) */
    uint8_t payload[]; /* float64 little-endian samples */
};
_Static_assert(sizeof(struct rtd_acq_pkt) == 24, "packet record prefix is 24 bytes");

/*
 * Ground truth the synthetic camera leaves in the frame-ring slot, after the
 * pixels (at byte offset width*height*2, 8-aligned) when the slot has room:
 * lets tests and demos check fitted positions.
 */
#define RTD_SYNTH_TRUTH_MAGIC 0x48545254u /* "TRTH" */
struct rtd_synth_truth {
    uint32_t magic;
    uint32_t n_ions;
    struct {
        float x, y, amp, sigma;
    } ion[64];
};

#endif
