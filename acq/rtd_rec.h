/* SPDX-License-Identifier: MIT */
/*
 * Recordings: a versioned file of timestamped, checksummed records (packets
 * and frames as acq published them), a periodic index and a JSON sidecar with
 * the configuration. Written through io_uring by one thread; read by anyone
 * through the reader API below (mmap, zero copy).
 *
 * File layout (all little-endian; docs/acq.md has the full description):
 *
 *   struct rtd_rec_file_hdr   64 B, magic "RTDAQREC", version, creation time, crc32c
 *   record*                   struct rtd_rec_hdr (40 B) + payload, padded to 8 B
 *   RTD_REC_END record        only when the writer closed cleanly
 *
 * Every record's crc32c covers its header (crc field zero) and its payload, so
 * a reader stops at the first damaged or incomplete record and everything
 * before it is good. Every RTD_REC_INDEX_EVERY data records the writer adds an
 * RTD_REC_INDEX record (file offsets and times of the data records since the
 * previous index, every RTD_REC_INDEX_STRIDE-th one); the END record points at
 * the last index. A file cut short by a crash has no END: the reader rebuilds
 * what it needs by scanning (rtd_rec_seek does that transparently).
 */
#ifndef RTD_REC_H
#define RTD_REC_H

#include <stddef.h>
#include <stdint.h>

#define RTD_REC_MAGIC        "RTDAQREC"
#define RTD_REC_MAJOR        1
#define RTD_REC_MINOR        0
#define RTD_REC_REC_MAGIC    0x43455252u /* "RREC" */
#define RTD_REC_INDEX_EVERY  4096
#define RTD_REC_INDEX_STRIDE 64

enum rtd_rec_type {
    RTD_REC_PACKET = 1, /* payload: struct rtd_acq_pkt + samples (as in the packets ring) */
    RTD_REC_FRAME = 2,  /* payload: struct rtd_rec_frame + pixels */
    RTD_REC_INDEX = 3,  /* payload: struct rtd_rec_index + entries */
    RTD_REC_END = 4,    /* payload: struct rtd_rec_end */
};

struct rtd_rec_file_hdr {
    char magic[8];            /* RTD_REC_MAGIC, no terminator */
    uint16_t major, minor;    /* a reader refuses another major */
    uint32_t hdr_len;         /* 64: records start here */
    uint64_t created_real_ns; /* CLOCK_REALTIME at creation */
    uint64_t created_mono_ns; /* CLOCK_MONOTONIC at creation (record times are on this clock) */
    uint32_t index_every, index_stride;
    char instance[16]; /* acq instance that recorded it (truncated) */
    uint32_t flags;    /* 0 */
    uint32_t crc;      /* crc32c of these 64 bytes with crc = 0 */
};
_Static_assert(sizeof(struct rtd_rec_file_hdr) == 64, "recording file header is 64 bytes");

struct rtd_rec_hdr {
    uint32_t magic;      /* RTD_REC_REC_MAGIC */
    uint32_t len;        /* payload bytes (padding to 8 not included) */
    uint16_t type;       /* enum rtd_rec_type */
    uint16_t flags;      /* frames: RTD_FRAME_PARTIAL as in the ring */
    uint32_t crc;        /* crc32c(header with crc = 0, payload) */
    uint64_t seq;        /* record number in the file, from 0, +1 per record */
    uint64_t ts_mono_ns; /* when acq published it (CLOCK_MONOTONIC) */
    uint64_t ts_real_ns; /* the same instant on CLOCK_REALTIME */
};
_Static_assert(sizeof(struct rtd_rec_hdr) == 40, "record header is 40 bytes");

struct rtd_rec_frame {
    uint64_t frame_id;
    uint32_t width, height, pixfmt, flags;
    uint64_t ts_real_ns; /* camera/sender timestamp */
};
_Static_assert(sizeof(struct rtd_rec_frame) == 32, "frame record prefix is 32 bytes");

struct rtd_rec_index {
    uint64_t prev_index; /* file offset of the previous INDEX record, 0 for the first */
    uint32_t n, pad;     /* entries that follow */
    /* struct rtd_rec_index_entry entry[n]; */
};
struct rtd_rec_index_entry {
    uint64_t offset;     /* file offset of a data record */
    uint64_t ts_mono_ns; /* its time */
};

struct rtd_rec_end {
    uint64_t records;    /* data records in the file */
    uint64_t last_index; /* file offset of the last INDEX record, 0 if none */
};

/* crc32c (Castagnoli), SSE4.2 when the CPU has it. crc = 0 to start. */
uint32_t rtd_crc32c(uint32_t crc, const void *buf, size_t len);

/* ---- writer ------------------------------------------------------------- */

struct rtd_rec_writer; /* opaque */

/*
 * Create path (truncating) and its sidecar path + ".json" holding config_json
 * (a JSON object text, may be NULL). Writes go through an io_uring of the
 * writer's own in buf_bytes chunks (0: 4 MiB), up to 8 in flight.
 */
int rtd_rec_writer_open(struct rtd_rec_writer **out, const char *path, const char *instance,
                        const char *config_json, size_t buf_bytes);
/*
 * Append one record whose payload is a (len_a bytes) followed by b (len_b).
 * Returns 0 or -errno; -ENOBUFS when every chunk is still being written (the
 * record is counted in dropped and skipped: the caller is never blocked).
 */
int rtd_rec_write(struct rtd_rec_writer *w, uint16_t type, uint16_t flags, uint64_t ts_mono_ns,
                  uint64_t ts_real_ns, const void *a, uint32_t len_a, const void *b,
                  uint32_t len_b);
/* Submit the partly filled chunk and reap finished writes (call every ~100 ms). */
int rtd_rec_flush(struct rtd_rec_writer *w);
/* Records written and dropped so far, bytes. */
void rtd_rec_writer_stats(const struct rtd_rec_writer *w, uint64_t *records, uint64_t *dropped,
                          uint64_t *bytes);
/* Write the END record, wait for every write, fsync, rewrite the sidecar; 0 or -errno. */
int rtd_rec_writer_close(struct rtd_rec_writer *w);

/* ---- reader ------------------------------------------------------------- */

struct rtd_rec_reader; /* opaque */

struct rtd_rec_record {
    const struct rtd_rec_hdr *hdr; /* in the mapping */
    const void *payload;           /* hdr->len bytes */
    uint64_t offset;               /* file offset of hdr */
};

/* Map path read-only and check the file header: -EPROTO other major or bad magic, -EBADMSG bad
 * crc or a header length that is not a multiple of 8 (or past the end).
 */
int rtd_rec_open(struct rtd_rec_reader **out, const char *path);
/*
 * Next data record (PACKET or FRAME; INDEX and END are consumed silently).
 * 1 a record, 0 end of file (rtd_rec_complete() says whether END was seen),
 * -EBADMSG damaged record (bad magic, length or checksum), -ENODATA the file
 * ends inside a record (cut short). rtd_rec_error() describes the problem.
 */
int rtd_rec_next(struct rtd_rec_reader *r, struct rtd_rec_record *rec);
/* Position so that next() returns the first data record at or after ts_mono_ns. */
int rtd_rec_seek(struct rtd_rec_reader *r, uint64_t ts_mono_ns);
const struct rtd_rec_file_hdr *rtd_rec_header(const struct rtd_rec_reader *r);
int rtd_rec_complete(const struct rtd_rec_reader *r);
uint64_t rtd_rec_records_read(const struct rtd_rec_reader *r);
uint64_t rtd_rec_file_size(const struct rtd_rec_reader *r);
uint64_t rtd_rec_offset(const struct rtd_rec_reader *r);
const char *rtd_rec_error(const struct rtd_rec_reader *r);
void rtd_rec_close(struct rtd_rec_reader *r);

#endif
