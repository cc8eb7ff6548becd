/* SPDX-License-Identifier: MIT */
/*
 * Batched fits on the GPU: the device probe, and rtd_fit_cuda_batch(), which
 * cuts a batch into chunks and pipelines them over a few streams (caller's
 * memory -> pinned staging -> device -> kernel -> pinned -> caller's memory) so
 * that the host copies, the PCIe transfers and the kernels of neighbouring
 * chunks overlap. One thread fits one ROI (lm_kernel.cuh); a block first stages
 * its ROIs in shared memory, transposed so that the threads of a warp read
 * consecutive words (no bank conflicts whatever the ROI length).
 *
 * The staging buffers and device memory are kept between calls (grown when a
 * larger chunk is needed) and guarded by one mutex: concurrent callers are
 * serialised, which is what one GPU does anyway.
 */
#include "rtd_fit_cuda.h"
#include "rtd_cuda_internal.h"
#include "lm_kernel.cuh"

#include "rtd_fit.h"
extern "C" {
#include "rtd_util.h"
}

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* ---- device probe ---------------------------------------------------------------------- */

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static int probe_ok;
static char probe_why[512];
static char probe_name[256];

static void probe(void)
{
    int rt = 0, drv = 0, n = 0;
    cudaRuntimeGetVersion(&rt);
    cudaDriverGetVersion(&drv);
    cudaError_t e = cudaGetDeviceCount(&n);
    /* No driver at all also reads as "insufficient driver": tell the two apart. */
    if (drv == 0) {
        snprintf(probe_why, sizeof probe_why,
                 "no CUDA device: no NVIDIA driver is loaded (cudaDriverGetVersion = 0)");
        return;
    }
    if (e == cudaErrorInsufficientDriver || drv < rt) {
        snprintf(probe_why, sizeof probe_why,
                 "CUDA driver %d.%d is older than the toolkit this was built with (%d.%d): "
                 "update the NVIDIA driver",
                 drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
        return;
    }
    if (e == cudaErrorNoDevice || (e == cudaSuccess && n == 0)) {
        snprintf(probe_why, sizeof probe_why, "no CUDA device (%s)", cudaGetErrorString(e));
        return;
    }
    if (e != cudaSuccess) {
        snprintf(probe_why, sizeof probe_why, "cudaGetDeviceCount failed: %s",
                 cudaGetErrorString(e));
        return;
    }
    cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, 0);
    if (e != cudaSuccess) {
        snprintf(probe_why, sizeof probe_why, "cudaGetDeviceProperties failed: %s",
                 cudaGetErrorString(e));
        return;
    }
    if (prop.major < 8) {
        snprintf(probe_why, sizeof probe_why,
                 "device 0 (%.200s) has compute capability %d.%d; this build needs >= 8.0",
                 prop.name, prop.major, prop.minor);
        return;
    }
    /* Create the context now: the first real call should not pay for it. */
    e = cudaSetDevice(0);
    if (e == cudaSuccess)
        e = cudaFree(NULL);
    if (e != cudaSuccess) {
        snprintf(probe_why, sizeof probe_why, "cannot create a CUDA context on %.200s: %.200s",
                 prop.name, cudaGetErrorString(e));
        return;
    }
    snprintf(probe_name, sizeof probe_name, "%s", prop.name);
    snprintf(probe_why, sizeof probe_why, "%.200s (sm_%d%d, driver %d.%d, runtime %d.%d)",
             prop.name, prop.major, prop.minor, drv / 1000, drv % 1000 / 10, rt / 1000,
             rt % 1000 / 10);
    probe_ok = 1;
}

extern "C" int rtd_fit_cuda_available(char *why, size_t cap)
{
    pthread_once(&probe_once, probe);
    if (why && cap)
        snprintf(why, cap, "%s", probe_why);
    return probe_ok;
}

extern "C" int rtd_fit_cuda_device_name(char *buf, size_t cap)
{
    pthread_once(&probe_once, probe);
    if (buf && cap)
        snprintf(buf, cap, "%s", probe_ok ? probe_name : probe_why);
    return probe_ok ? 0 : -ENODEV;
}

int rtd_cuda_ensure_device(void)
{
    pthread_once(&probe_once, probe);
    if (!probe_ok)
        return -ENODEV;
    /* The current device is per host thread. */
    return cudaSetDevice(0) == cudaSuccess ? 0 : -ENODEV;
}

int rtd_cuda_err(cudaError_t e, const char *what)
{
    rtd_log(RTD_LOG_ERR, "cuda: %s: %s", what, cudaGetErrorString(e));
    return e == cudaErrorMemoryAllocation ? -ENOMEM : -EIO;
}

void rtd_cuda_node_table(float *tab)
{
    for (int k = 1; k <= 128; k++) {
        int n = 2 * k;
        float *c = tab + k * (k - 1) / 2;
        for (int j = 0; j < k; j++)
            c[j] = (float)cos(((double)j + 0.5) * M_PI / (double)n);
    }
}

/* ---- the batch kernel ------------------------------------------------------------------- */

/*
 * Block of FPB fits. Shared memory holds the block's samples transposed,
 * s[i * FPB + t] = sample i of fit t, when they fit (smem != 0); otherwise each
 * thread reads its own row from global memory.
 */
template <int M, int E>
__global__ void __launch_bounds__(64)
    fit_kernel(int n_fits, const float *__restrict__ data, const float *__restrict__ init,
               float *params, int *states, int *iters, float *chi2, lm_cfg c, int smem)
{
    constexpr int NP = lm_np<M>::n;
    extern __shared__ float s[];
    const int fpb = blockDim.x;
    const int t = threadIdx.x;
    const long base = (long)blockIdx.x * fpb;
    const int nb = (int)min((long)fpb, n_fits - base);
    const float *y;
    int ystride;

    if (smem) {
        const float *src = data + base * c.n_points;
        int total = nb * c.n_points;
        for (int k = t; k < total; k += fpb) {
            int f = k / c.n_points;
            int i = k - f * c.n_points;
            s[i * fpb + f] = src[k];
        }
        __syncthreads();
        y = s + t;
        ystride = fpb;
    } else {
        y = data + (base + t) * c.n_points;
        ystride = 1;
    }
    if (t >= nb)
        return;
    const long fi = base + t;
    float p[NP];
#pragma unroll
    for (int j = 0; j < NP; j++)
        p[j] = init[fi * NP + j];
    int st, it;
    float cs;
    lm_fit<M, E>(p, y, ystride, c, &st, &it, &cs);
#pragma unroll
    for (int j = 0; j < NP; j++)
        params[fi * NP + j] = p[j];
    states[fi] = st;
    iters[fi] = it;
    chi2[fi] = cs;
}

typedef void (*fit_kernel_fn)(int, const float *, const float *, float *, int *, int *, float *,
                              lm_cfg, int);

static fit_kernel_fn pick_kernel(int model, int est)
{
    static const fit_kernel_fn k[4][2] = {
        {fit_kernel<LM_GAUSS_1D, LM_LSE>, fit_kernel<LM_GAUSS_1D, LM_MLE>},
        {fit_kernel<LM_GAUSS_2D, LM_LSE>, fit_kernel<LM_GAUSS_2D, LM_MLE>},
        {fit_kernel<LM_SHM_1D, LM_LSE>, fit_kernel<LM_SHM_1D, LM_MLE>},
        {fit_kernel<LM_SHM_LEGACY, LM_LSE>, fit_kernel<LM_SHM_LEGACY, LM_MLE>},
    };
    if (model < 0 || model > 3 || est < 0 || est > 1)
        return NULL;
    return k[model][est];
}

/* ---- staging: chunks over streams ------------------------------------------------------- */

enum { N_SLOTS = 3, FPB = 64 };

struct slot {
    cudaStream_t stream;
    cudaEvent_t t0, t1;                         /* kernel start/end, for the statistics */
    float *h_data, *h_init, *h_params, *h_chi2; /* pinned */
    int *h_states, *h_iters;
    float *d_data, *d_init, *d_params, *d_chi2;
    int *d_states, *d_iters;
    size_t off, n; /* chunk in flight: first fit and count (n = 0: idle) */
};

static struct {
    pthread_mutex_t lock;
    int ready;
    size_t cap_fits, cap_points; /* what the buffers were sized for */
    struct slot s[N_SLOTS];
    float *d_nodes;
} ctx = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, {}, NULL};

static void slots_free(void)
{
    for (int i = 0; i < N_SLOTS; i++) {
        struct slot *s = &ctx.s[i];
        cudaFreeHost(s->h_data);
        cudaFreeHost(s->h_init);
        cudaFreeHost(s->h_params);
        cudaFreeHost(s->h_chi2);
        cudaFreeHost(s->h_states);
        cudaFreeHost(s->h_iters);
        cudaFree(s->d_data);
        cudaFree(s->d_init);
        cudaFree(s->d_params);
        cudaFree(s->d_chi2);
        cudaFree(s->d_states);
        cudaFree(s->d_iters);
        memset(&s->h_data, 0, sizeof *s - offsetof(struct slot, h_data));
    }
    ctx.cap_fits = ctx.cap_points = 0;
}

static int slots_reserve(size_t fits, size_t points)
{
    if (!ctx.ready) {
        for (int i = 0; i < N_SLOTS; i++) {
            RTD_CUDA_TRY(cudaStreamCreateWithFlags(&ctx.s[i].stream, cudaStreamNonBlocking));
            RTD_CUDA_TRY(cudaEventCreate(&ctx.s[i].t0));
            RTD_CUDA_TRY(cudaEventCreate(&ctx.s[i].t1));
        }
        static float tab[RTD_CUDA_NODE_TABLE];
        rtd_cuda_node_table(tab);
        RTD_CUDA_TRY(cudaMalloc((void **)&ctx.d_nodes, sizeof tab));
        RTD_CUDA_TRY(cudaMemcpy(ctx.d_nodes, tab, sizeof tab, cudaMemcpyHostToDevice));
        ctx.ready = 1;
    }
    if (fits <= ctx.cap_fits && fits * points <= ctx.cap_fits * ctx.cap_points)
        return 0;
    slots_free();
    size_t nd = fits * points, np = fits * 5;
    for (int i = 0; i < N_SLOTS; i++) {
        struct slot *s = &ctx.s[i];
        RTD_CUDA_TRY(cudaHostAlloc((void **)&s->h_data, nd * sizeof(float), 0));
        RTD_CUDA_TRY(cudaHostAlloc((void **)&s->h_init, np * sizeof(float), 0));
        RTD_CUDA_TRY(cudaHostAlloc((void **)&s->h_params, np * sizeof(float), 0));
        RTD_CUDA_TRY(cudaHostAlloc((void **)&s->h_chi2, fits * sizeof(float), 0));
        RTD_CUDA_TRY(cudaHostAlloc((void **)&s->h_states, fits * sizeof(int), 0));
        RTD_CUDA_TRY(cudaHostAlloc((void **)&s->h_iters, fits * sizeof(int), 0));
        RTD_CUDA_TRY(cudaMalloc((void **)&s->d_data, nd * sizeof(float)));
        RTD_CUDA_TRY(cudaMalloc((void **)&s->d_init, np * sizeof(float)));
        RTD_CUDA_TRY(cudaMalloc((void **)&s->d_params, np * sizeof(float)));
        RTD_CUDA_TRY(cudaMalloc((void **)&s->d_chi2, fits * sizeof(float)));
        RTD_CUDA_TRY(cudaMalloc((void **)&s->d_states, fits * sizeof(int)));
        RTD_CUDA_TRY(cudaMalloc((void **)&s->d_iters, fits * sizeof(int)));
    }
    ctx.cap_fits = fits;
    ctx.cap_points = points;
    return 0;
}

struct out_ptrs {
    float *params, *chi2;
    int32_t *states, *iters;
    int np;
    struct rtd_fit_cuda_stats *st;
};

/*
 * Copies between the caller's (pageable) memory and the pinned staging run on
 * several cores: one core's memcpy (~10 GB/s) would otherwise bound the whole
 * batch below what PCIe and the GPU can take.
 */
static void par_memcpy(void *dst, const void *src, size_t n)
{
    const size_t piece = (size_t)1 << 20;
    if (n < 2 * piece) {
        memcpy(dst, src, n);
        return;
    }
    int nt = omp_get_max_threads();
    if (nt > 8)
        nt = 8;
    size_t parts = (n + piece - 1) / piece;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t i = 0; i < parts; i++) {
        size_t off = i * piece, len = n - off < piece ? n - off : piece;
        memcpy((char *)dst + off, (const char *)src + off, len);
    }
}

/* Wait for a slot's chunk and copy its results to the caller. */
static int slot_drain(struct slot *s, const struct out_ptrs *o)
{
    if (!s->n)
        return 0;
    RTD_CUDA_TRY(cudaStreamSynchronize(s->stream));
    par_memcpy(o->params + s->off * o->np, s->h_params, s->n * o->np * sizeof(float));
    if (o->states)
        memcpy(o->states + s->off, s->h_states, s->n * sizeof(int32_t));
    if (o->iters)
        memcpy(o->iters + s->off, s->h_iters, s->n * sizeof(int32_t));
    if (o->chi2)
        memcpy(o->chi2 + s->off, s->h_chi2, s->n * sizeof(float));
    if (o->st) {
        float ms = 0;
        cudaEventElapsedTime(&ms, s->t0, s->t1);
        o->st->kernel_s += ms * 1e-3;
    }
    s->n = 0;
    return 0;
}

/* proc/fit's validation (rtd_fit_batch), so both backends refuse the same options. */
static int check_opts(const struct rtd_fit_opts *o, size_t n_fits, const float *data,
                      const float *init, const float *params)
{
    if (!o)
        return -EINVAL;
    int np = rtd_fit_n_params(o->model);
    if (np < 0 || (o->estimator != RTD_FIT_LSE && o->estimator != RTD_FIT_MLE))
        return -EINVAL;
    if (o->n_points < (uint32_t)np || (o->shm_nodes & 1u) || o->shm_nodes > RTD_CUDA_MAX_NODES)
        return -EINVAL;
    if (!(o->tol >= 0.0f) || o->threads < 0)
        return -EINVAL;
    if (o->model == RTD_FIT_GAUSS_2D) {
        uint32_t size = (uint32_t)lround(sqrt((double)o->n_points));
        if (size * size != o->n_points)
            return -EINVAL;
    }
    if (n_fits > (size_t)INT32_MAX || (n_fits && (!data || !init || !params)))
        return -EINVAL;
    return 0;
}

extern "C" int rtd_fit_cuda_batch_stats(const struct rtd_fit_opts *o, size_t n_fits,
                                        const float *data, const float *init, float *params,
                                        int32_t *states, int32_t *iters, float *chi2,
                                        struct rtd_fit_cuda_stats *st)
{
    int rc = check_opts(o, n_fits, data, init, params);
    if (rc)
        return rc;
    if ((rc = rtd_cuda_ensure_device()))
        return rc;
    if (st)
        memset(st, 0, sizeof *st);
    if (n_fits == 0)
        return 0;
    uint64_t t_start = rtd_now_ns();
    const int np = rtd_fit_n_params(o->model);
    const size_t npts = (size_t)o->n_points;
    fit_kernel_fn kern = pick_kernel(o->model, o->estimator);

    /* Chunks of up to 64 Ki fits (31 MB of 11x11 ROIs): big enough to fill the GPU, small
     * enough that three of them pipeline. */
    size_t chunk = 65536;
    if (n_fits < 3 * chunk)
        chunk = n_fits < 8192 ? n_fits : (n_fits + 2) / 3;
    chunk = (chunk + FPB - 1) / FPB * FPB;

    lm_cfg c;
    c.n_points = (int)o->n_points;
    c.size = (int)lround(sqrt((double)o->n_points));
    c.max_iter = o->max_iter ? (int)o->max_iter : 25;
    c.tol = o->tol > 0.0f ? o->tol : 1e-4f;
    c.shm_nodes = (int)o->shm_nodes;
    int smem = (size_t)FPB * npts * sizeof(float) <= 48 * 1024;

    pthread_mutex_lock(&ctx.lock);
    rc = slots_reserve(chunk, npts);
    if (rc)
        goto out;
    c.nodes = ctx.d_nodes;
    {
        struct out_ptrs op = {params, chi2, states, iters, np, st};
        size_t k = 0;
        for (size_t off = 0; off < n_fits; off += chunk, k++) {
            struct slot *s = &ctx.s[k % N_SLOTS];
            if ((rc = slot_drain(s, &op)))
                goto out;
            size_t n = n_fits - off < chunk ? n_fits - off : chunk;
            /* The host copy into pinned memory overlaps the other slots' GPU work. */
            par_memcpy(s->h_data, data + off * npts, n * npts * sizeof(float));
            par_memcpy(s->h_init, init + off * np, n * np * sizeof(float));
            size_t bd = n * npts * sizeof(float), bp = n * np * sizeof(float);
            cudaMemcpyAsync(s->d_data, s->h_data, bd, cudaMemcpyHostToDevice, s->stream);
            cudaMemcpyAsync(s->d_init, s->h_init, bp, cudaMemcpyHostToDevice, s->stream);
            cudaEventRecord(s->t0, s->stream);
            int blocks = (int)((n + FPB - 1) / FPB);
            kern<<<blocks, FPB, smem ? FPB * npts * sizeof(float) : 0, s->stream>>>(
                (int)n, s->d_data, s->d_init, s->d_params, s->d_states, s->d_iters, s->d_chi2, c,
                smem);
            cudaEventRecord(s->t1, s->stream);
            cudaMemcpyAsync(s->h_params, s->d_params, bp, cudaMemcpyDeviceToHost, s->stream);
            cudaMemcpyAsync(s->h_states, s->d_states, n * sizeof(int), cudaMemcpyDeviceToHost,
                            s->stream);
            cudaMemcpyAsync(s->h_iters, s->d_iters, n * sizeof(int), cudaMemcpyDeviceToHost,
                            s->stream);
            cudaMemcpyAsync(s->h_chi2, s->d_chi2, n * sizeof(float), cudaMemcpyDeviceToHost,
                            s->stream);
            cudaError_t e = cudaGetLastError();
            if (e != cudaSuccess) {
                rc = rtd_cuda_err(e, "fit kernel launch");
                goto out;
            }
            s->off = off;
            s->n = n;
            if (st)
                st->chunks++;
        }
        for (int i = 0; i < N_SLOTS; i++) {
            int r = slot_drain(&ctx.s[(k + i) % N_SLOTS], &op);
            if (r && !rc)
                rc = r;
        }
    }
out:
    if (rc)
        for (int i = 0; i < N_SLOTS; i++)
            ctx.s[i].n = 0;
    pthread_mutex_unlock(&ctx.lock);
    if (st)
        st->total_s = (double)(rtd_now_ns() - t_start) * 1e-9;
    return rc;
}

extern "C" int rtd_fit_cuda_batch(const struct rtd_fit_opts *o, size_t n_fits, const float *data,
                                  const float *init, float *params, int32_t *states, int32_t *iters,
                                  float *chi2)
{
    return rtd_fit_cuda_batch_stats(o, n_fits, data, init, params, states, iters, chi2, NULL);
}
