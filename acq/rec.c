/* SPDX-License-Identifier: MIT */
/*
 * Recording writer (io_uring, chunked, never blocks its caller) and reader
 * (mmap, stops at the first bad record). Format in rtd_rec.h and docs/acq.md.
 */
#include "rtd_rec.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rtd_util.h"

/* ---- crc32c -------------------------------------------------------------- */

static uint32_t crc_table[8][256];
static int crc_hw = -1;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
    __builtin_cpu_init();
    crc_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
}

__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t c, const uint8_t *p, size_t n)
{
    uint64_t c64 = c;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = __builtin_ia32_crc32di(c64, v);
        p += 8;
        n -= 8;
    }
    c = (uint32_t)c64;
    while (n--)
        c = __builtin_ia32_crc32qi(c, *p++);
    return c;
}

static uint32_t crc_soft(uint32_t c, const uint8_t *p, size_t n)
{
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= c;
        c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
            crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xff] ^
            crc_table[2][(hi >> 8) & 0xff] ^ crc_table[1][(hi >> 16) & 0xff] ^
            crc_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
    return c;
}

uint32_t rtd_crc32c(uint32_t crc, const void *buf, size_t len)
{
    if (crc_hw < 0)
        crc_init();
    uint32_t c = ~crc;
    c = crc_hw ? crc_sse42(c, buf, len) : crc_soft(c, buf, len);
    return ~c;
}

static uint32_t rec_crc(const struct rtd_rec_hdr *h, const void *a, uint32_t la, const void *b,
                        uint32_t lb)
{
    struct rtd_rec_hdr tmp = *h;
    tmp.crc = 0;
    uint32_t c = rtd_crc32c(0, &tmp, sizeof tmp);
    if (la)
        c = rtd_crc32c(c, a, la);
    if (lb)
        c = rtd_crc32c(c, b, lb);
    return c;
}

static inline uint32_t pad8(uint32_t n)
{
    return (n + 7u) & ~7u;
}

/* ---- writer -------------------------------------------------------------- */

#define REC_CHUNKS 8

struct rec_chunk {
    uint8_t *buf;
    size_t used, done;
    uint64_t file_off;
    int busy;
};

struct rtd_rec_writer {
    int fd;
    struct io_uring ring;
    struct rec_chunk chunk[REC_CHUNKS];
    int cur;
    size_t cap;
    uint64_t next_off; /* file offset where the current chunk starts */
    uint64_t seq, data_records, dropped, bytes;
    struct rtd_rec_index_entry *ent;
    uint32_t n_ent;
    uint64_t since_index, last_index;
    int err;
    char *path, *config_json;
    char instance[32];
    uint64_t created_real_ns;
};

/* At most 2 * REC_CHUNKS writes are ever queued, so the SQ cannot be full. */
__attribute__((returns_nonnull)) static struct io_uring_sqe *rec_sqe(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (!sqe) {
        io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
        if (!sqe)
            abort();
    }
    return sqe;
}

static int writer_sidecar(struct rtd_rec_writer *w, int final)
{
    json_t *o = json_object();
    json_object_set_new(o, "format", json_string("rtdaq-recording"));
    json_object_set_new(o, "version", json_sprintf("%d.%d", RTD_REC_MAJOR, RTD_REC_MINOR));
    const char *base = strrchr(w->path, '/');
    json_object_set_new(o, "file", json_string(base ? base + 1 : w->path));
    json_object_set_new(o, "instance", json_string(w->instance));
    json_object_set_new(o, "created_real_ns", json_integer((json_int_t)w->created_real_ns));
    if (w->config_json) {
        json_t *cfg = json_loads(w->config_json, 0, NULL);
        if (cfg)
            json_object_set_new(o, "config", cfg);
    }
    json_object_set_new(o, "finalized", json_boolean(final));
    if (final) {
        json_object_set_new(o, "records", json_integer((json_int_t)w->data_records));
        json_object_set_new(o, "dropped", json_integer((json_int_t)w->dropped));
        json_object_set_new(o, "bytes", json_integer((json_int_t)w->bytes));
    }
    char *txt = json_dumps(o, JSON_INDENT(2));
    json_decref(o);
    if (!txt)
        return -ENOMEM;
    size_t n = strlen(w->path) + 6;
    char *side = malloc(n);
    int rc = -ENOMEM;
    if (side) {
        snprintf(side, n, "%s.json", w->path);
        rc = rtd_write_file(side, txt, strlen(txt));
        free(side);
    }
    free(txt);
    return rc;
}

/* Reap finished writes; resubmit short ones. wait: block for at least one. */
static int writer_reap(struct rtd_rec_writer *w, int wait)
{
    struct io_uring_cqe *cqe;
    int rc = wait ? io_uring_wait_cqe(&w->ring, &cqe) : io_uring_peek_cqe(&w->ring, &cqe);
    while (rc == 0) {
        struct rec_chunk *c = &w->chunk[cqe->user_data];
        int res = cqe->res;
        io_uring_cqe_seen(&w->ring, cqe);
        if (res < 0) {
            if (!w->err)
                rtd_log(RTD_LOG_ERR, "recording %s: write failed: %s", w->path, strerror(-res));
            w->err = res;
            c->busy = 0;
            c->used = 0;
        } else {
            c->done += (size_t)res;
            if (c->done < c->used && res > 0) {
                struct io_uring_sqe *sqe = rec_sqe(&w->ring);
                io_uring_prep_write(sqe, w->fd, c->buf + c->done, (unsigned)(c->used - c->done),
                                    c->file_off + c->done);
                io_uring_sqe_set_data64(sqe, (uint64_t)(c - w->chunk));
                io_uring_submit(&w->ring);
            } else {
                c->busy = 0;
                c->used = 0; /* free for the next records */
            }
        }
        rc = io_uring_peek_cqe(&w->ring, &cqe);
    }
    return w->err;
}

static void writer_submit_cur(struct rtd_rec_writer *w)
{
    struct rec_chunk *c = &w->chunk[w->cur];
    if (!c->used)
        return;
    c->file_off = w->next_off;
    c->done = 0;
    c->busy = 1;
    w->next_off += c->used;
    struct io_uring_sqe *sqe = rec_sqe(&w->ring);
    io_uring_prep_write(sqe, w->fd, c->buf, (unsigned)c->used, c->file_off);
    io_uring_sqe_set_data64(sqe, (uint64_t)w->cur);
    io_uring_submit(&w->ring);
    w->cur = (w->cur + 1) % REC_CHUNKS;
}

/* Make room for need bytes in the current chunk. -ENOBUFS when all chunks are in flight. */
static int writer_room(struct rtd_rec_writer *w, size_t need)
{
    if (need > w->cap)
        return -EMSGSIZE;
    struct rec_chunk *c = &w->chunk[w->cur];
    if (!c->busy && c->used + need <= w->cap)
        return 0;
    if (!c->busy)
        writer_submit_cur(w);
    writer_reap(w, 0);
    c = &w->chunk[w->cur];
    return c->busy ? -ENOBUFS : 0;
}

static int writer_put(struct rtd_rec_writer *w, uint16_t type, uint16_t flags, uint64_t mono,
                      uint64_t real, const void *a, uint32_t la, const void *b, uint32_t lb,
                      uint64_t *off_out)
{
    uint32_t len = la + lb;
    size_t need = sizeof(struct rtd_rec_hdr) + pad8(len);
    int rc = writer_room(w, need);
    if (rc)
        return rc;
    struct rec_chunk *c = &w->chunk[w->cur];
    uint8_t *p = c->buf + c->used;
    struct rtd_rec_hdr h = {.magic = RTD_REC_REC_MAGIC,
                            .len = len,
                            .type = type,
                            .flags = flags,
                            .seq = w->seq,
                            .ts_mono_ns = mono,
                            .ts_real_ns = real};
    h.crc = rec_crc(&h, a, la, b, lb);
    memcpy(p, &h, sizeof h);
    if (la)
        memcpy(p + sizeof h, a, la);
    if (lb)
        memcpy(p + sizeof h + la, b, lb);
    memset(p + sizeof h + len, 0, pad8(len) - len);
    if (off_out)
        *off_out = w->next_off + c->used;
    c->used += need;
    w->seq++;
    w->bytes += need;
    return 0;
}

static int writer_index(struct rtd_rec_writer *w)
{
    if (!w->n_ent)
        return 0;
    struct rtd_rec_index ix = {.prev_index = w->last_index, .n = w->n_ent};
    uint64_t off;
    int rc = writer_put(w, RTD_REC_INDEX, 0, rtd_now_ns(), rtd_realtime_ns(), &ix, sizeof ix,
                        w->ent, w->n_ent * (uint32_t)sizeof *w->ent, &off);
    if (rc == 0) {
        w->last_index = off;
        w->n_ent = 0;
        w->since_index = 0;
    }
    return rc;
}

int rtd_rec_write(struct rtd_rec_writer *w, uint16_t type, uint16_t flags, uint64_t ts_mono_ns,
                  uint64_t ts_real_ns, const void *a, uint32_t len_a, const void *b, uint32_t len_b)
{
    if (w->err)
        return w->err;
    uint64_t off;
    int rc = writer_put(w, type, flags, ts_mono_ns, ts_real_ns, a, len_a, b, len_b, &off);
    if (rc) {
        w->dropped++;
        return rc;
    }
    if (w->data_records % RTD_REC_INDEX_STRIDE == 0)
        w->ent[w->n_ent++] = (struct rtd_rec_index_entry){off, ts_mono_ns};
    w->data_records++;
    if (++w->since_index >= RTD_REC_INDEX_EVERY)
        writer_index(w); /* a dropped index only costs seek speed */
    return 0;
}

int rtd_rec_flush(struct rtd_rec_writer *w)
{
    writer_reap(w, 0);
    if (!w->chunk[w->cur].busy && w->chunk[w->cur].used)
        writer_submit_cur(w);
    return writer_reap(w, 0);
}

void rtd_rec_writer_stats(const struct rtd_rec_writer *w, uint64_t *records, uint64_t *dropped,
                          uint64_t *bytes)
{
    if (records)
        *records = w->data_records;
    if (dropped)
        *dropped = w->dropped;
    if (bytes)
        *bytes = w->bytes;
}

static void writer_free(struct rtd_rec_writer *w)
{
    for (int i = 0; i < REC_CHUNKS; i++)
        free(w->chunk[i].buf);
    free(w->ent);
    free(w->path);
    free(w->config_json);
    free(w);
}

int rtd_rec_writer_open(struct rtd_rec_writer **out, const char *path, const char *instance,
                        const char *config_json, size_t buf_bytes)
{
    struct rtd_rec_writer *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->cap = buf_bytes ? buf_bytes : (4u << 20);
    w->path = strdup(path);
    w->config_json = config_json ? strdup(config_json) : NULL;
    w->ent = calloc(RTD_REC_INDEX_EVERY / RTD_REC_INDEX_STRIDE + 1, sizeof *w->ent);
    snprintf(w->instance, sizeof w->instance, "%s", instance ? instance : "");
    int rc = -ENOMEM;
    if (!w->path || !w->ent)
        goto fail;
    for (int i = 0; i < REC_CHUNKS; i++)
        if (!(w->chunk[i].buf = aligned_alloc(4096, (w->cap + 4095) & ~(size_t)4095)))
            goto fail;
    w->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        rc = -errno;
        goto fail;
    }
    rc = io_uring_queue_init(2 * REC_CHUNKS, &w->ring, 0);
    if (rc < 0) {
        close(w->fd);
        goto fail;
    }
    w->created_real_ns = rtd_realtime_ns();
    struct rtd_rec_file_hdr fh = {.major = RTD_REC_MAJOR,
                                  .minor = RTD_REC_MINOR,
                                  .hdr_len = sizeof fh,
                                  .created_real_ns = w->created_real_ns,
                                  .created_mono_ns = rtd_now_ns(),
                                  .index_every = RTD_REC_INDEX_EVERY,
                                  .index_stride = RTD_REC_INDEX_STRIDE};
    memcpy(fh.magic, RTD_REC_MAGIC, 8);
    memcpy(fh.instance, w->instance, strnlen(w->instance, sizeof fh.instance));
    fh.crc = rtd_crc32c(0, &fh, sizeof fh);
    memcpy(w->chunk[0].buf, &fh, sizeof fh);
    w->chunk[0].used = sizeof fh;
    writer_sidecar(w, 0);
    *out = w;
    return 0;
fail:
    writer_free(w);
    return rc;
}

int rtd_rec_writer_close(struct rtd_rec_writer *w)
{
    if (!w)
        return 0;
    int rc = 0;
    /* Wait for room rather than drop the trailer: close is not on the hot path. */
    for (int tries = 0; tries < 2; tries++) {
        writer_reap(w, 0);
        if (writer_index(w) != -ENOBUFS)
            break;
        while (w->chunk[w->cur].busy && !w->err)
            writer_reap(w, 1);
    }
    struct rtd_rec_end end = {.records = w->data_records, .last_index = w->last_index};
    for (int tries = 0; tries < 2; tries++) {
        if (writer_put(w, RTD_REC_END, 0, rtd_now_ns(), rtd_realtime_ns(), &end, sizeof end, NULL,
                       0, NULL) != -ENOBUFS)
            break;
        while (w->chunk[w->cur].busy && !w->err)
            writer_reap(w, 1);
    }
    if (!w->chunk[w->cur].busy)
        writer_submit_cur(w);
    for (int i = 0; i < REC_CHUNKS; i++)
        while (w->chunk[i].busy && !w->err)
            writer_reap(w, 1);
    rc = w->err;
    if (fsync(w->fd) && !rc)
        rc = -errno;
    close(w->fd);
    io_uring_queue_exit(&w->ring);
    int src = writer_sidecar(w, 1);
    if (!rc)
        rc = src;
    writer_free(w);
    return rc;
}

/* ---- reader -------------------------------------------------------------- */

struct rtd_rec_reader {
    const uint8_t *base;
    uint64_t size, off, seq, data;
    int complete;
    char err[256];
};

int rtd_rec_open(struct rtd_rec_reader **out, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st)) {
        int e = -errno;
        close(fd);
        return e;
    }
    if ((uint64_t)st.st_size < sizeof(struct rtd_rec_file_hdr)) {
        close(fd);
        return -EBADMSG;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return -errno;
    struct rtd_rec_file_hdr fh;
    memcpy(&fh, m, sizeof fh);
    int rc = 0;
    if (memcmp(fh.magic, RTD_REC_MAGIC, 8) || fh.major != RTD_REC_MAJOR)
        rc = -EPROTO;
    else {
        uint32_t crc = fh.crc;
        fh.crc = 0;
        /* Records are 8-byte aligned structs read in place: a header length that is not a
         * multiple of 8 would misalign every one of them. */
        if (rtd_crc32c(0, &fh, sizeof fh) != crc || fh.hdr_len < sizeof fh || fh.hdr_len % 8 ||
            fh.hdr_len > (uint64_t)st.st_size)
            rc = -EBADMSG;
    }
    struct rtd_rec_reader *r = rc ? NULL : calloc(1, sizeof *r);
    if (!rc && !r)
        rc = -ENOMEM;
    if (rc) {
        munmap(m, (size_t)st.st_size);
        return rc;
    }
    r->base = m;
    r->size = (uint64_t)st.st_size;
    r->off = fh.hdr_len;
    *out = r;
    return 0;
}

static int reader_fail(struct rtd_rec_reader *r, int rc, const char *why)
{
    snprintf(r->err, sizeof r->err, "record %llu at offset %llu: %s", (unsigned long long)r->seq,
             (unsigned long long)r->off, why);
    return rc;
}

/* Check the record at r->off; on success fill rec and return its total size. */
static int64_t reader_check(struct rtd_rec_reader *r, struct rtd_rec_record *rec, int verify)
{
    uint64_t left = r->size - r->off;
    if (left < sizeof(struct rtd_rec_hdr))
        return reader_fail(r, -ENODATA, "file ends inside a record header (cut short)");
    const struct rtd_rec_hdr *h = (const void *)(r->base + r->off);
    if (h->magic != RTD_REC_REC_MAGIC)
        return reader_fail(r, -EBADMSG, "bad record magic (corrupted)");
    if (h->type < RTD_REC_PACKET || h->type > RTD_REC_END || h->len > (256u << 20))
        return reader_fail(r, -EBADMSG, "impossible type or length (corrupted)");
    uint64_t total = sizeof *h + pad8(h->len);
    if (total > left)
        return reader_fail(r, -ENODATA, "file ends inside a record (cut short)");
    if (h->seq != r->seq)
        return reader_fail(r, -EBADMSG, "record sequence number out of order (corrupted)");
    if (verify && rec_crc(h, h + 1, h->len, NULL, 0) != h->crc)
        return reader_fail(r, -EBADMSG, "checksum mismatch (corrupted)");
    rec->hdr = h;
    rec->payload = h + 1;
    rec->offset = r->off;
    return (int64_t)total;
}

int rtd_rec_next(struct rtd_rec_reader *r, struct rtd_rec_record *rec)
{
    for (;;) {
        if (r->off >= r->size)
            return 0;
        int64_t n = reader_check(r, rec, 1);
        if (n < 0)
            return (int)n;
        r->off += (uint64_t)n;
        r->seq++;
        if (rec->hdr->type == RTD_REC_END) {
            r->complete = 1;
            continue;
        }
        if (rec->hdr->type == RTD_REC_INDEX)
            continue;
        r->data++;
        return 1;
    }
}

int rtd_rec_seek(struct rtd_rec_reader *r, uint64_t ts_mono_ns)
{
    const struct rtd_rec_file_hdr *fh = (const void *)r->base;
    r->off = fh->hdr_len;
    r->seq = 0;
    r->data = 0;
    /* Walk headers only (no checksums): jumping record to record is cheap, and it also
     * works for a file cut short, whose index chain has no END to start from. */
    struct rtd_rec_record rec;
    for (;;) {
        if (r->off >= r->size)
            return 0;
        int64_t n = reader_check(r, &rec, 0);
        if (n < 0)
            return (int)n;
        if ((rec.hdr->type == RTD_REC_PACKET || rec.hdr->type == RTD_REC_FRAME) &&
            rec.hdr->ts_mono_ns >= ts_mono_ns)
            return 0;
        r->off += (uint64_t)n;
        r->seq++;
        if (rec.hdr->type == RTD_REC_PACKET || rec.hdr->type == RTD_REC_FRAME)
            r->data++;
    }
}

const struct rtd_rec_file_hdr *rtd_rec_header(const struct rtd_rec_reader *r)
{
    return (const void *)r->base;
}
int rtd_rec_complete(const struct rtd_rec_reader *r)
{
    return r->complete;
}
uint64_t rtd_rec_records_read(const struct rtd_rec_reader *r)
{
    return r->data;
}
uint64_t rtd_rec_file_size(const struct rtd_rec_reader *r)
{
    return r->size;
}
uint64_t rtd_rec_offset(const struct rtd_rec_reader *r)
{
    return r->off;
}
const char *rtd_rec_error(const struct rtd_rec_reader *r)
{
    return r->err[0] ? r->err : "no error";
}

void rtd_rec_close(struct rtd_rec_reader *r)
{
    if (!r)
        return;
    munmap((void *)(uintptr_t)r->base, (size_t)r->size);
    free(r);
}
