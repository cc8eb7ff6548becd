/* SPDX-License-Identifier: MIT */
/*
 * The GPU frame pipeline when it is not built (no nvcc, no proc/pipeline in the
 * build, or a sanitizer preset): the entry points exist and report -ENODEV, so
 * callers decide the backend at run time.
 */
#include "rtd_fit_cuda.h"

#include <errno.h>
#include <string.h>

void rtd_cuda_pipe_opts_default(struct rtd_cuda_pipe_opts *o)
{
    memset(o, 0, sizeof *o);
    o->batch_frames = 4;
    o->n_inflight = 4;
    o->max_wait_ns = 250000;
}

int rtd_cuda_pipe_create(struct rtd_cuda_pipe **out, const struct rtd_pipe_config *cfg, int width,
                         int height, const struct rtd_cuda_pipe_opts *o)
{
    *out = NULL;
    return -ENODEV;
}

void rtd_cuda_pipe_destroy(struct rtd_cuda_pipe *p)
{
}

int rtd_cuda_pipe_submit(struct rtd_cuda_pipe *p, const uint16_t *frame, size_t stride,
                         uint64_t frame_id)
{
    return -ENODEV;
}

int rtd_cuda_pipe_flush(struct rtd_cuda_pipe *p)
{
    return -ENODEV;
}

int rtd_cuda_pipe_poll(struct rtd_cuda_pipe *p, struct rtd_cuda_frame_result *res,
                       struct rtd_pipe_ion *ions, int max_ions, struct rtd_pipe_frame_stats *st,
                       int wait)
{
    return -ENODEV;
}

int rtd_cuda_pipe_pending(const struct rtd_cuda_pipe *p)
{
    return 0;
}

int rtd_cuda_pipe_process(struct rtd_cuda_pipe *p, const uint16_t *frame, int width, int height,
                          size_t stride, uint64_t frame_id, struct rtd_pipe_ion *ions, int max_ions,
                          struct rtd_pipe_frame_stats *st)
{
    return -ENODEV;
}
