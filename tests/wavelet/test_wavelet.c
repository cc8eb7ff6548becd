/* SPDX-License-Identifier: MIT */
/*
 * proc/wavelet against the PyCWT reference vectors (tests/data/wavelet, manifest.json):
 * every public case to relative 1e-9, the Monte Carlo level within PyCWT's own seed-to-seed
 * spread, thread-count invariance, PyCWT's bugs and their fixes, and bad input.
 */
#include "rtd_wavelet.h"
#include "wv_ref.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double *must_load(const char *name, size_t *n)
{
    double *d = wv_load(name, n);
    cr_assert_not_null(d, "missing reference file %s", name);
    return d;
}

static void expect_close(const char *what, const double *got, const double *ref, size_t n)
{
    size_t at;
    double w = wv_worst(got, ref, n, &at);
    cr_expect_leq(w, 1.0, "%s: worst element %zu got %.17g want %.17g (ratio %g)", what, at,
                  got[at], ref[at], w);
}

/* Case a: cwt of x for one mother; compares wave, scales, freqs and coi. */
static void check_cwt_case(const char *mother, const char *prefix, size_t rows_expected)
{
    size_t n, nw, ns, nf, nc;
    double *x = must_load("a_cwt__x.bin", &n);
    char name[128];
    snprintf(name, sizeof name, "a_cwt__%s_wave.bin", prefix);
    double *wave_ref = must_load(name, &nw);
    snprintf(name, sizeof name, "a_cwt__%s_scales.bin", prefix);
    double *scales_ref = must_load(name, &ns);
    snprintf(name, sizeof name, "a_cwt__%s_freqs.bin", prefix);
    double *freqs_ref = must_load(name, &nf);
    snprintf(name, sizeof name, "a_cwt__%s_coi.bin", prefix);
    double *coi_ref = must_load(name, &nc);

    struct rtd_mother m;
    cr_assert_eq(rtd_mother_parse(&m, mother), 0);
    struct rtd_cwt_plan *p;
    cr_assert_eq(rtd_cwt_plan_create(&p, n, 1.0, 1.0 / 12, 2.0, -1, &m, 0), 0);
    cr_assert_eq(rtd_cwt_J(p), 108);
    size_t rows = rtd_cwt_nscales(p);
    cr_assert_eq(rows, rows_expected);
    cr_assert_eq(ns, rows);
    cr_assert_eq(nw, 2 * rows * n);
    double complex *wave = malloc(rows * n * sizeof(double complex));
    cr_assert_eq(rtd_cwt_execute(p, x, wave), 0);
    expect_close("wave", (const double *)wave, wave_ref, nw);
    expect_close("scales", rtd_cwt_scales(p), scales_ref, ns);
    expect_close("freqs", rtd_cwt_freqs(p), freqs_ref, nf);
    expect_close("coi", rtd_cwt_coi(p), coi_ref, nc);
    rtd_cwt_plan_destroy(p);
    free(wave);
    free(x);
    free(wave_ref);
    free(scales_ref);
    free(freqs_ref);
    free(coi_ref);
}

Test(cwt, morlet_matches_pycwt)
{
    check_cwt_case("morlet:6", "morlet", 109);
}

Test(cwt, paul_matches_pycwt_including_dropped_rows)
{
    check_cwt_case("paul:4", "paul", 82);
}

Test(cwt, dog2_matches_pycwt)
{
    check_cwt_case("dog:2", "dog2", 109);
}

Test(cwt, fft_and_fftfreqs_match_pycwt)
{
    size_t n, nf, nq;
    double *x = must_load("a_cwt__x.bin", &n);
    double *fft_ref = must_load("a_cwt__morlet_fft.bin", &nf);
    double *fq_ref = must_load("a_cwt__morlet_fftfreqs.bin", &nq);
    struct rtd_mother m;
    rtd_mother_init(&m, RTD_MOTHER_MORLET, 6);
    struct rtd_cwt_plan *p;
    cr_assert_eq(rtd_cwt_plan_create(&p, n, 1.0, 1.0 / 12, 2.0, -1, &m, 0), 0);
    size_t k = rtd_cwt_padded(p) / 2 - 1;
    cr_assert_eq(nq, k);
    double complex *fft = malloc(k * sizeof(double complex));
    double *fq = malloc(k * sizeof(double));
    cr_assert_eq(rtd_cwt_fft(p, x, fft, fq), 0);
    expect_close("fft", (const double *)fft, fft_ref, nf);
    expect_close("fftfreqs", fq, fq_ref, nq);
    rtd_cwt_plan_destroy(p);
    free(fft);
    free(fq);
    free(x);
    free(fft_ref);
    free(fq_ref);
}

Test(cwt, defaults_with_padding_match_pycwt)
{
    size_t n, nw, ns, nf, nc, nff;
    double *x = must_load("e_cwt_defaults__x.bin", &n);
    double *wave_ref = must_load("e_cwt_defaults__wave.bin", &nw);
    double *scales_ref = must_load("e_cwt_defaults__scales.bin", &ns);
    double *freqs_ref = must_load("e_cwt_defaults__freqs.bin", &nf);
    double *coi_ref = must_load("e_cwt_defaults__coi.bin", &nc);
    double *fft_ref = must_load("e_cwt_defaults__fft.bin", &nff);
    struct rtd_mother m;
    rtd_mother_init(&m, RTD_MOTHER_MORLET, 6);
    struct rtd_cwt_plan *p;
    cr_assert_eq(rtd_cwt_plan_create(&p, n, 1.0, -1, -1, -1, &m, 0), 0);
    cr_assert_eq(rtd_cwt_J(p), 68);
    cr_assert_eq(rtd_cwt_padded(p), 128);
    cr_expect_float_eq(rtd_cwt_s0(p), 1.9360266183887822, 1e-15);
    size_t rows = rtd_cwt_nscales(p);
    cr_assert_eq(nw, 2 * rows * n);
    double complex *wave = malloc(rows * n * sizeof(double complex));
    cr_assert_eq(rtd_cwt_execute(p, x, wave), 0);
    expect_close("wave", (const double *)wave, wave_ref, nw);
    expect_close("scales", rtd_cwt_scales(p), scales_ref, ns);
    expect_close("freqs", rtd_cwt_freqs(p), freqs_ref, nf);
    expect_close("coi", rtd_cwt_coi(p), coi_ref, nc);
    double complex fft[63];
    cr_assert_eq(rtd_cwt_fft(p, x, fft, NULL), 0);
    expect_close("fft", (const double *)fft, fft_ref, nff);
    rtd_cwt_plan_destroy(p);
    free(wave);
    free(x);
    free(wave_ref);
    free(scales_ref);
    free(freqs_ref);
    free(coi_ref);
    free(fft_ref);
}

Test(cwt, two_threads_give_identical_rows)
{
    size_t n;
    double *x = must_load("a_cwt__x.bin", &n);
    struct rtd_mother m;
    rtd_mother_init(&m, RTD_MOTHER_MORLET, 6);
    struct rtd_cwt_plan *p;
    cr_assert_eq(rtd_cwt_plan_create(&p, n, 1.0, 1.0 / 12, 2.0, -1, &m, 0), 0);
    size_t rows = rtd_cwt_nscales(p);
    double complex *w1 = malloc(rows * n * sizeof(double complex));
    double complex *w2 = malloc(rows * n * sizeof(double complex));
    cr_assert_eq(rtd_cwt_execute(p, x, w1), 0);
    cr_assert_eq(rtd_cwt_plan_set_threads(p, 2), 0);
    cr_assert_eq(rtd_cwt_execute(p, x, w2), 0);
    cr_expect_eq(memcmp(w1, w2, rows * n * sizeof(double complex)), 0);
    rtd_cwt_plan_destroy(p);
    free(w1);
    free(w2);
    free(x);
}

static void check_icwt(const char *mother, const char *prefix)
{
    size_t n, nw, ns, ni;
    char name[128];
    snprintf(name, sizeof name, "a_cwt__%s_wave.bin", prefix);
    double *wave = must_load(name, &nw);
    snprintf(name, sizeof name, "a_cwt__%s_scales.bin", prefix);
    double *scales = must_load(name, &ns);
    snprintf(name, sizeof name, "b_icwt__%s_iwave.bin", prefix);
    double *ref = must_load(name, &ni);
    n = ni;
    struct rtd_mother m;
    cr_assert_eq(rtd_mother_parse(&m, mother), 0);
    double *out = malloc(n * sizeof(double));
    cr_assert_eq(rtd_icwt((const double complex *)wave, scales, ns, n, 1.0, 1.0 / 12, &m, 0, out),
                 0);
    expect_close("iwave", out, ref, n);
    free(out);
    free(wave);
    free(scales);
    free(ref);
}

Test(icwt, morlet_matches_pycwt)
{
    check_icwt("morlet:6", "morlet");
}

Test(icwt, dog2_matches_pycwt)
{
    check_icwt("dog:2", "dog2");
}

Test(icwt, paul_psi0_fix_divides_by_twelve)
{
    struct rtd_mother m;
    rtd_mother_init(&m, RTD_MOTHER_PAUL, 4);
    cr_expect_float_eq(creal(rtd_mother_psi0(&m, 0)), 0.08991140417929806, 1e-15);
    cr_expect_float_eq(creal(rtd_mother_psi0(&m, RTD_WAVELET_FIX_PAUL_PSI0)),
                       12 * 0.08991140417929806, 1e-14);
}

Test(mother, constants_match_the_notes)
{
    struct rtd_mother m;
    rtd_mother_init(&m, RTD_MOTHER_MORLET, 6);
    cr_expect_float_eq(m.flambda, 1.0330436477492537, 1e-15);
    cr_expect_float_eq(m.flambda * m.coi_factor, 0.7304721685851844, 1e-15);
    rtd_mother_init(&m, RTD_MOTHER_PAUL, 4);
    cr_expect_float_eq(m.flambda, 1.3962634015954636, 1e-15);
    rtd_mother_init(&m, RTD_MOTHER_DOG, 2);
    cr_expect_float_eq(m.flambda, 3.97383530631844, 1e-14);
    cr_expect_float_eq(creal(rtd_mother_psi0(&m, 0)), 0.8673250705840775, 1e-15);
    rtd_mother_init(&m, RTD_MOTHER_DOG, 6);
    cr_expect_float_eq(creal(rtd_mother_psi0(&m, 0)), 0.8840595725732308, 1e-15);
    cr_expect_float_eq(rtd_wavelet_chi2_ppf(0.95, 2) / 2, 2.9957322735539895, 1e-14);
    cr_expect_float_eq(rtd_wavelet_chi2_ppf(0.95, 1), 3.841458820694124, 1e-14);
    cr_expect_eq(rtd_mother_parse(&m, "wavy:3"), -EINVAL);
    cr_expect_eq(rtd_mother_parse(&m, "paul:2.5"), -EINVAL);
}

/* Case c: ar1, local, global and scale-averaged levels, and bug #26. */
Test(signif, ar1_and_levels_match_pycwt)
{
    size_t n, ns, k;
    double *x = must_load("a_cwt__x.bin", &n);
    double *scales = must_load("a_cwt__morlet_scales.bin", &ns);
    double *signif_ref = must_load("c_signif__signif.bin", &k);
    double *theor_ref = must_load("c_signif__fft_theor.bin", &k);
    double *glbl_ref = must_load("c_signif__glbl_signif.bin", &k);
    double *sa_ref = must_load("c_signif__signif_arrayinput.bin", &k);
    double *ta_ref = must_load("c_signif__fft_theor_arrayinput.bin", &k);
    struct rtd_mother m;
    rtd_mother_init(&m, RTD_MOTHER_MORLET, 6);
    double g, a, mu2;
    cr_assert_eq(rtd_wavelet_ar1(x, n, &g, &a, &mu2), 0);
    double alpha = 0.7669076600510654, variance = 1.2109772514187624;
    expect_close("alpha", &g, &alpha, 1);

    double *sig = malloc(ns * sizeof(double)), *th = malloc(ns * sizeof(double));
    cr_assert_eq(rtd_wavelet_significance(NULL, 0, variance, 1.0, scales, ns, 0, alpha, 0.95, NULL,
                                          0, &m, 0, sig, th),
                 0);
    expect_close("signif", sig, signif_ref, ns);
    expect_close("fft_theor", th, theor_ref, ns);

    double *dof = malloc(ns * sizeof(double));
    for (size_t j = 0; j < ns; j++)
        dof[j] = (double)n - scales[j];
    cr_assert_eq(rtd_wavelet_significance(NULL, 0, variance, 1.0, scales, ns, 1, alpha, 0.95, dof,
                                          ns, &m, 0, sig, th),
                 0);
    expect_close("glbl_signif", sig, glbl_ref, ns);
    cr_expect_eq(memcmp(sig, th, ns * sizeof(double)), 0, "PyCWT aliases theor to signif");

    double band[2] = {scales[31], scales[42]}, s2, t2;
    cr_assert_eq(rtd_wavelet_significance(NULL, 0, variance, 1.0, scales, ns, 2, alpha, 0.95, band,
                                          2, &m, 0, &s2, &t2),
                 0);
    double s2_ref = 0.5869934961616768, t2_ref = 3.0533387060606376;
    expect_close("scale_avg_signif", &s2, &s2_ref, 1);
    expect_close("scale_avg_theor", &t2, &t2_ref, 1);

    /* Array input: PyCWT's bug #26 by default... */
    cr_assert_eq(
        rtd_wavelet_significance(x, n, 0, 1.0, scales, ns, 0, NAN, 0.95, NULL, 0, &m, 0, sig, th),
        0);
    expect_close("signif_arrayinput", sig, sa_ref, ns);
    expect_close("fft_theor_arrayinput", th, ta_ref, ns);
    /* ...and the corrected spectrum equals the scalar-variance call. */
    cr_assert_eq(rtd_wavelet_significance(x, n, 0, 1.0, scales, ns, 0, NAN, 0.95, NULL, 0, &m,
                                          RTD_WAVELET_FIX_REDNOISE, sig, th),
                 0);
    for (size_t j = 0; j < ns; j++)
        cr_expect(fabs(th[j] - theor_ref[j]) <= 1e-9 * theor_ref[j] + 1e-9 * 1e-3,
                  "fixed theor %zu %g vs %g", j, th[j], theor_ref[j]);
    free(sig);
    free(th);
    free(dof);
    free(x);
    free(scales);
    free(signif_ref);
    free(theor_ref);
    free(glbl_ref);
    free(sa_ref);
    free(ta_ref);
}

Test(signif, global_power_matches_pycwt)
{
    size_t n, nw, k;
    double *wave = must_load("a_cwt__morlet_wave.bin", &nw);
    double *ref = must_load("c_signif__glbl_power.bin", &k);
    n = nw / 2 / k;
    double *gp = calloc(k, sizeof(double));
    for (size_t j = 0; j < k; j++) {
        for (size_t t = 0; t < n; t++) {
            double re = wave[2 * (j * n + t)], im = wave[2 * (j * n + t) + 1];
            gp[j] += re * re + im * im;
        }
        gp[j] /= (double)n;
    }
    expect_close("glbl_power", gp, ref, k);
    free(gp);
    free(wave);
    free(ref);
}

/* Case d: coherence and phase. */
static void run_wct(int threads)
{
    size_t n, k, nw, na, nc, nf;
    double *y1 = must_load("d_wct__y1.bin", &n);
    double *y2 = must_load("d_wct__y2.bin", &k);
    double *wct_ref = must_load("d_wct__WCT.bin", &nw);
    double *awct_ref = must_load("d_wct__aWCT.bin", &na);
    double *coi_ref = must_load("d_wct__coi.bin", &nc);
    double *freq_ref = must_load("d_wct__freq.bin", &nf);
    struct rtd_mother m;
    rtd_mother_init(&m, RTD_MOTHER_MORLET, 6);
    struct rtd_wct_plan *p;
    cr_assert_eq(rtd_wct_plan_create(&p, n, 1.0, 1.0 / 12, 2.0, -1, &m, 0), 0);
    cr_assert_eq(rtd_wct_plan_set_threads(p, threads), 0);
    size_t rows = rtd_cwt_nscales(rtd_wct_cwt(p));
    cr_assert_eq(rows * n, nw);
    double *wct = malloc(nw * sizeof(double)), *awct = malloc(nw * sizeof(double));
    cr_assert_eq(rtd_wct_execute(p, y1, y2, 1, wct, awct), 0);
    expect_close("WCT", wct, wct_ref, nw);
    expect_close("aWCT", awct, awct_ref, na);
    expect_close("coi", rtd_cwt_coi(rtd_wct_cwt(p)), coi_ref, nc);
    expect_close("freq", rtd_cwt_freqs(rtd_wct_cwt(p)), freq_ref, nf);
    rtd_wct_plan_destroy(p);
    free(wct);
    free(awct);
    free(y1);
    free(y2);
    free(wct_ref);
    free(awct_ref);
    free(coi_ref);
    free(freq_ref);
}

Test(wct, matches_pycwt)
{
    run_wct(1);
}

Test(wct, matches_pycwt_on_two_threads)
{
    run_wct(2);
}

Test(wct, rejects_non_morlet)
{
    struct rtd_mother m;
    rtd_mother_init(&m, RTD_MOTHER_PAUL, 4);
    struct rtd_wct_plan *p;
    cr_expect_eq(rtd_wct_plan_create(&p, 64, 1.0, 1.0 / 12, 2.0, -1, &m, 0), -EINVAL);
}

/*
 * Case f: the Monte Carlo level. PyCWT's seeds 0 and 1 differ by rms 0.007 and at most 0.026
 * at mc_count = 300; the spread grows as 1/sqrt(mc_count), so at mc_count = 60 we allow
 * sqrt(5) times PyCWT's spread plus PyCWT's own (the reference is one random draw too).
 */
Test(wct_signif, level_within_pycwt_spread, .timeout = 120)
{
    size_t k, kc;
    double *ref = must_load("f_wct_significance__sig95.bin", &k);
    double *ref1 = must_load("f_wct_significance__sig95_seed1.bin", &k);
    double *nout_ref = must_load("f_wct_significance__n_outside_coi.bin", &kc);
    struct rtd_mother m;
    rtd_mother_init(&m, RTD_MOTHER_MORLET, 6);
    struct rtd_wct_signif_opts o = {.level = 0.95, .mc_count = 60, .seed = 7, .nthreads = 2};
    double *sig = malloc(k * sizeof(double)), *nout = malloc(k * sizeof(double));
    cr_assert_eq(rtd_wct_significance(0.4341939428077869, 0.5079160550440158, 1.0, 1.0 / 12, 2.0,
                                      108, &m, &o, sig, NULL, nout),
                 0);
    expect_close("n_outside_coi", nout, nout_ref, kc);
    cr_expect(isnan(sig[108]), "PyCWT leaves maxscale NaN");
    double ss = 0, worst = 0, ss_ref = 0;
    for (size_t j = 0; j < 108; j++) {
        double d = sig[j] - ref[j];
        ss += d * d;
        ss_ref += (ref1[j] - ref[j]) * (ref1[j] - ref[j]);
        if (fabs(d) > worst)
            worst = fabs(d);
    }
    double rms = sqrt(ss / 108), rms_ref = sqrt(ss_ref / 108);
    double f = 1 + sqrt(300.0 / 60);
    cr_expect_leq(rms, f * 0.007, "rms %g (pycwt seed-to-seed %g)", rms, rms_ref);
    cr_expect_leq(worst, f * 0.026, "max %g", worst);
    free(sig);
    free(nout);
    free(ref);
    free(ref1);
    free(nout_ref);
}

Test(wct_signif, same_result_for_one_and_two_threads, .timeout = 120)
{
    struct rtd_mother m;
    rtd_mother_init(&m, RTD_MOTHER_MORLET, 6);
    /* J = 60 keeps the surrogates short (ceil(6 * 2 * 2^5) = 384 samples). */
    double a[61], b[61], ca[61 * 1000], cb[61 * 1000];
    struct rtd_wct_signif_opts o = {.level = 0.95, .mc_count = 24, .seed = 42, .nthreads = 1};
    cr_assert_eq(rtd_wct_significance(0.7, 0.3, 1.0, 1.0 / 12, 2.0, 60, &m, &o, a, ca, NULL), 0);
    o.nthreads = 2;
    cr_assert_eq(rtd_wct_significance(0.7, 0.3, 1.0, 1.0 / 12, 2.0, 60, &m, &o, b, cb, NULL), 0);
    cr_expect_eq(memcmp(ca, cb, sizeof ca), 0);
    for (int j = 0; j < 61; j++)
        cr_expect((isnan(a[j]) && isnan(b[j])) || a[j] == b[j], "scale %d: %g vs %g", j, a[j],
                  b[j]);
    o.flags = RTD_WAVELET_FIX_MC_LASTSCALE;
    cr_assert_eq(rtd_wct_significance(0.7, 0.3, 1.0, 1.0 / 12, 2.0, 60, &m, &o, b, NULL, NULL), 0);
    cr_expect(!isnan(b[60]) && b[60] > 0, "fixed: the last scale has a level");
    o.seed = 43;
    cr_assert_eq(rtd_wct_significance(0.7, 0.3, 1.0, 1.0 / 12, 2.0, 60, &m, &o, b, cb, NULL), 0);
    cr_expect_neq(memcmp(ca, cb, sizeof ca), 0, "another seed, other surrogates");
}

Test(rednoise, is_seeded_and_has_the_lag1_coefficient)
{
    size_t n = 20000;
    double *a = malloc(n * sizeof(double)), *b = malloc(n * sizeof(double));
    cr_assert_eq(rtd_wavelet_rednoise(a, n, 0.72, 1, 5, 0), 0);
    cr_assert_eq(rtd_wavelet_rednoise(b, n, 0.72, 1, 5, 0), 0);
    cr_expect_eq(memcmp(a, b, n * sizeof(double)), 0);
    double g;
    cr_assert_eq(rtd_wavelet_ar1(a, n, &g, NULL, NULL), 0);
    cr_expect(fabs(g - 0.72) < 0.02, "lag-1 %g", g);
    cr_expect_eq(rtd_wavelet_rednoise(a, n, 0, 1, 5, 0), 0, "g = 0 is white noise, no crash");
    cr_expect_eq(rtd_wavelet_rednoise(a, n, 1.0, 1, 5, 0), -EINVAL);
    free(a);
    free(b);
}

Test(input, bad_parameters_and_values_are_rejected)
{
    struct rtd_mother m;
    rtd_mother_init(&m, RTD_MOTHER_MORLET, 6);
    struct rtd_cwt_plan *p;
    cr_expect_eq(rtd_cwt_plan_create(&p, 0, 1.0, 1.0 / 12, 2.0, -1, &m, 0), -EINVAL);
    cr_expect_eq(rtd_cwt_plan_create(&p, 64, 0.0, 1.0 / 12, 2.0, -1, &m, 0), -EINVAL);
    cr_expect_eq(rtd_cwt_plan_create(&p, 64, -1.0, 1.0 / 12, 2.0, -1, &m, 0), -EINVAL);
    cr_expect_eq(rtd_cwt_plan_create(&p, 64, NAN, 1.0 / 12, 2.0, -1, &m, 0), -EINVAL);
    cr_assert_eq(rtd_cwt_plan_create(&p, 64, 1.0, 1.0 / 12, 2.0, -1, &m, 0), 0);
    double x[64] = {0};
    x[10] = NAN;
    double complex *w = malloc(rtd_cwt_nscales(p) * 64 * sizeof(double complex));
    cr_expect_eq(rtd_cwt_execute(p, x, w), -EDOM);
    x[10] = INFINITY;
    cr_expect_eq(rtd_cwt_execute(p, x, w), -EDOM);
    free(w);
    rtd_cwt_plan_destroy(p);
}

Test(wct_signif, pycwt_surrogates_are_white_and_the_fix_filters_them, .timeout = 120)
{
    struct rtd_mother m;
    rtd_mother_init(&m, RTD_MOTHER_MORLET, 6);
    static double c0[41 * 1000], c1[41 * 1000], c2[41 * 1000];
    double s[41];
    struct rtd_wct_signif_opts o = {.level = 0.95, .mc_count = 6, .seed = 9, .nthreads = 1};
    /* PyCWT's rednoise filters along a length-1 axis: alpha only sets the dropped spin-up
     * (tau = ceil(-2/ln|g|) = 6 for both 0.70 and 0.71). */
    cr_assert_eq(rtd_wct_significance(0.71, 0.71, 1.0, 1.0 / 12, 2.0, 40, &m, &o, s, c0, NULL), 0);
    cr_assert_eq(rtd_wct_significance(0.7, 0.7, 1.0, 1.0 / 12, 2.0, 40, &m, &o, s, c1, NULL), 0);
    cr_expect_eq(memcmp(c0, c1, sizeof c0), 0, "white surrogates whatever al1, al2");
    o.flags = RTD_WAVELET_FIX_MC_AR1;
    cr_assert_eq(rtd_wct_significance(0.7, 0.7, 1.0, 1.0 / 12, 2.0, 40, &m, &o, s, c2, NULL), 0);
    cr_expect_neq(memcmp(c0, c2, sizeof c0), 0, "AR(1) surrogates with the fix");
}

Test(cwt, paul_rows_fix_keeps_every_scale)
{
    size_t n;
    double *x = must_load("a_cwt__x.bin", &n);
    struct rtd_mother m;
    rtd_mother_init(&m, RTD_MOTHER_PAUL, 4);
    struct rtd_cwt_plan *p;
    cr_assert_eq(rtd_cwt_plan_create(&p, n, 1.0, 1.0 / 12, 2.0, -1, &m, RTD_WAVELET_FIX_PAUL_ROWS),
                 0);
    cr_expect_eq(rtd_cwt_nscales(p), 109);
    double complex *w = malloc(109 * n * sizeof(double complex));
    cr_assert_eq(rtd_cwt_execute(p, x, w), 0);
    for (size_t i = 0; i < 109 * n; i++)
        if (!isfinite(creal(w[i])) || !isfinite(cimag(w[i]))) {
            cr_expect_fail("non-finite element %zu", i);
            break;
        }
    rtd_cwt_plan_destroy(p);
    free(w);
    free(x);
}

Test(wct_signif, coarse_dj_uses_the_short_boxcar)
{
    /* dj = 0.5 gives L = round(1.2/0.5) = 2 rows: the direct boxcar, not the running sum. */
    struct rtd_mother m;
    rtd_mother_init(&m, RTD_MOTHER_MORLET, 6);
    double s[11];
    struct rtd_wct_signif_opts o = {.level = 0.95, .mc_count = 4, .seed = 1, .nthreads = 1};
    cr_assert_eq(rtd_wct_significance(0.3, 0.3, 1.0, 0.5, 2.0, 10, &m, &o, s, NULL, NULL), 0);
    for (int j = 0; j < 10; j++)
        cr_expect(s[j] > 0.2 && s[j] < 1, "scale %d level %g", j, s[j]);
    cr_expect(isnan(s[10]));
}

Test(wct_signif, float32_option_agrees_and_is_thread_invariant, .timeout = 120)
{
    struct rtd_mother m;
    rtd_mother_init(&m, RTD_MOTHER_MORLET, 6);
    static double cd[61 * 1000], c1[61 * 1000], c2[61 * 1000];
    double d[61], f1[61], f2[61];
    struct rtd_wct_signif_opts o = {.level = 0.95, .mc_count = 12, .seed = 4, .nthreads = 1};
    cr_assert_eq(rtd_wct_significance(0.5, 0.5, 1.0, 1.0 / 12, 2.0, 60, &m, &o, d, cd, NULL), 0);
    o.flags = RTD_WAVELET_MC_FLOAT;
    cr_assert_eq(rtd_wct_significance(0.5, 0.5, 1.0, 1.0 / 12, 2.0, 60, &m, &o, f1, c1, NULL), 0);
    o.nthreads = 2;
    cr_assert_eq(rtd_wct_significance(0.5, 0.5, 1.0, 1.0 / 12, 2.0, 60, &m, &o, f2, c2, NULL), 0);
    cr_expect_eq(memcmp(c1, c2, sizeof c1), 0, "float32 loop: same counts on 1 and 2 threads");
    /* Same surrogates: only points within ~1e-6 of a bin edge may move to the next bin. */
    double moved = 0, total = 0;
    for (size_t i = 0; i < 61 * 1000; i++) {
        moved += fabs(cd[i] - c1[i]);
        total += cd[i];
    }
    cr_expect_leq(moved, 1e-3 * total, "%g of %g counts moved", moved, total);
    for (int j = 0; j < 60; j++)
        cr_expect(fabs(d[j] - f1[j]) < 2e-3, "scale %d: %g vs %g", j, d[j], f1[j]);
}

/* Rows in blocks, from a one-shot plan (kernels evaluated per row), equal the tabulated
 * plan's rtd_cwt_execute bit for bit, for every mother and a padded length. */
Test(cwt, rows_in_blocks_and_oneshot_plans_are_bit_identical)
{
    const char *mothers[] = {"morlet:6", "paul:4", "dog:2", "dog:6"};
    size_t n = 3000;
    double *x = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++)
        x[i] = sin((double)i * 0.05) + 0.3 * cos((double)i * 0.71);
    for (size_t k = 0; k < 4; k++) {
        struct rtd_mother m;
        cr_assert_eq(rtd_mother_parse(&m, mothers[k]), 0);
        struct rtd_cwt_plan *a, *b;
        cr_assert_eq(rtd_cwt_plan_create(&a, n, 0.5, 0.1, -1, -1, &m, 0), 0);
        cr_assert_eq(rtd_cwt_plan_create(&b, n, 0.5, 0.1, -1, -1, &m, RTD_WAVELET_ONESHOT), 0);
        size_t rows = rtd_cwt_nscales(a);
        cr_assert_eq(rows, rtd_cwt_nscales(b));
        double complex *wa = malloc(rows * n * sizeof(double complex));
        double complex *wb = malloc(rows * n * sizeof(double complex));
        cr_assert_eq(rtd_cwt_execute(a, x, wa), 0);
        cr_assert_eq(rtd_cwt_execute_rows(b, 0, 1, wb), -EINVAL, "rows before a load");
        cr_assert_eq(rtd_cwt_load(b, x), 0);
        cr_assert_eq(rtd_cwt_plan_set_threads(b, 2), 0);
        for (size_t j0 = 0; j0 < rows; j0 += 7) {
            size_t j1 = j0 + 7 < rows ? j0 + 7 : rows;
            cr_assert_eq(rtd_cwt_execute_rows(b, j0, j1, wb + j0 * n), 0);
        }
        cr_assert_eq(memcmp(wa, wb, rows * n * sizeof(double complex)), 0, "%s differs",
                     mothers[k]);
        free(wa);
        free(wb);
        rtd_cwt_plan_destroy(a);
        rtd_cwt_plan_destroy(b);
    }
    free(x);
}

/* In-process wisdom cache: measured plans are saved, reused by the next plan, and an
 * unreadable file is counted and ignored. (Criterion runs each test in its own process.) */
Test(wisdom, cache_saves_reuses_and_ignores_a_corrupt_file)
{
    char dir[] = "/tmp/rtd-wisdom-test-XXXXXX";
    cr_assert(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/fftw-wisdom", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs("not wisdom at all", f);
    fclose(f);
    setenv("RTDAQ_WISDOM_DIR", dir, 1);
    setenv("RTDAQ_WISDOM_SYSTEM_DIR", "/nonexistent", 1);
    unsetenv("RTDAQ_WISDOM");
    cr_assert_eq(rtd_wavelet_wisdom_auto(0), 0);
    struct rtd_wisdom_stats st;
    rtd_wavelet_wisdom_stats(&st);
    cr_assert_eq(st.corrupt, 1);
    cr_assert_eq(st.loaded_user, 0);
    struct rtd_mother m;
    rtd_mother_init(&m, RTD_MOTHER_MORLET, 6);
    struct rtd_cwt_plan *p;
    cr_assert_eq(rtd_cwt_plan_create(&p, 256, 1, 0.25, -1, -1, &m, 0), 0);
    rtd_cwt_plan_destroy(p);
    rtd_wavelet_wisdom_stats(&st);
    cr_assert_eq(st.planned_measured, 2);
    cr_assert_eq(st.saves, 1);
    cr_assert_str_eq(st.user_path, path);
    cr_assert_eq(rtd_wavelet_wisdom_load(path), 0, "the saved file is not valid wisdom");
    cr_assert_eq(rtd_cwt_plan_create(&p, 256, 1, 0.25, -1, -1, &m, 0), 0);
    rtd_cwt_plan_destroy(p);
    rtd_wavelet_wisdom_stats(&st);
    cr_assert_eq(st.planned_measured, 2, "the second plan was measured again");
    cr_assert_eq(st.planned_from_wisdom, 2);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}
