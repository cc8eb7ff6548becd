/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the CLI's raw frame files, `rtdaq fit-frames --in FILE`
 * (tools/rtdaq/cmd_fit_frames.c, built into this target), which maps the file
 * and runs the frame pipeline of proc/ over every frame in it. Input: width
 * and height bytes (8..64 each), a mode byte (bit 0: --analysis shm, bit 1:
 * --bin 1, bit 2: --estimator mle, bit 3: keep a partial trailing frame so the
 * size check refuses the file), then the pixels, u16 little-endian. Checked
 * beyond the sanitizers: the command exits 0 or, for a refused file, 2.
 */
#include <sys/mman.h>

#include "fuzz_acq.h"
#include "rtdaq_cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int mfd = -1;
static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    if (mfd < 0) {
        mfd = memfd_create("fuzz_fit_frames", MFD_CLOEXEC);
        if (mfd < 0)
            abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", mfd);
    }
    unsigned w = 8 + data[0] % 57, h = 8 + data[1] % 57, mode = data[2];
    data += 3;
    size -= 3;
    size_t fb = (size_t)w * h * 2, n = mode & 8 ? size : size / fb * fb;
    if (ftruncate(mfd, 0) || (n && pwrite(mfd, data, n, 0) != (ssize_t)n))
        abort();
    char ws[16], hs[16], a0[] = "fit-frames", in[] = "--in", wo[] = "--width", ho[] = "--height",
                         out[] = "--out", dn[] = "/dev/null", an[] = "--analysis", shm[] = "shm",
                         bin[] = "--bin", one[] = "1", est[] = "--estimator", mle[] = "mle";
    snprintf(ws, sizeof ws, "%u", w);
    snprintf(hs, sizeof hs, "%u", h);
    char *argv[16] = {a0, in, path, wo, ws, ho, hs, out, dn};
    int argc = 9;
    if (mode & 1)
        argv[argc++] = an, argv[argc++] = shm;
    if (mode & 2)
        argv[argc++] = bin, argv[argc++] = one;
    if (mode & 4)
        argv[argc++] = est, argv[argc++] = mle;
    argv[argc] = NULL;
    int rc = rtd_cmd_fit_frames(argc, argv);
    FUZZ_ASSERT(rc == RTD_EXIT_OK || (rc == RTD_EXIT_USAGE && (n == 0 || n % fb)),
                "fit-frames on %zu bytes of %ux%u frames exited %d", n, w, h, rc);
    return 0;
}
