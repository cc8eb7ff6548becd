/* SPDX-License-Identifier: MIT */
/*
 * Every kernel (scalar float32, AVX2, AVX-512 where present) on every model and
 * estimator against the float64 reference kernel, on the first 200 fits of each
 * refdata set plus odd sizes (1-D profiles of 13 and 31 samples, a 7x7 ROI) and
 * batches that do not fill the vector lanes. A plain program with one thread,
 * so the SIMD code also runs under ASan+UBSan and TSan (exit 0 pass, 1 fail).
 */
#include "rtd_fit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DATA RTD_TEST_DATA "/fits/"

static int failures;

static float *load(const char *name, size_t count)
{
    char path[512];
    snprintf(path, sizeof(path), "%s%s", DATA, name);
    FILE *f = fopen(path, "rb");
    float *b = malloc(count * sizeof(float));
    if (!f || !b || fread(b, sizeof(float), count, f) != count) {
        fprintf(stderr, "FAIL: cannot read %s\n", path);
        exit(1);
    }
    fclose(f);
    return b;
}

/* Fit n fits with isa and with REF64; centres (params cx, cy) must agree within 2e-3 px. */
static void compare(const char *what, enum rtd_fit_model m, int est, uint32_t pts, size_t n,
                    const float *data, const float *init, int cx, int cy)
{
    int np = rtd_fit_n_params(m);
    float *ref = malloc(sizeof(float) * n * (size_t)np);
    float *got = malloc(sizeof(float) * n * (size_t)np);
    int32_t *rs = malloc(sizeof(int32_t) * n), *gs = malloc(sizeof(int32_t) * n);
    struct rtd_fit_opts o;
    rtd_fit_opts_default(&o, m, pts);
    o.estimator = (enum rtd_fit_estimator)est;
    o.threads = 1;
    o.isa = RTD_FIT_ISA_REF64;
    if (rtd_fit_batch(&o, n, data, init, ref, rs, NULL, NULL)) {
        fprintf(stderr, "FAIL %s: ref64 batch\n", what);
        failures++;
    }
    for (int isa = RTD_FIT_ISA_SCALAR; isa <= RTD_FIT_ISA_AVX512; isa++) {
        if (!rtd_fit_isa_supported(isa))
            continue;
        o.isa = isa;
        memset(got, 0, sizeof(float) * n * (size_t)np);
        if (rtd_fit_batch(&o, n, data, init, got, gs, NULL, NULL)) {
            fprintf(stderr, "FAIL %s %s: batch\n", what, rtd_fit_isa_name(isa));
            failures++;
            continue;
        }
        size_t both = 0, off = 0, same = 0;
        for (size_t i = 0; i < n; i++) {
            same += rs[i] == gs[i];
            if (rs[i] || gs[i])
                continue;
            both++;
            double dx = fabs((double)ref[i * (size_t)np + (size_t)cx] -
                             (double)got[i * (size_t)np + (size_t)cx]);
            double dy = cy < 0 ? 0.0
                               : fabs((double)ref[i * (size_t)np + (size_t)cy] -
                                      (double)got[i * (size_t)np + (size_t)cy]);
            off += dx > 2e-3 || dy > 2e-3;
        }
        if (off * 100 > both || same * 100 < n * 97) {
            fprintf(stderr, "FAIL %s %s %s: %zu of %zu centres off by > 2e-3 px, same state %zu\n",
                    what, rtd_fit_isa_name(isa), est ? "mle" : "lse", off, both, same);
            failures++;
        }
    }
    free(ref);
    free(got);
    free(rs);
    free(gs);
}

int main(void)
{
    const size_t N = 200;
    float *g2 = load("gauss2d_11x11_data.f32", N * 121),
          *g2i = load("gauss2d_11x11_init.f32", N * 5);
    float *g1 = load("gauss1d_32_data.f32", N * 32), *g1i = load("gauss1d_32_init.f32", N * 4);
    float *s1 = load("shm1d_48_data.f32", N * 48), *s1i = load("shm1d_48_init.f32", N * 5);
    for (int est = 0; est < 2; est++) {
        compare("gauss2d", RTD_FIT_GAUSS_2D, est, 121, N, g2, g2i, 1, 2);
        compare("gauss2d 3 fits", RTD_FIT_GAUSS_2D, est, 121, 3, g2, g2i, 1, 2);
        compare("gauss1d", RTD_FIT_GAUSS_1D, est, 32, N, g1, g1i, 1, -1);
        compare("gauss1d 11 fits", RTD_FIT_GAUSS_1D, est, 32, 11, g1, g1i, 1, -1);
        compare("shm1d", RTD_FIT_SHM_1D, est, 48, N, s1, s1i, 1, -1);
    }

    /* odd shapes: synthetic, noiseless */
    enum { M = 37 };
    float d13[M * 13], i13[M * 4], d31[M * 31], i31[M * 4], d49[M * 49], i49[M * 5];
    float dl[M * 40], il[M * 4];
    for (int k = 0; k < M; k++) {
        double x0 = 5.0 + 0.05 * k, s = 1.3 + 0.02 * k;
        for (int i = 0; i < 13; i++)
            d13[k * 13 + i] = (float)(20 + 150 * exp(-(i - x0) * (i - x0) / (2 * s * s)));
        const float a[4] = {120, (float)x0 + 0.4f, 1.6f, 15};
        memcpy(i13 + k * 4, a, sizeof(a));
        for (int i = 0; i < 31; i++)
            d31[k * 31 + i] = (float)(30 + 90 * exp(-(i - 3 * x0) * (i - 3 * x0) / (2 * s * s)));
        const float b[4] = {100, 3 * (float)x0 - 0.3f, 1.5f, 25};
        memcpy(i31 + k * 4, b, sizeof(b));
        for (int y = 0; y < 7; y++)
            for (int x = 0; x < 7; x++)
                d49[k * 49 + y * 7 + x] =
                    (float)(5 + 80 * exp(-((x - x0 + 2) * (x - x0 + 2) + (y - 3.2) * (y - 3.2)) /
                                         (2 * s * s)));
        const float c[5] = {70, (float)x0 - 2.2f, 3, 1.4f, 6};
        memcpy(i49 + k * 5, c, sizeof(c));
        /* legacy arcsine, kept away from its singular edges */
        double y0 = 19.3 + 0.03 * k, R = 8.45;
        for (int i = 0; i < 40; i++) {
            double q = R * R - (i - y0) * (i - y0);
            dl[k * 40 + i] = (float)(5 + (q > 0 ? 30 / sqrt(q) : 0));
        }
        const float e[4] = {(float)y0 + 0.2f, 8.45f, 25, 4};
        memcpy(il + k * 4, e, sizeof(e));
    }
    compare("gauss1d 13 pts", RTD_FIT_GAUSS_1D, 0, 13, M, d13, i13, 1, -1);
    compare("gauss1d 31 pts", RTD_FIT_GAUSS_1D, 1, 31, M, d31, i31, 1, -1);
    compare("gauss2d 7x7", RTD_FIT_GAUSS_2D, 0, 49, M, d49, i49, 1, 2);
    compare("shm-legacy 40 pts", RTD_FIT_SHM_LEGACY, 0, 40, M, dl, il, 0, -1);

    free(g2);
    free(g2i);
    free(g1);
    free(g1i);
    free(s1);
    free(s1i);
    if (failures)
        fprintf(stderr, "%d failures\n", failures);
    else
        printf("fit kernels agree with the float64 reference\n");
    return failures ? 1 : 0;
}
