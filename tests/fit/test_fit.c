/* SPDX-License-Identifier: MIT */
/*
 * Accuracy and behaviour of proc/fit against the reference data in
 * tests/data/fits (copied from the public refdata): fitted centres against the
 * converged float64 optima and against the truth, every kernel (float64
 * reference, scalar float32, AVX2, AVX-512 where the CPU has it) against the
 * reference kernel, the SHM_1D kernel and Jacobians against test vectors and
 * finite differences, result states, and option validation.
 */
#include "rtd_fit.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DATA RTD_TEST_DATA "/fits/"

/* Read exactly count elements of size bytes from a refdata file (fails the test otherwise). */
static void *load(const char *name, size_t size, size_t count)
{
    char path[512];
    snprintf(path, sizeof(path), "%s%s", DATA, name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    void *buf = malloc(size * count);
    cr_assert_not_null(buf);
    size_t got = fread(buf, size, count, f);
    fclose(f);
    cr_assert_eq(got, count, "%s: %zu of %zu elements", path, got, count);
    return buf;
}

struct dataset {
    const char *name;
    enum rtd_fit_model model;
    uint32_t n_points;
    int np;
    int centre[2]; /* indices of the centre parameters (-1: none) */
};

static const struct dataset G2D = {"gauss2d_11x11", RTD_FIT_GAUSS_2D, 121, 5, {1, 2}};
static const struct dataset G1D = {"gauss1d_32", RTD_FIT_GAUSS_1D, 32, 4, {1, -1}};
static const struct dataset S1D = {"shm1d_48", RTD_FIT_SHM_1D, 48, 5, {1, -1}};

#define NFITS 1000

struct result {
    float *params;
    int32_t *states, *iters;
    float *chi2;
};

static struct result run(const struct dataset *d, int est, int isa, int threads)
{
    char name[128];
    snprintf(name, sizeof(name), "%s_data.f32", d->name);
    float *data = load(name, 4, (size_t)NFITS * d->n_points);
    snprintf(name, sizeof(name), "%s_init.f32", d->name);
    float *init = load(name, 4, (size_t)NFITS * (size_t)d->np);
    struct result r = {
        .params = calloc((size_t)NFITS * (size_t)d->np, sizeof(float)),
        .states = calloc(NFITS, sizeof(int32_t)),
        .iters = calloc(NFITS, sizeof(int32_t)),
        .chi2 = calloc(NFITS, sizeof(float)),
    };
    struct rtd_fit_opts o;
    rtd_fit_opts_default(&o, d->model, d->n_points);
    o.estimator = (enum rtd_fit_estimator)est;
    o.isa = isa;
    o.threads = threads;
    int rc = rtd_fit_batch(&o, NFITS, data, init, r.params, r.states, r.iters, r.chi2);
    cr_assert_eq(rc, 0, "rtd_fit_batch: %d", rc);
    free(data);
    free(init);
    return r;
}

static void result_free(struct result *r)
{
    free(r->params);
    free(r->states);
    free(r->iters);
    free(r->chi2);
}

static int skip_isa(int isa)
{
    if (rtd_fit_isa_supported(isa))
        return 0;
    cr_skip_test("this CPU has no %s", rtd_fit_isa_name(isa));
    return 1;
}

/*
 * The accuracy criteria: centres within 1e-3 px of the converged float64
 * reference for >= 99.5 % of the fits converged in both, and a centre RMSE against
 * the truth within 5 % of the reference's.
 */
static void check_accuracy(const struct dataset *d, int est, int isa)
{
    if (skip_isa(isa))
        return;
    struct result r = run(d, est, isa, 1);
    char name[128];
    const char *tag = est == RTD_FIT_MLE ? "mle" : "lsq";
    snprintf(name, sizeof(name), "%s_ref_%s_converged_params.f64", d->name, tag);
    double *ref = load(name, 8, (size_t)NFITS * (size_t)d->np);
    snprintf(name, sizeof(name), "%s_truth.f64", d->name);
    double *truth = load(name, 8, (size_t)NFITS * (size_t)d->np);
    int32_t *rstate = NULL;
    snprintf(name, sizeof(name), "%s%s_ref_%s_converged_state.i32", DATA, d->name, tag);
    struct stat sb;
    if (stat(name, &sb) == 0)
        rstate = load(name + strlen(DATA), 4, NFITS);

    int both = 0, close = 0, conv = 0;
    double se_ours = 0, se_ref = 0, worst = 0;
    for (int i = 0; i < NFITS; i++) {
        conv += r.states[i] == 0;
        if (r.states[i] != 0 || (rstate && rstate[i] != 0))
            continue;
        both++;
        int ok = 1;
        for (int c = 0; c < 2; c++) {
            int k = d->centre[c];
            if (k < 0)
                continue;
            double o = r.params[i * d->np + k], rf = ref[i * d->np + k];
            double t = truth[i * d->np + k];
            if (fabs(o - rf) > 1e-3)
                ok = 0;
            if (fabs(o - rf) > worst)
                worst = fabs(o - rf);
            se_ours += (o - t) * (o - t);
            se_ref += (rf - t) * (rf - t);
        }
        close += ok;
    }
    double frac = both ? (double)close / both : 0;
    double rmse_o = sqrt(se_ours / both), rmse_r = sqrt(se_ref / both);
    cr_log_info("%s %s %s: converged %d/%d, in both %d, within 1e-3 px %.4f (worst %.2e), "
                "centre RMSE %.5f vs reference %.5f",
                d->name, tag, rtd_fit_isa_name(isa), conv, NFITS, both, frac, worst, rmse_o,
                rmse_r);
    cr_expect_geq(both, NFITS * 95 / 100, "only %d fits converged in both", both);
    cr_expect_geq(frac, 0.995, "%s %s %s: %.4f of the centres within 1e-3 px", d->name, tag,
                  rtd_fit_isa_name(isa), frac);
    cr_expect_leq(rmse_o, 1.05 * rmse_r, "%s %s %s: centre RMSE %.5f vs reference %.5f", d->name,
                  tag, rtd_fit_isa_name(isa), rmse_o, rmse_r);
    free(ref);
    free(truth);
    free(rstate);
    result_free(&r);
}

#define ACC_TESTS(ds, dsname)                                                                      \
    Test(accuracy, dsname##_lse_ref64)                                                             \
    {                                                                                              \
        check_accuracy(&ds, RTD_FIT_LSE, RTD_FIT_ISA_REF64);                                       \
    }                                                                                              \
    Test(accuracy, dsname##_lse_scalar)                                                            \
    {                                                                                              \
        check_accuracy(&ds, RTD_FIT_LSE, RTD_FIT_ISA_SCALAR);                                      \
    }                                                                                              \
    Test(accuracy, dsname##_lse_avx2)                                                              \
    {                                                                                              \
        check_accuracy(&ds, RTD_FIT_LSE, RTD_FIT_ISA_AVX2);                                        \
    }                                                                                              \
    Test(accuracy, dsname##_lse_avx512)                                                            \
    {                                                                                              \
        check_accuracy(&ds, RTD_FIT_LSE, RTD_FIT_ISA_AVX512);                                      \
    }                                                                                              \
    Test(accuracy, dsname##_mle_ref64)                                                             \
    {                                                                                              \
        check_accuracy(&ds, RTD_FIT_MLE, RTD_FIT_ISA_REF64);                                       \
    }                                                                                              \
    Test(accuracy, dsname##_mle_scalar)                                                            \
    {                                                                                              \
        check_accuracy(&ds, RTD_FIT_MLE, RTD_FIT_ISA_SCALAR);                                      \
    }                                                                                              \
    Test(accuracy, dsname##_mle_avx2)                                                              \
    {                                                                                              \
        check_accuracy(&ds, RTD_FIT_MLE, RTD_FIT_ISA_AVX2);                                        \
    }                                                                                              \
    Test(accuracy, dsname##_mle_avx512)                                                            \
    {                                                                                              \
        check_accuracy(&ds, RTD_FIT_MLE, RTD_FIT_ISA_AVX512);                                      \
    }

ACC_TESTS(G2D, gauss2d_11x11)
ACC_TESTS(G1D, gauss1d_32)
ACC_TESTS(S1D, shm1d_48)

/*
 * Every float32 kernel against the float64 reference kernel, fit by fit: the
 * stated tolerance is 2e-3 px on the centres for >= 99.5 % of the fits that both
 * converged, and the same state for >= 98 % (a float chi2 can cross the tol
 * threshold one iteration earlier or later than a double one).
 */
static void check_vs_ref64(const struct dataset *d, int est, int isa)
{
    if (skip_isa(isa))
        return;
    struct result a = run(d, est, RTD_FIT_ISA_REF64, 1);
    struct result b = run(d, est, isa, 1);
    int both = 0, close = 0, same_state = 0;
    double worst = 0;
    for (int i = 0; i < NFITS; i++) {
        same_state += a.states[i] == b.states[i];
        if (a.states[i] || b.states[i])
            continue;
        both++;
        int ok = 1;
        for (int c = 0; c < 2; c++) {
            int k = d->centre[c];
            if (k < 0)
                continue;
            double dd = fabs((double)a.params[i * d->np + k] - (double)b.params[i * d->np + k]);
            if (dd > worst)
                worst = dd;
            ok &= dd <= 2e-3;
        }
        close += ok;
    }
    cr_log_info("%s %s vs ref64 (%s): same state %d, centres within 2e-3 px %d/%d, worst %.2e",
                rtd_fit_isa_name(isa), d->name, est ? "mle" : "lse", same_state, close, both,
                worst);
    cr_expect_geq(same_state, NFITS * 98 / 100);
    cr_expect_geq(close, both * 995 / 1000);
    result_free(&a);
    result_free(&b);
}

Test(kernels, scalar_equals_ref64)
{
    check_vs_ref64(&G2D, RTD_FIT_LSE, RTD_FIT_ISA_SCALAR);
    check_vs_ref64(&G1D, RTD_FIT_MLE, RTD_FIT_ISA_SCALAR);
    check_vs_ref64(&S1D, RTD_FIT_LSE, RTD_FIT_ISA_SCALAR);
}

Test(kernels, avx2_equals_ref64)
{
    if (skip_isa(RTD_FIT_ISA_AVX2))
        return;
    for (int est = 0; est < 2; est++) {
        check_vs_ref64(&G2D, est, RTD_FIT_ISA_AVX2);
        check_vs_ref64(&G1D, est, RTD_FIT_ISA_AVX2);
        check_vs_ref64(&S1D, est, RTD_FIT_ISA_AVX2);
    }
}

Test(kernels, avx512_equals_ref64)
{
    if (skip_isa(RTD_FIT_ISA_AVX512))
        return;
    for (int est = 0; est < 2; est++) {
        check_vs_ref64(&G2D, est, RTD_FIT_ISA_AVX512);
        check_vs_ref64(&G1D, est, RTD_FIT_ISA_AVX512);
        check_vs_ref64(&S1D, est, RTD_FIT_ISA_AVX512);
    }
}

Test(kernels, threads_give_the_same_results_as_one_thread)
{
    struct result a = run(&G2D, RTD_FIT_LSE, RTD_FIT_ISA_AUTO, 1);
    struct result b = run(&G2D, RTD_FIT_LSE, RTD_FIT_ISA_AUTO, 2);
    cr_expect_eq(memcmp(a.params, b.params, sizeof(float) * NFITS * 5), 0);
    cr_expect_eq(memcmp(a.states, b.states, sizeof(int32_t) * NFITS), 0);
    result_free(&a);
    result_free(&b);
}

/* The SHM_1D quadrature against the refdata's adaptive-quadrature kernel vectors. */
Test(model, shm1d_kernel_matches_test_vectors)
{
    double *v = load("shm_kernel_vectors.f64", 8, 2000 * 7);
    double worst = 0;
    for (int r = 0; r < 2000; r++) {
        const double *row = v + r * 7;
        /* One sample at x = 0, so u = -x0; amp 1 and offset 0 give f = K, jac = dK. */
        double p[5] = {1.0, -row[0], row[1], row[2], 0.0};
        double f, jac[5];
        cr_assert_eq(rtd_fit_model_eval(RTD_FIT_SHM_1D, p, 1, 0, &f, jac), 0);
        const double want[4] = {row[3], row[4], row[5], row[6]};
        const double got[4] = {f, jac[1], jac[2], jac[3]};
        for (int k = 0; k < 4; k++) {
            /* K to float accuracy; its derivatives (up to ~1/sigma) a little looser */
            double tol = k == 0 ? 1e-7 + 1e-6 * fabs(want[k]) : 1e-6 + 1e-5 * fabs(want[k]);
            double err = fabs(got[k] - want[k]) / tol;
            if (err > worst)
                worst = err;
            cr_assert_leq(err, 1.0, "row %d col %d: %.9g vs %.9g (u %g A %g sigma %g)", r, k,
                          got[k], want[k], row[0], row[1], row[2]);
        }
    }
    cr_log_info("SHM kernel: worst error %.2f of the tolerance", worst);
    free(v);
}

/* Analytic Jacobians against central differences, all models. */
Test(model, jacobians_match_finite_differences)
{
    const struct {
        enum rtd_fit_model m;
        uint32_t n;
        double p[5];
    } cases[] = {
        {RTD_FIT_GAUSS_1D, 32, {500, 15.3, 2.4, 50}},
        {RTD_FIT_GAUSS_2D, 121, {120, 5.4, 4.7, 1.9, 10}},
        {RTD_FIT_SHM_1D, 48, {300, 23.6, 5.5, 1.6, 50}},
        {RTD_FIT_SHM_LEGACY, 40, {19.7, 8.45, 30, 5}},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        int np = rtd_fit_n_params(cases[c].m);
        uint32_t n = cases[c].n;
        double *f = calloc(n, sizeof(double)), *jac = calloc(n * 5u, sizeof(double));
        double *fp = calloc(n, sizeof(double)), *fm = calloc(n, sizeof(double));
        /* fixed nodes: the auto rule would change the quadrature between p +- h */
        cr_assert_eq(rtd_fit_model_eval(cases[c].m, cases[c].p, n, 64, f, jac), 0);
        for (int k = 0; k < np; k++) {
            double p[5];
            memcpy(p, cases[c].p, sizeof(p));
            double h = 1e-6 * fmax(1.0, fabs(p[k]));
            p[k] = cases[c].p[k] + h;
            rtd_fit_model_eval(cases[c].m, p, n, 64, fp, NULL);
            p[k] = cases[c].p[k] - h;
            rtd_fit_model_eval(cases[c].m, p, n, 64, fm, NULL);
            for (uint32_t i = 0; i < n; i++) {
                double num = (fp[i] - fm[i]) / (2 * h);
                double an = jac[i * (uint32_t)np + (uint32_t)k];
                cr_assert_leq(fabs(num - an), 1e-5 * (1 + fabs(an)),
                              "model %d param %d sample %u: analytic %.9g numeric %.9g", cases[c].m,
                              k, i, an, num);
            }
        }
        free(f);
        free(jac);
        free(fp);
        free(fm);
    }
}

/* ---- states and validation --------------------------------------------------------- */

static void one_fit(int isa, int est, uint32_t max_iter, float *data, float *p, int32_t *st)
{
    struct rtd_fit_opts o;
    rtd_fit_opts_default(&o, RTD_FIT_GAUSS_1D, 32);
    o.isa = isa;
    o.estimator = (enum rtd_fit_estimator)est;
    o.max_iter = max_iter;
    int32_t it;
    cr_assert_eq(rtd_fit_batch(&o, 1, data, p, p, st, &it, NULL), 0);
}

static void fill_gauss1d(float *data, double amp, double x0, double s, double off)
{
    for (int i = 0; i < 32; i++)
        data[i] = (float)(off + amp * exp(-(i - x0) * (i - x0) / (2 * s * s)));
}

Test(states, noiseless_data_converges_to_the_truth_on_every_isa)
{
    for (int isa = RTD_FIT_ISA_SCALAR; isa <= RTD_FIT_ISA_REF64; isa++) {
        if (!rtd_fit_isa_supported(isa))
            continue;
        float data[32], p[4] = {400, 14, 3, 40};
        int32_t st = -1;
        fill_gauss1d(data, 500, 15.3, 2.4, 50);
        one_fit(isa, RTD_FIT_LSE, 25, data, p, &st);
        cr_expect_eq(st, RTD_FIT_CONVERGED, "%s", rtd_fit_isa_name(isa));
        cr_expect_float_eq(p[1], 15.3f, 1e-3f, "%s: x0 %f", rtd_fit_isa_name(isa), (double)p[1]);
        cr_expect_float_eq(p[2], 2.4f, 1e-3f, "%s: sigma %f", rtd_fit_isa_name(isa), (double)p[2]);
    }
}

Test(states, one_iteration_from_far_away_reports_max_iteration)
{
    for (int isa = RTD_FIT_ISA_SCALAR; isa <= RTD_FIT_ISA_REF64; isa++) {
        if (!rtd_fit_isa_supported(isa))
            continue;
        float data[32], p[4] = {200, 10, 4, 0};
        int32_t st = -1;
        fill_gauss1d(data, 500, 15.3, 2.4, 50);
        one_fit(isa, RTD_FIT_LSE, 1, data, p, &st);
        cr_expect_eq(st, RTD_FIT_MAX_ITERATION, "%s", rtd_fit_isa_name(isa));
    }
}

Test(states, nan_in_data_or_start_values_is_bad_input_and_spares_the_others)
{
    for (int isa = RTD_FIT_ISA_SCALAR; isa <= RTD_FIT_ISA_REF64; isa++) {
        if (!rtd_fit_isa_supported(isa))
            continue;
        float data[3 * 32], p[3 * 4];
        for (int k = 0; k < 3; k++) {
            fill_gauss1d(data + 32 * k, 500, 15.3, 2.4, 50);
            const float s[4] = {400, 14, 3, 40};
            memcpy(p + 4 * k, s, sizeof(s));
        }
        data[32 + 7] = NAN;
        p[2 * 4 + 1] = INFINITY;
        struct rtd_fit_opts o;
        rtd_fit_opts_default(&o, RTD_FIT_GAUSS_1D, 32);
        o.isa = isa;
        int32_t st[3];
        cr_assert_eq(rtd_fit_batch(&o, 3, data, p, p, st, NULL, NULL), 0);
        cr_expect_eq(st[0], RTD_FIT_CONVERGED, "%s", rtd_fit_isa_name(isa));
        cr_expect_eq(st[1], RTD_FIT_BAD_INPUT, "%s", rtd_fit_isa_name(isa));
        cr_expect_eq(st[2], RTD_FIT_BAD_INPUT, "%s", rtd_fit_isa_name(isa));
        cr_expect_float_eq(p[1], 15.3f, 1e-3f);
    }
}

Test(states, mle_with_a_negative_model_reports_negative_curvature)
{
    for (int isa = RTD_FIT_ISA_SCALAR; isa <= RTD_FIT_ISA_REF64; isa++) {
        if (!rtd_fit_isa_supported(isa))
            continue;
        float data[32], p[4] = {400, 14, 3, -40};
        int32_t st = -1;
        fill_gauss1d(data, 500, 15.3, 2.4, 50);
        one_fit(isa, RTD_FIT_MLE, 25, data, p, &st);
        cr_expect_eq(st, RTD_FIT_NEG_CURVATURE_MLE, "%s", rtd_fit_isa_name(isa));
    }
}

Test(states, flat_data_with_zero_amplitude_is_singular)
{
    for (int isa = RTD_FIT_ISA_SCALAR; isa <= RTD_FIT_ISA_REF64; isa++) {
        if (!rtd_fit_isa_supported(isa))
            continue;
        /* amp = 0: the x0 and sigma columns of the Jacobian vanish. */
        float data[32], p[4] = {0, 14, 3, 50};
        int32_t st = -1;
        for (int i = 0; i < 32; i++)
            data[i] = 50;
        one_fit(isa, RTD_FIT_LSE, 25, data, p, &st);
        cr_expect_eq(st, RTD_FIT_SINGULAR, "%s", rtd_fit_isa_name(isa));
    }
}

Test(options, bad_options_are_rejected)
{
    float data[121] = {0}, p[5] = {1, 5, 5, 2, 0};
    struct rtd_fit_opts o;
    rtd_fit_opts_default(&o, RTD_FIT_GAUSS_2D, 120);
    cr_expect_eq(rtd_fit_batch(&o, 1, data, p, p, NULL, NULL, NULL), -EINVAL, "non-square");
    rtd_fit_opts_default(&o, (enum rtd_fit_model)7, 121);
    cr_expect_eq(rtd_fit_batch(&o, 1, data, p, p, NULL, NULL, NULL), -EINVAL, "model");
    rtd_fit_opts_default(&o, RTD_FIT_GAUSS_1D, 3);
    cr_expect_eq(rtd_fit_batch(&o, 1, data, p, p, NULL, NULL, NULL), -EINVAL, "too few points");
    rtd_fit_opts_default(&o, RTD_FIT_SHM_1D, 40);
    o.shm_nodes = 63;
    cr_expect_eq(rtd_fit_batch(&o, 1, data, p, p, NULL, NULL, NULL), -EINVAL, "odd nodes");
    rtd_fit_opts_default(&o, RTD_FIT_GAUSS_1D, 32);
    o.isa = 9;
    cr_expect_eq(rtd_fit_batch(&o, 1, data, p, p, NULL, NULL, NULL), -EINVAL, "isa");
    rtd_fit_opts_default(&o, RTD_FIT_GAUSS_1D, 32);
    cr_expect_eq(rtd_fit_batch(&o, 0, NULL, NULL, NULL, NULL, NULL, NULL), 0, "empty batch");
    cr_expect_eq(rtd_fit_n_params(RTD_FIT_SHM_LEGACY), 4);
    cr_expect_eq(rtd_fit_model_parse("shm-legacy"), RTD_FIT_SHM_LEGACY);
    cr_expect_eq(rtd_fit_model_parse("GAUSS_2D"), RTD_FIT_GAUSS_2D);
    cr_expect_eq(rtd_fit_isa_parse("avx2"), RTD_FIT_ISA_AVX2);
    cr_expect_eq(rtd_fit_model_parse("lorentz"), -EINVAL);
}

Test(options, one_dimensional_models_take_any_length_and_2d_any_odd_square)
{
    /* 1-D profiles of odd lengths and a 7x7 ROI: what the frame pipeline feeds in. */
    for (int isa = RTD_FIT_ISA_SCALAR; isa <= RTD_FIT_ISA_REF64; isa++) {
        if (!rtd_fit_isa_supported(isa))
            continue;
        float d1[13], p1[4] = {90, 6.5f, 1.5f, 12};
        for (int i = 0; i < 13; i++)
            d1[i] = (float)(10 + 100 * exp(-(i - 6.2) * (i - 6.2) / (2 * 1.7 * 1.7)));
        struct rtd_fit_opts o;
        rtd_fit_opts_default(&o, RTD_FIT_GAUSS_1D, 13);
        o.isa = isa;
        int32_t st;
        cr_assert_eq(rtd_fit_batch(&o, 1, d1, p1, p1, &st, NULL, NULL), 0);
        cr_expect_eq(st, 0);
        cr_expect_float_eq(p1[1], 6.2f, 1e-3f, "%s x0 %f", rtd_fit_isa_name(isa), (double)p1[1]);

        float d2[49], p2[5] = {50, 3, 3, 1.2f, 5};
        for (int y = 0; y < 7; y++)
            for (int x = 0; x < 7; x++)
                d2[y * 7 + x] =
                    (float)(4 + 60 * exp(-((x - 2.7) * (x - 2.7) + (y - 3.4) * (y - 3.4)) / 2.0));
        rtd_fit_opts_default(&o, RTD_FIT_GAUSS_2D, 49);
        o.isa = isa;
        cr_assert_eq(rtd_fit_batch(&o, 1, d2, p2, p2, &st, NULL, NULL), 0);
        cr_expect_eq(st, 0);
        cr_expect_float_eq(p2[1], 2.7f, 1e-3f, "%s", rtd_fit_isa_name(isa));
        cr_expect_float_eq(p2[2], 3.4f, 1e-3f, "%s", rtd_fit_isa_name(isa));
    }
}

Test(states, widths_are_reported_positive_whatever_sign_the_fit_ends_with)
{
    for (int isa = RTD_FIT_ISA_SCALAR; isa <= RTD_FIT_ISA_REF64; isa++) {
        if (!rtd_fit_isa_supported(isa))
            continue;
        float data[32], p[4] = {400, 14, -3, 40};
        int32_t st = -1;
        fill_gauss1d(data, 500, 15.3, 2.4, 50);
        one_fit(isa, RTD_FIT_LSE, 25, data, p, &st);
        cr_expect_eq(st, RTD_FIT_CONVERGED, "%s", rtd_fit_isa_name(isa));
        cr_expect_float_eq(p[2], 2.4f, 1e-3f, "%s: sigma %f", rtd_fit_isa_name(isa), (double)p[2]);
    }
}
