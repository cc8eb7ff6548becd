/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: UDP sensor-packet datagrams (acq_parse_datagram). The input is
 * a sequence of datagrams ([u16 length LE][bytes], repeated), so per-client
 * sequence tracking sees several. Checked beyond the sanitizers: every record
 * acq publishes is a whole, well-formed packet, and every datagram is counted.
 */
#include "fuzz_acq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct acq *a = fuzz_acq_get();
    const uint8_t *piece;
    size_t len;
    uint64_t n = 0;
    while (fuzz_next_piece(&data, &size, &piece, &len)) {
        acq_parse_datagram(a, piece, len);
        n++;
    }
    FUZZ_ASSERT(a->cnt[C_UDP_DGRAMS] == n, "udp.datagrams %llu for %llu datagrams",
                (unsigned long long)a->cnt[C_UDP_DGRAMS], (unsigned long long)n);
    fuzz_check_packets(a);
    return 0;
}
