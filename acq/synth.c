/* SPDX-License-Identifier: MIT */
/*
 * Synthetic camera frames: offset ~100 counts, Gaussian spots (sigma ~1.5 px,
 * amplitude a few hundred counts) at known positions, Poisson noise. Used by
 * acq's synthetic source and by `rtdaq sim frames`.
 */
#include "rtd_synth.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* splitmix64: a small, seedable generator so banks are reproducible. */
static uint64_t synth_next(uint64_t *st)
{
    uint64_t z = (*st += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double synth_uniform(uint64_t *st)
{
    return (double)(synth_next(st) >> 11) * (1.0 / 9007199254740992.0);
}

/* Knuth below 30 counts, a rounded normal above (error far below the noise itself). */
static uint32_t synth_poisson(uint64_t *st, double mean)
{
    if (mean <= 0.0)
        return 0;
    if (mean < 30.0) {
        double l = exp(-mean), p = 1.0;
        uint32_t k = 0;
        do {
            k++;
            p *= synth_uniform(st);
        } while (p > l);
        return k - 1;
    }
    double u1 = synth_uniform(st), u2 = synth_uniform(st);
    if (u1 < 1e-300)
        u1 = 1e-300;
    double g = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
    double v = mean + sqrt(mean) * g + 0.5;
    return v < 0.0 ? 0 : (uint32_t)v;
}

int rtd_synth_init(struct rtd_synth *s, uint32_t width, uint32_t height, uint32_t n_ions,
                   uint32_t bank, uint64_t seed)
{
    memset(s, 0, sizeof *s);
    if (!width || !height || n_ions > 64 || !bank)
        return -EINVAL;
    s->width = width;
    s->height = height;
    s->bank = bank;
    s->pixels = malloc((size_t)bank * width * height * sizeof(uint16_t));
    s->truth = calloc(bank, sizeof *s->truth);
    if (!s->pixels || !s->truth) {
        rtd_synth_free(s);
        return -ENOMEM;
    }
    uint64_t st = seed ? seed : 0x5eed;
    /* Base positions: random, >= 8 px apart, >= 8 px from the edges; give up after many tries. */
    double bx[64], by[64];
    uint32_t n = 0;
    const double margin = 8.0, sep = 8.0;
    for (int tries = 0; n < n_ions && tries < 100000; tries++) {
        if (width <= 2 * margin || height <= 2 * margin)
            break;
        double x = margin + synth_uniform(&st) * (width - 1 - 2 * margin);
        double y = margin + synth_uniform(&st) * (height - 1 - 2 * margin);
        int ok = 1;
        for (uint32_t j = 0; j < n && ok; j++) {
            double dx = x - bx[j], dy = y - by[j];
            ok = dx * dx + dy * dy >= sep * sep;
        }
        if (ok) {
            bx[n] = x;
            by[n] = y;
            n++;
        }
    }
    s->n_ions = n;
    double *model = malloc((size_t)width * height * sizeof(double));
    if (!model) {
        rtd_synth_free(s);
        return -ENOMEM;
    }
    for (uint32_t b = 0; b < bank; b++) {
        struct rtd_synth_truth *t = &s->truth[b];
        t->magic = RTD_SYNTH_TRUTH_MAGIC;
        t->n_ions = n;
        for (size_t i = 0; i < (size_t)width * height; i++)
            model[i] = 100.0;
        for (uint32_t j = 0; j < n; j++) {
            /* Jitter per bank frame so consecutive frames are not identical. */
            double x = bx[j] + (synth_uniform(&st) - 0.5) * 0.6;
            double y = by[j] + (synth_uniform(&st) - 0.5) * 0.6;
            double amp = 250.0 + 150.0 * synth_uniform(&st), sigma = 1.5;
            t->ion[j].x = (float)x;
            t->ion[j].y = (float)y;
            t->ion[j].amp = (float)amp;
            t->ion[j].sigma = (float)sigma;
            int x0 = (int)x - 7, x1 = (int)x + 8, y0 = (int)y - 7, y1 = (int)y + 8;
            for (int r = y0 < 0 ? 0 : y0; r <= y1 && r < (int)height; r++)
                for (int c = x0 < 0 ? 0 : x0; c <= x1 && c < (int)width; c++) {
                    double dx = c - x, dy = r - y;
                    model[(size_t)r * width + c] +=
                        amp * exp(-(dx * dx + dy * dy) / (2.0 * sigma * sigma));
                }
        }
        uint16_t *px = s->pixels + (size_t)b * width * height;
        for (size_t i = 0; i < (size_t)width * height; i++) {
            uint32_t v = synth_poisson(&st, model[i]);
            px[i] = v > 65535 ? 65535 : (uint16_t)v;
        }
    }
    free(model);
    return 0;
}

void rtd_synth_free(struct rtd_synth *s)
{
    free(s->pixels);
    free(s->truth);
    s->pixels = NULL;
    s->truth = NULL;
}
