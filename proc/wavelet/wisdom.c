/* SPDX-License-Identifier: MIT */
/*
 * FFTW wisdom, saved and reused automatically, so that a one-shot command or a freshly started
 * worker plans its FFTs as fast as a warm process (measured plans cost seconds; plans from
 * wisdom cost microseconds). rtd_wavelet_wisdom_auto() loads the package's system file and the
 * user's cache file; from then on every plan the library makes is an FFTW_MEASURE plan taken
 * from wisdom where the wisdom has it, measured otherwise, and a measured plan is merged into
 * the user's file at once. Writers never leave a torn file: the merge happens under an flock
 * on "<file>.lock", into a temporary file that is then renamed over the old one, so readers see
 * the old or the new file and concurrent writers do not drop each other's plans. A file FFTW
 * cannot parse is ignored with one warning (FFTW restores its wisdom when an import fails) and
 * is replaced at the next save. Everything here runs under rtd_wavelet_planner_lock.
 */
#include "wavelet_internal.h"

#include "rtd_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef RTD_WISDOM_SYSTEM_DIR
#define RTD_WISDOM_SYSTEM_DIR "/usr/share/rtdaq"
#endif

/* [0] double precision (fftw_), [1] single precision (fftwf_). */
static const char *const file_name[2] = {"fftw-wisdom", "fftw-wisdomf"};

static struct {
    int enabled, readonly;
    int dirty[2];
    char user[2][1024];
    struct rtd_wisdom_stats st;
} W;

static int import_string(int f, const char *s)
{
    return f ? fftwf_import_wisdom_from_string(s) : fftw_import_wisdom_from_string(s);
}

/* Import one file: 1 imported, 0 absent, -EBADMSG unparsable (warned once), -errno. */
static int import_file(int f, const char *path, int quiet)
{
    void *buf;
    size_t len;
    int rc = rtd_read_file(path, &buf, &len);
    if (rc)
        return rc == -ENOENT ? 0 : rc;
    int ok = len > 0 && import_string(f, buf);
    free(buf);
    if (ok)
        return 1;
    if (!quiet) {
        W.st.corrupt++;
        rtd_log(RTD_LOG_WARN,
                "ignoring FFTW wisdom file %s: FFTW cannot read it (it is "
                "replaced when new plans are saved)",
                path);
    }
    return -EBADMSG;
}

static int user_dir(char *out, size_t cap)
{
    const char *d = getenv("RTDAQ_WISDOM_DIR");
    if (d && *d)
        return snprintf(out, cap, "%s", d) < (int)cap ? 0 : -ENAMETOOLONG;
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (xdg && *xdg == '/')
        n = snprintf(out, cap, "%s/rtdaq", xdg);
    else if (home && *home)
        n = snprintf(out, cap, "%s/.cache/rtdaq", home);
    else
        return -ENOENT;
    return n < (int)cap ? 0 : -ENAMETOOLONG;
}

/* mkdir -p: 0700 for the user's cache, 0755 for a directory the package ships. */
static int make_dirs(const char *path, mode_t mode)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, mode) && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    if (mkdir(tmp, mode) && errno != EEXIST)
        return -errno;
    return 0;
}

/*
 * The package's wisdom: $RTDAQ_WISDOM_SYSTEM_DIR, else <the executable's dir>/../share/rtdaq
 * (so `cmake --install --prefix P` works for any P), else the configured data directory.
 */
static void system_dir(char *out, size_t cap)
{
    const char *env = getenv("RTDAQ_WISDOM_SYSTEM_DIR");
    if (env) {
        snprintf(out, cap, "%s", env);
        return;
    }
    char exe[900];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(out, cap, "%s/../share/rtdaq", exe);
            char probe[1100];
            snprintf(probe, sizeof probe, "%s/%s", out, file_name[0]);
            if (access(probe, R_OK) == 0)
                return;
        }
    }
    snprintf(out, cap, "%s", RTD_WISDOM_SYSTEM_DIR);
}

int rtd_wavelet_wisdom_auto(unsigned wflags)
{
    pthread_mutex_lock(&rtd_wavelet_planner_lock);
    const char *env = getenv("RTDAQ_WISDOM");
    if (env && (!strcmp(env, "off") || !strcmp(env, "0"))) {
        pthread_mutex_unlock(&rtd_wavelet_planner_lock);
        return 0;
    }
    if (wflags & RTD_WISDOM_REFRESH) {
        fftw_forget_wisdom();
        fftwf_forget_wisdom();
    }
    W.readonly = (wflags & RTD_WISDOM_READONLY) != 0;
    char dir[900];
    int have_user = user_dir(dir, sizeof dir) == 0;
    for (int f = 0; f < 2; f++)
        snprintf(W.user[f], sizeof W.user[f], "%s/%s", have_user ? dir : "", file_name[f]);
    if (!have_user)
        W.readonly = 1;
    if (!W.enabled && !(wflags & RTD_WISDOM_REFRESH)) {
        char sys[1024];
        system_dir(sys, sizeof sys);
        for (int f = 0; f < 2; f++) {
            char path[1100];
            snprintf(path, sizeof path, "%s/%s", sys, file_name[f]);
            if (sys[0] && import_file(f, path, 0) == 1)
                W.st.loaded_system++;
            if (have_user && import_file(f, W.user[f], 0) == 1)
                W.st.loaded_user++;
        }
    }
    W.enabled = 1;
    W.st.enabled = 1;
    snprintf(W.st.user_path, sizeof W.st.user_path, "%s", have_user ? W.user[0] : "");
    pthread_mutex_unlock(&rtd_wavelet_planner_lock);
    return 0;
}

void rtd_wavelet_wisdom_stats(struct rtd_wisdom_stats *out)
{
    pthread_mutex_lock(&rtd_wavelet_planner_lock);
    *out = W.st;
    pthread_mutex_unlock(&rtd_wavelet_planner_lock);
}

/*
 * Merge this process's wisdom into file f at path: re-read, export, rename. shared (the user's
 * cache, which other processes write too): under an flock of path.lock, mode 0600. Otherwise
 * (a file made for the package) no lock file is left behind and the file is 0644.
 */
static int save_one(int f, const char *path, int shared)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return -EINVAL;
    *slash = 0;
    int rc = make_dirs(dir, shared ? 0700 : 0755);
    if (rc)
        return rc;
    char lock[1100], tmp[1100];
    snprintf(lock, sizeof lock, "%s.lock", path);
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    int lfd = shared ? open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
    if (shared && lfd < 0)
        return -errno;
    if (shared && flock(lfd, LOCK_EX)) {
        rc = -errno;
        close(lfd);
        return rc;
    }
    /* Plans another process saved since we loaded: keep them (a bad file is simply replaced). */
    import_file(f, path, 1);
    char *s = f ? fftwf_export_wisdom_to_string() : fftw_export_wisdom_to_string();
    int fd = s ? mkstemp(tmp) : -1;
    if (!s)
        rc = -ENOMEM;
    else if (fd < 0)
        rc = -errno;
    else {
        size_t len = strlen(s), off = 0;
        while (off < len) {
            ssize_t w = write(fd, s + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                rc = w < 0 ? -errno : -EIO;
                break;
            }
            off += (size_t)w;
        }
        if (!shared && !rc && fchmod(fd, 0644))
            rc = -errno;
        if (close(fd) && !rc)
            rc = -errno;
        if (!rc && rename(tmp, path))
            rc = -errno;
        if (rc)
            unlink(tmp);
    }
    free(s);
    if (shared) {
        flock(lfd, LOCK_UN);
        close(lfd);
    }
    return rc;
}

void rtd_wavelet_wisdom_commit(void)
{
    pthread_mutex_lock(&rtd_wavelet_planner_lock);
    for (int f = 0; f < 2; f++) {
        if (!W.dirty[f])
            continue;
        W.dirty[f] = 0;
        if (W.readonly)
            continue;
        int rc = save_one(f, W.user[f], 1);
        if (rc) {
            W.st.save_errors++;
            rtd_log(RTD_LOG_WARN, "could not save FFTW wisdom to %s: %s", W.user[f], strerror(-rc));
        } else {
            W.st.saves++;
        }
    }
    pthread_mutex_unlock(&rtd_wavelet_planner_lock);
}

/*
 * The planning policy, one macro for the four plan kinds the library makes. Without the cache
 * (and without RTD_WAVELET_MEASURE) plans are FFTW_ESTIMATE, as before: no measuring, no file.
 */
#define RTD_PLAN_POLICY(T, f, call)                                                                \
    do {                                                                                           \
        if (!W.enabled && !(flags & RTD_WAVELET_MEASURE)) {                                        \
            unsigned pf = FFTW_ESTIMATE;                                                           \
            return call;                                                                           \
        }                                                                                          \
        unsigned pf = FFTW_MEASURE | FFTW_WISDOM_ONLY;                                             \
        T plan = call;                                                                             \
        if (plan) {                                                                                \
            W.st.planned_from_wisdom++;                                                            \
            return plan;                                                                           \
        }                                                                                          \
        pf = FFTW_MEASURE;                                                                         \
        plan = call;                                                                               \
        if (plan) {                                                                                \
            W.st.planned_measured++;                                                               \
            if (W.enabled)                                                                         \
                W.dirty[f] = 1;                                                                    \
        }                                                                                          \
        return plan;                                                                               \
    } while (0)

fftw_plan rtd_wavelet_plan_c2c(int n, fftw_complex *in, fftw_complex *out, int sign, unsigned flags)
{
    RTD_PLAN_POLICY(fftw_plan, 0, fftw_plan_dft_1d(n, in, out, sign, pf));
}

fftw_plan rtd_wavelet_plan_r2c(int n, double *in, fftw_complex *out, unsigned flags)
{
    RTD_PLAN_POLICY(fftw_plan, 0, fftw_plan_dft_r2c_1d(n, in, out, pf));
}

fftwf_plan rtd_wavelet_planf_c2c(int n, fftwf_complex *in, fftwf_complex *out, int sign,
                                 unsigned flags)
{
    RTD_PLAN_POLICY(fftwf_plan, 1, fftwf_plan_dft_1d(n, in, out, sign, pf));
}

fftwf_plan rtd_wavelet_planf_r2c(int n, float *in, fftwf_complex *out, unsigned flags)
{
    RTD_PLAN_POLICY(fftwf_plan, 1, fftwf_plan_dft_r2c_1d(n, in, out, pf));
}

/*
 * Plan (measure, unless wisdom has them) every FFT the library makes for length M: the cwt's
 * r2c and out-of-place inverse, wct's in-place pair and out-of-place inverse, and the float32
 * Monte Carlo loop's four. Used to prepare a wisdom file ahead of time.
 */
int rtd_wavelet_wisdom_prepare(size_t M)
{
    if (M < 2 || M > ((size_t)1 << 30))
        return -EINVAL;
    double *r = fftw_malloc(M * sizeof(double));
    fftw_complex *a = fftw_malloc(M * sizeof(fftw_complex)),
                 *b = fftw_malloc(M * sizeof(fftw_complex));
    float *rf = fftwf_malloc(M * sizeof(float));
    fftwf_complex *af = fftwf_malloc(M * sizeof(fftwf_complex));
    fftwf_complex *bf = fftwf_malloc(M * sizeof(fftwf_complex));
    int rc = -ENOMEM;
    if (r && a && b && rf && af && bf) {
        int n = (int)M;
        rc = 0;
        pthread_mutex_lock(&rtd_wavelet_planner_lock);
        fftw_plan d[] = {rtd_wavelet_plan_r2c(n, r, a, RTD_WAVELET_MEASURE),
                         rtd_wavelet_plan_c2c(n, a, b, FFTW_BACKWARD, RTD_WAVELET_MEASURE),
                         rtd_wavelet_plan_c2c(n, a, a, FFTW_FORWARD, RTD_WAVELET_MEASURE),
                         rtd_wavelet_plan_c2c(n, a, a, FFTW_BACKWARD, RTD_WAVELET_MEASURE)};
        fftwf_plan fl[] = {rtd_wavelet_planf_r2c(n, rf, af, RTD_WAVELET_MEASURE),
                           rtd_wavelet_planf_c2c(n, af, bf, FFTW_BACKWARD, RTD_WAVELET_MEASURE),
                           rtd_wavelet_planf_c2c(n, af, af, FFTW_FORWARD, RTD_WAVELET_MEASURE)};
        for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
            if (!d[i])
                rc = -EIO;
            else
                fftw_destroy_plan(d[i]);
        }
        for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++) {
            if (!fl[i])
                rc = -EIO;
            else
                fftwf_destroy_plan(fl[i]);
        }
        pthread_mutex_unlock(&rtd_wavelet_planner_lock);
        rtd_wavelet_wisdom_commit();
    }
    fftw_free(r);
    fftw_free(a);
    fftw_free(b);
    fftwf_free(rf);
    fftwf_free(af);
    fftwf_free(bf);
    return rc;
}

int rtd_wavelet_wisdom_export_dir(const char *dir)
{
    if (!dir || !*dir)
        return -EINVAL;
    int rc = 0;
    pthread_mutex_lock(&rtd_wavelet_planner_lock);
    for (int f = 0; f < 2 && !rc; f++) {
        char path[1024];
        if (snprintf(path, sizeof path, "%s/%s", dir, file_name[f]) >= (int)sizeof path)
            rc = -ENAMETOOLONG;
        else
            rc = save_one(f, path, 0);
    }
    pthread_mutex_unlock(&rtd_wavelet_planner_lock);
    return rc;
}
