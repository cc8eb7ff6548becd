/* SPDX-License-Identifier: MIT */
/*
 * POST /api/v1/wavelet/wct: the old system's wavelet-coherence request, with
 * PyCWT's argument names, run as a job on one worker thread of rtdaq-web (never
 * in acq, proc or ctl, so a long transform cannot touch acquisition).
 *
 * Body (JSON object): y1, y2 (arrays of numbers, same length >= 16), dt
 * (required, > 0), dj (1/12), s0 (-1: 2 dt / flambda), J (-1: PyCWT's default),
 * sig (true), significance_level (0.95), normalize (true), mc_count (300),
 * wavelet ("morlet" only, as PyCWT's wct), backend (accepted and ignored),
 * seed (1), async (false: the reply waits for the result; true: 202 with the
 * job, then GET /api/v1/wavelet/jobs/<id>).
 * Result, PyCWT's return tuple by name: WCT and aWCT ([scale][time]), coi
 * (per time, in period units), freq (per scale), sig (per scale: the R^2 the
 * Monte Carlo puts at significance_level; null without sig), plus period.
 *
 * One job runs at a time; up to 4 wait behind it (-EBUSY beyond). Cancel is
 * honoured between Monte Carlo chunks (~100 ms each).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "rtd_util.h"
#include "web_internal.h"

#ifdef RTD_WEB_HAVE_WAVELET
#include <complex.h>

#include "rtd_wavelet.h"
#endif

#define MAX_JOBS     16
#define MAX_QUEUED   4
#define MC_CHUNK_MAX 200

enum { J_FREE, J_QUEUED, J_RUNNING, J_DONE, J_FAILED, J_CANCELLED };
static const char *const state_name[] = {"free", "queued", "running",
                                         "done", "failed", "cancelled"};

struct job {
    long id;
    int state, cancel;
    double progress;
    char message[128];
    double dt, dj, s0, level;
    int J, sig, normalize, mc_count;
    uint64_t seed;
    size_t n;
    double *y1, *y2;
    char *result; /* JSON text of the result object when done */
    uint64_t submitted_ns, started_ns, finished_ns;
};

struct web_wct {
    struct web *w;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    int running, quit;
    long next_id;
    struct job jobs[MAX_JOBS];
};

int web_wct_available(void)
{
#ifdef RTD_WEB_HAVE_WAVELET
    return 1;
#else
    return 0;
#endif
}

static struct job *find(struct web_wct *j, long id)
{
    for (int i = 0; i < MAX_JOBS; i++)
        if (j->jobs[i].state != J_FREE && j->jobs[i].id == id)
            return &j->jobs[i];
    return NULL;
}

#ifdef RTD_WEB_HAVE_WAVELET

static int progress(struct web_wct *J, struct job *j, double p, const char *msg)
{
    pthread_mutex_lock(&J->lock);
    j->progress = p;
    snprintf(j->message, sizeof j->message, "%s", msg);
    int c = j->cancel;
    pthread_mutex_unlock(&J->lock);
    return c;
}

static json_t *matrix(const double *m, size_t rows, size_t cols)
{
    json_t *a = json_array();
    for (size_t r = 0; r < rows; r++) {
        json_t *row = json_array();
        for (size_t c = 0; c < cols; c++)
            json_array_append_new(row, isfinite(m[r * cols + c]) ? json_real(m[r * cols + c])
                                                                 : json_null());
        json_array_append_new(a, row);
    }
    return a;
}

static int run(struct web_wct *J, struct job *j, char **out, char *err, size_t errcap)
{
    struct rtd_mother m;
    struct rtd_wct_plan *plan = NULL;
    double *wct = NULL, *awct = NULL, *counts = NULL, *part = NULL, *sig = NULL;
    int rc = rtd_mother_init(&m, RTD_MOTHER_MORLET, 6);
    if (rc)
        return rc;
    double s0 = j->s0 > 0 ? j->s0 : rtd_cwt_default_s0(j->dt, &m);
    int Jn = j->J >= 0 ? j->J : rtd_cwt_default_J(j->n, j->dt, j->dj, s0);
    progress(J, j, 0, "coherence");
    if ((rc = rtd_wct_plan_create(&plan, j->n, j->dt, j->dj, s0, Jn, &m, 0))) {
        snprintf(err, errcap, "wct plan: %s", strerror(-rc));
        return rc;
    }
    rtd_wct_plan_set_threads(plan, J->w->o.wct_threads);
    const struct rtd_cwt_plan *cp = rtd_wct_cwt(plan);
    size_t ns = rtd_cwt_nscales(cp), n = j->n;
    wct = malloc(ns * n * sizeof *wct);
    awct = malloc(ns * n * sizeof *awct);
    sig = calloc((size_t)Jn + 1, sizeof *sig);
    counts = calloc(((size_t)Jn + 1) * 1000, sizeof *counts);
    part = calloc(((size_t)Jn + 1) * 1000, sizeof *part);
    if (!wct || !awct || !sig || !counts || !part) {
        rc = -ENOMEM;
        snprintf(err, errcap, "out of memory for %zu x %zu", ns, n);
        goto out;
    }
    if ((rc = rtd_wct_execute(plan, j->y1, j->y2, j->normalize, wct, awct))) {
        snprintf(err, errcap, "wct: %s", strerror(-rc));
        goto out;
    }
    json_t *sigj = json_null();
    if (j->sig && j->mc_count > 0) {
        double g1, a1, mu1, g2, a2, mu2;
        if ((rc = rtd_wavelet_ar1(j->y1, n, &g1, &a1, &mu1)) ||
            (rc = rtd_wavelet_ar1(j->y2, n, &g2, &a2, &mu2))) {
            snprintf(err, errcap, "ar1: %s (series too short or constant?)", strerror(-rc));
            goto out;
        }
        int done = 0, chunk = 4;
        for (int k = 0; done < j->mc_count; k++) {
            int it = j->mc_count - done < chunk ? j->mc_count - done : chunk;
            struct rtd_wct_signif_opts so = {j->level, it, j->seed + (uint64_t)k * 0x9e3779b9ull,
                                             J->w->o.wct_threads, 0};
            uint64_t t0 = rtd_now_ns();
            if ((rc = rtd_wct_significance(g1, g2, j->dt, j->dj, s0, Jn, &m, &so, sig, part,
                                           NULL))) {
                snprintf(err, errcap, "wct significance: %s", strerror(-rc));
                goto out;
            }
            uint64_t took = rtd_now_ns() - t0;
            if (took < 50000000ull && chunk < MC_CHUNK_MAX)
                chunk *= 2;
            else if (took > 200000000ull && chunk > 1)
                chunk /= 2;
            for (size_t i = 0; i < ((size_t)Jn + 1) * 1000; i++)
                counts[i] += part[i];
            done += it;
            char msg[64];
            snprintf(msg, sizeof msg, "monte carlo %d/%d", done, j->mc_count);
            if (progress(J, j, 0.1 + 0.9 * done / j->mc_count, msg)) {
                rc = -ECANCELED;
                snprintf(err, errcap, "cancelled");
                goto out;
            }
        }
        sigj = json_array();
        for (size_t s = 0; s < ns; s++) {
            double lvl = s <= (size_t)Jn
                             ? rtd_wct_level_from_counts(counts + s * 1000, 1000, j->level)
                             : (double)NAN;
            json_array_append_new(sigj, isfinite(lvl) ? json_real(lvl) : json_null());
        }
    }
    const double *freqs = rtd_cwt_freqs(cp), *coi = rtd_cwt_coi(cp);
    json_t *fj = json_array(), *pj = json_array(), *cj = json_array();
    for (size_t s = 0; s < ns; s++) {
        json_array_append_new(fj, json_real(freqs[s]));
        json_array_append_new(pj, json_real(1.0 / freqs[s]));
    }
    for (size_t t = 0; t < n; t++)
        json_array_append_new(cj, json_real(coi[t]));
    json_t *res = json_pack("{s:I, s:I, s:f, s:f, s:f, s:i, s:i, s:f, s:o, s:o, s:o, s:o, s:o, "
                            "s:o}",
                            "n", (json_int_t)n, "nscales", (json_int_t)ns, "dt", j->dt, "dj", j->dj,
                            "s0", s0, "J", Jn, "mc_count", j->sig ? j->mc_count : 0,
                            "significance_level", j->level, "WCT", matrix(wct, ns, n), "aWCT",
                            matrix(awct, ns, n), "coi", cj, "freq", fj, "period", pj, "sig", sigj);
    *out = json_dumps(res, JSON_COMPACT);
    json_decref(res);
    rc = *out ? 0 : -ENOMEM;
out:
    rtd_wct_plan_destroy(plan);
    free(wct);
    free(awct);
    free(sig);
    free(counts);
    free(part);
    return rc;
}
#endif

static void *worker(void *arg)
{
    struct web_wct *J = arg;
    pthread_mutex_lock(&J->lock);
    for (;;) {
        struct job *j = NULL;
        for (int i = 0; i < MAX_JOBS; i++)
            if (J->jobs[i].state == J_QUEUED && (!j || J->jobs[i].id < j->id))
                j = &J->jobs[i];
        if (J->quit)
            break;
        if (!j) {
            pthread_cond_wait(&J->cond, &J->lock);
            continue;
        }
        j->state = J_RUNNING;
        j->started_ns = rtd_now_ns();
        pthread_mutex_unlock(&J->lock);
        char err[300] = "", *result = NULL;
        int rc = -ENOSYS;
#ifdef RTD_WEB_HAVE_WAVELET
        rc = run(J, j, &result, err, sizeof err);
#endif
        pthread_mutex_lock(&J->lock);
        j->finished_ns = rtd_now_ns();
        free(j->y1);
        free(j->y2);
        j->y1 = j->y2 = NULL;
        if (!rc) {
            j->state = J_DONE;
            j->result = result;
            j->progress = 1;
            snprintf(j->message, sizeof j->message, "done");
        } else {
            j->state = rc == -ECANCELED ? J_CANCELLED : J_FAILED;
            snprintf(j->message, sizeof j->message, "%s", err[0] ? err : strerror(-rc));
            web_count(J->w, W_WCT_FAILED, 1);
        }
    }
    pthread_mutex_unlock(&J->lock);
    return NULL;
}

int web_wct_init(struct web_wct **out, struct web *w)
{
    struct web_wct *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    j->w = w;
    j->next_id = 1;
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->cond, NULL);
    int rc = pthread_create(&j->thread, NULL, worker, j);
    if (rc) {
        pthread_mutex_destroy(&j->lock);
        pthread_cond_destroy(&j->cond);
        free(j);
        return -rc;
    }
    j->running = 1;
    *out = j;
    return 0;
}

void web_wct_free(struct web_wct *j)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->lock);
    j->quit = 1;
    for (int i = 0; i < MAX_JOBS; i++)
        j->jobs[i].cancel = 1;
    pthread_cond_signal(&j->cond);
    pthread_mutex_unlock(&j->lock);
    if (j->running)
        pthread_join(j->thread, NULL);
    for (int i = 0; i < MAX_JOBS; i++) {
        free(j->jobs[i].y1);
        free(j->jobs[i].y2);
        free(j->jobs[i].result);
    }
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->cond);
    free(j);
}

static int get_series(json_t *o, const char *key, double **out, size_t *n, char *err, size_t errcap)
{
    json_t *a = json_object_get(o, key);
    if (!json_is_array(a)) {
        snprintf(err, errcap, "\"%s\" must be an array of numbers", key);
        return -EINVAL;
    }
    size_t len = json_array_size(a);
    double *v = malloc((len ? len : 1) * sizeof *v);
    if (!v) {
        snprintf(err, errcap, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < len; i++) {
        json_t *x = json_array_get(a, i);
        if (!json_is_number(x) || !isfinite(json_number_value(x))) {
            snprintf(err, errcap, "%s[%zu] is not a finite number", key, i);
            free(v);
            return -EINVAL;
        }
        v[i] = json_number_value(x);
    }
    *out = v;
    *n = len;
    return 0;
}

static int get_num(json_t *o, const char *key, double def, double lo, double hi, double *out,
                   char *err, size_t errcap)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v)) {
        snprintf(err, errcap, "\"%s\" must be a number", key);
        return -EINVAL;
    }
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) {
        snprintf(err, errcap, "%s = %g is outside [%g, %g]", key, d, lo, hi);
        return -EINVAL;
    }
    *out = d;
    return 0;
}

static int get_bool(json_t *o, const char *key, int def, int *out, char *err, size_t errcap)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v)) {
        snprintf(err, errcap, "\"%s\" must be true or false", key);
        return -EINVAL;
    }
    *out = json_is_true(v);
    return 0;
}

long web_wct_submit(struct web_wct *J, const char *body, size_t len, char *err, size_t errcap)
{
    json_error_t je;
    json_t *o = json_loadb(body, len, 0, &je);
    if (!o || !json_is_object(o)) {
        snprintf(err, errcap,
                 o ? "the body must be a JSON object" : "the body is not valid JSON: %s (line %d)",
                 o ? "" : je.text, o ? 0 : je.line);
        json_decref(o);
        return -EINVAL;
    }
    static const char *const known[] = {"y1",        "y2",       "dt",      "dj",
                                        "s0",        "J",        "sig",     "significance_level",
                                        "normalize", "mc_count", "wavelet", "backend",
                                        "seed",      "async",    "cache"};
    const char *key;
    json_t *val;
    json_object_foreach(o, key, val)
    {
        size_t k = 0;
        while (k < sizeof known / sizeof known[0] && strcmp(key, known[k]))
            k++;
        if (k == sizeof known / sizeof known[0]) {
            snprintf(err, errcap,
                     "unknown argument \"%.64s\" (wct takes y1, y2, dt, dj, s0, J, "
                     "sig, significance_level, normalize, mc_count, wavelet)",
                     key);
            json_decref(o);
            return -EINVAL;
        }
    }
    struct job in = {0};
    double d;
    int rc;
    size_t n2 = 0;
    const char *wav = json_string_value(json_object_get(o, "wavelet"));
    if (json_object_get(o, "wavelet") && (!wav || strcasecmp(wav, "morlet"))) {
        snprintf(err, errcap, "wavelet must be \"morlet\" (PyCWT's wct supports only Morlet)");
        rc = -EINVAL;
        goto bad;
    }
    if (!json_object_get(o, "dt")) {
        snprintf(err, errcap, "\"dt\" (the sampling interval) is required");
        rc = -EINVAL;
        goto bad;
    }
    if ((rc = get_series(o, "y1", &in.y1, &in.n, err, errcap)) ||
        (rc = get_series(o, "y2", &in.y2, &n2, err, errcap)))
        goto bad;
    if (in.n != n2 || in.n < 16 || in.n > (1u << 20)) {
        snprintf(err, errcap, "y1 and y2 need the same length, 16 .. 1048576 (%zu, %zu)", in.n, n2);
        rc = -EINVAL;
        goto bad;
    }
    if ((rc = get_num(o, "dt", 1, 1e-12, 1e12, &in.dt, err, errcap)) ||
        (rc = get_num(o, "dj", 1.0 / 12, 1e-3, 1, &in.dj, err, errcap)) ||
        (rc = get_num(o, "s0", -1, -1, 1e12, &in.s0, err, errcap)) ||
        (rc = get_num(o, "significance_level", 0.95, 0.5, 0.9999, &in.level, err, errcap)) ||
        (rc = get_bool(o, "sig", 1, &in.sig, err, errcap)) ||
        (rc = get_bool(o, "normalize", 1, &in.normalize, err, errcap)))
        goto bad;
    if ((rc = get_num(o, "J", -1, -1, 1000, &d, err, errcap)))
        goto bad;
    in.J = (int)d;
    if ((rc = get_num(o, "mc_count", 300, 0, 100000, &d, err, errcap)))
        goto bad;
    in.mc_count = (int)d;
    if ((rc = get_num(o, "seed", 1, 0, 9007199254740992.0, &d, err, errcap)))
        goto bad;
    in.seed = (uint64_t)d;
    json_decref(o);
    o = NULL;
    pthread_mutex_lock(&J->lock);
    int queued = 0;
    struct job *slot = NULL, *oldest = NULL;
    for (int i = 0; i < MAX_JOBS; i++) {
        struct job *j = &J->jobs[i];
        queued += j->state == J_QUEUED;
        if (j->state == J_FREE && !slot)
            slot = j;
        if ((j->state == J_DONE || j->state == J_FAILED || j->state == J_CANCELLED) &&
            (!oldest || j->id < oldest->id))
            oldest = j;
    }
    if (!slot && oldest) { /* forget the oldest finished job */
        free(oldest->result);
        memset(oldest, 0, sizeof *oldest);
        slot = oldest;
    }
    if (!slot || queued >= MAX_QUEUED) {
        pthread_mutex_unlock(&J->lock);
        snprintf(err, errcap, "%d wavelet jobs are waiting already; try again later", queued);
        rc = -EBUSY;
        goto bad;
    }
    *slot = in;
    slot->id = J->next_id++;
    slot->state = J_QUEUED;
    slot->submitted_ns = rtd_now_ns();
    snprintf(slot->message, sizeof slot->message, "queued");
    long id = slot->id;
    pthread_cond_signal(&J->cond);
    pthread_mutex_unlock(&J->lock);
    web_count(J->w, W_WCT_JOBS, 1);
    return id;
bad:
    json_decref(o);
    free(in.y1);
    free(in.y2);
    return rc;
}

static json_t *job_json(const struct job *j, int with_result)
{
    uint64_t now = rtd_now_ns();
    uint64_t end = j->finished_ns ? j->finished_ns : now;
    json_t *o = json_pack("{s:I, s:s, s:f, s:s, s:I, s:f}", "id", (json_int_t)j->id, "status",
                          state_name[j->state], "progress", j->progress, "message", j->message, "n",
                          (json_int_t)j->n, "elapsed_s",
                          j->started_ns ? (double)(end - j->started_ns) / 1e9 : 0.0);
    if (with_result && j->state == J_DONE && j->result)
        json_object_set_new(o, "result", json_loads(j->result, 0, NULL));
    return o;
}

char *web_wct_json(struct web_wct *J, long id, int with_result)
{
    json_t *o;
    pthread_mutex_lock(&J->lock);
    if (id > 0) {
        struct job *j = find(J, id);
        if (!j) {
            pthread_mutex_unlock(&J->lock);
            return NULL;
        }
        json_t *jj = job_json(j, with_result);
        int ok = j->state != J_FAILED && j->state != J_CANCELLED;
        o = json_pack("{s:b, s:o}", "ok", ok, "job", jj);
        if (!ok)
            json_object_set_new(o, "error", json_string(j->message));
    } else {
        json_t *a = json_array();
        for (int i = 0; i < MAX_JOBS; i++)
            if (J->jobs[i].state != J_FREE)
                json_array_append_new(a, job_json(&J->jobs[i], 0));
        o = json_pack("{s:b, s:o}", "ok", 1, "jobs", a);
    }
    pthread_mutex_unlock(&J->lock);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

int web_wct_cancel(struct web_wct *J, long id)
{
    pthread_mutex_lock(&J->lock);
    struct job *j = find(J, id);
    if (!j) {
        pthread_mutex_unlock(&J->lock);
        return -ENOENT;
    }
    if (j->state == J_QUEUED) {
        j->state = J_CANCELLED;
        snprintf(j->message, sizeof j->message, "cancelled");
        free(j->y1);
        free(j->y2);
        j->y1 = j->y2 = NULL;
        j->finished_ns = rtd_now_ns();
    } else
        j->cancel = 1;
    pthread_mutex_unlock(&J->lock);
    return 0;
}

int web_wct_finished(struct web_wct *J, long id)
{
    pthread_mutex_lock(&J->lock);
    struct job *j = find(J, id);
    int f = !j || j->state == J_DONE || j->state == J_FAILED || j->state == J_CANCELLED;
    pthread_mutex_unlock(&J->lock);
    return f;
}
