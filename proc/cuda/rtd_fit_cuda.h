/* SPDX-License-Identifier: MIT */
/*
 * The optional CUDA backend: batched Levenberg-Marquardt fits (the models,
 * estimators, options and result states of proc/fit's rtd_fit_batch, one fit per
 * GPU thread as Gpufit does it) and, for the frame pipeline, a streaming context
 * that accumulates frames in pinned host buffers and runs blur, threshold, peak
 * detection and the per-ion fits for several frames per launch.
 *
 * The library always exists. Built without nvcc (or under a sanitizer preset) it
 * is a stub whose calls return -ENODEV and whose rtd_fit_cuda_available() says
 * why; callers choose the backend at run time, never at compile time. The CPU
 * library stays the reference: results here are float32 and equal it within the
 * tolerance documented in docs/cuda.md.
 *
 * Every function returns 0 (or a count) on success and -errno on failure:
 * -ENODEV no usable device (see rtd_fit_cuda_available), -EINVAL bad options,
 * -ENOMEM host or device allocation failed, -EIO a CUDA call failed at run time
 * (logged once with the CUDA error string).
 */
#ifndef RTD_FIT_CUDA_H
#define RTD_FIT_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct rtd_fit_opts; /* proc/fit/rtd_fit.h */

/*
 * 1 when a CUDA device can be used; 0 when not, with the reason written to why
 * (if why != NULL): built without nvcc, no device (cudaGetDeviceCount), or a
 * driver older than the toolkit (cudaDriverGetVersion vs cudaRuntimeGetVersion).
 * Cheap after the first call (the answer is cached).
 */
int rtd_fit_cuda_available(char *why, size_t cap);

/* Name of device 0, e.g. "NVIDIA H100 80GB HBM3". 0 or -ENODEV (buf gets the reason). */
int rtd_fit_cuda_device_name(char *buf, size_t cap);

/*
 * The GPU twin of rtd_fit_batch(): same layout (data n_fits*n_points, init and
 * params n_fits*n_params, C order), same states (0 converged, 1 max iterations,
 * 2 singular, 3 negative curvature for MLE). states, iters and chi2 may be NULL.
 * opts->threads and opts->isa are ignored. Blocks until the results are in params.
 * Large batches are cut into chunks so that transfers overlap compute.
 */
int rtd_fit_cuda_batch(const struct rtd_fit_opts *o, size_t n_fits, const float *data,
                       const float *init, float *params, int32_t *states, int32_t *iters,
                       float *chi2);

/* Where the time of one batch went (seconds); filled by rtd_fit_cuda_batch_stats(). */
struct rtd_fit_cuda_stats {
    double total_s;  /* the whole call, host copies and transfers included */
    double kernel_s; /* sum of the fit kernels' times (CUDA events) */
    uint32_t chunks; /* chunks the batch was cut into */
};

/* rtd_fit_cuda_batch() that also reports its timing (st may be NULL). */
int rtd_fit_cuda_batch_stats(const struct rtd_fit_opts *o, size_t n_fits, const float *data,
                             const float *init, float *params, int32_t *states, int32_t *iters,
                             float *chi2, struct rtd_fit_cuda_stats *st);

/* ---- the frame pipeline on the GPU --------------------------------------------------- */

/*
 * A streaming twin of proc/pipeline's rtd_pipe_process(): the same configuration
 * (struct rtd_pipe_config), the same detection (separable blur, median + k*MAD
 * background on a subsample, threshold, local maxima with the same tie rule,
 * min_pixels), ROIs, initial guesses, fits (GAUSS_2D, or GAUSS_1D + SHM_1D
 * profiles), de-blending refits and duplicate removal, and the same output
 * records (struct rtd_pipe_ion, struct rtd_pipe_frame_stats).
 *
 * Frames are copied into pinned host buffers by submit() and launched in
 * batches of batch_frames (one H2D copy, one chain of kernels, one D2H copy per
 * batch, on its own stream; up to n_inflight batches overlap). A partial batch
 * is launched when its first frame has waited max_wait_ns, checked by submit()
 * and poll(): the added batching latency is at most max_wait_ns plus the time
 * between two calls, and is reported per frame (t_launch_ns - t_submit_ns).
 * Results come back in submission order. One context per thread.
 */
struct rtd_pipe_config;
struct rtd_pipe_ion;
struct rtd_pipe_frame_stats;
struct rtd_cuda_pipe; /* opaque */

struct rtd_cuda_pipe_opts {
    int batch_frames;     /* frames per launch (default 4, 1..64) */
    int n_inflight;       /* batches in flight (default 4, 1..8) */
    uint64_t max_wait_ns; /* launch a partial batch after this (default 250 us) */
};

struct rtd_cuda_frame_result {
    uint64_t frame_id;
    uint64_t t_submit_ns; /* CLOCK_MONOTONIC: submit() copied the frame */
    uint64_t t_launch_ns; /* its batch was launched */
    uint64_t t_done_ns;   /* poll() saw the batch complete */
    int n_ions;           /* ions written by poll() (<= its max_ions) */
    int batch_size;       /* frames in the batch this frame went with */
};

void rtd_cuda_pipe_opts_default(struct rtd_cuda_pipe_opts *o);

/*
 * Create for frames of exactly width x height (stride given per frame).
 * 0, -EINVAL (bad configuration or options), -ENODEV (no device), -ENOMEM.
 */
int rtd_cuda_pipe_create(struct rtd_cuda_pipe **out, const struct rtd_pipe_config *cfg, int width,
                         int height, const struct rtd_cuda_pipe_opts *o);
void rtd_cuda_pipe_destroy(struct rtd_cuda_pipe *p);

/*
 * Queue one frame (copied before return). 0; -EAGAIN when every batch buffer is
 * in flight (poll() and retry); -EIO on a CUDA failure.
 */
int rtd_cuda_pipe_submit(struct rtd_cuda_pipe *p, const uint16_t *frame, size_t stride,
                         uint64_t frame_id);

/* Launch the partial batch now (end of a file, idle camera). 0 or -errno. */
int rtd_cuda_pipe_flush(struct rtd_cuda_pipe *p);

/*
 * The next frame's result, in submission order: 1 with res, ions (at most
 * max_ions, brightest first as the CPU pipeline) and st (may be NULL) filled;
 * 0 when none is ready (wait = 0) or none is queued; -errno. wait != 0 blocks
 * until the oldest queued frame is done, launching its batch if needed.
 */
int rtd_cuda_pipe_poll(struct rtd_cuda_pipe *p, struct rtd_cuda_frame_result *res,
                       struct rtd_pipe_ion *ions, int max_ions, struct rtd_pipe_frame_stats *st,
                       int wait);

/* Frames submitted and not yet returned by poll(). */
int rtd_cuda_pipe_pending(const struct rtd_cuda_pipe *p);

/*
 * One frame, synchronously, with rtd_pipe_process()'s signature (for
 * `rtdaq fit-frames --backend cuda`): submit, flush, wait. Returns the ion count
 * or -errno. Do not mix with frames queued by submit().
 */
int rtd_cuda_pipe_process(struct rtd_cuda_pipe *p, const uint16_t *frame, int width, int height,
                          size_t stride, uint64_t frame_id, struct rtd_pipe_ion *ions, int max_ions,
                          struct rtd_pipe_frame_stats *st);

#ifdef __cplusplus
}
#endif

#endif
