#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""PyCWT's algorithm (regeirk/pycwt f88aec2) in NumPy, the baseline `rtdaq-bench wavelet` runs
beside rtdaq in the same run. PyCWT itself is not packaged for Debian; this is its code path
with numpy.fft: cwt = one forward FFT of the zero-padded series, then per scale a multiply by
sqrt(s omega_1 M) conj(psi_hat(s omega)) and one inverse FFT (pycwt.wavelet.cwt); wct = two
cwts, Morlet.smooth (Gaussian in time through an FFT, boxcar of round(2 dj0/dj) rows in
scale, as convolve2d(..., 'same')) and |S(W12/s)|^2 / (S(|W1|^2/s) S(|W2|^2/s)) (pycwt.wct);
wct-signif = that per surrogate pair of white noise of length 6 s_max/dt, histogram of R^2
outside the COI (pycwt.wct_significance, cache off).

usage: pycwt_numpy.py CASE N RUNS [MC]   CASE: cwt | wct | wct-signif
prints one JSON line: {"case", "n", "J", "runs", "times_s": [...], "first_call_s"}
"""
import json
import sys
import time

import numpy as np

F0 = 6.0
FLAMBDA = 4 * np.pi / (F0 + np.sqrt(2 + F0 ** 2))
COI = 1 / np.sqrt(2)
DJ0 = 0.60


def signal(n, seed):
    # the benchmark's signal: two sines plus uniform noise (a different generator; the
    # transform's cost does not depend on the values)
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.sin(2 * np.pi * t / 16) + np.sin(2 * np.pi * t / 64) + rng.random(n) - 0.5


def psi_ft(f):
    return np.pi ** -0.25 * np.exp(-0.5 * (f - F0) ** 2)


def cwt(x, dt, dj, s0, J):
    n0 = len(x)
    sj = s0 * 2 ** (np.arange(0, J + 1) * dj)
    freqs = 1 / (FLAMBDA * sj)
    M = int(2 ** np.ceil(np.log2(n0)))
    signal_ft = np.fft.fft(x, n=M)
    N = len(signal_ft)
    ftfreqs = 2 * np.pi * np.fft.fftfreq(N, dt)
    sj_col = sj[:, np.newaxis]
    psi_ft_bar = (sj_col * ftfreqs[1] * N) ** 0.5 * np.conjugate(psi_ft(sj_col * ftfreqs))
    W = np.fft.ifft(signal_ft * psi_ft_bar, axis=1, n=N)
    sel = np.invert(np.isnan(W).all(axis=1))
    if np.any(sel):
        sj = sj[sel]
        freqs = freqs[sel]
        W = W[sel, :]
    coi = (n0 / 2 - np.abs(np.arange(0, n0) - (n0 - 1) / 2))
    coi = FLAMBDA * COI * dt * coi
    return W[:, :n0], sj, freqs, coi


def smooth(W, dt, dj, scales):
    m, n = W.shape
    M = int(2 ** np.ceil(np.log2(n)))
    k = 2 * np.pi * np.fft.fftfreq(M)
    snorm = scales / dt
    F = np.exp(-0.5 * (snorm[:, np.newaxis] ** 2) * k ** 2)
    T = np.fft.ifft(F * np.fft.fft(W, axis=1, n=M), axis=1, n=M)[:, :n]
    if np.isreal(W).all():
        T = T.real
    L = int(np.round(DJ0 / dj * 2))
    win = np.ones(L)
    win[0] = win[-1] = 0.5
    win /= win.sum()
    # convolve2d(T, win[:, None], 'same') along the scale axis, zero fill
    out = np.zeros_like(T)
    h = (L - 1) // 2
    for q in range(L):
        sh = q - h  # row r receives win[q] * T[r - sh]
        if sh >= 0:
            out[sh:] += win[q] * T[: m - sh]
        else:
            out[:sh] += win[q] * T[-sh:]
    return out


def wct(y1, y2, dt, dj, s0, J):
    y1 = (y1 - y1.mean()) / y1.std()
    y2 = (y2 - y2.mean()) / y2.std()
    W1, sj, freq, coi = cwt(y1, dt, dj, s0, J)
    W2, _, _, _ = cwt(y2, dt, dj, s0, J)
    scales = np.ones([1, y1.size]) * sj[:, None]
    S1 = smooth(np.abs(W1) ** 2 / scales, dt, dj, sj)
    S2 = smooth(np.abs(W2) ** 2 / scales, dt, dj, sj)
    W12 = W1 * W2.conj()
    S12 = smooth(W12 / scales, dt, dj, sj)
    return np.abs(S12) ** 2 / (S1 * S2), freq, coi


def wct_significance(dt, dj, s0, J, mc_count, rng):
    ms = s0 * (2 ** (J * dj)) / dt
    N = int(np.ceil(ms * 6))
    nbins = 1000
    wlc = np.ma.zeros([J + 1, nbins])
    for _ in range(mc_count):
        noise1 = rng.standard_normal(N)
        noise2 = rng.standard_normal(N)
        nW1, sj, freq, coi = cwt(noise1, dt, dj, s0, J)
        nW2, _, _, _ = cwt(noise2, dt, dj, s0, J)
        period = np.ones([1, N]) / freq[:, None]
        coi = np.ones([J + 1, 1]) * coi[None, :]
        outsidecoi = period <= coi
        scales = np.ones([1, N]) * sj[:, None]
        S1 = smooth(np.abs(nW1) ** 2 / scales, dt, dj, sj)
        S2 = smooth(np.abs(nW2) ** 2 / scales, dt, dj, sj)
        S12 = smooth(nW1 * nW2.conj() / scales, dt, dj, sj)
        R2 = np.ma.array(np.abs(S12) ** 2 / (S1 * S2), mask=~outsidecoi)
        for s in range(int(outsidecoi.any(axis=1).sum()) - 1):
            cd = np.floor(R2[s, :] * nbins)
            for j, t in enumerate(cd[~cd.mask]):
                wlc[s, min(int(t), nbins - 1)] += 1
    return wlc


def main():
    case, n, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    mc = int(sys.argv[4]) if len(sys.argv) > 4 else 300
    dt, dj, s0 = 1.0, 1 / 12, 2.0
    J = int(np.round(np.log2(n * dt / s0) / dj))
    x, y = signal(n, 1), signal(n, 2)
    if case == "cwt":
        fn = lambda: cwt(x, dt, dj, s0, J)  # noqa: E731
    elif case == "wct":
        fn = lambda: wct(x, y, dt, dj, s0, J)  # noqa: E731
    elif case == "wct-signif":
        rng = np.random.default_rng(0)
        fn = lambda: wct_significance(dt, dj, s0, J, mc, rng)  # noqa: E731
    else:
        sys.exit("unknown case " + case)
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"case": case, "n": n, "J": J, "runs": runs, "mc_count": mc,
                      "times_s": times, "first_call_s": first, "numpy": np.__version__}))


if __name__ == "__main__":
    main()
