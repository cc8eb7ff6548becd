/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the wavelet tests: load a reference vector from tests/data/wavelet and
 * compare arrays with the tolerance (relative 1e-9, absolute 1e-12 near zero).
 */
#ifndef WV_REF_H
#define WV_REF_H

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#define WV_DATA RTD_TEST_DATA "/wavelet/"

/* Whole file as doubles; *n = count. NULL when missing or not a multiple of 8 bytes. */
static inline double *wv_load(const char *name, size_t *n)
{
    char path[512];
    snprintf(path, sizeof path, "%s%s", WV_DATA, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    double *d = NULL;
    if (len > 0 && len % 8 == 0) {
        d = malloc((size_t)len);
        if (d && fread(d, 1, (size_t)len, f) != (size_t)len) {
            free(d);
            d = NULL;
        }
    }
    fclose(f);
    if (n)
        *n = d ? (size_t)len / 8 : 0;
    return d;
}

/*
 * Worst element of |a - b| / (1e-9 |b| + 1e-12): <= 1 passes. NaN must match NaN.
 * Returns the worst ratio; *where gets its index.
 */
static inline double wv_worst(const double *a, const double *b, size_t n, size_t *where)
{
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double r;
        if (isnan(b[i]) || isnan(a[i]))
            r = (isnan(a[i]) && isnan(b[i])) ? 0 : INFINITY;
        else
            r = fabs(a[i] - b[i]) / (1e-9 * fabs(b[i]) + 1e-12);
        if (r > worst) {
            worst = r;
            wi = i;
        }
    }
    if (where)
        *where = wi;
    return worst;
}

#endif
