/* SPDX-License-Identifier: MIT */
/*
 * A cache of Monte Carlo wct significance levels, so that a repeated job (the same
 * surrogates) is instant. A level is fully determined by the algorithm version, the AR(1)
 * coefficients, dt, dj, s0, J, the mother, the level, mc_count, the seed and the flags that
 * change the numbers (not the thread count: the result is thread-invariant), so those, as
 * exact text (%a for doubles), are the key. A file per key, named by its 64-bit FNV-1a hash,
 * holds the key text (checked on reading, so a hash collision is a miss, not a wrong answer),
 * then sig95, counts and n_outside as raw doubles. Written to a temporary file and renamed,
 * so concurrent jobs never see a torn entry; a file that does not match is a miss.
 */
#include "wavelet_internal.h"

#include "rtd_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bump when anything that changes the numbers for the same key changes (RNG, binning). */
#define SIGNIF_CACHE_VERSION "rtdaq-wct-signif-1"
#define NBINS                1000

/* Flags that change the result. */
#define RESULT_FLAGS (RTD_WAVELET_FIX_MC_LASTSCALE | RTD_WAVELET_FIX_MC_AR1 | RTD_WAVELET_MC_FLOAT)

static int cache_dir(char *out, size_t cap)
{
    const char *d = getenv("RTDAQ_SIGNIF_CACHE_DIR");
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (d && *d)
        n = snprintf(out, cap, "%s", d);
    else if (xdg && *xdg == '/')
        n = snprintf(out, cap, "%s/rtdaq/signif", xdg);
    else if (home && *home)
        n = snprintf(out, cap, "%s/.cache/rtdaq/signif", home);
    else
        return -ENOENT;
    return n < (int)cap ? 0 : -ENAMETOOLONG;
}

static int mkdirs(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1;; p++) {
        if (*p == '/' || !*p) {
            char c = *p;
            *p = 0;
            if (mkdir(tmp, 0700) && errno != EEXIST)
                return -errno;
            if (!c)
                return 0;
            *p = c;
        }
    }
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

static size_t entry_bytes(size_t rows)
{
    return (rows + rows * NBINS + rows) * sizeof(double);
}

int rtd_wct_significance_cached(double al1, double al2, double dt, double dj, double s0, int J,
                                const struct rtd_mother *m, const struct rtd_wct_signif_opts *o,
                                double *sig95, double *counts, double *n_outside, int *from_cache)
{
    if (from_cache)
        *from_cache = 0;
    if (!m || !o || !sig95 || J < 0 || J > 10000)
        return -EINVAL;
    const char *env = getenv("RTDAQ_SIGNIF_CACHE");
    char dir[900], key[1024], path[1100];
    int use =
        !(env && (!strcmp(env, "off") || !strcmp(env, "0"))) && cache_dir(dir, sizeof dir) == 0;
    /* The defaults resolved as rtd_wct_significance resolves them, so equal runs share a key. */
    double dj_k = dj > 0 ? dj : 1.0 / 12, s0_k = s0 > 0 ? s0 : rtd_cwt_default_s0(dt, m);
    size_t rows = (size_t)J + 1;
    snprintf(key, sizeof key,
             "%s al1=%a al2=%a dt=%a dj=%a s0=%a J=%d mother=%s level=%a mc=%d seed=%llu "
             "flags=%u\n",
             SIGNIF_CACHE_VERSION, al1, al2, dt, dj_k, s0_k, J, m->name, o->level, o->mc_count,
             (unsigned long long)o->seed, o->flags & RESULT_FLAGS);
    if (use) {
        snprintf(path, sizeof path, "%s/%016llx.bin", dir, (unsigned long long)fnv1a(key));
        void *buf;
        size_t len, klen = strlen(key);
        if (rtd_read_file(path, &buf, &len) == 0) {
            const char *b = buf;
            /* The doubles start at the first multiple of 8 after the key. */
            size_t off = (klen + 7) & ~(size_t)7;
            if (len == off + entry_bytes(rows) && !memcmp(b, key, klen)) {
                const double *d = (const double *)(b + off);
                memcpy(sig95, d, rows * sizeof(double));
                if (counts)
                    memcpy(counts, d + rows, rows * NBINS * sizeof(double));
                if (n_outside)
                    memcpy(n_outside, d + rows + rows * NBINS, rows * sizeof(double));
                free(buf);
                if (from_cache)
                    *from_cache = 1;
                return 0;
            }
            free(buf);
        }
    }
    double *cnt = counts ? counts : malloc(rows * NBINS * sizeof(double));
    double *nout = n_outside ? n_outside : malloc(rows * sizeof(double));
    int rc = cnt && nout ? rtd_wct_significance(al1, al2, dt, dj, s0, J, m, o, sig95, cnt, nout)
                         : -ENOMEM;
    if (!rc && use && mkdirs(dir) == 0) {
        size_t klen = strlen(key), off = (klen + 7) & ~(size_t)7;
        size_t len = off + entry_bytes(rows);
        char *b = calloc(1, len);
        char tmp[1200];
        snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
        int fd = b ? mkstemp(tmp) : -1;
        if (fd >= 0) {
            memcpy(b, key, klen);
            double *d = (double *)(b + off);
            memcpy(d, sig95, rows * sizeof(double));
            memcpy(d + rows, cnt, rows * NBINS * sizeof(double));
            memcpy(d + rows + rows * NBINS, nout, rows * sizeof(double));
            size_t done = 0;
            while (done < len) {
                ssize_t k = write(fd, b + done, len - done);
                if (k < 0 && errno == EINTR)
                    continue;
                if (k <= 0)
                    break;
                done += (size_t)k;
            }
            if (close(fd) || done != len || rename(tmp, path)) {
                rtd_log(RTD_LOG_WARN, "could not cache the significance level in %s: %s", path,
                        strerror(errno ? errno : EIO));
                unlink(tmp);
            }
        }
        free(b);
    }
    if (cnt != counts)
        free(cnt);
    if (nout != n_outside)
        free(nout);
    return rc;
}
