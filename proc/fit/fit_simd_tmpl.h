/* SPDX-License-Identifier: MIT */
/*
 * The SIMD fit kernel, vectorised across fits: each lane of a W-wide float
 * vector carries its own fit (parameters, damping, chi2, normal matrix), and one
 * pass over the samples computes model, Jacobian, chi2, gradient and normal
 * matrix for all W fits at once. The algorithm per lane is the scalar kernel's
 * (fit_scalar_tmpl.h, Cpufit's LM). A lane whose fit ends is refilled at once
 * with the next fit of the range, so lanes never idle while work remains.
 *
 * Written with GCC vector extensions and included by fit_avx2.c (W = 8) and
 * fit_avx512.c (W = 16) after a "#pragma GCC target", which makes every helper
 * here compile for that ISA. The includer defines W, VSQRT(v) (square root),
 * VRCP(v) (reciprocal estimate), VMASK(m) (bit l set where lane l of mask m is set) and
 * KERNEL_NAME.
 */

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef float vf __attribute__((vector_size(W * 4)));
typedef int32_t vi __attribute__((vector_size(W * 4)));

#define AI static inline __attribute__((always_inline))

AI vf vb(float x)
{
    return (vf){0} + x;
}
AI vf vsel(vi m, vf a, vf b)
{
    return (vf)(((vi)a & m) | ((vi)b & ~m));
}
AI vf vmax(vf a, vf b)
{
    return vsel(a > b, a, b);
}
AI vf vmin(vf a, vf b)
{
    return vsel(a < b, a, b);
}
AI vf vabs(vf a)
{
    return (vf)((vi)a & 0x7fffffff);
}

/* exp(x) for x <= 88, Cephes' expf polynomial (~1 ulp); x below lo gives exp(lo). */
AI vf vexp(vf x, float lo)
{
    x = vmin(vmax(x, vb(lo)), vb(88.0f));
    /* round(x log2 e) by the 1.5*2^23 trick: its low mantissa bits are the integer */
    vf t = x * 1.44269504088896341f + 12582912.0f;
    vf n = t - 12582912.0f;
    vi ni = (vi)t - 0x4B400000;
    vf r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    vf y = 1.9875691500E-4f * r + 1.3981999507E-3f;
    y = y * r + 8.3334519073E-3f;
    y = y * r + 4.1665795894E-2f;
    y = y * r + 1.6666665459E-1f;
    y = y * r + 5.0000001201E-1f;
    y = y * (r * r) + r + 1.0f;
    vf scale = (vf)((ni + 127) << 23);
    return y * scale;
}

/* ln(x) for normal x > 0, Cephes' logf polynomial. */
AI vf vlog(vf x)
{
    vi xi = (vi)x;
    vf e = __builtin_convertvector(((xi >> 23) & 0xff) - 126, vf);
    vf m = (vf)((xi & 0x807fffff) | 0x3f000000); /* [0.5, 1) */
    vi small = m < 0.707106781186547524f;
    e = vsel(small, e - 1.0f, e);
    m = vsel(small, m + m - 1.0f, m - 1.0f);
    vf z = m * m;
    vf y = 7.0376836292E-2f * m - 1.1514610310E-1f;
    y = y * m + 1.1676998740E-1f;
    y = y * m - 1.2420140846E-1f;
    y = y * m + 1.4249322787E-1f;
    y = y * m - 1.6668057665E-1f;
    y = y * m + 2.0000714765E-1f;
    y = y * m - 2.4999993993E-1f;
    y = y * m + 3.3333331174E-1f;
    y = y * m * z;
    y = y + e * -2.12194440e-4f;
    y = y - 0.5f * z;
    return m + y + e * 0.693359375f;
}

/* 1/x to ~1 ulp: the hardware estimate and one Newton step (a division costs 5-10x more). */
AI vf vrcp(vf x)
{
    vf r = VRCP(x);
    return r + r * (1.0f - x * r);
}

/*
 * One sample's Poisson deviance 2 (f - d - d ln(f/d)) (2 f where d = 0). Near
 * f = d the direct form cancels to a few float ulps of f, which is as large as
 * the 1e-6 chi2 changes the convergence test must see; with z = (f-d)/(f+d) it
 * is 2 z^2 (f+d) - 4 d z^3 (1/3 + z^2/5 + ...), accurate for |z| < 1/2. The
 * direct form (a log) is computed only when some lane is outside that range:
 * rare for counts of a few photons and more.
 */
AI vf vdeviance(vf d, vf f)
{
    vf z = (f - d) * vrcp(f + d);
    vf w = z * z;
    vf s = vb(1.0f / 27.0f);
    s = s * w + 1.0f / 25.0f;
    s = s * w + 1.0f / 23.0f;
    s = s * w + 1.0f / 21.0f;
    s = s * w + 1.0f / 19.0f;
    s = s * w + 1.0f / 17.0f;
    s = s * w + 1.0f / 15.0f;
    s = s * w + 1.0f / 13.0f;
    s = s * w + 1.0f / 11.0f;
    s = s * w + 1.0f / 9.0f;
    s = s * w + 1.0f / 7.0f;
    s = s * w + 1.0f / 5.0f;
    s = s * w + 1.0f / 3.0f;
    vf dev = 2.0f * w * (f + d) - 4.0f * d * w * z * s;
    vi far = (w >= 0.25f) & (d > 0.0f);
    if (VMASK(far)) {
        vf direct = 2.0f * (f - d - d * vlog(vsel(far, f * vrcp(d), vb(1.0f))));
        dev = vsel(far, direct, dev);
    }
    return vsel(d > 0.0f, dev, 2.0f * f);
}

/* Sums one iteration accumulates per lane. h: packed upper triangle, row by row. */
struct acc {
    vf chi2;
    vf g[RTD_FIT_MAX_PARAMS];
    vf h[RTD_FIT_MAX_PARAMS * (RTD_FIT_MAX_PARAMS + 1) / 2];
    vi bad; /* MLE: model <= 0 somewhere */
};

AI void acc_zero(struct acc *a, int np)
{
    a->chi2 = vb(0.0f);
    a->bad = (vi){0};
    for (int k = 0; k < np; k++)
        a->g[k] = vb(0.0f);
    for (int k = 0; k < np * (np + 1) / 2; k++)
        a->h[k] = vb(0.0f);
}

/* Add one sample (model f, data y, Jacobian d) to the sums, Gpufit's LSE or MLE terms. */
AI void acc_point(struct acc *a, int np, int mle, vf f, vf y, const vf *d)
{
    vf r, w;
    if (!mle) {
        r = y - f;
        a->chi2 += r * r;
        w = vb(1.0f);
    } else {
        vi ok = f > 0.0f;
        a->bad |= ~ok;
        f = vsel(ok, f, vb(1.0f));
        vf inv = vrcp(f);
        r = y * inv - 1.0f;
        w = y * inv * inv;
        a->chi2 += vdeviance(y, f);
    }
    int k = 0;
    for (int i = 0; i < np; i++) {
        a->g[i] += r * d[i];
        vf wd = w * d[i];
        for (int j = i; j < np; j++)
            a->h[k++] += wd * d[j];
    }
}

/* Per-lane SHM_1D quadrature: node c_j and weight 1/0 (j beyond this lane's N/2). */
struct shm_tab {
    uint32_t nodes[W];
    uint32_t half_max; /* max over lanes of N/2 */
    vf inv_n;
    vf c[FIT_SHM_MAX_NODES / 2], on[FIT_SHM_MAX_NODES / 2];
};

static void shm_set_lane(struct shm_tab *t, int l, uint32_t n)
{
    double c64[FIT_SHM_MAX_NODES / 2];
    fit_shm_half_nodes(n, c64);
    t->nodes[l] = n;
    for (uint32_t j = 0; j < FIT_SHM_MAX_NODES / 2; j++) {
        t->c[j][l] = j < n / 2 ? (float)c64[j] : 0.0f;
        t->on[j][l] = j < n / 2 ? 1.0f : 0.0f;
    }
    t->inv_n[l] = 1.0f / (float)n;
    t->half_max = 0;
    for (int k = 0; k < W; k++)
        if (t->nodes[k] / 2 > t->half_max)
            t->half_max = t->nodes[k] / 2;
}

/*
 * GAUSS_2D least squares without a per-pixel normal matrix. The model is
 * separable (e = ex[ix] ey[iy]) and the LSE normal matrix does not involve the
 * data, so each of its 15 entries is a product of 1-D sums over the ROI's
 * columns and rows (S_k = sum ex^2 dx^k, T_k = sum ex dx^k). Only chi2 and the
 * gradient need the pixels, and those are summed per row first:
 * 9 vector operations per pixel instead of ~45, and few enough accumulators
 * to stay in registers.
 */
AI void gauss2d_lse_sums(uint32_t S, const vf *p, vf is2, vf is3, const vf *ex, const vf *ey,
                         const vf *dxs, const vf *dys, const vf *yt, struct acc *a)
{
    vf z = vb(0.0f);
    vf sx[5] = {z, z, z, z, z}, sy[5] = {z, z, z, z, z}, tx[3] = {z, z, z}, ty[3] = {z, z, z};
    for (uint32_t k = 0; k < S; k++) {
        vf e = ex[k], dx = dxs[k], e2 = e * e, t = e2 * dx;
        tx[0] += e;
        tx[1] += e * dx;
        tx[2] += e * dx * dx;
        sx[0] += e2;
        sx[1] += t;
        t *= dx;
        sx[2] += t;
        t *= dx;
        sx[3] += t;
        sx[4] += t * dx;
        e = ey[k];
        dx = dys[k];
        e2 = e * e;
        t = e2 * dx;
        ty[0] += e;
        ty[1] += e * dx;
        ty[2] += e * dx * dx;
        sy[0] += e2;
        sy[1] += t;
        t *= dx;
        sy[2] += t;
        t *= dx;
        sy[3] += t;
        sy[4] += t * dx;
    }
    const vf amp = p[0], off = p[4];
    vf chi2 = z, g0 = z, g1 = z, g2 = z, g3 = z, g4 = z;
    for (uint32_t iy = 0; iy < S; iy++) {
        const vf *yr = yt + iy * S;
        vf eya = ey[iy] * amp;
        vf r0 = z, r1 = z, r2 = z, rr = z;
        for (uint32_t ix = 0; ix < S; ix++) {
            vf dx = dxs[ix];
            vf r = yr[ix] - (ex[ix] * eya + off);
            chi2 += r * r;
            vf rex = r * ex[ix];
            rr += r;
            r0 += rex;
            vf rexd = rex * dx;
            r1 += rexd;
            r2 += rexd * dx;
        }
        vf e = ey[iy], dy = dys[iy];
        g0 += e * r0;
        g1 += e * r1;
        g2 += e * dy * r0;
        g3 += e * (r2 + dy * dy * r0);
        g4 += rr;
    }
    const vf a1 = amp * is2, a3 = amp * is3;
    a->chi2 = chi2;
    a->bad = (vi){0};
    a->g[0] = g0;
    a->g[1] = a1 * g1;
    a->g[2] = a1 * g2;
    a->g[3] = a3 * g3;
    a->g[4] = g4;
    vf *h = a->h;
    h[0] = sx[0] * sy[0];
    h[1] = a1 * sx[1] * sy[0];
    h[2] = a1 * sx[0] * sy[1];
    h[3] = a3 * (sx[2] * sy[0] + sx[0] * sy[2]);
    h[4] = tx[0] * ty[0];
    h[5] = a1 * a1 * sx[2] * sy[0];
    h[6] = a1 * a1 * sx[1] * sy[1];
    h[7] = a1 * a3 * (sx[3] * sy[0] + sx[1] * sy[2]);
    h[8] = a1 * tx[1] * ty[0];
    h[9] = a1 * a1 * sx[0] * sy[2];
    h[10] = a1 * a3 * (sx[2] * sy[1] + sx[0] * sy[3]);
    h[11] = a1 * tx[0] * ty[1];
    h[12] = a3 * a3 * (sx[4] * sy[0] + 2.0f * sx[2] * sy[2] + sx[0] * sy[4]);
    h[13] = a3 * (tx[2] * ty[0] + tx[0] * ty[2]);
    h[14] = vb((float)(S * S));
}

/*
 * GAUSS_2D Poisson MLE. Its normal matrix weighs each pixel by d/f^2, so it is
 * not separable; but every entry is a sum of w e^2 or w e times a polynomial in
 * dx and dy, so each row is summed in dx powers only (14 running sums instead
 * of 21) and the row's dy powers are applied once per row.
 */
AI void gauss2d_mle_sums(uint32_t S, const vf *p, vf is2, vf is3, const vf *ex, const vf *ey,
                         const vf *dxs, const vf *dys, const vf *yt, struct acc *a)
{
    const vf z = vb(0.0f), amp = p[0], off = p[4];
    vf H[15], G[5], chi2 = z;
    vi bad = (vi){0};
    for (int k = 0; k < 15; k++)
        H[k] = z;
    for (int k = 0; k < 5; k++)
        G[k] = z;
    for (uint32_t iy = 0; iy < S; iy++) {
        const vf *yr = yt + iy * S;
        const vf eyv = ey[iy];
        vf u0 = z, u1 = z, u2 = z, u3 = z, u4 = z, v0 = z, v1 = z, v2 = z, ws = z;
        vf g0 = z, g1 = z, g2 = z, rr = z;
        for (uint32_t ix = 0; ix < S; ix++) {
            vf e = ex[ix] * eyv, dx = dxs[ix], y = yr[ix];
            vf f = amp * e + off;
            vi ok = f > 0.0f;
            bad |= ~ok;
            f = vsel(ok, f, vb(1.0f));
            vf inv = vrcp(f);
            vf yi = y * inv, r = yi - 1.0f, w = yi * inv;
            chi2 += vdeviance(y, f);
            vf v = w * e, u = v * e, t = u * dx;
            u0 += u;
            u1 += t;
            t *= dx;
            u2 += t;
            t *= dx;
            u3 += t;
            u4 += t * dx;
            vf t2 = v * dx;
            v0 += v;
            v1 += t2;
            v2 += t2 * dx;
            ws += w;
            vf re = r * e, t3 = re * dx;
            g0 += re;
            g1 += t3;
            g2 += t3 * dx;
            rr += r;
        }
        const vf dy = dys[iy], q = dy * dy;
        H[0] += u0;
        H[1] += u1;
        H[2] += dy * u0;
        H[3] += u2 + q * u0;
        H[4] += v0;
        H[5] += u2;
        H[6] += dy * u1;
        H[7] += u3 + q * u1;
        H[8] += v1;
        H[9] += q * u0;
        H[10] += dy * (u2 + q * u0);
        H[11] += dy * v0;
        H[12] += u4 + 2.0f * q * u2 + q * q * u0;
        H[13] += v2 + q * v0;
        H[14] += ws;
        G[0] += g0;
        G[1] += g1;
        G[2] += dy * g0;
        G[3] += g2 + q * g0;
        G[4] += rr;
    }
    const vf a1 = amp * is2, a3 = amp * is3;
    a->chi2 = chi2;
    a->bad = bad;
    a->g[0] = G[0];
    a->g[1] = a1 * G[1];
    a->g[2] = a1 * G[2];
    a->g[3] = a3 * G[3];
    a->g[4] = G[4];
    vf *h = a->h;
    h[0] = H[0];
    h[1] = a1 * H[1];
    h[2] = a1 * H[2];
    h[3] = a3 * H[3];
    h[4] = H[4];
    h[5] = a1 * a1 * H[5];
    h[6] = a1 * a1 * H[6];
    h[7] = a1 * a3 * H[7];
    h[8] = a1 * H[8];
    h[9] = a1 * a1 * H[9];
    h[10] = a1 * a3 * H[10];
    h[11] = a1 * H[11];
    h[12] = a3 * a3 * H[12];
    h[13] = a3 * H[13];
    h[14] = H[14];
}

/*
 * Model, Jacobian and the sums at parameters p for all lanes. yt: the data,
 * transposed (sample i of lane l at yt[i][l]); ws: scratch of 4*size vectors.
 */
AI void evaluate(int model, int mle, const struct fit_job *j, const vf *p, const vf *yt, vf *ws,
                 const struct shm_tab *tab, struct acc *a)
{
    const uint32_t n = j->n_points;
    switch (model) {
    case RTD_FIT_GAUSS_1D: {
        acc_zero(a, 4);
        vf is2 = 1.0f / (p[2] * p[2]), is3 = is2 / p[2];
        for (uint32_t i = 0; i < n; i++) {
            vf dx = (float)i - p[1];
            vf dx2 = dx * dx;
            vf e = vexp(-0.5f * dx2 * is2, -87.0f);
            vf ae = p[0] * e;
            vf d[4] = {e, ae * dx * is2, ae * dx2 * is3, vb(1.0f)};
            acc_point(a, 4, mle, ae + p[3], yt[i], d);
        }
        break;
    }
    case RTD_FIT_GAUSS_2D: {
        acc_zero(a, 5);
        const uint32_t S = j->size;
        vf is2 = 1.0f / (p[3] * p[3]), is3 = is2 / p[3];
        vf *ex = ws, *ey = ws + S, *dxs = ws + 2 * S, *dys = ws + 3 * S;
        /* separable: exp of a 2-D Gaussian is ex[ix] * ey[iy], 2 S exps instead of S^2;
         * each factor is clamped at e^-40 so the product stays a normal float */
        for (uint32_t k = 0; k < S; k++) {
            dxs[k] = (float)k - p[1];
            dys[k] = (float)k - p[2];
            ex[k] = vexp(-0.5f * dxs[k] * dxs[k] * is2, -40.0f);
            ey[k] = vexp(-0.5f * dys[k] * dys[k] * is2, -40.0f);
        }
        if (!mle)
            gauss2d_lse_sums(S, p, is2, is3, ex, ey, dxs, dys, yt, a);
        else
            gauss2d_mle_sums(S, p, is2, is3, ex, ey, dxs, dys, yt, a);
        break;
        for (uint32_t iy = 0; iy < S; iy++) {
            vf dy = dys[iy], dy2 = dy * dy;
            for (uint32_t ix = 0; ix < S; ix++) {
                vf dx = dxs[ix];
                vf e = ex[ix] * ey[iy];
                vf ae = e * p[0];
                vf aei = ae * is2;
                vf d[5] = {e, aei * dx, aei * dy, ae * (dx * dx + dy2) * is3, vb(1.0f)};
                acc_point(a, 5, mle, ae + p[4], yt[iy * S + ix], d);
            }
        }
        break;
    }
    case RTD_FIT_SHM_1D: {
        acc_zero(a, 5);
        vf A = p[2], s = p[3], is2 = 1.0f / (s * s), m2 = -0.5f * is2;
        vf ix = tab->inv_n * is2, is3 = ix / s;
        for (uint32_t i = 0; i < n; i++) {
            vf u = (float)i - p[1];
            vf k = vb(0.0f), kx = vb(0.0f), ka = vb(0.0f), ks = vb(0.0f);
            for (uint32_t jn = 0; jn < tab->half_max; jn++) {
                vf c = tab->c[jn], ac = A * c;
                vf w1 = u - ac, w2 = u + ac;
                vf e1 = vexp(m2 * w1 * w1, -87.0f) * tab->on[jn];
                vf e2 = vexp(m2 * w2 * w2, -87.0f) * tab->on[jn];
                vf t1 = e1 * w1, t2 = e2 * w2;
                k += e1 + e2;
                kx += t1 + t2;
                ka += (t1 - t2) * c;
                ks += t1 * w1 + t2 * w2;
            }
            k *= tab->inv_n;
            vf d[5] = {k, p[0] * kx * ix, p[0] * ka * ix, p[0] * ks * is3, vb(1.0f)};
            acc_point(a, 5, mle, p[0] * k + p[4], yt[i], d);
        }
        break;
    }
    default: { /* SHM_LEGACY */
        acc_zero(a, 4);
        vf R = p[1], A = p[2];
        for (uint32_t i = 0; i < n; i++) {
            vf dy = (float)i - p[0];
            vf q = R * R - dy * dy;
            vi in = q > 0.0f;
            vf rs = 1.0f / VSQRT(vsel(in, q, vb(1.0f)));
            vf t = A * rs * rs * rs;
            vf zero = vb(0.0f);
            vf d[4] = {vsel(in, -t * dy, zero), vsel(in, -t * R, zero), vsel(in, rs, zero),
                       vb(1.0f)};
            acc_point(a, 4, mle, vsel(in, A * rs, zero) + p[3], yt[i], d);
        }
        break;
    }
    }
}

/*
 * Solve (h + diag(scale*lambda)) x = g for every lane by Cholesky on the packed
 * upper triangle. Lanes whose matrix is not positive definite get sing = -1.
 */
AI void solve(int np, const vf *h, const vf *scale, vf lambda, const vf *g, vf *x, vi *sing)
{
    vf l[RTD_FIT_MAX_PARAMS][RTD_FIT_MAX_PARAMS];
    vf inv[RTD_FIT_MAX_PARAMS];
    vi bad = (vi){0};
    int k = 0;
    for (int i = 0; i < np; i++)
        for (int jj = i; jj < np; jj++)
            l[jj][i] = h[k++];
    for (int i = 0; i < np; i++)
        l[i][i] += scale[i] * lambda;
    for (int c = 0; c < np; c++) {
        vf s = l[c][c];
        for (int m = 0; m < c; m++)
            s -= l[c][m] * l[c][m];
        bad |= ~(s > 0.0f);
        s = vsel(s > 0.0f, s, vb(1.0f));
        vf dd = VSQRT(s);
        inv[c] = 1.0f / dd;
        for (int r = c + 1; r < np; r++) {
            vf t = l[r][c];
            for (int m = 0; m < c; m++)
                t -= l[r][m] * l[c][m];
            l[r][c] = t * inv[c];
        }
    }
    vf z[RTD_FIT_MAX_PARAMS];
    for (int r = 0; r < np; r++) {
        vf t = g[r];
        for (int m = 0; m < r; m++)
            t -= l[r][m] * z[m];
        z[r] = t * inv[r];
    }
    for (int r = np - 1; r >= 0; r--) {
        vf t = z[r];
        for (int m = r + 1; m < np; m++)
            t -= l[m][r] * x[m];
        x[r] = t * inv[r];
        /* NaN or Inf: x - x is not 0 */
        bad |= ~((x[r] - x[r]) == 0.0f);
    }
    *sing = bad;
}

enum { LANE_IDLE = 0, LANE_INIT = 1, LANE_STEP = 2 };

/* Everything one group of W fits carries between iterations. */
struct lanes {
    vf p[RTD_FIT_MAX_PARAMS], pc[RTD_FIT_MAX_PARAMS];
    vf scale[RTD_FIT_MAX_PARAMS];
    vf lambda, chi2;
    struct acc cur; /* sums at the accepted parameters */
    vi phase;       /* LANE_* per lane */
    vi it;          /* iterations done */
    size_t idx[W];
    struct shm_tab tab;
};

static void finish(const struct fit_job *j, struct lanes *L, int l, int32_t state, int32_t iters,
                   int from_init)
{
    const size_t np = (size_t)j->np, fi = L->idx[l];
    for (size_t k = 0; k < np; k++)
        j->params[fi * np + k] = from_init                                  ? j->init[fi * np + k]
                                 : fit_param_is_magnitude(j->model, (int)k) ? fabsf(L->p[k][l])
                                                                            : L->p[k][l];
    if (j->states)
        j->states[fi] = state;
    if (j->iters)
        j->iters[fi] = iters;
    if (j->chi2)
        j->chi2[fi] = from_init ? NAN : L->chi2[l];
    L->phase[l] = LANE_IDLE;
}

/* Put the next fit of [*next, end) into lane l (fits with bad input are answered at once). */
static void refill(const struct fit_job *j, struct lanes *L, vf *yt, int l, size_t *next,
                   size_t end)
{
    const uint32_t n = j->n_points;
    const int np = j->np;
    while (*next < end) {
        size_t fi = (*next)++;
        const float *y = j->data + fi * n;
        const float *p0 = j->init + fi * (size_t)np;
        /* transpose and check in one branch-free pass: y * 0 is NaN only for NaN/Inf */
        float chk = 0.0f;
        for (uint32_t i = 0; i < n; i++) {
            yt[i][l] = y[i];
            chk += y[i] * 0.0f;
        }
        for (int k = 0; k < np; k++)
            chk += p0[k] * 0.0f;
        int bad = chk != 0.0f;
        if (j->model != RTD_FIT_SHM_LEGACY && p0[j->model == RTD_FIT_GAUSS_1D ? 2 : 3] == 0.0f)
            bad = 1;
        L->idx[l] = fi;
        if (bad) {
            finish(j, L, l, RTD_FIT_BAD_INPUT, 0, 1);
            continue;
        }
        for (int k = 0; k < np; k++)
            L->pc[k][l] = p0[k];
        if (j->model == RTD_FIT_SHM_1D) {
            if (L->pc[2][l] == 0.0f)
                L->pc[2][l] = 0.25f * fabsf(L->pc[3][l]);
            shm_set_lane(
                &L->tab, l,
                fit_shm_nodes_pick(j->shm_nodes, (double)L->pc[2][l], (double)L->pc[3][l], 0));
        }
        L->phase[l] = LANE_INIT;
        return;
    }
    /* No work left: park the lane on harmless values (it is computed, never read). */
    for (uint32_t i = 0; i < n; i++)
        yt[i][l] = 1.0f;
    for (int k = 0; k < np; k++)
        L->pc[k][l] = 1.0f;
    L->phase[l] = LANE_IDLE;
}

AI int run_kernel(const struct fit_job *j, size_t begin, size_t end, const int model, const int mle)
{
    const int np = j->np;
    const uint32_t n = j->n_points;
    const double tol = (double)j->tol;
    vf *yt = aligned_alloc(sizeof(vf), sizeof(vf) * ((size_t)n + 4u * (size_t)j->size + 4u));
    struct lanes *L = aligned_alloc(sizeof(vf), (sizeof(struct lanes) + sizeof(vf) - 1) /
                                                    sizeof(vf) * sizeof(vf));
    if (!yt || !L) {
        free(yt);
        free(L);
        return -ENOMEM;
    }
    vf *ws = yt + n;
    memset(L, 0, sizeof(*L));
    size_t next = begin;
    for (int l = 0; l < W; l++) {
        if (model == RTD_FIT_SHM_1D)
            shm_set_lane(&L->tab, l, 8);
        refill(j, L, yt, l, &next, end);
    }
    struct acc a;
    memset(&a, 0, sizeof(a));
    const vf vtol = vb((float)tol);
    for (;;) {
        const vi ph = L->phase;
        const vi is_step = ph == LANE_STEP;
        if (!VMASK(ph != LANE_IDLE))
            break;

        /* 1. stepping lanes: the damped step from the accepted parameters */
        if (VMASK(is_step)) {
            vf delta[RTD_FIT_MAX_PARAMS];
            vi sing;
            for (int k = 0; k < np; k++) {
                vf diag = L->cur.h[k * np - k * (k - 1) / 2];
                L->scale[k] = vmax(L->scale[k], diag);
            }
            if (j->fixed) {
                /* Fixed parameters: an identity row and column and no gradient (zero step). */
                vf hf[RTD_FIT_MAX_PARAMS * (RTD_FIT_MAX_PARAMS + 1) / 2], gf[RTD_FIT_MAX_PARAMS];
                int q = 0;
                for (int ra = 0; ra < np; ra++) {
                    gf[ra] = (j->fixed >> ra & 1u) ? vb(0.0f) : L->cur.g[ra];
                    for (int cb = ra; cb < np; cb++, q++)
                        hf[q] = ((j->fixed >> ra | j->fixed >> cb) & 1u)
                                    ? vb(ra == cb ? 1.0f : 0.0f)
                                    : L->cur.h[q];
                }
                solve(np, hf, L->scale, L->lambda, gf, delta, &sing);
            } else {
                solve(np, L->cur.h, L->scale, L->lambda, L->cur.g, delta, &sing);
            }
            vi go = is_step & ~sing;
            for (int k = 0; k < np; k++)
                L->pc[k] = vsel(go, L->p[k] + delta[k], L->pc[k]);
            for (unsigned m = VMASK(is_step & sing); m; m &= m - 1) {
                int l = __builtin_ctz(m);
                finish(j, L, l, RTD_FIT_SINGULAR, L->it[l], 0);
                refill(j, L, yt, l, &next, end);
            }
            if (model == RTD_FIT_SHM_1D) {
                for (unsigned m = VMASK(go); m; m &= m - 1) {
                    int l = __builtin_ctz(m);
                    uint32_t nn = fit_shm_nodes_pick(j->shm_nodes, (double)L->pc[2][l],
                                                     (double)L->pc[3][l], L->tab.nodes[l]);
                    if (nn != L->tab.nodes[l])
                        shm_set_lane(&L->tab, l, nn);
                }
            }
        }

        /* 2. model, chi2 and sums at the candidates of every lane */
        evaluate(model, mle, j, L->pc, yt, ws, &L->tab, &a);

        /*
         * 3. all lanes at once: a new fit takes its start values; a step is
         * accepted where chi2 fell; lambda, iteration counts and convergence.
         * Only lanes whose fit ended go through the scalar finish/refill.
         */
        const vi ph2 = L->phase; /* singular lanes were refilled above */
        const vi is_init = ph2 == LANE_INIT, stp = ph2 == LANE_STEP;
        const vi bad = a.bad;
        const vi init_ok = is_init & ~bad;
        const vf cn = a.chi2, co = L->chi2;
        const vi better = cn < co;
        const vi acc = (stp & better & ~bad) | init_ok;
        for (int k = 0; k < np; k++) {
            L->p[k] = vsel(acc, L->pc[k], L->p[k]);
            L->cur.g[k] = vsel(acc, a.g[k], L->cur.g[k]);
            L->scale[k] = vsel(init_ok, vb(0.0f), L->scale[k]);
        }
        for (int k = 0; k < np * (np + 1) / 2; k++)
            L->cur.h[k] = vsel(acc, a.h[k], L->cur.h[k]);
        L->chi2 = vsel(acc, cn, co);
        vf lam = L->lambda;
        lam = vsel(stp, vsel(better, lam * 0.1f, lam * 10.0f), lam);
        L->lambda = vsel(init_ok, vb(0.001f), lam);
        vi it = (L->it + (stp & 1)) & ~init_ok;
        L->it = it;
        const vf diff = vabs(cn - co), thr = vmax(vtol, vtol * vabs(cn));
        const vi conv = diff < thr;
        L->phase = (ph2 & ~init_ok) | (init_ok & LANE_STEP);
        const vi ended = (stp & (bad | conv | (it >= (int32_t)j->max_iter))) | (is_init & bad);
        for (unsigned m = VMASK(ended); m; m &= m - 1) {
            int l = __builtin_ctz(m);
            if (is_init[l])
                finish(j, L, l, RTD_FIT_NEG_CURVATURE_MLE, 0, 1);
            else
                finish(j, L, l,
                       bad[l]    ? RTD_FIT_NEG_CURVATURE_MLE
                       : conv[l] ? RTD_FIT_CONVERGED
                                 : RTD_FIT_MAX_ITERATION,
                       it[l], 0);
            refill(j, L, yt, l, &next, end);
        }
    }
    free(yt);
    free(L);
    return 0;
}

/* One specialised loop per model and estimator, so every branch above folds away. */
static int KERNEL_NAME(const struct fit_job *j, size_t begin, size_t end)
{
    const int mle = j->estimator == RTD_FIT_MLE;
    switch (j->model) {
    case RTD_FIT_GAUSS_1D:
        return mle ? run_kernel(j, begin, end, RTD_FIT_GAUSS_1D, 1)
                   : run_kernel(j, begin, end, RTD_FIT_GAUSS_1D, 0);
    case RTD_FIT_GAUSS_2D:
        return mle ? run_kernel(j, begin, end, RTD_FIT_GAUSS_2D, 1)
                   : run_kernel(j, begin, end, RTD_FIT_GAUSS_2D, 0);
    case RTD_FIT_SHM_1D:
        return mle ? run_kernel(j, begin, end, RTD_FIT_SHM_1D, 1)
                   : run_kernel(j, begin, end, RTD_FIT_SHM_1D, 0);
    default:
        return mle ? run_kernel(j, begin, end, RTD_FIT_SHM_LEGACY, 1)
                   : run_kernel(j, begin, end, RTD_FIT_SHM_LEGACY, 0);
    }
}
