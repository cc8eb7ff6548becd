/* SPDX-License-Identifier: MIT */
/*
 * proc/pipeline: the per-frame ion pipeline. A camera frame (u16 mono,
 * row-major [row][col], x = column, y = row, pixel centres at integer
 * coordinates) goes through: analysis window -> background and noise estimate
 * (median + k*MAD of the blurred window, subsampled) -> separable Gaussian blur
 * -> threshold -> local maxima with a minimum separation -> one ROI per ion
 * (shifted inside the frame at the edges) -> initial guesses -> one batched call
 * of the SIMD fit library for every ROI of the frame -> duplicate removal and
 * a second, de-blended fit for overlapping spots.
 *
 * Background: a flat estimate (the window's median, static default) or a
 * smooth model (SHM default): clipped means and noise of blocks, bilinear
 * between block centres, subtracted and divided out before the blur, so the
 * threshold is k MADs of the local noise everywhere and a gradient neither
 * hides dim ions nor makes false ones (docs/proc.md).
 *
 * Two analyses, as the lab handler had them:
 *   RTD_PIPE_STATIC: GAUSS_2D (amp, x0, y0, sigma, offset) on a square ROI.
 *   RTD_PIPE_SHM:    ions oscillating vertically: GAUSS_1D on the horizontal
 *                    profile (ROI summed over rows) and SHM_1D on the vertical
 *                    profile (ROI summed over columns), giving x, y, sigma_x,
 *                    sigma_y and the motion amplitude A.
 *
 * A pipeline object owns its scratch memory (allocated at create or when the
 * frame geometry grows); processing a frame allocates nothing. One object per
 * thread.
 */
#ifndef RTD_PIPELINE_H
#define RTD_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

enum rtd_pipe_analysis { RTD_PIPE_STATIC = 0, RTD_PIPE_SHM = 1 };

/* Background model of the detection (and, for shm, of the fitted profiles). */
enum rtd_pipe_background { RTD_PIPE_BG_FLAT = 0, RTD_PIPE_BG_SMOOTH = 1 };

/* Per-ion flags (bit mask); the fit state is separate (0 converged, as Gpufit). */
enum {
    RTD_ION_EDGE = 1,    /* the ROI had to be shifted: the ion is near the frame edge */
    RTD_ION_OVERLAP = 2, /* another ion's centre lies inside this ion's ROI (de-blended refit) */
    RTD_ION_OUTSIDE = 4, /* centre outside its ROI, or width < min_sigma (hot pixel) or > ROI */
};

struct rtd_pipe_config {
    enum rtd_pipe_analysis analysis;
    /* Analysis window in frame pixels, [xstart, xfinish) x [ystart, yfinish); 0/0 = whole frame. */
    int xstart, xfinish, ystart, yfinish;
    float blur_x, blur_y;   /* Gaussian blur sigma per axis (px); 0 = no blur on that axis */
    float k;                /* threshold = median + k * MAD of the blurred window */
    float threshold;        /* > 0: absolute threshold above the median instead (ADU) */
    float min_excess;       /* floor of k*MAD (ADU): keeps flat synthetic frames clean */
    int radius_x, radius_y; /* local-maximum half-window: minimum peak separation (px) */
    int roi_w, roi_h;       /* ROI size per ion (px) */
    int min_pixels;         /* pixels above threshold in the 3x3 around a peak (noise reject) */
    int bin;                /* detect on bin x bin binned pixels (1 or 2; fits use full pixels) */
    int subsample;          /* background statistics on every n-th (binned) row and column */
    float sigma_guess;      /* initial PSF sigma (px) */
    float dup_dist;         /* fitted centres closer than this are one ion (px) */
    int estimator;          /* 0 = LSE, 1 = MLE (passed to the fit library) */
    int max_iter;           /* LM iterations per fit */
    int deblend;            /* refit overlapping ions with their neighbours subtracted */
    int max_ions;           /* at most this many ions per frame (brightest kept) */
    float min_snr;          /* static: drop fits with sigma*amp*sqrt(pi)/noise below (0 = keep) */
    float min_sigma;        /* fits narrower than this (px) are hot pixels or cosmics: OUTSIDE */
    int keep_outside;       /* report RTD_ION_OUTSIDE fits instead of dropping them */
    /* Appended (issue 22); rtd_pipe_config_default fills them. */
    int background;             /* enum rtd_pipe_background */
    int bg_block_x, bg_block_y; /* smooth background: block size (px); 0 = 2 x the ROI, >= 24 */
    float max_amplitude;        /* shm: largest motion amplitude expected (px); sets blur_y,
                                   radius_y and roi_h (rtd_pipe_config_set_max_amplitude) */
    int tie_sigma;              /* shm: the vertical fit's PSF sigma is the horizontal fit's (a
                                   round PSF), not a free parameter traded against A */
};

/* One detected ion. Static analysis: sigma_y = sigma, A = 0, v_amp/v_offset = 0. */
struct rtd_pipe_ion {
    uint64_t frame;
    double x, y;            /* frame coordinates (px) */
    double amp, sigma;      /* static: GAUSS_2D amp/sigma; shm: horizontal GAUSS_1D profile */
    double offset;          /* per pixel (static) or per profile sample (shm, horizontal) */
    double sigma_y;         /* shm: SHM_1D PSF sigma of the vertical profile */
    double A;               /* shm: amplitude of motion (px) */
    double v_amp, v_offset; /* shm: the vertical profile's amplitude and offset */
    double chi2;
    int32_t state; /* fit state (shm: the first non-zero of horizontal, vertical) */
    int32_t flags; /* RTD_ION_* */
    int32_t iters;
    int32_t peak_x, peak_y; /* detection peak (px) */
    int32_t roi_x0, roi_y0; /* ROI origin (px) */
    double A_err;           /* shm: standard error of A (px) from the fit's covariance, scaled
                               by chi2/dof; A < A_err means "not resolved", not "A = 0" */
};

/* Per-frame figures, times in ns of CLOCK_MONOTONIC. */
struct rtd_pipe_frame_stats {
    uint32_t n_peaks;      /* local maxima above threshold (before fits) */
    uint32_t n_ions;       /* ions reported */
    uint32_t n_duplicates; /* peaks dropped as duplicates after the fit */
    uint32_t n_converged;  /* fits with state 0 */
    uint32_t n_failed;     /* fits with state != 0 */
    uint32_t n_rejected;   /* fits dropped: centre outside the ROI, bad width, or below min_snr */
    uint32_t truncated;    /* 1 if more peaks than max_ions / the caller's array */
    float background;      /* median of the blurred window (ADU) */
    float noise;           /* MAD of the blurred window (ADU) */
    float threshold;       /* absolute threshold used (ADU) */
    uint64_t t_detect_ns, t_fit_ns, t_total_ns;
};

struct rtd_pipe; /* opaque */

/* Defaults as the lab pipeline used them for each analysis (see docs/proc.md). */
void rtd_pipe_config_default(struct rtd_pipe_config *cfg, enum rtd_pipe_analysis analysis);

/*
 * shm: set the largest expected motion amplitude A (px) and what follows from it, with
 * s = sigma_guess: blur_y = sqrt(s^2 + A^2/3) (the Gaussian whose worst matched-filter
 * efficiency over amplitudes 0..A is highest: 0.85 at A = 8), radius_y = A + 2s (one peak per
 * ion, ions further apart than that stay two), roi_h = 2 ceil(A + 4s) + 1. 0 <= A <= 20.
 */
void rtd_pipe_config_set_max_amplitude(struct rtd_pipe_config *cfg, float A);

/* Check a configuration; 0 or -EINVAL with a reason in err (if err). */
int rtd_pipe_config_check(const struct rtd_pipe_config *cfg, char *err, size_t errcap);

/* Create for frames up to width x height (larger frames grow the scratch, off the hot path). */
int rtd_pipe_create(struct rtd_pipe **out, const struct rtd_pipe_config *cfg, int width,
                    int height);
void rtd_pipe_destroy(struct rtd_pipe *p);

/*
 * Process one frame: stride is in pixels (>= width). Writes at most max_ions
 * ions (brightest first when truncated); returns the number written or -errno
 * (-EINVAL: frame smaller than the ROI, bad geometry; -ENOMEM). st may be NULL.
 */
int rtd_pipe_process(struct rtd_pipe *p, const uint16_t *frame, int width, int height,
                     size_t stride, uint64_t frame_id, struct rtd_pipe_ion *ions, int max_ions,
                     struct rtd_pipe_frame_stats *st);

/* Name of an analysis ("static", "shm") and back; -EINVAL for an unknown name. */
const char *rtd_pipe_analysis_name(enum rtd_pipe_analysis a);
int rtd_pipe_analysis_parse(const char *name, enum rtd_pipe_analysis *out);

#endif
