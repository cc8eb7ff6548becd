/* SPDX-License-Identifier: MIT */
/*
 * GPU fits against the CPU library on the reference data, for every model and
 * estimator, same ROIs and start values:
 *  - against the CPU's scalar float32 kernel, which the GPU kernel follows
 *    operation by operation: states agree (0.5 % slack for a chi2 that crosses
 *    the tolerance one iteration apart) and, for every fit converged in both,
 *    centres within 1e-4 px for the least-squares Gaussian fits; MLE and SHM_1D
 *    amplify the last-ulp differences of exp/log (deviance weights, the flat
 *    A-sigma valley), so there the bound is proc/fit's own 2e-3 px;
 *  - against the CPU's default (SIMD) kernel: the tolerance proc/fit states
 *    between its own kernels, 2e-3 px for >= 99.5 % and states for >= 98 %.
 * Also a large batch (many chunks over the streams) must give the small batch's
 * answers bit for bit.
 * Exit 0 pass, 1 fail, 77 skip (no usable CUDA device: the reason is printed).
 */
#include "rtd_fit.h"
#include "rtd_fit_cuda.h"
#include "rtd_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fails;

static float *load_f32(const char *name, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/fits/%s", RTD_TEST_DATA, name);
    void *buf;
    size_t len;
    if (rtd_read_file(path, &buf, &len) < 0 || len != n * sizeof(float)) {
        fprintf(stderr, "cannot read %s (%zu floats expected)\n", path, n);
        exit(1);
    }
    return buf;
}

struct dataset {
    const char *name;
    enum rtd_fit_model model;
    int n_points, np;
    const char *data, *init;
    int centre[2]; /* parameter indices that are positions (px) */
};

/*
 * SHM_LEGACY has no reference data: 1000 synthetic 48-sample profiles of the bare
 * arcsine (y0, R, A, offset) with Gaussian-approximated shot noise, start values off
 * the truth. Deterministic (fixed LCG seed) so that both backends see the same numbers.
 */
static void make_legacy(size_t n, float **data, float **init)
{
    uint64_t st = 12345;
    float *d = malloc(sizeof(float) * n * 48), *p = malloc(sizeof(float) * n * 4);
    for (size_t i = 0; i < n; i++) {
        double u[6];
        for (int k = 0; k < 6; k++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            u[k] = ((double)(st >> 11) + 0.5) / 9007199254740992.0;
        }
        double y0 = 23.5 + 4 * (u[0] - 0.5), R = 8 + 6 * u[1], A = 40 + 40 * u[2], off = 10;
        for (int k = 0; k < 48; k++) {
            double q = R * R - (k - y0) * (k - y0);
            double f = off + (q > 0 ? A / sqrt(q) : 0);
            double g = sqrt(-2 * log(u[3])) * cos(2 * M_PI * (u[4] + 0.0137 * k));
            d[i * 48 + (size_t)k] = (float)(f + sqrt(f) * g);
        }
        p[i * 4 + 0] = (float)(y0 + 0.4 * (u[5] - 0.5));
        p[i * 4 + 1] = (float)(R * 1.05 + 0.3);
        p[i * 4 + 2] = (float)(A * 0.9);
        p[i * 4 + 3] = (float)(off + 1);
    }
    *data = d;
    *init = p;
}

static void compare(const struct dataset *ds, enum rtd_fit_estimator est, int isa)
{
    const size_t n = 1000;
    float *data, *init;
    if (ds->data) {
        data = load_f32(ds->data, n * (size_t)ds->n_points);
        init = load_f32(ds->init, n * (size_t)ds->np);
    } else {
        make_legacy(n, &data, &init);
    }
    float *pc = calloc(n * (size_t)ds->np, sizeof(float));
    float *pg = calloc(n * (size_t)ds->np, sizeof(float));
    float *cc = calloc(n, sizeof(float)), *cg = calloc(n, sizeof(float));
    int32_t *sc = calloc(n, sizeof(int32_t)), *sg = calloc(n, sizeof(int32_t));
    int32_t *ic = calloc(n, sizeof(int32_t)), *ig = calloc(n, sizeof(int32_t));
    struct rtd_fit_opts o;
    rtd_fit_opts_default(&o, ds->model, ds->n_points);
    o.estimator = est;
    o.threads = 1;
    o.isa = isa;
    int rc1 = rtd_fit_batch(&o, n, data, init, pc, sc, ic, cc);
    int rc2 = rtd_fit_cuda_batch(&o, n, data, init, pg, sg, ig, cg);
    if (rc1 < 0 || rc2 != 0) {
        fprintf(stderr, "FAIL %s %s: cpu rc %d, cuda rc %d\n", ds->name,
                est == RTD_FIT_MLE ? "mle" : "lse", rc1, rc2);
        fails++;
        return;
    }
    const double tight =
        isa == RTD_FIT_ISA_SCALAR && est == RTD_FIT_LSE && ds->model != RTD_FIT_SHM_1D ? 1e-4
                                                                                       : 2e-3;
    size_t both = 0, state_diff = 0, pos_bad = 0, conv_cpu = 0, conv_gpu = 0, iter_diff = 0;
    double max_dpos = 0, max_rel = 0;
    for (size_t i = 0; i < n; i++) {
        conv_cpu += sc[i] == 0;
        conv_gpu += sg[i] == 0;
        if (sc[i] != sg[i]) {
            state_diff++;
            if (state_diff <= 3 && isa == RTD_FIT_ISA_SCALAR)
                fprintf(stderr, "  %s fit %zu: state cpu %d (it %d) gpu %d (it %d)\n", ds->name, i,
                        sc[i], ic[i], sg[i], ig[i]);
        }
        iter_diff += ic[i] != ig[i];
        if (sc[i] != 0 || sg[i] != 0)
            continue;
        both++;
        const float *a = pc + i * (size_t)ds->np, *b = pg + i * (size_t)ds->np;
        double dpos = 0;
        for (int k = 0; k < 2; k++)
            if (ds->centre[k] >= 0)
                dpos = fmax(dpos, fabs((double)a[ds->centre[k]] - (double)b[ds->centre[k]]));
        for (int j = 0; j < ds->np; j++) {
            double rel = fabs((double)a[j] - (double)b[j]) / fmax(1.0, fabs((double)a[j]));
            max_rel = fmax(max_rel, rel);
        }
        if (dpos > tight) {
            pos_bad++;
            if (pos_bad <= 3 && isa == RTD_FIT_ISA_SCALAR)
                fprintf(stderr, "  %s fit %zu: centre differs by %.3g px\n", ds->name, i, dpos);
        }
        max_dpos = fmax(max_dpos, dpos);
    }
    const char *en = est == RTD_FIT_MLE ? "mle" : "lse";
    const int strict = isa == RTD_FIT_ISA_SCALAR;
    printf("%-14s %s vs cpu %-6s: converged cpu %zu gpu %zu both %zu; states differ %zu, "
           "iterations differ "
           "%zu; max |dcentre| %.2e px, max rel param diff %.2e, centres > %.0e px: %zu\n",
           ds->name, en, rtd_fit_isa_name(isa), conv_cpu, conv_gpu, both, state_diff, iter_diff,
           max_dpos, max_rel, tight, pos_bad);
    /* Float rounding differs (GPU exp, summation order): a fit on the edge of the tolerance may
     * stop one iteration apart, which can flip "converged" vs "max iterations" at iteration 25.
     * Allow 0.5 % of such fits, never a wrong centre. */
    size_t loose_bad = 0;
    for (size_t i = 0; i < n; i++)
        if (sc[i] == 0 && sg[i] == 0)
            for (int k = 0; k < 2; k++)
                if (ds->centre[k] >= 0 &&
                    fabs((double)pc[i * (size_t)ds->np + (size_t)ds->centre[k]] -
                         (double)pg[i * (size_t)ds->np + (size_t)ds->centre[k]]) > 2e-3) {
                    loose_bad++;
                    break;
                }
    /* SHM_LEGACY (bare arcsine, infinite at |y - y0| = R) is ill-posed: about 30 % of fits
     * converge and proc/fit's own kernels disagree on ~1 % of states; hold it to the scalar
     * kernel it mirrors with 2 % slack (states and centres), and only report it against the SIMD
     * kernel. */
    const int fragile = ds->model == RTD_FIT_SHM_LEGACY;
    int failed = fragile  ? strict && (state_diff > n / 50 || pos_bad > both / 50)
                 : strict ? (state_diff > n / 200 || pos_bad > 0)
                          : (state_diff > n / 50 || loose_bad > both / 200);
    if (failed) {
        fprintf(stderr, "FAIL %s %s\n", ds->name, en);
        fails++;
    }
    /* A batch of many chunks: the first 1000 fits must come out as above. */
    if (ds->model == RTD_FIT_GAUSS_2D && est == RTD_FIT_LSE && strict) {
        const size_t rep = 300;
        float *bd = malloc(sizeof(float) * n * rep * (size_t)ds->n_points);
        float *bi = malloc(sizeof(float) * n * rep * (size_t)ds->np);
        float *bp = malloc(sizeof(float) * n * rep * (size_t)ds->np);
        int32_t *bs = malloc(sizeof(int32_t) * n * rep);
        for (size_t r = 0; r < rep; r++) {
            memcpy(bd + r * n * (size_t)ds->n_points, data,
                   sizeof(float) * n * (size_t)ds->n_points);
            memcpy(bi + r * n * (size_t)ds->np, init, sizeof(float) * n * (size_t)ds->np);
        }
        struct rtd_fit_cuda_stats st;
        rc2 = rtd_fit_cuda_batch_stats(&o, n * rep, bd, bi, bp, bs, NULL, NULL, &st);
        size_t bad = 0;
        for (size_t r = 0; r < rep && rc2 == 0; r++)
            for (size_t i = 0; i < n; i++)
                if (bs[r * n + i] != sg[i] ||
                    memcmp(bp + (r * n + i) * (size_t)ds->np, pg + i * (size_t)ds->np,
                           sizeof(float) * (size_t)ds->np))
                    bad++;
        printf("%-14s %s: %zu fits in %u chunks, %.3f s (kernels %.3f s), %zu differ from the "
               "1000-fit batch\n",
               ds->name, en, n * rep, st.chunks, st.total_s, st.kernel_s, bad);
        if (rc2 != 0 || bad) {
            fprintf(stderr, "FAIL chunked batch: rc %d, %zu differ\n", rc2, bad);
            fails++;
        }
        free(bd);
        free(bi);
        free(bp);
        free(bs);
    }
    free(data);
    free(init);
    free(pc);
    free(pg);
    free(cc);
    free(cg);
    free(sc);
    free(sg);
    free(ic);
    free(ig);
}

int main(void)
{
    char why[256];
    if (!rtd_fit_cuda_available(why, sizeof why)) {
        printf("SKIP: no usable CUDA device: %s\n", why);
        return 77;
    }
    printf("device: %s\n", why);
    static const struct dataset sets[] = {
        {"gauss2d_11x11",
         RTD_FIT_GAUSS_2D,
         121,
         5,
         "gauss2d_11x11_data.f32",
         "gauss2d_11x11_init.f32",
         {1, 2}},
        {"gauss1d_32",
         RTD_FIT_GAUSS_1D,
         32,
         4,
         "gauss1d_32_data.f32",
         "gauss1d_32_init.f32",
         {1, -1}},
        {"shm1d_48", RTD_FIT_SHM_1D, 48, 5, "shm1d_48_data.f32", "shm1d_48_init.f32", {1, -1}},
        {"shm_legacy_48", RTD_FIT_SHM_LEGACY, 48, 4, NULL, NULL, {0, -1}},
    };
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        compare(&sets[i], RTD_FIT_LSE, RTD_FIT_ISA_SCALAR);
        compare(&sets[i], RTD_FIT_MLE, RTD_FIT_ISA_SCALAR);
        compare(&sets[i], RTD_FIT_LSE, RTD_FIT_ISA_AUTO);
        compare(&sets[i], RTD_FIT_MLE, RTD_FIT_ISA_AUTO);
    }
    if (fails)
        fprintf(stderr, "%d comparison(s) failed\n", fails);
    return fails ? 1 : 0;
}
