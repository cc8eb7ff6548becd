/* SPDX-License-Identifier: MIT */
/*
 * The synthetic camera's image source: a bank of pre-rendered u16 mono frames
 * with Gaussian ion spots (known positions) and Poisson noise. Rendering a
 * noisy 300x300 frame costs ~1 ms, so a 10 kHz camera cycles through a bank
 * rendered at start-up; each bank frame has its own noise and slightly
 * jittered positions, and its ground truth travels with it.
 */
#ifndef RTD_SYNTH_H
#define RTD_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "rtd_wire.h"

struct rtd_synth {
    uint32_t width, height, n_ions, bank;
    uint16_t *pixels;              /* bank * width * height, row-major per frame */
    struct rtd_synth_truth *truth; /* one per bank frame */
};

/*
 * Render a bank of frames. Ions are at least 8 px apart and 8 px from the edges
 * when the frame has room (fewer ions otherwise: truth says how many).
 * 0 or -errno (-EINVAL for an empty frame or more than 64 ions).
 */
int rtd_synth_init(struct rtd_synth *s, uint32_t width, uint32_t height, uint32_t n_ions,
                   uint32_t bank, uint64_t seed);
void rtd_synth_free(struct rtd_synth *s);

static inline const uint16_t *rtd_synth_frame(const struct rtd_synth *s, uint64_t i)
{
    return s->pixels + (size_t)(i % s->bank) * s->width * s->height;
}
static inline const struct rtd_synth_truth *rtd_synth_truth_of(const struct rtd_synth *s,
                                                               uint64_t i)
{
    return &s->truth[i % s->bank];
}

#endif
