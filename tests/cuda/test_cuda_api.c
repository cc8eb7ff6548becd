/* SPDX-License-Identifier: MIT */
/*
 * The CUDA backend's contract without a GPU: the library always links, says
 * whether a device is usable and why not, and every entry point answers
 * -ENODEV (never crashes) when there is none. With a device it checks the
 * device name and the argument checks. Exit 0 pass, 1 fail.
 */
#include "rtd_fit_cuda.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int fails;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                        \
            fails++;                                                                               \
        }                                                                                          \
    } while (0)

int main(void)
{
    char why[256] = "", name[256] = "";
    int ok = rtd_fit_cuda_available(why, sizeof why);
    CHECK(ok == 0 || ok == 1);
    CHECK(why[0] != '\0');
    printf("cuda available: %d (%s)\n", ok, why);
    /* The answer is cached and stable. */
    CHECK(rtd_fit_cuda_available(NULL, 0) == ok);
    int rc = rtd_fit_cuda_device_name(name, sizeof name);
    CHECK(name[0] != '\0');
    if (!ok) {
        CHECK(rc == -ENODEV);
        float d[4] = {0}, in[4] = {0}, out[4];
        CHECK(rtd_fit_cuda_batch(NULL, 1, d, in, out, NULL, NULL, NULL) < 0);
        struct rtd_cuda_pipe *p = (struct rtd_cuda_pipe *)1;
        struct rtd_cuda_pipe_opts o;
        rtd_cuda_pipe_opts_default(&o);
        CHECK(o.batch_frames > 0 && o.n_inflight > 0 && o.max_wait_ns > 0);
        CHECK(rtd_cuda_pipe_create(&p, NULL, 300, 300, &o) < 0 && p == NULL);
        rtd_cuda_pipe_destroy(NULL);
    } else {
        CHECK(rc == 0);
        CHECK(strcmp(name, why) != 0);
        printf("device: %s\n", name);
        /* Bad options are refused before anything reaches the device. */
        float d[4] = {0}, in[4] = {0}, out[4];
        CHECK(rtd_fit_cuda_batch(NULL, 1, d, in, out, NULL, NULL, NULL) == -EINVAL);
    }
    if (fails)
        fprintf(stderr, "%d check(s) failed\n", fails);
    return fails ? 1 : 0;
}
