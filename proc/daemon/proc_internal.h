/* SPDX-License-Identifier: MIT */
/*
 * What rtdaq-proc's supervisor and its worker processes share: the parsed
 * options, and one slot per worker holding the shared-memory objects the
 * supervisor created for it before fork (its stats segment with every counter
 * allocated, its results ring). A worker inherits the slot across fork, writes
 * the counters through the inherited pointers and attaches to its results
 * ring by name; so a restarted worker resumes the same counters and the same
 * ring, and readers never see either disappear.
 */
#ifndef RTD_PROC_INTERNAL_H
#define RTD_PROC_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "rtd_pipeline.h"
#include "rtd_shm.h"

#define PROC_MAX_WORKERS  16
#define PROC_MAX_BANDS    32
#define PROC_MAX_PAIRS    16
#define PROC_MAX_CHANNELS 256

enum proc_role { PROC_ROLE_FITS = 1, PROC_ROLE_WAVELET = 2 };

/* --backend; AUTO is resolved by the supervisor before the workers start. */
enum proc_backend { PROC_BACKEND_CPU = 0, PROC_BACKEND_CUDA = 1, PROC_BACKEND_AUTO = 2 };

struct proc_opts {
    const char *instance;
    int cpu;     /* first worker's core; -1 = do not pin */
    int workers; /* 0 = auto */
    int worker_id;
    int fifo;
    int mlock;
    int mode; /* bit set of PROC_ROLE_* */
    double duration;
    const char *frames_ring, *packets_ring, *group;
    uint64_t results_bytes;
    int poll_us;
    int log_level;
    struct rtd_pipe_config pipe;
    int backend;           /* enum proc_backend; CPU or CUDA once the workers run */
    int cuda_batch;        /* frames per GPU launch */
    uint64_t cuda_wait_ns; /* launch a partial batch after its first frame waited this long */
    /* wavelet streaming */
    int window, hop;
    double dt, dj;
    const char *mother;
    int n_bands;
    double band_lo[PROC_MAX_BANDS], band_hi[PROC_MAX_BANDS];
    int n_channels; /* 0 = every client */
    uint32_t channels[PROC_MAX_CHANNELS];
    int n_pairs;
    uint32_t pair_a[PROC_MAX_PAIRS], pair_b[PROC_MAX_PAIRS];
    int max_clients;
    int reliable;
};

/* Counters of one worker, allocated by the supervisor (one writer: the worker). */
struct proc_counters {
    _Atomic uint64_t *processed, *ions, *converged, *failed, *skipped, *partial, *truncated,
        *busy_ns, *cur_frame, *cur_seq, *dropped, *pid, *cpu, *rt, *restarts, *backend_cuda;
    /* wavelet */
    _Atomic uint64_t *packets, *samples, *clients, *hops, *cwts, *cohs, *lapped;
    struct rtd_hist *latency, *pipeline;
    struct rtd_hist *batch; /* fits: added GPU batching wait per frame (latency.batch) */
};

struct proc_worker {
    int index; /* 0 .. n-1 within this supervisor */
    int id;    /* worker id: names "results.w<id>", "stats.proc.w<id>" */
    int role;
    int cpu;
    char ring_name[48]; /* its results ring */
    struct rtd_stats *stats;
    struct rtd_ring *ring; /* the supervisor's (creator's) handle; workers attach their own */
    struct proc_counters c;
    pid_t pid;
    pthread_t thread; /* in-process mode (rtd_proc_main with threads) */
    int threaded;
    uint64_t started_ns;
    unsigned quick_deaths;
};

extern volatile sig_atomic_t proc_stop;
/* Set in a worker process when its supervisor died: stop without leaving groups. */
extern volatile sig_atomic_t proc_orphaned;

int proc_worker_fits(const struct proc_opts *o, struct proc_worker *w);
int proc_worker_wavelet(const struct proc_opts *o, struct proc_worker *w, int n_wavelet,
                        int wavelet_index);

#endif
