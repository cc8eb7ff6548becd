/* SPDX-License-Identifier: MIT */
/*
 * Records rtdaq-proc publishes, one packet ring per worker: fit results in
 * "results.w<k>", streaming wavelet results in "wavelet.w<k>". Each record is
 * one struct rtd_pkt_hdr (shm/rtd_abi.h) whose `type` is one of RTD_RES_*,
 * followed by the payload below. Everything is little-endian, fixed-width,
 * naturally aligned; readers must check hdr->len >= the size they expect and
 * ignore bytes beyond it (fields are only ever appended, with RTD_RES_VERSION
 * bumped). The control daemon republishes these over ZeroMQ.
 *
 * Fit results, per frame, published together (one rtd_pkt_publish):
 *   n_ions x RTD_RES_ION   (struct rtd_res_ion,   64 B), brightest ion first,
 *   then     RTD_RES_FRAME (struct rtd_res_frame, 96 B): the summary, last,
 *   so a reader that sees the summary has seen every ion of that frame.
 *
 * Wavelet results, per client per hop:
 *   RTD_RES_WPOWER (struct rtd_res_wpower + n_bands float64): mean scale-averaged
 *   power per band over the window (TC98 eq. 24, units of the signal squared);
 *   RTD_RES_WCOH (struct rtd_res_wcoh + n_bands float64): mean wavelet coherence
 *   R^2 per band over the window for a configured channel pair.
 * Band edges are Fourier periods in the time unit of dt (seconds by default),
 * listed in the worker's --bands option and in docs/proc.md.
 */
#ifndef RTD_RESULTS_H
#define RTD_RESULTS_H

#include <stddef.h>
#include <stdint.h>

#define RTD_RES_VERSION 1

enum rtd_res_type {
    RTD_RES_ION = 0x101,    /* struct rtd_res_ion */
    RTD_RES_FRAME = 0x102,  /* struct rtd_res_frame */
    RTD_RES_WPOWER = 0x201, /* struct rtd_res_wpower + float64 power[n_bands] */
    RTD_RES_WCOH = 0x202,   /* struct rtd_res_wcoh + float64 coherence[n_bands] */
};

/* RTD_RES_FRAME flags. */
enum {
    RTD_RES_F_PARTIAL = 1,   /* the frame was marked partial by acq (missing packets) */
    RTD_RES_F_TRUNCATED = 2, /* more peaks than --max-ions: the brightest were kept */
    RTD_RES_F_SKIPPED = 4,   /* not analysed (unsupported pixel format / geometry) */
    RTD_RES_F_ADOPTED = 8,   /* reserved: re-offered after its worker died (not reported yet) */
};

/* One ion (64 B). Static analysis: sigma_y = sigma, A = 0. Positions in frame pixels. */
struct rtd_res_ion {
    uint64_t frame_seq; /* position of the frame in the frames ring */
    uint64_t frame_id;  /* the source's frame number */
    float x, y;         /* centre (px; x = column, y = row) */
    float amp, sigma;   /* static: GAUSS_2D; shm: horizontal GAUSS_1D profile */
    float offset;       /* background of the fit (per pixel, or per profile sample) */
    float sigma_y;      /* shm: PSF sigma of the vertical SHM_1D profile */
    float A;            /* shm: amplitude of motion (px) */
    float chi2;
    int32_t state;  /* fit state, 0 = converged (Gpufit's states) */
    int32_t flags;  /* RTD_ION_* of proc/pipeline/rtd_pipeline.h: 1 edge, 2 overlap, 4 outside */
    uint16_t index; /* ion index within the frame */
    uint16_t worker;
    uint32_t iters;
};
_Static_assert(sizeof(struct rtd_res_ion) == 64, "rtd_res_ion is 64 bytes");
_Static_assert(offsetof(struct rtd_res_ion, x) == 16, "rtd_res_ion layout");
_Static_assert(offsetof(struct rtd_res_ion, state) == 48, "rtd_res_ion layout");
_Static_assert(offsetof(struct rtd_res_ion, iters) == 60, "rtd_res_ion layout");

/* Per-frame summary (96 B). */
struct rtd_res_frame {
    uint64_t frame_seq;
    uint64_t frame_id;
    uint64_t ts_mono_ns;   /* frame acquired (CLOCK_MONOTONIC, from the frames ring) */
    uint64_t ts_real_ns;   /* frame acquired (CLOCK_REALTIME) */
    uint64_t done_mono_ns; /* results published (CLOCK_MONOTONIC): latency = done - ts */
    uint32_t n_ions, n_converged, n_failed, n_duplicates;
    uint32_t n_peaks;
    uint32_t t_detect_ns, t_fit_ns, t_total_ns; /* pipeline time on the worker's core */
    float background, noise, threshold;         /* per pixel, ADU */
    uint16_t worker;
    uint8_t analysis; /* 0 static, 1 shm */
    uint8_t version;  /* RTD_RES_VERSION */
    uint32_t flags;   /* RTD_RES_F_* */
    uint16_t width, height;
};
_Static_assert(sizeof(struct rtd_res_frame) == 96, "rtd_res_frame is 96 bytes");
_Static_assert(offsetof(struct rtd_res_frame, n_ions) == 40, "rtd_res_frame layout");
_Static_assert(offsetof(struct rtd_res_frame, background) == 72, "rtd_res_frame layout");
_Static_assert(offsetof(struct rtd_res_frame, worker) == 84, "rtd_res_frame layout");

/* Band power of one client's window (48 B + 8 B per band). */
struct rtd_res_wpower {
    uint32_t client;
    uint16_t n_bands;
    uint8_t version; /* RTD_RES_VERSION */
    uint8_t reserved0;
    uint64_t last_seq;     /* sender seq of the newest packet in the window */
    uint64_t last_ts_ns;   /* sender CLOCK_REALTIME of the newest packet */
    uint64_t done_mono_ns; /* result published (CLOCK_MONOTONIC) */
    uint32_t window, hop;  /* samples */
    double dt;             /* sample interval (time unit of the band edges) */
    /* followed by double power[n_bands] */
};
_Static_assert(sizeof(struct rtd_res_wpower) == 48, "rtd_res_wpower is 48 bytes");

/* Coherence of a channel pair over the window (48 B + 8 B per band). */
struct rtd_res_wcoh {
    uint32_t client_a, client_b;
    uint16_t n_bands;
    uint8_t version;
    uint8_t reserved0;
    uint32_t window;
    uint64_t last_ts_ns;
    uint64_t done_mono_ns;
    uint32_t hop;
    uint32_t reserved1;
    double dt;
    /* followed by double coherence[n_bands] */
};
_Static_assert(sizeof(struct rtd_res_wcoh) == 48, "rtd_res_wcoh is 48 bytes");

#endif
