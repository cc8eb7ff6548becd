/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the recording reader (acq/rec.c). The input is a recording
 * file, written to a memfd and opened by path like any other. It is read twice:
 * as it is, and with every checksum (file header and each record the headers
 * chain to) recomputed, since mutated bytes almost never keep a crc32c right
 * and the structure behind the checksums would stay unexplored. Each time the
 * target reads
 * every record with rtd_rec_next(), then walks the headers again with
 * rtd_rec_seek() (what the reader does for files cut short, whose index chain
 * has no END) to the time of the first data record and to the time in the
 * input's last 8 bytes, and reads on from there. Checked beyond the sanitizers:
 * every record returned lies inside the file, 8-byte aligned, with its
 * declared payload, and both walks agree on the number of data records.
 */
#include <errno.h>
#include <sys/mman.h>

#include "fuzz_acq.h"
#include "rtd_rec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int mfd = -1;
static char path[64];

static void check(const struct rtd_rec_reader *r, const struct rtd_rec_record *rec)
{
    uint64_t size = rtd_rec_file_size(r);
    const struct rtd_rec_hdr *h = rec->hdr;
    FUZZ_ASSERT(rec->offset % 8 == 0 && rec->offset + sizeof *h <= size &&
                    rec->offset + sizeof *h + h->len <= size,
                "record at %llu, payload %u, file %llu", (unsigned long long)rec->offset, h->len,
                (unsigned long long)size);
    FUZZ_ASSERT(h->type == RTD_REC_PACKET || h->type == RTD_REC_FRAME, "returned type %u", h->type);
    FUZZ_ASSERT((const void *)(h + 1) == rec->payload, "payload not after its header");
}

static uint64_t read_all(struct rtd_rec_reader *r, uint64_t *first_ts)
{
    struct rtd_rec_record rec;
    uint64_t n = 0;
    int rc;
    while ((rc = rtd_rec_next(r, &rec)) == 1) {
        check(r, &rec);
        if (!n && first_ts)
            *first_ts = rec.hdr->ts_mono_ns;
        n++;
    }
    FUZZ_ASSERT(rc == 0 || rc == -EBADMSG || rc == -ENODATA, "rtd_rec_next returned %d", rc);
    FUZZ_ASSERT(rc == 0 || strcmp(rtd_rec_error(r), "no error"), "error %d without a reason", rc);
    return n;
}

/* Make every checksum of the file right: its header's, and each record's the headers chain to. */
static void fix_crcs(uint8_t *f, size_t size)
{
    struct rtd_rec_file_hdr fh;
    if (size < sizeof fh)
        return;
    memcpy(&fh, f, sizeof fh);
    fh.crc = 0;
    fh.crc = rtd_crc32c(0, &fh, sizeof fh);
    memcpy(f, &fh, sizeof fh);
    for (uint64_t off = fh.hdr_len; off >= sizeof fh && off + sizeof(struct rtd_rec_hdr) <= size;) {
        struct rtd_rec_hdr h;
        memcpy(&h, f + off, sizeof h);
        if (h.len > size - off - sizeof h)
            break;
        h.crc = 0;
        uint32_t c = rtd_crc32c(0, &h, sizeof h);
        h.crc = rtd_crc32c(c, f + off + sizeof h, h.len);
        memcpy(f + off, &h, sizeof h);
        off += sizeof h + ((h.len + 7ull) & ~7ull);
    }
}

static void read_file(const uint8_t *data, size_t size)
{
    if (ftruncate(mfd, 0) || (size && pwrite(mfd, data, size, 0) != (ssize_t)size))
        abort();
    struct rtd_rec_reader *r;
    int rc = rtd_rec_open(&r, path);
    if (rc) {
        FUZZ_ASSERT(rc == -EPROTO || rc == -EBADMSG, "rtd_rec_open returned %d", rc);
        return;
    }
    uint64_t first_ts = 0, t = 0;
    uint64_t n = read_all(r, &first_ts);
    FUZZ_ASSERT(rtd_rec_records_read(r) == n, "records_read %llu, returned %llu",
                (unsigned long long)rtd_rec_records_read(r), (unsigned long long)n);
    /* From the first data record's time: the same records again. Only when there was one:
     * seek walks headers without checksums, so past a damaged INDEX or END record that
     * stopped the first read it can reach data records (each then checked by next()). */
    rc = rtd_rec_seek(r, first_ts);
    FUZZ_ASSERT(rc == 0 || rc == -EBADMSG || rc == -ENODATA, "rtd_rec_seek returned %d", rc);
    if (rc == 0 && n) {
        uint64_t m = read_all(r, NULL);
        FUZZ_ASSERT(rtd_rec_records_read(r) == n && m == n,
                    "seek to the first record: %llu read, %llu of %llu again",
                    (unsigned long long)rtd_rec_records_read(r), (unsigned long long)m,
                    (unsigned long long)n);
    }
    if (size >= 8)
        memcpy(&t, data + size - 8, 8);
    if (rtd_rec_seek(r, t) == 0)
        read_all(r, NULL);
    rtd_rec_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (mfd < 0) {
        rtd_log_init("fuzz", RTD_LOG_ERR);
        mfd = memfd_create("fuzz_rec", MFD_CLOEXEC);
        if (mfd < 0)
            abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", mfd);
    }
    read_file(data, size);
    uint8_t *fixed = malloc(size ? size : 1);
    if (!fixed)
        abort();
    memcpy(fixed, data, size);
    fix_crcs(fixed, size);
    read_file(fixed, size);
    free(fixed);
    return 0;
}
