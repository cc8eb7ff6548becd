/* SPDX-License-Identifier: MIT */
/*
 * Mother wavelets with PyCWT's Fourier-space definitions and constants (PYCWT_NOTES.md 1.1),
 * and the chi-square quantile for non-integer degrees of freedom that significance() needs
 * (scipy's chi2.ppf = 2 gammaincinv(dof/2, p)).
 */
#include "rtd_wavelet.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double factorial(int k)
{
    double f = 1.0;
    for (int i = 2; i <= k; i++)
        f *= i;
    return f;
}

/* i^m for integer m. */
static double complex ipow(int m)
{
    switch (((m % 4) + 4) % 4) {
    case 0:
        return 1.0;
    case 1:
        return I;
    case 2:
        return -1.0;
    default:
        return -I;
    }
}

int rtd_mother_init(struct rtd_mother *m, enum rtd_mother_kind kind, double param)
{
    if (!m || !isfinite(param) || param <= 0)
        return -EINVAL;
    memset(m, 0, sizeof(*m));
    m->kind = kind;
    m->param = param;
    m->cdelta = m->gamma = m->dj0 = -1;
    switch (kind) {
    case RTD_MOTHER_MORLET:
        m->flambda = 4 * M_PI / (param + sqrt(2 + param * param));
        m->coi_factor = 1 / sqrt(2);
        m->dofmin = 2;
        if (param == 6) {
            m->cdelta = 0.776;
            m->gamma = 2.32;
            m->dj0 = 0.60;
        }
        snprintf(m->name, sizeof m->name, "morlet:%g", param);
        return 0;
    case RTD_MOTHER_PAUL:
    case RTD_MOTHER_DOG:
        /* Integer orders only: the constants use factorials and i^m. Beyond 30 the Paul
         * constant (2m-1)! overflows the usefulness of doubles anyway. */
        if (param != floor(param) || param > 30)
            return -EINVAL;
        break;
    default:
        return -EINVAL;
    }
    int mm = (int)param;
    if (kind == RTD_MOTHER_PAUL) {
        m->flambda = 4 * M_PI / (2 * mm + 1);
        m->coi_factor = sqrt(2);
        m->dofmin = 2;
        if (mm == 4) {
            m->cdelta = 1.132;
            m->gamma = 1.17;
            m->dj0 = 1.50;
        }
        snprintf(m->name, sizeof m->name, "paul:%d", mm);
    } else {
        m->flambda = 2 * M_PI / sqrt(mm + 0.5);
        m->coi_factor = 1 / sqrt(2);
        m->dofmin = 1;
        if (mm == 2) {
            m->cdelta = 3.541;
            m->gamma = 1.43;
            m->dj0 = 1.40;
        } else if (mm == 6) {
            m->cdelta = 1.966;
            m->gamma = 1.37;
            m->dj0 = 0.97;
        }
        snprintf(m->name, sizeof m->name, "dog:%d", mm);
    }
    return 0;
}

int rtd_mother_parse(struct rtd_mother *m, const char *spec)
{
    if (!spec)
        return -EINVAL;
    char name[32];
    const char *colon = strchr(spec, ':');
    size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
    if (len == 0 || len >= sizeof name)
        return -EINVAL;
    memcpy(name, spec, len);
    name[len] = 0;
    double param = NAN;
    if (colon) {
        char *end;
        errno = 0;
        param = strtod(colon + 1, &end);
        if (errno || end == colon + 1 || *end)
            return -EINVAL;
    }
    if (!strcasecmp(name, "morlet"))
        return rtd_mother_init(m, RTD_MOTHER_MORLET, colon ? param : 6);
    if (!strcasecmp(name, "paul"))
        return rtd_mother_init(m, RTD_MOTHER_PAUL, colon ? param : 4);
    if (!strcasecmp(name, "dog"))
        return rtd_mother_init(m, RTD_MOTHER_DOG, colon ? param : 2);
    if (!strcasecmp(name, "mexicanhat") && !colon)
        return rtd_mother_init(m, RTD_MOTHER_DOG, 2);
    return -EINVAL;
}

double complex rtd_mother_psi_ft(const struct rtd_mother *m, double f)
{
    switch (m->kind) {
    case RTD_MOTHER_MORLET:
        return pow(M_PI, -0.25) * exp(-0.5 * (f - m->param) * (f - m->param));
    case RTD_MOTHER_PAUL: {
        int mm = (int)m->param;
        if (!(f > 0))
            return 0;
        return pow(2, mm) / sqrt(mm * factorial(2 * mm - 1)) * pow(f, mm) * exp(-f);
    }
    case RTD_MOTHER_DOG: {
        int mm = (int)m->param;
        return -ipow(mm) / sqrt(tgamma(mm + 0.5)) * pow(f, mm) * exp(-0.5 * f * f);
    }
    }
    return 0;
}

/* Probabilists' Hermite polynomial He_m at 0: 0 for odd m, (-1)^(m/2) (m-1)!! for even. */
static double hermite_e0(int m)
{
    if (m % 2)
        return 0;
    double v = 1;
    for (int k = m - 1; k > 1; k -= 2)
        v *= k;
    return (m / 2) % 2 ? -v : v;
}

double complex rtd_mother_psi0(const struct rtd_mother *m, unsigned flags)
{
    switch (m->kind) {
    case RTD_MOTHER_MORLET:
        return pow(M_PI, -0.25);
    case RTD_MOTHER_PAUL: {
        int mm = (int)m->param;
        /* PyCWT uses (m-2)! where TC98 has m!: icwt with Paul comes out m(m-1) times too big. */
        double fac = (flags & RTD_WAVELET_FIX_PAUL_PSI0) ? factorial(mm) : factorial(mm - 2);
        return pow(2, mm) * ipow(mm) * fac / sqrt(M_PI * factorial(2 * mm));
    }
    case RTD_MOTHER_DOG: {
        int mm = (int)m->param;
        double sgn = (mm + 1) % 2 ? -1.0 : 1.0;
        return sgn * hermite_e0(mm) / sqrt(tgamma(mm + 0.5));
    }
    }
    return 0;
}

/* ---- regularised lower incomplete gamma and its inverse ---- */

/* P(a, x) by the series (x < a+1) or Lentz's continued fraction for Q (x >= a+1). */
static double gamma_p(double a, double x)
{
    if (x <= 0)
        return 0;
    double lg = lgamma(a);
    if (x < a + 1) {
        double ap = a, sum = 1 / a, del = sum;
        for (int i = 0; i < 10000; i++) {
            ap += 1;
            del *= x / ap;
            sum += del;
            if (fabs(del) < fabs(sum) * 1e-17)
                break;
        }
        return sum * exp(-x + a * log(x) - lg);
    }
    double b = x + 1 - a, c = 1 / 1e-300, d = 1 / b, h = d;
    for (int i = 1; i < 10000; i++) {
        double an = -i * (i - a);
        b += 2;
        d = an * d + b;
        if (fabs(d) < 1e-300)
            d = 1e-300;
        c = b + an / c;
        if (fabs(c) < 1e-300)
            c = 1e-300;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < 1e-17)
            break;
    }
    return 1 - exp(-x + a * log(x) - lg) * h;
}

/*
 * Inverse of P(a, .) at p: bracketing plus Newton steps on the exact density, which converges
 * to a few ulps; bisection guards the steps so it cannot run away in the tails.
 */
static double gamma_p_inv(double a, double p)
{
    if (p <= 0)
        return 0;
    if (p >= 1)
        return INFINITY;
    double lo = 0, hi = a + 10 * sqrt(a) + 50;
    while (gamma_p(a, hi) < p)
        hi *= 2;
    /* Wilson-Hilferty start. */
    double z = 0, t = sqrt(-2 * log(p < 0.5 ? p : 1 - p));
    z = t - (2.515517 + 0.802853 * t + 0.010328 * t * t) /
                (1 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t);
    if (p < 0.5)
        z = -z;
    double w = 1 - 1 / (9 * a) + z / (3 * sqrt(a));
    double x = a * w * w * w;
    if (!(x > lo && x < hi))
        x = 0.5 * (lo + hi);
    double lg = lgamma(a);
    for (int it = 0; it < 200; it++) {
        double f = gamma_p(a, x) - p;
        if (f < 0)
            lo = x;
        else
            hi = x;
        double dens = exp(-x + (a - 1) * log(x) - lg);
        double nx = x - f / dens;
        if (!(nx > lo && nx < hi))
            nx = 0.5 * (lo + hi);
        if (fabs(nx - x) <= 1e-16 * fabs(x)) {
            x = nx;
            break;
        }
        x = nx;
    }
    return x;
}

double rtd_wavelet_chi2_ppf(double p, double dof)
{
    if (!(dof > 0) || !(p >= 0 && p <= 1))
        return NAN;
    return 2 * gamma_p_inv(dof / 2, p);
}
