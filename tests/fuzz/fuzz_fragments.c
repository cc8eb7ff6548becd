/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: camera frame fragments (acq_frame_fragment), as sequences of
 * datagrams. Input: one mode byte (bit 0: --partial deliver, else drop), then
 * datagrams as [u16 length LE][bytes]; an empty datagram stands for "the
 * reassembly timeout passes". The harness overwrites each payload byte with a
 * pattern of (frame id, byte offset the header claims), so every frame acq
 * publishes can be checked from the ring: a complete frame holds exactly its
 * own pattern in every byte (no byte of another frame, none stale), a partial
 * one its pattern or zero. Whenever no frame is open, the slot the next frame
 * will get is filled with 0xa5 first, so a byte no fragment wrote shows in
 * every run, not only after earlier inputs left other frames there. This is
 * the oracle that catches the stale-pixel frames of issue 13, beyond the
 * sanitizers catching the bitmap overflow.
 */
#include "fuzz_acq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t buf[65536 + 64];

static uint8_t pat(uint64_t id, uint64_t off)
{
    uint64_t v = (id + 1) * 0x9e3779b97f4a7c15ull ^ (off + 1) * 0xc2b2ae3d27d4eb4full;
    return (uint8_t)(v >> 56) | 1; /* never 0: zeroed bytes of a partial frame stand out */
}

static void check_frames(struct acq *a)
{
    struct rtd_frame f;
    while (rtd_frame_peek(fz.fc, &f) == 0) {
        const struct rtd_frame_hdr *h = f.hdr;
        int partial = (h->flags & RTD_FRAME_PARTIAL) != 0;
        FUZZ_ASSERT(h->pixfmt == RTD_PIXFMT_MONO16 &&
                        h->len == (uint64_t)h->width * h->height * 2 && h->len <= a->slot_payload,
                    "frame %llu: %ux%u pixfmt %u len %u", (unsigned long long)h->frame_id, h->width,
                    h->height, h->pixfmt, h->len);
        FUZZ_ASSERT(!partial || fz.cfg.partial == RTD_PARTIAL_DELIVER,
                    "partial frame %llu published under --partial drop",
                    (unsigned long long)h->frame_id);
        for (uint32_t i = 0; i < h->len; i++) {
            uint8_t want = pat(h->frame_id, i);
            FUZZ_ASSERT(f.data[i] == want || (partial && f.data[i] == 0),
                        "frame %llu (%s) byte %u is %#x, not its own %#x: stale or foreign",
                        (unsigned long long)h->frame_id, partial ? "partial" : "complete", i,
                        f.data[i], want);
        }
        rtd_frame_release(fz.fc);
    }
}

/* Claim the next slot without publishing it (the next claim gets the same one) and poison it. */
static void poison_next_slot(struct acq *a)
{
    struct rtd_frame f;
    if (!a->fasm.active && rtd_frame_claim(a->fring, &f) == 0)
        memset(f.data, 0xa5, a->slot_payload);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct acq *a = fuzz_acq_get();
    if (size < 1)
        return 0;
    fz.cfg.partial = data[0] & 1 ? RTD_PARTIAL_DELIVER : RTD_PARTIAL_DROP;
    data++;
    size--;
    poison_next_slot(a);
    const uint8_t *piece;
    size_t len;
    while (fuzz_next_piece(&data, &size, &piece, &len)) {
        if (!len) { /* time passes: an open frame times out */
            a->fasm.start_ns = 0;
            acq_housekeeping(a, 0);
            poison_next_slot(a);
            continue;
        }
        memcpy(buf, piece, len);
        struct rtd_wire_frag h;
        if (len >= sizeof h) {
            memcpy(&h, buf, sizeof h);
            for (size_t i = h.hdr_len; i < len; i++)
                buf[i] = pat(h.frame_id, (uint64_t)h.offset + (i - h.hdr_len));
        }
        uint64_t ended = a->cnt[C_FRAMES_RX] + a->cnt[C_FRAMES_PARTIAL];
        acq_frame_fragment(a, buf, len);
        if (a->cnt[C_FRAMES_RX] + a->cnt[C_FRAMES_PARTIAL] != ended)
            poison_next_slot(a);
        const struct acq_fasm *fa = &a->fasm;
        if (fa->active) {
            uint32_t bits = 0;
            for (uint32_t w = 0; w < (fa->count + 63) / 64; w++)
                bits += (uint32_t)__builtin_popcountll(fa->bits[w]);
            FUZZ_ASSERT(fa->got == bits && fa->got < fa->count && fa->count <= 64 * fa->bits_words,
                        "frame %llu: got %u, bitmap %u, count %u, bitmap words %u",
                        (unsigned long long)fa->frame_id, fa->got, bits, fa->count, fa->bits_words);
        }
    }
    check_frames(a);
    return 0;
}
