/* SPDX-License-Identifier: MIT */
/*
 * A seeded camera for oscillating ions, shared by the pipeline tests and by
 * gen_shm_frames (which writes the same frames to files for `rtdaq fit-frames`
 * and the scipy reference, tools/shm_reference.py). Each frame: 7 ions
 * oscillating vertically with amplitudes A of 1-8 px (an exposure spans many
 * periods, so the ion's position has the arcsine density of harmonic motion),
 * PSF sigma 1.8-2.2 px, peak 40-120 photons (the peak of the ion at rest:
 * photons = 2 pi sigma^2 peak), a background of 20 photons/px plus a gradient
 * of 0.5 ADU/px across the frame along an axis that changes from frame to frame
 * (an offset ramp in ADU, as the issue gives it; photon_gradient = 1 makes it
 * photons instead, which brings its shot noise: up to 170 photons/px, a harder
 * case that is measured, not required), ADU offset 100, read noise 4 ADU,
 * Poisson photon noise. The design is stratified, not left to chance: every frame has
 * a dim ion (40 photons) with the largest amplitude, a dim one with a small
 * amplitude, and an ion close to an edge of the frame.
 */
#ifndef RTD_TEST_SHM_FRAMES_H
#define RTD_TEST_SHM_FRAMES_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define SHMF_W     300
#define SHMF_H     300
#define SHMF_IONS  7
#define SHMF_NCOLS 8 /* truth columns: frame, x, y, peak, sigma, A, photons, background */

struct shmf_ion {
    double x, y, peak, sigma, A;
};

struct shmf_rng {
    uint64_t s;
};

static inline double shmf_uniform(struct shmf_rng *r)
{
    /* splitmix64: any seed, including 0, gives a good stream */
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}

static inline double shmf_normal(struct shmf_rng *r)
{
    double u = shmf_uniform(r), v = shmf_uniform(r);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* Poisson deviate: Knuth's product below 30, Hormann's PTRS (transformed rejection) above. */
static inline double shmf_poisson(struct shmf_rng *r, double mu)
{
    if (mu <= 0)
        return 0;
    if (mu < 30) {
        double l = exp(-mu), p = 1;
        int k = 0;
        do {
            k++;
            p *= shmf_uniform(r);
        } while (p > l);
        return k - 1;
    }
    const double slam = sqrt(mu), loglam = log(mu);
    const double b = 0.931 + 2.53 * slam, a = -0.059 + 0.02483 * b;
    const double invalpha = 1.1239 + 1.1328 / (b - 3.4), vr = 0.9277 - 3.6224 / (b - 2);
    for (;;) {
        double u = shmf_uniform(r) - 0.5, v = shmf_uniform(r);
        double us = 0.5 - fabs(u);
        double k = floor((2 * a / us + b) * u + mu + 0.43);
        if (us >= 0.07 && v <= vr)
            return k;
        if (k < 0 || (us < 0.013 && v > us))
            continue;
        if (log(v) + log(invalpha) - log(a / (us * us) + b) <= -mu + k * loglam - lgamma(k + 1))
            return k;
    }
}

/* Fraction of a Gaussian (centre c0, sigma s) falling in pixel c (pixel-integrated PSF). */
static inline double shmf_frac(double c, double c0, double s)
{
    const double k = 1.0 / (1.4142135623730951 * s);
    return 0.5 * (erf((c + 0.5 - c0) * k) - erf((c - 0.5 - c0) * k));
}

/*
 * Background photons per pixel of frame f: 20 at one edge, rising 0.5 per px across the frame
 * to 169.5 at the opposite edge; the gradient runs along +x, +y, -x, -y in turn.
 */
static inline double shmf_background(int f, double x, double y)
{
    switch (f & 3) {
    case 0:
        return 20.0 + 0.5 * x;
    case 1:
        return 20.0 + 0.5 * y;
    case 2:
        return 20.0 + 0.5 * (SHMF_W - 1 - x);
    default:
        return 20.0 + 0.5 * (SHMF_H - 1 - y);
    }
}

/*
 * The ions of frame f (seeded by seed and f): amplitudes and peaks stratified
 * over 1-8 px and 40-120 photons, the dim ions at both ends of the amplitude
 * range, ion 6 next to an edge (which edge turns with f), the others at least
 * 30 px from each other and 2A + 8 px from the top and bottom.
 */
static inline void shmf_ions(uint64_t seed, int f, struct shmf_ion *ions)
{
    struct shmf_rng r = {seed * 0x9e3779b97f4a7c15ull + (uint64_t)f * 0x632be59bd9b4e019ull + 1};
    /* Amplitude slots 1..8 px, one per ion; peak slots 40..120 photons. */
    double A[SHMF_IONS], pk[SHMF_IONS];
    for (int i = 0; i < SHMF_IONS; i++) {
        A[i] = 1.0 + 7.0 * (i + shmf_uniform(&r)) / SHMF_IONS;
        pk[i] = 40.0 + 80.0 * (i + shmf_uniform(&r)) / SHMF_IONS;
    }
    A[SHMF_IONS - 1] = 8.0; /* the widest motion ... */
    pk[0] = 40.0;           /* ... and the dimmest ion: together, the hardest to see */
    pk[SHMF_IONS - 1] = 40.0;
    for (int i = 1; i < SHMF_IONS - 1; i++) { /* shuffle the middle peaks against the amplitudes */
        int j = 1 + (int)(shmf_uniform(&r) * (SHMF_IONS - 2));
        double t = pk[i];
        pk[i] = pk[j];
        pk[j] = t;
    }
    int n = 0;
    for (int tries = 0; n < SHMF_IONS && tries < 100000; tries++) {
        const double a = A[n], margin = 2 * a + 8;
        double x, y;
        if (n == 2) { /* near an edge: left, right, top, bottom in turn */
            const double d = 3.0 + 2.0 * shmf_uniform(&r);
            const double along = 30 + shmf_uniform(&r) * (SHMF_W - 60);
            switch (f & 3) {
            case 0:
                x = d, y = along;
                break;
            case 1:
                x = SHMF_W - 1 - d, y = along;
                break;
            case 2:
                x = along, y = a + d;
                break;
            default:
                x = along, y = SHMF_H - 1 - a - d;
                break;
            }
        } else {
            x = 8 + shmf_uniform(&r) * (SHMF_W - 16);
            y = margin + shmf_uniform(&r) * (SHMF_H - 2 * margin);
        }
        int ok = 1;
        for (int j = 0; j < n && ok; j++)
            ok = fabs(x - ions[j].x) > 16 || fabs(y - ions[j].y) > 2 * (a + ions[j].A) + 16;
        for (int j = 0; j < n && ok; j++)
            ok = hypot(x - ions[j].x, y - ions[j].y) > 30;
        if (!ok)
            continue;
        ions[n] = (struct shmf_ion){x, y, pk[n], 1.8 + 0.4 * shmf_uniform(&r), a};
        n++;
    }
}

/*
 * Render frame f with ions (noise = 0: the exact mean, rounded). The vertical
 * profile of each ion is the pixel-integrated PSF averaged over 64
 * Gauss-Chebyshev phases of the motion (far more than the fits' 2.8 A/sigma + 4).
 */
static inline void shmf_render(uint16_t *img, int f, const struct shmf_ion *ions, int n,
                               uint64_t seed, int noise, int photon_gradient)
{
    static double fy[SHMF_IONS][SHMF_H];
    for (int i = 0; i < n; i++)
        for (int y = 0; y < SHMF_H; y++) {
            double s = 0;
            for (int j = 0; j < 64; j++)
                s +=
                    shmf_frac(y, ions[i].y + ions[i].A * cos((j + 0.5) * M_PI / 64), ions[i].sigma);
            fy[i][y] = s / 64;
        }
    struct shmf_rng r = {seed ^ (0xd1b54a32d192ed03ull * (uint64_t)(f + 17))};
    for (int y = 0; y < SHMF_H; y++)
        for (int x = 0; x < SHMF_W; x++) {
            const double ramp = shmf_background(f, x, y) - 20.0;
            double m = photon_gradient ? 20.0 + ramp : 20.0;
            for (int i = 0; i < n; i++) {
                if (fabs(x - ions[i].x) > 8 * ions[i].sigma)
                    continue;
                const double photons = 2 * M_PI * ions[i].sigma * ions[i].sigma * ions[i].peak;
                m += photons * shmf_frac(x, ions[i].x, ions[i].sigma) * fy[i][y];
            }
            double v = 100.0 + (photon_gradient ? 0.0 : ramp) +
                       (noise ? shmf_poisson(&r, m) + 4.0 * shmf_normal(&r) : m);
            v = v < 0 ? 0 : (v > 65535 ? 65535 : v);
            img[(size_t)y * SHMF_W + (size_t)x] = (uint16_t)lrint(v);
        }
}

/*
 * Frame f and its truth rows (SHMF_NCOLS doubles per ion; background = ADU above the offset
 * under the ion); returns the ion count.
 */
static inline int shmf_frame(uint64_t seed, int f, uint16_t *img, double *truth,
                             int photon_gradient)
{
    struct shmf_ion ions[SHMF_IONS];
    shmf_ions(seed, f, ions);
    shmf_render(img, f, ions, SHMF_IONS, seed, 1, photon_gradient);
    for (int i = 0; i < SHMF_IONS && truth; i++) {
        double *t = truth + (size_t)i * SHMF_NCOLS;
        t[0] = f;
        t[1] = ions[i].x;
        t[2] = ions[i].y;
        t[3] = ions[i].peak;
        t[4] = ions[i].sigma;
        t[5] = ions[i].A;
        t[6] = 2 * M_PI * ions[i].sigma * ions[i].sigma * ions[i].peak;
        t[7] = shmf_background(f, ions[i].x, ions[i].y);
    }
    return SHMF_IONS;
}

#endif
