/* SPDX-License-Identifier: MIT */
/*
 * Red-noise background and significance levels (PYCWT_NOTES.md 1.5-1.6): the Allen & Smith
 * bias-corrected lag-1 estimate, TC98's red-noise spectrum and the chi-square levels of the
 * local (sigma_test 0), time-averaged (1) and scale-averaged (2) tests, PyCWT's quirks kept.
 */
#include "wavelet_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

int rtd_wavelet_ar1(const double *x, size_t n, double *g_out, double *a_out, double *mu2_out)
{
    if (!x || n < 3)
        return -EINVAL;
    int rc = rtd_wavelet_check_finite(x, n);
    if (rc)
        return rc;
    double mean = 0;
    for (size_t i = 0; i < n; i++)
        mean += x[i];
    mean /= (double)n;
    double c0 = 0, c1 = 0;
    for (size_t i = 0; i < n; i++) {
        double d = x[i] - mean;
        c0 += d * d;
        if (i + 1 < n)
            c1 += d * (x[i + 1] - mean);
    }
    double N = (double)n;
    c0 /= N;
    c1 /= N - 1;
    double A = c0 * N * N;
    double B = -c1 * N - c0 * N * N - 2 * c0 + 2 * c1 - c1 * N * N + c0 * N;
    double C = N * (c0 + c1 * N - c1);
    double D = B * B - 4 * A * C;
    if (!(D > 0))
        return -EDOM;
    double g = (-B - sqrt(D)) / (2 * A);
    double mu2 = -1 / N + (2 / (N * N)) * ((N - pow(g, N)) / (1 - g) -
                                           g * (1 - pow(g, N - 1)) / ((1 - g) * (1 - g)));
    double a = sqrt((1 - g * g) * c0 / (1 - mu2));
    if (g_out)
        *g_out = g;
    if (a_out)
        *a_out = a;
    if (mu2_out)
        *mu2_out = mu2;
    return 0;
}

int rtd_wavelet_significance(const double *signal, size_t n_signal, double variance, double dt,
                             const double *scales, size_t nscales, int sigma_test, double alpha,
                             double level, const double *dof, size_t ndof,
                             const struct rtd_mother *m, unsigned flags, double *signif,
                             double *theor)
{
    if (!scales || nscales < 2 || !m || !signif || !(dt > 0) || !(level > 0 && level < 1))
        return -EINVAL;
    double n0 = 1;
    if (signal) {
        if (n_signal < 3)
            return -EINVAL;
        int rc = rtd_wavelet_check_finite(signal, n_signal);
        if (rc)
            return rc;
        double mean = 0, v = 0;
        for (size_t i = 0; i < n_signal; i++)
            mean += signal[i];
        mean /= (double)n_signal;
        for (size_t i = 0; i < n_signal; i++)
            v += (signal[i] - mean) * (signal[i] - mean);
        double sd = sqrt(v / (double)n_signal);
        variance = sd * sd;
        n0 = (double)n_signal;
        if (isnan(alpha)) {
            int rc2 = rtd_wavelet_ar1(signal, n_signal, &alpha, NULL, NULL);
            if (rc2)
                return rc2;
        }
        /* Bug #26: PyCWT divides the frequency by the signal length in the cosine. */
        if (flags & RTD_WAVELET_FIX_REDNOISE)
            n0 = 1;
    }
    if (!isfinite(variance) || !isfinite(alpha) || fabs(alpha) >= 1)
        return -EINVAL;
    double dj = log2(scales[1] / scales[0]);
    double *th = malloc(nscales * sizeof(double));
    if (!th)
        return -ENOMEM;
    for (size_t j = 0; j < nscales; j++) {
        double period = scales[j] * m->flambda;
        double freq = dt / period;
        double P =
            (1 - alpha * alpha) / (1 + alpha * alpha - 2 * alpha * cos(2 * M_PI * freq / n0));
        th[j] = variance * P;
    }
    int rc = 0;
    double dofmin = m->dofmin;
    if (sigma_test == 0) {
        double chi = rtd_wavelet_chi2_ppf(level, dofmin) / dofmin;
        for (size_t j = 0; j < nscales; j++) {
            signif[j] = th[j] * chi;
            if (theor)
                theor[j] = th[j];
        }
    } else if (sigma_test == 1) {
        if (!dof || ndof != nscales || m->gamma <= 0) {
            rc = -EINVAL;
            goto out;
        }
        for (size_t j = 0; j < nscales; j++) {
            double na = dof[j] < 1 ? 1 : dof[j];
            double nu = dofmin * sqrt(1 + pow(na * dt / m->gamma / scales[j], 2));
            if (nu < dofmin)
                nu = dofmin;
            signif[j] = th[j] * (rtd_wavelet_chi2_ppf(level, nu) / nu);
        }
        if (theor)
            for (size_t j = 0; j < nscales; j++)
                theor[j] = (flags & RTD_WAVELET_FIX_GLOBAL_THEOR) ? th[j] : signif[j];
    } else if (sigma_test == 2) {
        if (!dof || ndof != 2 || m->cdelta <= 0 || m->dj0 <= 0 || !(dof[0] > 0) ||
            !(dof[1] >= dof[0])) {
            rc = -EINVAL;
            goto out;
        }
        double s1 = dof[0], s2 = dof[1], inv = 0, sumt = 0;
        int na = 0;
        for (size_t j = 0; j < nscales; j++)
            if (scales[j] >= s1 && scales[j] <= s2) {
                na++;
                inv += 1 / scales[j];
                sumt += th[j] / scales[j];
            }
        if (!na) {
            rc = -EINVAL;
            goto out;
        }
        double savg = 1 / inv;
        double smid = exp((log(s1) + log(s2)) / 2);
        double pbar = savg * sumt;
        double nu = (dofmin * na * savg / smid) * sqrt(1 + pow(na * dj / m->dj0, 2));
        signif[0] = (dj * dt / m->cdelta / savg) * pbar * (rtd_wavelet_chi2_ppf(level, nu) / nu);
        if (theor)
            theor[0] = pbar;
    } else {
        rc = -EINVAL;
    }
out:
    free(th);
    return rc;
}
