/* SPDX-License-Identifier: MIT */
/*
 * `rtdaq-bench <case-group> [--json] ...`: benchmark programs. Each group prints
 * one JSON object per line per case with --json (fields at least case, impl,
 * median_of and a rate), and a human table otherwise. Exit 0 ok, 1 failure, 2 usage.
 */
#ifndef RTD_BENCH_H
#define RTD_BENCH_H

int rtd_bench_ring(int argc, char **argv);     /* bench_ring.c: shm rings vs ZeroMQ ipc vs memcpy */
int rtd_bench_acq(int argc, char **argv);      /* bench_acq.c: packet and frame ingest vs epoll */
int rtd_bench_fit(int argc, char **argv);      /* bench_fit.c: fits and the frame pipeline */
int rtd_bench_pipeline(int argc, char **argv); /* bench_pipeline.c: frame pipeline per frame */
int rtd_bench_wavelet(int argc, char **argv);  /* bench_wavelet.c: cwt/wct vs bare FFTW */
int rtd_bench_cuda(int argc, char **argv);     /* bench_cuda.c: GPU fits and frame pipeline */

#endif
