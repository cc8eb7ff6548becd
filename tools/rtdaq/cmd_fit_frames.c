/* SPDX-License-Identifier: MIT */
/*
 * `rtdaq fit-frames`: run the frame pipeline (proc/pipeline) over a file of raw
 * camera frames, [frame, row, col] little-endian uint16, and write one row of
 * float64 per detected ion (columns in RTD_FF_COLUMNS, documented in
 * docs/proc.md). The file is mapped, not read, so recordings of any length work.
 * --backend cuda|auto swaps in the GPU twin of the pipeline (proc/cuda), one
 * frame per call, so both backends are compared on the same files.
 */
#include "rtdaq_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rtd_pipeline.h"
#include "rtd_util.h"

#if __has_include("rtd_fit_cuda.h")
#include "rtd_fit_cuda.h"
#define HAVE_CUDA_API 1
#else
#define HAVE_CUDA_API 0
#endif

/* Output columns, one float64 each, in this order. */
#define RTD_FF_NCOLS 19
static const char *const ff_columns[RTD_FF_NCOLS] = {
    "frame",   "x",      "y",     "amp",      "sigma", "offset", "state",
    "sigma_y", "A",      "v_amp", "v_offset", "flags", "peak_x", "peak_y",
    "roi_x0",  "roi_y0", "iters", "chi2",     "A_err"};

static const char ff_usage[] =
    "usage: rtdaq fit-frames --in FRAMES.u16 --width W --height H [options]\n"
    "  --count N            frames to process (default: all in the file)\n"
    "  --first N            skip the first N frames\n"
    "  --analysis static|shm  GAUSS_2D per ion, or GAUSS_1D(x) + SHM_1D(y) profiles\n"
    "  --out FILE.f64       one row of 19 float64 per ion (see --columns)\n"
    "  --threshold T        absolute threshold above the background (ADU); default k*MAD\n"
    "  --k K                threshold in MADs of the blurred frame (default 6)\n"
    "  --radius R|RX,RY     minimum peak separation (default 3, shm 3,A+2s)\n"
    "  --roi-size S|WxH     ROI per ion (default 11, shm 11x(2 ceil(A+4s)+1))\n"
    "  --blur S|SX,SY       Gaussian blur sigma (default 2, shm 2,sqrt(s^2+A^2/3))\n"
    "  --max-amplitude A    shm: largest motion amplitude expected (px, default 8); sets the\n"
    "                       vertical blur, radius and ROI height above (s = --sigma)\n"
    "  --background flat|smooth  background model (default static flat, shm smooth)\n"
    "  --bg-block S|WxH     smooth background block size (px; default 2x the ROI, >= 24)\n"
    "  --sigma S            initial PSF sigma (default 2)\n"
    "  --window X0,X1,Y0,Y1 analysis window [X0,X1) x [Y0,Y1) (default: whole frame)\n"
    "  --estimator lse|mle  fit estimator (default lse)\n"
    "  --bin 1|2            detect on 2x2-binned pixels (default) or full pixels\n"
    "  --no-deblend         do not refit overlapping ions with neighbours subtracted\n"
    "  --backend cpu|cuda|auto  auto = CUDA when a device is usable, else CPU (default cpu)\n"
    "  --columns            print the output column names and exit\n"
    "  --json               one summary line: frames, detections, ms_per_frame, ...\n";

static int parse_pair(const char *s, int *a, int *b, char sep)
{
    char *end;
    long x = strtol(s, &end, 10);
    if (end == s)
        return -EINVAL;
    long y = x;
    if (*end == sep || *end == ',' || *end == 'x') {
        const char *t = end + 1;
        y = strtol(t, &end, 10);
        if (end == t)
            return -EINVAL;
    }
    if (*end || x < 0 || y < 0 || x > 100000 || y > 100000)
        return -EINVAL;
    *a = (int)x;
    *b = (int)y;
    return 0;
}

static int parse_fpair(const char *s, float *a, float *b)
{
    char *end;
    double x = strtod(s, &end), y;
    if (end == s)
        return -EINVAL;
    y = x;
    if (*end == ',') {
        const char *t = end + 1;
        y = strtod(t, &end);
        if (end == t)
            return -EINVAL;
    }
    if (*end || !isfinite(x) || !isfinite(y))
        return -EINVAL;
    *a = (float)x;
    *b = (float)y;
    return 0;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int rtd_cmd_fit_frames(int argc, char **argv)
{
    enum {
        O_IN = 1,
        O_W,
        O_H,
        O_COUNT,
        O_FIRST,
        O_AN,
        O_OUT,
        O_THR,
        O_K,
        O_RAD,
        O_ROI,
        O_BLUR,
        O_SIG,
        O_WIN,
        O_EST,
        O_NODB,
        O_COLS,
        O_JSON,
        O_HELP,
        O_BIN,
        O_BACKEND,
        O_AMAX,
        O_BG,
        O_BGB
    };
    static const struct option opts[] = {{"in", required_argument, 0, O_IN},
                                         {"width", required_argument, 0, O_W},
                                         {"height", required_argument, 0, O_H},
                                         {"count", required_argument, 0, O_COUNT},
                                         {"first", required_argument, 0, O_FIRST},
                                         {"analysis", required_argument, 0, O_AN},
                                         {"out", required_argument, 0, O_OUT},
                                         {"threshold", required_argument, 0, O_THR},
                                         {"k", required_argument, 0, O_K},
                                         {"radius", required_argument, 0, O_RAD},
                                         {"roi-size", required_argument, 0, O_ROI},
                                         {"blur", required_argument, 0, O_BLUR},
                                         {"sigma", required_argument, 0, O_SIG},
                                         {"window", required_argument, 0, O_WIN},
                                         {"estimator", required_argument, 0, O_EST},
                                         {"no-deblend", no_argument, 0, O_NODB},
                                         {"columns", no_argument, 0, O_COLS},
                                         {"json", no_argument, 0, O_JSON},
                                         {"help", no_argument, 0, O_HELP},
                                         {"bin", required_argument, 0, O_BIN},
                                         {"backend", required_argument, 0, O_BACKEND},
                                         {"max-amplitude", required_argument, 0, O_AMAX},
                                         {"background", required_argument, 0, O_BG},
                                         {"bg-block", required_argument, 0, O_BGB},
                                         {0, 0, 0, 0}};
    const char *in = NULL, *out = NULL;
    long width = 0, height = 0, count = -1, first = 0;
    int json = 0, backend = 0; /* 0 cpu, 1 cuda, 2 auto */
    enum rtd_pipe_analysis an = RTD_PIPE_STATIC;
    /* Options are applied after the analysis is known (its defaults come first). */
    const char *o_thr = NULL, *o_k = NULL, *o_rad = NULL, *o_roi = NULL, *o_blur = NULL,
               *o_sig = NULL, *o_win = NULL, *o_est = NULL, *o_bin = NULL, *o_amax = NULL,
               *o_bg = NULL, *o_bgb = NULL;
    int nodb = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_IN:
            in = optarg;
            break;
        case O_OUT:
            out = optarg;
            break;
        case O_W:
            if (parse_long(optarg, 1, 65535, &width) < 0) {
                fprintf(stderr, "rtdaq fit-frames: --width '%s': expected 1..65535\n", optarg);
                return RTD_EXIT_USAGE;
            }
            break;
        case O_H:
            if (parse_long(optarg, 1, 65535, &height) < 0) {
                fprintf(stderr, "rtdaq fit-frames: --height '%s': expected 1..65535\n", optarg);
                return RTD_EXIT_USAGE;
            }
            break;
        case O_COUNT:
            if (parse_long(optarg, 1, 1L << 40, &count) < 0) {
                fprintf(stderr, "rtdaq fit-frames: --count '%s': expected a positive integer\n",
                        optarg);
                return RTD_EXIT_USAGE;
            }
            break;
        case O_FIRST:
            if (parse_long(optarg, 0, 1L << 40, &first) < 0) {
                fprintf(stderr, "rtdaq fit-frames: --first '%s': expected an integer >= 0\n",
                        optarg);
                return RTD_EXIT_USAGE;
            }
            break;
        case O_AN:
            if (rtd_pipe_analysis_parse(optarg, &an) < 0) {
                fprintf(stderr, "rtdaq fit-frames: --analysis '%s': expected static or shm\n",
                        optarg);
                return RTD_EXIT_USAGE;
            }
            break;
        case O_THR:
            o_thr = optarg;
            break;
        case O_K:
            o_k = optarg;
            break;
        case O_RAD:
            o_rad = optarg;
            break;
        case O_ROI:
            o_roi = optarg;
            break;
        case O_BLUR:
            o_blur = optarg;
            break;
        case O_SIG:
            o_sig = optarg;
            break;
        case O_WIN:
            o_win = optarg;
            break;
        case O_BIN:
            o_bin = optarg;
            break;
        case O_EST:
            o_est = optarg;
            break;
        case O_AMAX:
            o_amax = optarg;
            break;
        case O_BG:
            o_bg = optarg;
            break;
        case O_BGB:
            o_bgb = optarg;
            break;
        case O_NODB:
            nodb = 1;
            break;
        case O_BACKEND:
            if (!strcmp(optarg, "cpu")) {
                backend = 0;
            } else if (!strcmp(optarg, "cuda")) {
                backend = 1;
            } else if (!strcmp(optarg, "auto")) {
                backend = 2;
            } else {
                fprintf(stderr, "rtdaq fit-frames: --backend '%s': expected cpu, cuda or auto\n",
                        optarg);
                return RTD_EXIT_USAGE;
            }
            break;
        case O_COLS:
            for (int i = 0; i < RTD_FF_NCOLS; i++)
                printf("%d %s\n", i, ff_columns[i]);
            return RTD_EXIT_OK;
        case O_JSON:
            json = 1;
            break;
        case O_HELP:
            fputs(ff_usage, stdout);
            return RTD_EXIT_OK;
        default:
            fputs(ff_usage, stderr);
            return RTD_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rtdaq fit-frames: unexpected argument '%s'\n%s", argv[optind], ff_usage);
        return RTD_EXIT_USAGE;
    }
    if (!in || !width || !height) {
        fprintf(stderr, "rtdaq fit-frames: --in, --width and --height are required\n%s", ff_usage);
        return RTD_EXIT_USAGE;
    }

    struct rtd_pipe_config cfg;
    rtd_pipe_config_default(&cfg, an);
    float fa, fb;
    int ia, ib;
    /* Before --sigma and the explicit geometry: those override what it derives. */
    if (o_sig && parse_fpair(o_sig, &fa, &fb) == 0 && fa == fb && fa > 0.2f) {
        cfg.sigma_guess = fa;
        if (an == RTD_PIPE_SHM)
            rtd_pipe_config_set_max_amplitude(&cfg, cfg.max_amplitude);
    }
    if (o_amax) {
        if (parse_fpair(o_amax, &fa, &fb) < 0 || fa != fb || !(fa >= 0 && fa <= 20)) {
            fprintf(stderr, "rtdaq fit-frames: --max-amplitude '%s': expected 0..20 (px)\n",
                    o_amax);
            return RTD_EXIT_USAGE;
        }
        rtd_pipe_config_set_max_amplitude(&cfg, fa);
    }
    if (o_bg) {
        if (!strcmp(o_bg, "flat"))
            cfg.background = RTD_PIPE_BG_FLAT;
        else if (!strcmp(o_bg, "smooth"))
            cfg.background = RTD_PIPE_BG_SMOOTH;
        else {
            fprintf(stderr, "rtdaq fit-frames: --background '%s': expected flat or smooth\n", o_bg);
            return RTD_EXIT_USAGE;
        }
    }
    if (o_bgb) {
        if (parse_pair(o_bgb, &ia, &ib, 'x') < 0) {
            fprintf(stderr, "rtdaq fit-frames: --bg-block '%s': expected S or WxH\n", o_bgb);
            return RTD_EXIT_USAGE;
        }
        cfg.bg_block_x = ia;
        cfg.bg_block_y = ib;
    }
    if (o_thr && (parse_fpair(o_thr, &fa, &fb) < 0 || !(fa > 0) || fa != fb)) {
        fprintf(stderr, "rtdaq fit-frames: --threshold '%s': expected a number > 0\n", o_thr);
        return RTD_EXIT_USAGE;
    }
    if (o_thr)
        cfg.threshold = fa;
    if (o_k && (parse_fpair(o_k, &fa, &fb) < 0 || !(fa > 0) || fa != fb)) {
        fprintf(stderr, "rtdaq fit-frames: --k '%s': expected a number > 0\n", o_k);
        return RTD_EXIT_USAGE;
    }
    if (o_k)
        cfg.k = fa;
    if (o_rad) {
        if (parse_pair(o_rad, &ia, &ib, ',') < 0) {
            fprintf(stderr, "rtdaq fit-frames: --radius '%s': expected R or RX,RY\n", o_rad);
            return RTD_EXIT_USAGE;
        }
        cfg.radius_x = ia;
        cfg.radius_y = ib;
    }
    if (o_roi) {
        if (parse_pair(o_roi, &ia, &ib, 'x') < 0) {
            fprintf(stderr, "rtdaq fit-frames: --roi-size '%s': expected S or WxH\n", o_roi);
            return RTD_EXIT_USAGE;
        }
        cfg.roi_w = ia;
        cfg.roi_h = ib;
    }
    if (o_blur) {
        if (parse_fpair(o_blur, &fa, &fb) < 0) {
            fprintf(stderr, "rtdaq fit-frames: --blur '%s': expected S or SX,SY\n", o_blur);
            return RTD_EXIT_USAGE;
        }
        cfg.blur_x = fa;
        cfg.blur_y = fb;
    }
    if (o_sig) {
        if (parse_fpair(o_sig, &fa, &fb) < 0 || fa != fb) {
            fprintf(stderr, "rtdaq fit-frames: --sigma '%s': expected a number\n", o_sig);
            return RTD_EXIT_USAGE;
        }
        cfg.sigma_guess = fa;
    }
    if (o_win) {
        int x0, x1, y0, y1;
        if (sscanf(o_win, "%d,%d,%d,%d", &x0, &x1, &y0, &y1) != 4 || x0 < 0 || y0 < 0 ||
            x1 <= x0 + 2 || y1 <= y0 + 2 || x1 > width || y1 > height) {
            fprintf(stderr,
                    "rtdaq fit-frames: --window '%s': expected X0,X1,Y0,Y1 inside the %ldx%ld "
                    "frame\n",
                    o_win, width, height);
            return RTD_EXIT_USAGE;
        }
        cfg.xstart = x0;
        cfg.xfinish = x1;
        cfg.ystart = y0;
        cfg.yfinish = y1;
    }
    if (o_est) {
        if (!strcmp(o_est, "lse"))
            cfg.estimator = 0;
        else if (!strcmp(o_est, "mle"))
            cfg.estimator = 1;
        else {
            fprintf(stderr, "rtdaq fit-frames: --estimator '%s': expected lse or mle\n", o_est);
            return RTD_EXIT_USAGE;
        }
    }
    if (nodb)
        cfg.deblend = 0;
    if (o_bin) {
        if (strcmp(o_bin, "1") && strcmp(o_bin, "2")) {
            fprintf(stderr, "rtdaq fit-frames: --bin '%s': expected 1 or 2\n", o_bin);
            return RTD_EXIT_USAGE;
        }
        cfg.bin = o_bin[0] - '0';
    }
    char why[160];
    if (rtd_pipe_config_check(&cfg, why, sizeof why) < 0) {
        fprintf(stderr, "rtdaq fit-frames: %s\n", why);
        return RTD_EXIT_USAGE;
    }
    if (width < cfg.roi_w || height < cfg.roi_h) {
        fprintf(stderr, "rtdaq fit-frames: frame %ldx%ld is smaller than the %dx%d ROI\n", width,
                height, cfg.roi_w, cfg.roi_h);
        return RTD_EXIT_USAGE;
    }

    /* Backend: decided before the input is opened, so a missing GPU fails fast. */
    const char *backend_name = "cpu";
    char cuda_why[256] = "";
    if (backend != 0) {
#if HAVE_CUDA_API
        int ok = rtd_fit_cuda_available(cuda_why, sizeof cuda_why);
#else
        int ok = 0;
        snprintf(cuda_why, sizeof cuda_why, "this build has no CUDA backend (proc/cuda)");
#endif
        if (ok > 0) {
            backend_name = "cuda";
        } else if (backend == 1) {
            fprintf(stderr, "rtdaq fit-frames: --backend cuda: no usable CUDA device: %s\n",
                    cuda_why);
            return RTD_EXIT_USAGE;
        }
    }
    const int use_cuda = !strcmp(backend_name, "cuda");
    if (backend == 2 && use_cuda)
        fprintf(stderr, "rtdaq fit-frames: backend cuda (%s)\n", cuda_why);
    else if (backend == 2)
        fprintf(stderr, "rtdaq fit-frames: backend cpu (CUDA not usable: %s)\n", cuda_why);

    /* The input: size must be a whole number of frames, and hold the frames asked for. */
    int fd = open(in, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "rtdaq fit-frames: %s: %s\n", in, strerror(errno));
        return RTD_EXIT_USAGE;
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        fprintf(stderr, "rtdaq fit-frames: %s: not a regular file\n", in);
        close(fd);
        return RTD_EXIT_USAGE;
    }
    const uint64_t fbytes = (uint64_t)width * (uint64_t)height * 2u;
    const uint64_t size = (uint64_t)sb.st_size;
    if (size == 0) {
        fprintf(stderr, "rtdaq fit-frames: %s: empty file\n", in);
        close(fd);
        return RTD_EXIT_USAGE;
    }
    if (size % fbytes) {
        fprintf(stderr,
                "rtdaq fit-frames: %s: size %" PRIu64 " bytes is not a multiple of one %ldx%ld "
                "uint16 frame (%" PRIu64 " bytes): wrong --width/--height or a truncated file\n",
                in, size, width, height, fbytes);
        close(fd);
        return RTD_EXIT_USAGE;
    }
    const uint64_t avail = size / fbytes;
    if ((uint64_t)first >= avail) {
        fprintf(stderr,
                "rtdaq fit-frames: %s: holds %" PRIu64 " frames, --first %ld is past the end\n", in,
                avail, first);
        close(fd);
        return RTD_EXIT_USAGE;
    }
    if (count < 0)
        count = (long)(avail - (uint64_t)first);
    if ((uint64_t)first + (uint64_t)count > avail) {
        fprintf(stderr,
                "rtdaq fit-frames: %s: holds %" PRIu64 " frames of %ldx%ld, shorter than the %ld "
                "declared by --count (from frame %ld)\n",
                in, avail, width, height, count, first);
        close(fd);
        return RTD_EXIT_USAGE;
    }
    const uint16_t *frames = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (frames == MAP_FAILED) {
        fprintf(stderr, "rtdaq fit-frames: %s: mmap: %s\n", in, strerror(errno));
        return RTD_EXIT_FAIL;
    }

    int ret = RTD_EXIT_FAIL;
    struct rtd_pipe *p = NULL;
#if HAVE_CUDA_API
    struct rtd_cuda_pipe *cp = NULL;
#endif
    FILE *fo = NULL;
    struct rtd_pipe_ion *ions = malloc(sizeof *ions * (size_t)cfg.max_ions);
    uint64_t *ft = malloc(sizeof *ft * (size_t)count);
    if (!ions || !ft) {
        fprintf(stderr, "rtdaq fit-frames: out of memory\n");
        goto out;
    }
    int rc;
#if HAVE_CUDA_API
    if (use_cuda)
        rc = rtd_cuda_pipe_create(&cp, &cfg, (int)width, (int)height, NULL);
    else
#endif
        rc = rtd_pipe_create(&p, &cfg, (int)width, (int)height);
    if (rc < 0) {
        fprintf(stderr, "rtdaq fit-frames: %s pipeline: %s\n", backend_name, strerror(-rc));
        goto out;
    }
    if (out && !(fo = fopen(out, "wb"))) {
        fprintf(stderr, "rtdaq fit-frames: %s: %s\n", out, strerror(errno));
        goto out;
    }
    uint64_t detections = 0, converged = 0, dups = 0, edge = 0, overlap = 0, total_ns = 0;
    for (long f = 0; f < count; f++) {
        const uint64_t fid = (uint64_t)(first + f);
        const uint16_t *img = frames + fid * (uint64_t)width * (uint64_t)height;
        struct rtd_pipe_frame_stats st;
        int n;
#if HAVE_CUDA_API
        if (cp)
            n = rtd_cuda_pipe_process(cp, img, (int)width, (int)height, (size_t)width, fid, ions,
                                      cfg.max_ions, &st);
        else
#endif
            n = rtd_pipe_process(p, img, (int)width, (int)height, (size_t)width, fid, ions,
                                 cfg.max_ions, &st);
        if (n < 0) {
            fprintf(stderr, "rtdaq fit-frames: %s: frame %" PRIu64 ": %s\n", in, fid, strerror(-n));
            goto out;
        }
        ft[f] = st.t_total_ns;
        total_ns += st.t_total_ns;
        detections += (uint64_t)n;
        converged += st.n_converged;
        dups += st.n_duplicates;
        for (int i = 0; i < n; i++) {
            const struct rtd_pipe_ion *a = &ions[i];
            edge += (a->flags & RTD_ION_EDGE) != 0;
            overlap += (a->flags & RTD_ION_OVERLAP) != 0;
            if (!fo)
                continue;
            double row[RTD_FF_NCOLS] = {
                (double)a->frame, a->x,      a->y,     a->amp,      a->sigma, a->offset, a->state,
                a->sigma_y,       a->A,      a->v_amp, a->v_offset, a->flags, a->peak_x, a->peak_y,
                a->roi_x0,        a->roi_y0, a->iters, a->chi2,     a->A_err};
            if (fwrite(row, sizeof row, 1, fo) != 1) {
                fprintf(stderr, "rtdaq fit-frames: %s: write: %s\n", out, strerror(errno));
                goto out;
            }
        }
    }
    if (fo && fclose(fo) != 0) {
        fo = NULL;
        fprintf(stderr, "rtdaq fit-frames: %s: %s\n", out, strerror(errno));
        goto out;
    }
    fo = NULL;
    qsort(ft, (size_t)count, sizeof *ft, cmp_u64);
    const double ms = (double)total_ns / 1e6 / (double)count;
    const double med_us = (double)ft[count / 2] / 1e3;
    const double p99_us = (double)ft[(size_t)((double)(count - 1) * 0.99)] / 1e3;
    if (json)
        printf("{\"frames\":%ld,\"detections\":%" PRIu64 ",\"converged\":%" PRIu64
               ",\"duplicates\":%" PRIu64 ",\"edge\":%" PRIu64 ",\"overlap\":%" PRIu64
               ",\"ms_per_frame\":%.6f,\"us_per_frame_median\":%.3f,\"us_per_frame_p99\":%.3f,"
               "\"analysis\":\"%s\",\"columns\":%d,\"backend\":\"%s\"}\n",
               count, detections, converged, dups, edge, overlap, ms, med_us, p99_us,
               rtd_pipe_analysis_name(an), RTD_FF_NCOLS, backend_name);
    else
        printf("%ld frames, %" PRIu64 " detections (%" PRIu64 " converged, %" PRIu64
               " duplicates dropped), %.3f ms/frame (median %.1f us) on %s%s%s\n",
               count, detections, converged, dups, ms, med_us, backend_name, out ? " -> " : "",
               out ? out : "");
    ret = RTD_EXIT_OK;
out:
    if (fo)
        fclose(fo);
    rtd_pipe_destroy(p);
#if HAVE_CUDA_API
    rtd_cuda_pipe_destroy(cp);
#endif
    free(ions);
    free(ft);
    munmap((void *)(uintptr_t)frames, size);
    return ret;
}
