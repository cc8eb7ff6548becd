/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the INI configuration file as rtdaq-acq reads it
 * (rtd_acq_config_parse over common/rtd_config.c and libinih): the input is
 * the file, passed with --config like an operator would. Checked beyond the
 * sanitizers (and LeakSanitizer: a refused file must not leak): the result is
 * 0 or -EINVAL, and an accepted file leaves a configuration inside the bounds
 * rtdaq-acq documents.
 */
#include <errno.h>
#include <sys/mman.h>

#include "fuzz_acq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int mfd = -1;
static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (mfd < 0) {
        mfd = memfd_create("fuzz_config", MFD_CLOEXEC);
        if (mfd < 0)
            abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", mfd);
        /* Only the file speaks: no RTDAQ_* variable of the environment. */
        extern char **environ;
        for (char **e = environ; *e;) {
            if (!strncmp(*e, "RTDAQ_", 6)) {
                char name[128];
                size_t l = strcspn(*e, "=");
                snprintf(name, sizeof name, "%.*s", (int)(l < sizeof name ? l : sizeof name - 1),
                         *e);
                unsetenv(name);
            } else {
                e++;
            }
        }
    }
    if (ftruncate(mfd, 0) || (size && pwrite(mfd, data, size, 0) != (ssize_t)size))
        abort();
    struct rtd_acq_config c;
    rtd_acq_config_defaults(&c);
    char a0[] = "rtdaq-acq", a1[] = "--config", a2[64];
    snprintf(a2, sizeof a2, "%s", path);
    char *argv[] = {a0, a1, a2, NULL};
    int rc = rtd_acq_config_parse(&c, 3, argv);
    FUZZ_ASSERT(rc == 0 || rc == 1 || rc == -EINVAL, "rtd_acq_config_parse returned %d", rc);
    if (rc == 0) {
        FUZZ_ASSERT(c.packet_port >= 0 && c.packet_port <= 65535 && c.frame_port >= 0 &&
                        c.frame_port <= 65535,
                    "ports %d %d", c.packet_port, c.frame_port);
        FUZZ_ASSERT(c.max_payload >= 1 && c.max_payload <= RTD_WIRE_PAYLOAD_LIMIT, "max_payload %u",
                    c.max_payload);
        FUZZ_ASSERT(c.width >= 8 && c.width <= 8192 && c.height >= 8 && c.height <= 8192,
                    "geometry %ux%u", c.width, c.height);
        FUZZ_ASSERT(c.frame_slots >= 2 && !(c.frame_slots & (c.frame_slots - 1)), "frame_slots %u",
                    c.frame_slots);
        FUZZ_ASSERT(c.packet_ring_bytes >= 65536 &&
                        !(c.packet_ring_bytes & (c.packet_ring_bytes - 1)),
                    "packet_ring_bytes %llu", (unsigned long long)c.packet_ring_bytes);
        FUZZ_ASSERT(memchr(c.instance, 0, sizeof c.instance) && memchr(c.bind, 0, sizeof c.bind),
                    "unterminated string");
    }
    return 0;
}
