/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the TCP sensor-packet stream (acq_parse_stream). The first
 * byte of the input seeds how the rest is cut into reads (1..N bytes each, or
 * all at once), so packets split inside headers and payloads are covered. A
 * connection refused with -EBADMSG is replaced by a fresh one for the bytes
 * that follow, as a reconnecting sensor would. Checked beyond the sanitizers:
 * every record acq publishes is a whole, well-formed packet.
 */
#include "fuzz_acq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct acq *a = fuzz_acq_get();
    if (size < 1)
        return 0;
    uint32_t x = data[0] * 0x9e3779b1u + 1, max = data[0] ? data[0] : UINT32_MAX;
    data++;
    size--;
    struct acq_stream s = {0};
    acq_stream_init(a, &s);
    while (size) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        size_t take = max == UINT32_MAX ? size : 1 + x % max;
        if (take > size)
            take = size;
        if (acq_parse_stream(a, &s, data, take))
            acq_stream_init(a, &s); /* closed: the next bytes come on a new connection */
        FUZZ_ASSERT(s.have <= sizeof(struct rtd_wire_pkt) + fz.cfg.max_payload,
                    "partial packet of %u bytes", s.have);
        data += take;
        size -= take;
    }
    acq_stream_free(&s);
    fuzz_check_packets(a);
    return 0;
}
