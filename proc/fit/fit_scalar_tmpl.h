/* SPDX-License-Identifier: MIT */
/*
 * The scalar fit kernel, written once and included twice by fit_scalar.c: with
 * REAL = double (the float64 reference every other kernel is tested against)
 * and REAL = float (the portable fallback). It follows Cpufit's LMFitCPP step
 * by step: model and Jacobian into arrays, chi2, the normal matrix and gradient
 * recomputed only after an accepted step, damping by lambda times the largest
 * diagonal seen so far, lambda /10 on success and *10 on failure.
 */

#define FIT_CAT_(a, b) a##b
#define FIT_CAT(a, b)  FIT_CAT_(a, b)
#define FN(name)       FIT_CAT(name, SFX)

/*
 * Model values f[i] and Jacobian jac[k*n + i] (column per parameter, as Cpufit)
 * at p. cn: the nodes/2 positive Gauss-Chebyshev nodes (SHM_1D only).
 */
static void FN(model_eval_)(int model, uint32_t n, uint32_t size, const REAL *p, uint32_t nodes,
                            const REAL *cn, REAL *f, REAL *jac)
{
    switch (model) {
    case RTD_FIT_GAUSS_1D: {
        const REAL is2 = (REAL)1 / (p[2] * p[2]);
        for (uint32_t i = 0; i < n; i++) {
            REAL dx = (REAL)i - p[1];
            REAL e = FN(exp_)((REAL)-0.5 * dx * dx * is2);
            REAL ae = p[0] * e;
            f[i] = ae + p[3];
            jac[0 * n + i] = e;
            jac[1 * n + i] = ae * dx * is2;
            jac[2 * n + i] = ae * dx * dx * is2 / p[2];
            jac[3 * n + i] = 1;
        }
        break;
    }
    case RTD_FIT_GAUSS_2D: {
        const REAL is2 = (REAL)1 / (p[3] * p[3]);
        for (uint32_t iy = 0; iy < size; iy++) {
            REAL dy = (REAL)iy - p[2];
            for (uint32_t ix = 0; ix < size; ix++) {
                uint32_t i = iy * size + ix;
                REAL dx = (REAL)ix - p[1];
                REAL r2 = dx * dx + dy * dy;
                REAL e = FN(exp_)((REAL)-0.5 * r2 * is2);
                REAL ae = p[0] * e;
                f[i] = ae + p[4];
                jac[0 * n + i] = e;
                jac[1 * n + i] = ae * dx * is2;
                jac[2 * n + i] = ae * dy * is2;
                jac[3 * n + i] = ae * r2 * is2 / p[3];
                jac[4 * n + i] = 1;
            }
        }
        break;
    }
    case RTD_FIT_SHM_1D: {
        const REAL A = p[2], s = p[3], is2 = (REAL)1 / (s * s);
        const REAL inv_n = (REAL)1 / (REAL)nodes;
        for (uint32_t i = 0; i < n; i++) {
            REAL u = (REAL)i - p[1];
            REAL k = 0, kx = 0, ka = 0, ks = 0;
            for (uint32_t jn = 0; jn < nodes / 2; jn++) {
                REAL c = cn[jn];
                REAL w1 = u - A * c, w2 = u + A * c;
                REAL e1 = FN(exp_)((REAL)-0.5 * w1 * w1 * is2);
                REAL e2 = FN(exp_)((REAL)-0.5 * w2 * w2 * is2);
                REAL t1 = e1 * w1, t2 = e2 * w2;
                k += e1 + e2;
                kx += t1 + t2;
                ka += (t1 - t2) * c;
                ks += t1 * w1 + t2 * w2;
            }
            k *= inv_n;
            kx *= inv_n * is2;
            ka *= inv_n * is2;
            ks *= inv_n * is2 / s;
            f[i] = p[0] * k + p[4];
            jac[0 * n + i] = k;
            jac[1 * n + i] = p[0] * kx;
            jac[2 * n + i] = p[0] * ka;
            jac[3 * n + i] = p[0] * ks;
            jac[4 * n + i] = 1;
        }
        break;
    }
    default: { /* RTD_FIT_SHM_LEGACY */
        const REAL R = p[1], A = p[2];
        for (uint32_t i = 0; i < n; i++) {
            REAL dy = (REAL)i - p[0];
            REAL q = R * R - dy * dy;
            jac[3 * n + i] = 1;
            if (!(q > 0)) {
                f[i] = p[3];
                jac[0 * n + i] = jac[1 * n + i] = jac[2 * n + i] = 0;
                continue;
            }
            REAL rs = (REAL)1 / FN(sqrt_)(q);
            REAL t = A * rs * rs * rs;
            f[i] = A * rs + p[3];
            jac[0 * n + i] = -t * dy;
            jac[1 * n + i] = -t * R;
            jac[2 * n + i] = rs;
        }
        break;
    }
    }
}

/*
 * One sample's Poisson deviance 2 (f - y - y ln(f/y)) (2 f where y = 0). Near
 * f = y the direct form cancels to a few ulps of f, as large in float as the
 * chi2 changes the convergence test must see; with z = (f-y)/(f+y) it is
 * 2 z^2 (f+y) - 4 y z^3 (1/3 + z^2/5 + ...), accurate for |z| < 0.3.
 */
static REAL FN(deviance_)(REAL y, REAL f)
{
    if (y == 0)
        return 2 * f;
    REAL z = (f - y) / (f + y), w = z * z;
    if (!(w < (REAL)0.09f))
        return 2 * (f - y - y * FN(log_)(f / y));
    REAL s = (REAL)1 / 15;
    s = s * w + (REAL)1 / 13;
    s = s * w + (REAL)1 / 11;
    s = s * w + (REAL)1 / 9;
    s = s * w + (REAL)1 / 7;
    s = s * w + (REAL)1 / 5;
    s = s * w + (REAL)1 / 3;
    return 2 * w * (f + y) - 4 * y * w * z * s;
}

/* chi2 of f against y; sets *bad when an MLE model value is <= 0 (Gpufit state 3). */
static double FN(chi2_of_)(int est, uint32_t n, const REAL *f, const float *y, int *bad)
{
    double sum = 0;
    *bad = 0;
    for (uint32_t i = 0; i < n; i++) {
        REAL d = f[i] - (REAL)y[i];
        if (est == RTD_FIT_LSE) {
            sum += (double)(d * d);
        } else {
            if (!(f[i] > 0)) {
                *bad = 1;
                return 0;
            }
            sum += (double)FN(deviance_)((REAL)y[i], f[i]);
        }
    }
    return sum;
}

/* Upper triangle of the normal matrix (full symmetric h[a*np+b]) and the gradient g. */
static void FN(coefficients_)(int est, int np, uint32_t n, const REAL *f, const REAL *jac,
                              const float *y, REAL *h, REAL *g)
{
    for (int a = 0; a < np; a++) {
        double sg = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (est == RTD_FIT_LSE)
                sg += (double)(((REAL)y[i] - f[i]) * jac[a * n + i]);
            else
                sg += (double)(-jac[a * n + i] * (1 - (REAL)y[i] / f[i]));
        }
        g[a] = (REAL)sg;
        for (int b = 0; b <= a; b++) {
            double sh = 0;
            for (uint32_t i = 0; i < n; i++) {
                REAL w = est == RTD_FIT_LSE ? (REAL)1 : (REAL)y[i] / (f[i] * f[i]);
                sh += (double)(w * jac[a * n + i] * jac[b * n + i]);
            }
            h[a * np + b] = h[b * np + a] = (REAL)sh;
        }
    }
}

/* Solve m x = b by Cholesky (m symmetric, np x np). 0, or -1 when not positive definite. */
static int FN(solve_)(int np, const REAL *m, const REAL *b, REAL *x)
{
    REAL l[RTD_FIT_MAX_PARAMS * RTD_FIT_MAX_PARAMS];
    for (int c = 0; c < np; c++) {
        REAL s = m[c * np + c];
        for (int k = 0; k < c; k++)
            s -= l[c * np + k] * l[c * np + k];
        if (!(s > 0) || !isfinite(s))
            return -1;
        REAL d = FN(sqrt_)(s);
        l[c * np + c] = d;
        for (int r = c + 1; r < np; r++) {
            REAL t = m[r * np + c];
            for (int k = 0; k < c; k++)
                t -= l[r * np + k] * l[c * np + k];
            l[r * np + c] = t / d;
        }
    }
    REAL z[RTD_FIT_MAX_PARAMS];
    for (int r = 0; r < np; r++) {
        REAL t = b[r];
        for (int k = 0; k < r; k++)
            t -= l[r * np + k] * z[k];
        z[r] = t / l[r * np + r];
    }
    for (int r = np - 1; r >= 0; r--) {
        REAL t = z[r];
        for (int k = r + 1; k < np; k++)
            t -= l[k * np + r] * x[k];
        x[r] = t / l[r * np + r];
        if (!isfinite(x[r]))
            return -1;
    }
    return 0;
}

/* Fit number fi of the job; f and jac are scratch of n and n*np REALs. */
static void FN(fit_one_)(const struct fit_job *j, size_t fi, REAL *f, REAL *jac)
{
    const int np = j->np, est = j->estimator;
    const uint32_t n = j->n_points;
    const float *y = j->data + fi * n;
    REAL p[RTD_FIT_MAX_PARAMS], pc[RTD_FIT_MAX_PARAMS], delta[RTD_FIT_MAX_PARAMS];
    REAL h[RTD_FIT_MAX_PARAMS * RTD_FIT_MAX_PARAMS], hm[RTD_FIT_MAX_PARAMS * RTD_FIT_MAX_PARAMS];
    REAL g[RTD_FIT_MAX_PARAMS], scale[RTD_FIT_MAX_PARAMS] = {0};
    REAL cn[FIT_SHM_MAX_NODES / 2];
    REAL lambda = (REAL)0.001f;
    int32_t state = RTD_FIT_CONVERGED, iters = 0;
    double chi2 = NAN;
    uint32_t nodes = 0;
    int bad = 0;

    for (int k = 0; k < np; k++) {
        p[k] = (REAL)j->init[fi * (size_t)np + (size_t)k];
        if (!isfinite(p[k]))
            bad = 1;
    }
    for (uint32_t i = 0; i < n && !bad; i++)
        if (!isfinite(y[i]))
            bad = 1;
    if (j->model != RTD_FIT_SHM_LEGACY && p[j->model == RTD_FIT_GAUSS_1D ? 2 : 3] == 0)
        bad = 1;
    if (bad) {
        state = RTD_FIT_BAD_INPUT;
        goto out;
    }
    if (j->model == RTD_FIT_SHM_1D) {
        /* A = 0 is a stationary point of the model (dK/dA = 0): start off it. */
        if (p[2] == 0)
            p[2] = (REAL)0.25 * FN(fabs_)(p[3]);
        nodes = fit_shm_nodes_pick(j->shm_nodes, (double)p[2], (double)p[3], 0);
        double c64[FIT_SHM_MAX_NODES / 2];
        fit_shm_half_nodes(nodes, c64);
        for (uint32_t k = 0; k < nodes / 2; k++)
            cn[k] = (REAL)c64[k];
    }

    FN(model_eval_)(j->model, n, j->size, p, nodes, cn, f, jac);
    chi2 = FN(chi2_of_)(est, n, f, y, &bad);
    if (bad) {
        state = RTD_FIT_NEG_CURVATURE_MLE;
        goto out;
    }
    FN(coefficients_)(est, np, n, f, jac, y, h, g);

    for (uint32_t it = 0; it < j->max_iter; it++) {
        memcpy(hm, h, sizeof(REAL) * (size_t)(np * np));
        REAL gm[RTD_FIT_MAX_PARAMS];
        for (int k = 0; k < np; k++) {
            if (h[k * np + k] > scale[k])
                scale[k] = h[k * np + k];
            hm[k * np + k] += scale[k] * lambda;
            gm[k] = g[k];
        }
        /* Fixed parameters: an identity row and column and no gradient give them a zero step. */
        for (int k = 0; k < np; k++)
            if (j->fixed >> k & 1u) {
                for (int q = 0; q < np; q++)
                    hm[k * np + q] = hm[q * np + k] = 0;
                hm[k * np + k] = 1;
                gm[k] = 0;
            }
        if (FN(solve_)(np, hm, gm, delta)) {
            state = RTD_FIT_SINGULAR;
            iters = (int32_t)it;
            break;
        }
        for (int k = 0; k < np; k++)
            pc[k] = p[k] + delta[k];
        if (j->model == RTD_FIT_SHM_1D) {
            uint32_t nn = fit_shm_nodes_pick(j->shm_nodes, (double)pc[2], (double)pc[3], nodes);
            if (nn != nodes) {
                double c64[FIT_SHM_MAX_NODES / 2];
                fit_shm_half_nodes(nn, c64);
                for (uint32_t k = 0; k < nn / 2; k++)
                    cn[k] = (REAL)c64[k];
                nodes = nn;
            }
        }
        FN(model_eval_)(j->model, n, j->size, pc, nodes, cn, f, jac);
        double chi2n = FN(chi2_of_)(est, n, f, y, &bad);
        iters = (int32_t)it + 1;
        if (bad) {
            state = RTD_FIT_NEG_CURVATURE_MLE;
            break;
        }
        double tol = (double)j->tol;
        int conv = fabs(chi2n - chi2) < fmax(tol, tol * fabs(chi2n));
        if (chi2n < chi2) {
            memcpy(p, pc, sizeof(REAL) * (size_t)np);
            chi2 = chi2n;
            FN(coefficients_)(est, np, n, f, jac, y, h, g);
            lambda *= (REAL)0.1f;
        } else {
            lambda *= 10;
        }
        if (conv) {
            state = RTD_FIT_CONVERGED;
            break;
        }
        if (it + 1 == j->max_iter)
            state = RTD_FIT_MAX_ITERATION;
    }
out:
    for (int k = 0; k < np; k++)
        j->params[fi * (size_t)np + (size_t)k] =
            state == RTD_FIT_BAD_INPUT            ? j->init[fi * (size_t)np + (size_t)k]
            : fit_param_is_magnitude(j->model, k) ? (float)FN(fabs_)(p[k])
                                                  : (float)p[k];
    if (j->states)
        j->states[fi] = state;
    if (j->iters)
        j->iters[fi] = iters;
    if (j->chi2)
        j->chi2[fi] = (float)chi2;
}

static int FN(kernel_)(const struct fit_job *j, size_t begin, size_t end)
{
    const size_t n = j->n_points;
    REAL *buf = malloc(sizeof(REAL) * n * (size_t)(j->np + 1));
    if (!buf)
        return -ENOMEM;
    for (size_t fi = begin; fi < end; fi++)
        FN(fit_one_)(j, fi, buf, buf + n);
    free(buf);
    return 0;
}

#undef FN
#undef FIT_CAT
#undef FIT_CAT_
