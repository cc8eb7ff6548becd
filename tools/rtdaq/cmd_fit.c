/* SPDX-License-Identifier: MIT */
/*
 * `rtdaq fit`: batch Levenberg-Marquardt fits (proc/fit, or the CUDA backend)
 * on raw arrays in the reference-data layout: DATA is n_fits rows of --points
 * float32 samples, INIT n_fits rows of start values, PARAMS the same shape out;
 * states and iterations as int32 per fit, chi2 as float32 per fit. Input is
 * checked before any fit runs: a malformed file is an error naming the file and
 * the problem (exit 2), never a silently short or NaN-filled result.
 */
#include "rtdaq_cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rtd_fit.h"
#include "rtd_util.h"

#if __has_include("rtd_fit_cuda.h")
#include "rtd_fit_cuda.h"
#define HAVE_CUDA_API 1
#else
#define HAVE_CUDA_API 0
#endif

static const char fit_usage[] =
    "usage: rtdaq fit --model gauss2d|gauss1d|shm1d|shm-legacy --points N\n"
    "                 --in DATA.f32 --init INIT.f32 --out PARAMS.f32 [options]\n"
    "  --states FILE.i32      per-fit state (0 converged, 1 max iterations, 2 singular,\n"
    "                         3 MLE model <= 0, 5 bad input)\n"
    "  --iters FILE.i32       per-fit iterations\n"
    "  --chi2 FILE.f32        per-fit final chi2 (LSE sum of squares or MLE deviance)\n"
    "  --count N              fit the first N fits (the files must hold at least N)\n"
    "  --estimator lse|mle    least squares (default) or Poisson maximum likelihood\n"
    "  --threads T            OpenMP threads (default: all CPUs; 1 = this thread)\n"
    "  --max-iter N           LM iterations (default 25; shm1d 50)\n"
    "  --tol X                relative chi2 change for convergence (default 1e-4; shm1d 1e-6)\n"
    "  --shm-nodes N          SHM_1D quadrature nodes, even (default: auto, >= 2.8 A/sigma + 4)\n"
    "  --isa auto|scalar|avx2|avx512|ref64   CPU kernel (default auto)\n"
    "  --backend cpu|cuda|auto  auto = CUDA when a device is usable, else CPU (default cpu)\n"
    "  --allow-nan            fit files with NaN/Inf (those fits get state 5) instead of refusing\n"
    "  --json                 one summary line (fits, seconds, fits_per_s, converged, ...)\n"
    "GAUSS_2D ROIs are square: --points is size*size, pixel (ix, iy) at iy*size + ix.\n";

/* Read a file of float32/int32 records; checks non-empty and a whole number of rows. */
static int read_rows(const char *what, const char *path, size_t row_bytes, void **buf, size_t *rows)
{
    size_t len = 0;
    int rc = rtd_read_file(path, buf, &len);
    if (rc < 0) {
        fprintf(stderr, "rtdaq fit: %s file %s: %s\n", what, path, strerror(-rc));
        return RTD_EXIT_USAGE;
    }
    if (len == 0) {
        fprintf(stderr, "rtdaq fit: %s file %s is empty\n", what, path);
        return RTD_EXIT_USAGE;
    }
    if (len % row_bytes) {
        fprintf(stderr,
                "rtdaq fit: %s file %s: size %zu bytes is not a multiple of one row "
                "(%zu bytes); wrong --points or --model?\n",
                what, path, len, row_bytes);
        return RTD_EXIT_USAGE;
    }
    *rows = len / row_bytes;
    return 0;
}

/* First NaN/Inf among n floats, or -1. */
static long first_nonfinite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return (long)i;
    return -1;
}

static int write_out(const char *what, const char *path, const void *buf, size_t len)
{
    int rc = rtd_write_file(path, buf, len);
    if (rc < 0) {
        fprintf(stderr, "rtdaq fit: cannot write %s file %s: %s\n", what, path, strerror(-rc));
        return RTD_EXIT_FAIL;
    }
    return 0;
}

static int parse_u32(const char *opt, const char *s, uint32_t min, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v < min || v > UINT32_MAX || s[0] == '-') {
        fprintf(stderr, "rtdaq fit: %s: bad value '%s'\n", opt, s);
        return -EINVAL;
    }
    *out = (uint32_t)v;
    return 0;
}

enum backend { BK_CPU, BK_CUDA, BK_AUTO };

int rtd_cmd_fit(int argc, char **argv)
{
    const char *in = NULL, *init_path = NULL, *out = NULL, *states_path = NULL;
    const char *iters_path = NULL, *chi2_path = NULL;
    int model = -1, json = 0, allow_nan = 0;
    enum backend backend = BK_CPU;
    uint32_t points = 0, count = 0, max_iter = 0, shm_nodes = 0, threads = 0;
    int have_count = 0, isa = RTD_FIT_ISA_AUTO, est = RTD_FIT_LSE;
    float tol = 0.0f;
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'},   {"points", required_argument, 0, 'p'},
        {"in", required_argument, 0, 'i'},      {"init", required_argument, 0, 'I'},
        {"out", required_argument, 0, 'o'},     {"states", required_argument, 0, 's'},
        {"iters", required_argument, 0, 'n'},   {"chi2", required_argument, 0, 'c'},
        {"count", required_argument, 0, 'N'},   {"estimator", required_argument, 0, 'e'},
        {"threads", required_argument, 0, 't'}, {"max-iter", required_argument, 0, 'M'},
        {"tol", required_argument, 0, 'T'},     {"shm-nodes", required_argument, 0, 'S'},
        {"isa", required_argument, 0, 'A'},     {"backend", required_argument, 0, 'B'},
        {"allow-nan", no_argument, 0, 'a'},     {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0},
    };
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'm':
            model = rtd_fit_model_parse(optarg);
            if (model < 0) {
                fprintf(stderr, "rtdaq fit: unknown --model '%s'\n%s", optarg, fit_usage);
                return RTD_EXIT_USAGE;
            }
            break;
        case 'p':
            if (parse_u32("--points", optarg, 1, &points))
                return RTD_EXIT_USAGE;
            break;
        case 'i':
            in = optarg;
            break;
        case 'I':
            init_path = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 's':
            states_path = optarg;
            break;
        case 'n':
            iters_path = optarg;
            break;
        case 'c':
            chi2_path = optarg;
            break;
        case 'N':
            if (parse_u32("--count", optarg, 0, &count))
                return RTD_EXIT_USAGE;
            have_count = 1;
            break;
        case 'e':
            if (!strcmp(optarg, "lse") || !strcmp(optarg, "lsq")) {
                est = RTD_FIT_LSE;
            } else if (!strcmp(optarg, "mle")) {
                est = RTD_FIT_MLE;
            } else {
                fprintf(stderr, "rtdaq fit: --estimator must be lse or mle, not '%s'\n", optarg);
                return RTD_EXIT_USAGE;
            }
            break;
        case 't':
            if (parse_u32("--threads", optarg, 0, &threads))
                return RTD_EXIT_USAGE;
            break;
        case 'M':
            if (parse_u32("--max-iter", optarg, 1, &max_iter))
                return RTD_EXIT_USAGE;
            break;
        case 'T': {
            char *end;
            double v = strtod(optarg, &end);
            if (end == optarg || *end || !(v > 0.0) || !(v < 1.0)) {
                fprintf(stderr, "rtdaq fit: --tol must be in (0, 1), not '%s'\n", optarg);
                return RTD_EXIT_USAGE;
            }
            tol = (float)v;
            break;
        }
        case 'S':
            if (parse_u32("--shm-nodes", optarg, 2, &shm_nodes) || (shm_nodes & 1u) ||
                shm_nodes > 256) {
                fprintf(stderr, "rtdaq fit: --shm-nodes must be even, 2..256\n");
                return RTD_EXIT_USAGE;
            }
            break;
        case 'A':
            isa = rtd_fit_isa_parse(optarg);
            if (isa < 0) {
                fprintf(stderr, "rtdaq fit: unknown --isa '%s'\n", optarg);
                return RTD_EXIT_USAGE;
            }
            if (!rtd_fit_isa_supported(isa)) {
                fprintf(stderr, "rtdaq fit: --isa %s: this CPU does not support it\n", optarg);
                return RTD_EXIT_USAGE;
            }
            break;
        case 'B':
            if (!strcmp(optarg, "cpu")) {
                backend = BK_CPU;
            } else if (!strcmp(optarg, "cuda")) {
                backend = BK_CUDA;
            } else if (!strcmp(optarg, "auto")) {
                backend = BK_AUTO;
            } else {
                fprintf(stderr, "rtdaq fit: --backend must be cpu, cuda or auto\n");
                return RTD_EXIT_USAGE;
            }
            break;
        case 'a':
            allow_nan = 1;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            fputs(fit_usage, stdout);
            return RTD_EXIT_OK;
        default:
            fputs(fit_usage, stderr);
            return RTD_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rtdaq fit: unexpected argument '%s'\n%s", argv[optind], fit_usage);
        return RTD_EXIT_USAGE;
    }
    if (model < 0 || !points || !in || !init_path || !out) {
        fprintf(stderr, "rtdaq fit: --model, --points, --in, --init and --out are required\n%s",
                fit_usage);
        return RTD_EXIT_USAGE;
    }
    const int np = rtd_fit_n_params((enum rtd_fit_model)model);
    if (points < (uint32_t)np) {
        fprintf(stderr, "rtdaq fit: --points %u is fewer than the %d parameters of %s\n", points,
                np, rtd_fit_model_name((enum rtd_fit_model)model));
        return RTD_EXIT_USAGE;
    }
    if (model == RTD_FIT_GAUSS_2D) {
        uint32_t s = (uint32_t)lround(sqrt((double)points));
        if (s * s != points) {
            fprintf(stderr, "rtdaq fit: gauss2d needs a square ROI; --points %u is not size^2\n",
                    points);
            return RTD_EXIT_USAGE;
        }
    }

    /* ---- backend choice ---- */
    const char *backend_name = "cpu";
    char why[256] = "";
    if (backend != BK_CPU) {
#if HAVE_CUDA_API
        int ok = rtd_fit_cuda_available(why, sizeof(why));
#else
        int ok = 0;
        snprintf(why, sizeof(why), "this build has no CUDA backend (proc/cuda)");
#endif
        if (ok > 0) {
            backend_name = "cuda";
        } else if (backend == BK_CUDA) {
            fprintf(stderr, "rtdaq fit: --backend cuda: no usable CUDA device: %s\n", why);
            return RTD_EXIT_USAGE; /* as fit-frames and rtdaq-proc: the request cannot be met */
        }
    }

    /* ---- input ---- */
    float *data = NULL, *init = NULL, *params = NULL, *chi2 = NULL;
    int32_t *states = NULL, *iters = NULL;
    size_t nd = 0, ni = 0;
    int ret = read_rows("data", in, sizeof(float) * points, (void **)&data, &nd);
    if (ret)
        goto done;
    ret = read_rows("init", init_path, sizeof(float) * (size_t)np, (void **)&init, &ni);
    if (ret)
        goto done;
    size_t n = nd;
    if (have_count) {
        if (nd < count || ni < count) {
            const char *which = nd < count ? in : init_path;
            fprintf(stderr,
                    "rtdaq fit: %s file %s is shorter than declared: %zu fits, --count %u\n",
                    nd < count ? "data" : "init", which, nd < count ? nd : ni, count);
            ret = RTD_EXIT_USAGE;
            goto done;
        }
        n = count;
    } else if (nd != ni) {
        fprintf(stderr,
                "rtdaq fit: data file %s holds %zu fits of %u points but init file %s holds %zu "
                "rows of %d parameters\n",
                in, nd, points, init_path, ni, np);
        ret = RTD_EXIT_USAGE;
        goto done;
    }
    if (!allow_nan) {
        long bad = first_nonfinite(data, n * points);
        if (bad >= 0) {
            fprintf(stderr,
                    "rtdaq fit: data file %s: NaN/Inf at fit %ld, sample %ld (use --allow-nan "
                    "to fit the rest)\n",
                    in, bad / (long)points, bad % (long)points);
            ret = RTD_EXIT_USAGE;
            goto done;
        }
        bad = first_nonfinite(init, n * (size_t)np);
        if (bad >= 0) {
            fprintf(stderr, "rtdaq fit: init file %s: NaN/Inf at fit %ld, parameter %ld\n",
                    init_path, bad / np, bad % np);
            ret = RTD_EXIT_USAGE;
            goto done;
        }
    }
    params = malloc(sizeof(float) * n * (size_t)np + 1);
    states = malloc(sizeof(int32_t) * n + 1);
    iters = malloc(sizeof(int32_t) * n + 1);
    chi2 = malloc(sizeof(float) * n + 1);
    if (!params || !states || !iters || !chi2) {
        fprintf(stderr, "rtdaq fit: out of memory for %zu fits\n", n);
        ret = RTD_EXIT_FAIL;
        goto done;
    }

    /* ---- fit ---- */
    struct rtd_fit_opts o;
    rtd_fit_opts_default(&o, (enum rtd_fit_model)model, points);
    o.estimator = (enum rtd_fit_estimator)est;
    if (max_iter)
        o.max_iter = max_iter;
    if (tol > 0.0f)
        o.tol = tol;
    o.shm_nodes = shm_nodes;
    o.threads = (int)threads;
    o.isa = isa;
    int used_threads = threads ? (int)threads : omp_get_max_threads();
    int used_isa = isa == RTD_FIT_ISA_AUTO ? rtd_fit_isa_detect() : isa;
    uint64_t t0 = rtd_now_ns();
    int rc;
#if HAVE_CUDA_API
    if (!strcmp(backend_name, "cuda"))
        rc = rtd_fit_cuda_batch(&o, n, data, init, params, states, iters, chi2);
    else
#endif
        rc = rtd_fit_batch(&o, n, data, init, params, states, iters, chi2);
    double secs = (double)(rtd_now_ns() - t0) * 1e-9;
    if (rc < 0) {
        fprintf(stderr, "rtdaq fit: %s fit failed: %s\n", backend_name, strerror(-rc));
        ret = rc == -EINVAL ? RTD_EXIT_USAGE : RTD_EXIT_FAIL;
        goto done;
    }

    /* ---- output ---- */
    ret = write_out("params", out, params, sizeof(float) * n * (size_t)np);
    if (!ret && states_path)
        ret = write_out("states", states_path, states, sizeof(int32_t) * n);
    if (!ret && iters_path)
        ret = write_out("iters", iters_path, iters, sizeof(int32_t) * n);
    if (!ret && chi2_path)
        ret = write_out("chi2", chi2_path, chi2, sizeof(float) * n);
    if (ret)
        goto done;

    size_t by_state[6] = {0};
    double it_sum = 0;
    for (size_t k = 0; k < n; k++) {
        if (states[k] >= 0 && states[k] <= 5)
            by_state[states[k]]++;
        it_sum += iters[k];
    }
    double rate = secs > 0 ? (double)n / secs : 0.0;
    if (json) {
        printf("{\"fits\":%zu,\"seconds\":%.6f,\"fits_per_s\":%.1f,\"converged\":%zu,"
               "\"max_iteration\":%zu,\"singular\":%zu,\"neg_curvature\":%zu,\"bad_input\":%zu,"
               "\"mean_iters\":%.3f,\"model\":\"%s\",\"estimator\":\"%s\",\"points\":%u,"
               "\"isa\":\"%s\",\"threads\":%d,\"backend\":\"%s\",\"max_iter\":%u,\"tol\":%g}\n",
               n, secs, rate, by_state[0], by_state[1], by_state[2], by_state[3], by_state[5],
               n ? it_sum / (double)n : 0.0, rtd_fit_model_name((enum rtd_fit_model)model),
               est == RTD_FIT_MLE ? "mle" : "lse", points,
               strcmp(backend_name, "cuda") ? rtd_fit_isa_name(used_isa) : "cuda",
               strcmp(backend_name, "cuda") ? used_threads : 0, backend_name, o.max_iter,
               (double)o.tol);
    } else {
        printf("%zu %s fits (%s, %u points) in %.3f s: %.0f fits/s on %s (%s, %d threads)\n", n,
               rtd_fit_model_name((enum rtd_fit_model)model), est == RTD_FIT_MLE ? "mle" : "lse",
               points, secs, rate, backend_name, rtd_fit_isa_name(used_isa), used_threads);
        printf("converged %zu, max iterations %zu, singular %zu, negative MLE model %zu, bad "
               "input %zu; mean iterations %.2f\n",
               by_state[0], by_state[1], by_state[2], by_state[3], by_state[5],
               n ? it_sum / (double)n : 0.0);
    }
    ret = RTD_EXIT_OK;
done:
    free(data);
    free(init);
    free(params);
    free(states);
    free(iters);
    free(chi2);
    return ret;
}
