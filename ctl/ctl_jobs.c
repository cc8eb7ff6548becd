/* SPDX-License-Identifier: MIT */
/*
 * Offline analysis jobs: a bounded FIFO of submitted jobs, N worker threads,
 * progress and cancellation. A job belongs to the daemon, not to the client
 * that submitted it: a client may disconnect and ask about the job later by
 * id. Job types:
 *   wct   wavelet coherence of two series (uploaded as JSON arrays or read
 *         from raw float64 files) with Monte Carlo significance (proc/wavelet)
 *   fits  detect and fit ions in every frame of a recording (acq recording
 *         reader + proc/pipeline)
 * A type whose library is not in this build answers "not available in this
 * build" at submission.
 *
 * Threads: the main thread submits, cancels and reads; workers run jobs. The
 * table and every job field are guarded by one mutex, except `cancel` (atomic,
 * polled by the running job) and the job's private inputs, which only the
 * worker touches once the job is running.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_internal.h"
#include "rtd_util.h"

#ifdef RTD_CTL_HAVE_WAVELET
#include "rtd_wavelet.h"
#endif
#if defined(RTD_CTL_HAVE_REC) && defined(RTD_CTL_HAVE_PIPELINE)
#define RTD_CTL_HAVE_FITS 1
#include "rtd_pipeline.h"
#include "rtd_rec.h"
#endif

#define JOBS_MAX     256 /* table size: queued + running + finished kept for status */
#define MC_CHUNK_MAX 200 /* Monte Carlo iterations between progress/cancel checks, at most */
#define SERIES_MAX   (1u << 22)

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_FAILED, JOB_CANCELLED };
static const char *state_names[] = {"queued", "running", "done", "failed", "cancelled"};

struct job {
    int used;
    uint64_t id;
    char type[16];
    enum job_state state;
    _Atomic int cancel;
    double progress; /* 0..1 */
    char message[256];
    uint64_t submitted_ns, started_ns, finished_ns;
    json_t *result;                      /* set by the worker before DONE; read by main after */
    uint64_t version, published_version; /* bumped on every visible change */
    uint64_t last_progress_ns;
    /* Inputs, owned by the worker once running. */
    double *x, *y;
    size_t n;
    double dt, dj, s0, level;
    int J, mc_count, threads;
    uint64_t seed;
    char path[1024], output[1024], analysis[16];
    uint64_t max_frames;
};

struct ctl_jobs {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job jobs[JOBS_MAX];
    uint64_t next_id;
    int queue_max, nthreads, shutdown;
    pthread_t *threads;
    struct ctl *c;
};

static struct job *find_job(struct ctl_jobs *J, uint64_t id)
{
    for (int i = 0; i < JOBS_MAX; i++)
        if (J->jobs[i].used && J->jobs[i].id == id)
            return &J->jobs[i];
    return NULL;
}

static int count_state(struct ctl_jobs *J, enum job_state s)
{
    int n = 0;
    for (int i = 0; i < JOBS_MAX; i++)
        n += J->jobs[i].used && J->jobs[i].state == s;
    return n;
}

/* Worker side: report progress (throttled to 10 Hz for events); 1 when cancelled. */
static int job_progress(struct ctl_jobs *J, struct job *j, double p, const char *msg)
{
    pthread_mutex_lock(&J->mu);
    j->progress = p;
    if (msg)
        snprintf(j->message, sizeof j->message, "%s", msg);
    uint64_t now = rtd_now_ns();
    if (now - j->last_progress_ns > 100000000ull) {
        j->version++;
        j->last_progress_ns = now;
    }
    pthread_mutex_unlock(&J->mu);
    return atomic_load_explicit(&j->cancel, memory_order_relaxed);
}

static void free_inputs(struct job *j)
{
    free(j->x);
    free(j->y);
    j->x = j->y = NULL;
}

/* ---- wct ------------------------------------------------------------------ */

#ifdef RTD_CTL_HAVE_WAVELET

static int run_wct(struct ctl_jobs *Jb, struct job *j, json_t **result, char *err, size_t errcap)
{
    struct rtd_mother m;
    struct rtd_wct_plan *plan = NULL;
    double *wct = NULL, *sig = NULL, *counts = NULL, *part = NULL;
    int rc = rtd_mother_init(&m, RTD_MOTHER_MORLET, 6);
    if (rc)
        return rc;
    double s0 = j->s0 > 0 ? j->s0 : rtd_cwt_default_s0(j->dt, &m);
    double dj = j->dj > 0 ? j->dj : 1.0 / 12;
    int Jn = j->J >= 0 ? j->J : rtd_cwt_default_J(j->n, j->dt, dj, s0);
    job_progress(Jb, j, 0.0, "coherence");
    if ((rc = rtd_wct_plan_create(&plan, j->n, j->dt, dj, s0, Jn, &m, 0))) {
        snprintf(err, errcap, "wct plan: %s", strerror(-rc));
        return rc;
    }
    const struct rtd_cwt_plan *cp = rtd_wct_cwt(plan);
    size_t ns = rtd_cwt_nscales(cp), n = j->n;
    wct = malloc(ns * n * sizeof *wct);
    sig = calloc((size_t)Jn + 1, sizeof *sig);
    counts = calloc(((size_t)Jn + 1) * 1000, sizeof *counts);
    part = calloc(((size_t)Jn + 1) * 1000, sizeof *part);
    if (!wct || !sig || !counts || !part) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = rtd_wct_execute(plan, j->x, j->y, 1, wct, NULL))) {
        snprintf(err, errcap, "wct: %s", strerror(-rc));
        goto out;
    }
    if (job_progress(Jb, j, 0.1, "red-noise fits")) {
        rc = -ECANCELED;
        goto out;
    }
    double g1, a1, mu1, g2, a2, mu2;
    if ((rc = rtd_wavelet_ar1(j->x, n, &g1, &a1, &mu1)) ||
        (rc = rtd_wavelet_ar1(j->y, n, &g2, &a2, &mu2))) {
        snprintf(err, errcap, "ar1: %s (series too short or constant?)", strerror(-rc));
        goto out;
    }
    /*
     * Monte Carlo in chunks, progress and cancellation between them, histograms
     * summed. Chunks grow or shrink to take ~100 ms each, so a cancel is honoured
     * quickly on any machine while the per-call set-up stays amortised.
     */
    int done = 0, chunk = 4;
    for (int k = 0; done < j->mc_count; k++) {
        int it = j->mc_count - done < chunk ? j->mc_count - done : chunk;
        struct rtd_wct_signif_opts so = {j->level, it, j->seed + (uint64_t)k * 0x9e3779b9ull,
                                         j->threads, 0};
        uint64_t t0 = rtd_now_ns();
        if ((rc = rtd_wct_significance(g1, g2, j->dt, dj, s0, Jn, &m, &so, sig, part, NULL))) {
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
        if (job_progress(Jb, j, 0.1 + 0.9 * done / j->mc_count, msg)) {
            rc = -ECANCELED;
            goto out;
        }
    }
    const double *freqs = rtd_cwt_freqs(cp), *coi = rtd_cwt_coi(cp);
    json_t *periods = json_array(), *mean = json_array(), *sig95 = json_array(),
           *frac = json_array();
    size_t tot_out = 0, tot_sig = 0;
    for (size_t s = 0; s < ns; s++) {
        double period = 1.0 / freqs[s], sum = 0, lvl = NAN;
        size_t nout = 0, nsig = 0;
        if (j->mc_count > 0 && s <= (size_t)Jn)
            lvl = rtd_wct_level_from_counts(counts + s * 1000, 1000, j->level);
        for (size_t t = 0; t < n; t++) {
            if (period > coi[t])
                continue; /* inside the cone of influence: edge effects */
            double v = wct[s * n + t];
            sum += v;
            nout++;
            nsig += isfinite(lvl) && v > lvl;
        }
        tot_out += nout;
        tot_sig += nsig;
        json_array_append_new(periods, json_real(period));
        json_array_append_new(mean, nout ? json_real(sum / (double)nout) : json_null());
        json_array_append_new(sig95, isfinite(lvl) ? json_real(lvl) : json_null());
        json_array_append_new(frac, nout && isfinite(lvl) ? json_real((double)nsig / (double)nout)
                                                          : json_null());
    }
    *result =
        json_pack("{s:I, s:I, s:f, s:f, s:f, s:i, s:i, s:f, s:o, s:o, s:o, s:o, s:f}", "n",
                  (json_int_t)n, "nscales", (json_int_t)ns, "dt", j->dt, "dj", dj, "s0", s0, "J",
                  Jn, "mc_count", j->mc_count, "level", j->level, "period", periods, "mean_wct",
                  mean, "sig", sig95, "fraction_significant", frac, "fraction_significant_all",
                  tot_out ? (double)tot_sig / (double)tot_out : 0.0);
    if (j->output[0]) {
        rc = rtd_write_file(j->output, wct, ns * n * sizeof *wct);
        if (rc) {
            snprintf(err, errcap, "output %.300s: %s", j->output, strerror(-rc));
            json_decref(*result);
            *result = NULL;
            goto out;
        }
        json_object_set_new(*result, "output", json_string(j->output));
        json_object_set_new(*result, "output_layout",
                            json_string("float64 little-endian [nscales][n], row-major"));
    }
    rc = 0;
out:
    rtd_wct_plan_destroy(plan);
    free(wct);
    free(sig);
    free(counts);
    free(part);
    return rc;
}
#endif

/* ---- fits ------------------------------------------------------------------ */

#ifdef RTD_CTL_HAVE_FITS
static int run_fits(struct ctl_jobs *Jb, struct job *j, json_t **result, char *err, size_t errcap)
{
    struct rtd_rec_reader *r = NULL;
    struct rtd_pipe *p = NULL;
    struct rtd_pipe_ion *ions = NULL;
    FILE *out = NULL;
    enum rtd_pipe_analysis an = RTD_PIPE_STATIC;
    int rc = rtd_pipe_analysis_parse(j->analysis[0] ? j->analysis : "static", &an);
    if (rc) {
        snprintf(err, errcap, "analysis '%s': want static or shm", j->analysis);
        return rc;
    }
    if ((rc = rtd_rec_open(&r, j->path))) {
        snprintf(err, errcap, "recording %.300s: %s", j->path, strerror(-rc));
        return rc;
    }
    struct rtd_pipe_config cfg;
    rtd_pipe_config_default(&cfg, an);
    const int max_ions = 1024;
    ions = calloc(max_ions, sizeof *ions);
    if (!ions) {
        rc = -ENOMEM;
        goto out;
    }
    if (j->output[0] && !(out = fopen(j->output, "w"))) {
        rc = -errno;
        snprintf(err, errcap, "output %.300s: %s", j->output, strerror(errno));
        goto out;
    }
    if (out)
        fputs("frame,x,y,amp,sigma,sigma_y,A,offset,chi2,state,flags,iters\n", out);
    uint64_t frames = 0, nions = 0, converged = 0, skipped = 0;
    double sum_sigma = 0;
    uint64_t size = rtd_rec_file_size(r);
    struct rtd_rec_record rec;
    int pw = 0, ph = 0;
    while ((rc = rtd_rec_next(r, &rec)) == 1) {
        if (rec.hdr->type != RTD_REC_FRAME)
            continue;
        if (j->max_frames && frames >= j->max_frames)
            break;
        const struct rtd_rec_frame *f = rec.payload;
        if (rec.hdr->len < sizeof *f ||
            (uint64_t)f->width * f->height * 2 > rec.hdr->len - sizeof *f) {
            skipped++;
            continue;
        }
        if (!p || (int)f->width > pw || (int)f->height > ph) {
            rtd_pipe_destroy(p);
            p = NULL;
            pw = (int)f->width;
            ph = (int)f->height;
            if ((rc = rtd_pipe_create(&p, &cfg, pw, ph))) {
                snprintf(err, errcap, "pipeline: %s", strerror(-rc));
                goto out;
            }
        }
        struct rtd_pipe_frame_stats st;
        int k = rtd_pipe_process(p, (const uint16_t *)(f + 1), (int)f->width, (int)f->height,
                                 f->width, f->frame_id, ions, max_ions, &st);
        if (k < 0) {
            skipped++;
            continue;
        }
        frames++;
        nions += (uint64_t)k;
        converged += st.n_converged;
        for (int i = 0; i < k; i++) {
            sum_sigma += ions[i].sigma;
            if (out)
                fprintf(out, "%llu,%.4f,%.4f,%.3f,%.4f,%.4f,%.4f,%.3f,%.4g,%d,%d,%d\n",
                        (unsigned long long)ions[i].frame, ions[i].x, ions[i].y, ions[i].amp,
                        ions[i].sigma, ions[i].sigma_y, ions[i].A, ions[i].offset, ions[i].chi2,
                        ions[i].state, ions[i].flags, ions[i].iters);
        }
        if ((frames & 15) == 0) {
            char msg[64];
            snprintf(msg, sizeof msg, "%llu frames", (unsigned long long)frames);
            if (job_progress(Jb, j, size ? (double)rtd_rec_offset(r) / (double)size : 0, msg)) {
                rc = -ECANCELED;
                goto out;
            }
        }
    }
    if (rc < 0 && frames == 0) {
        snprintf(err, errcap, "recording %.300s: %s", j->path, rtd_rec_error(r));
        goto out;
    }
    *result = json_pack("{s:s, s:I, s:I, s:I, s:I, s:f, s:b, s:s}", "analysis",
                        rtd_pipe_analysis_name(an), "frames", (json_int_t)frames, "ions",
                        (json_int_t)nions, "converged", (json_int_t)converged, "frames_skipped",
                        (json_int_t)skipped, "mean_sigma", nions ? sum_sigma / (double)nions : 0.0,
                        "recording_complete", rtd_rec_complete(r), "stopped_by",
                        rc < 0 ? rtd_rec_error(r) : "end of file");
    if (out)
        json_object_set_new(*result, "output", json_string(j->output));
    rc = 0;
out:
    if (out)
        fclose(out);
    free(ions);
    rtd_pipe_destroy(p);
    rtd_rec_close(r);
    return rc;
}
#endif

/* ---- workers ---------------------------------------------------------------- */

static void *worker(void *arg)
{
    struct ctl_jobs *J = arg;
    struct ctl *c = J->c;
    pthread_mutex_lock(&J->mu);
    for (;;) {
        struct job *j = NULL;
        while (!J->shutdown) {
            for (int i = 0; i < JOBS_MAX; i++) {
                struct job *q = &J->jobs[i];
                if (q->used && q->state == JOB_QUEUED && (!j || q->id < j->id))
                    j = q;
            }
            if (j)
                break;
            pthread_cond_wait(&J->cv, &J->mu);
        }
        if (J->shutdown)
            break;
        j->state = JOB_RUNNING;
        j->started_ns = rtd_now_ns();
        j->version++;
        atomic_fetch_sub_explicit(c->g_jobs_queued, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(c->g_jobs_running, 1, memory_order_relaxed);
        pthread_mutex_unlock(&J->mu);

        json_t *result = NULL;
        char err[512] = "";
        int rc = -ENOSYS;
#ifdef RTD_CTL_HAVE_WAVELET
        if (!strcmp(j->type, "wct"))
            rc = run_wct(J, j, &result, err, sizeof err);
#endif
#ifdef RTD_CTL_HAVE_FITS
        if (!strcmp(j->type, "fits"))
            rc = run_fits(J, j, &result, err, sizeof err);
#endif
        pthread_mutex_lock(&J->mu);
        free_inputs(j);
        j->finished_ns = rtd_now_ns();
        if (rc == -ECANCELED || atomic_load(&j->cancel)) {
            j->state = JOB_CANCELLED;
            snprintf(j->message, sizeof j->message, "cancelled");
            json_decref(result);
            atomic_fetch_add_explicit(c->c_jobs_cancelled, 1, memory_order_relaxed);
        } else if (rc) {
            j->state = JOB_FAILED;
            snprintf(j->message, sizeof j->message, "%s", err[0] ? err : strerror(-rc));
            json_decref(result);
            atomic_fetch_add_explicit(c->c_jobs_failed, 1, memory_order_relaxed);
        } else {
            j->state = JOB_DONE;
            j->progress = 1;
            j->result = result;
            snprintf(j->message, sizeof j->message, "done");
            atomic_fetch_add_explicit(c->c_jobs_done, 1, memory_order_relaxed);
        }
        j->version++;
        atomic_fetch_sub_explicit(c->g_jobs_running, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&J->mu);
    return NULL;
}

int ctl_jobs_init(struct ctl *c, int parallel, int queue_max)
{
    struct ctl_jobs *J = calloc(1, sizeof *J);
    if (!J)
        return -ENOMEM;
    pthread_mutex_init(&J->mu, NULL);
    pthread_cond_init(&J->cv, NULL);
    J->next_id = 1;
    J->queue_max = queue_max;
    J->c = c;
    J->threads = calloc((size_t)parallel, sizeof *J->threads);
    if (!J->threads) {
        free(J);
        return -ENOMEM;
    }
    c->jobs = J;
    for (int i = 0; i < parallel; i++) {
        int rc = pthread_create(&J->threads[i], NULL, worker, J);
        if (rc)
            return -rc;
        J->nthreads++;
    }
    return 0;
}

void ctl_jobs_free(struct ctl *c)
{
    struct ctl_jobs *J = c->jobs;
    if (!J)
        return;
    pthread_mutex_lock(&J->mu);
    J->shutdown = 1;
    for (int i = 0; i < JOBS_MAX; i++)
        atomic_store(&J->jobs[i].cancel, 1);
    pthread_cond_broadcast(&J->cv);
    pthread_mutex_unlock(&J->mu);
    for (int i = 0; i < J->nthreads; i++)
        pthread_join(J->threads[i], NULL);
    for (int i = 0; i < JOBS_MAX; i++) {
        free_inputs(&J->jobs[i]);
        json_decref(J->jobs[i].result);
    }
    pthread_mutex_destroy(&J->mu);
    pthread_cond_destroy(&J->cv);
    free(J->threads);
    free(J);
    c->jobs = NULL;
}

/* Caller holds the mutex. */
static json_t *job_json(const struct job *j, int with_result)
{
    uint64_t now = rtd_now_ns();
    uint64_t end = j->finished_ns ? j->finished_ns : now;
    json_t *o = json_pack("{s:I, s:s, s:s, s:f, s:s, s:f, s:f, s:b}", "id", (json_int_t)j->id,
                          "type", j->type, "state", state_names[j->state], "progress", j->progress,
                          "message", j->message, "age_s", (double)(now - j->submitted_ns) / 1e9,
                          "elapsed_s", j->started_ns ? (double)(end - j->started_ns) / 1e9 : 0.0,
                          "cancel_requested", atomic_load(&j->cancel) != 0);
    if (j->state == JOB_FAILED)
        json_object_set_new(o, "error", json_string(j->message));
    if (with_result && j->result)
        json_object_set(o, "result", j->result);
    return o;
}

/* Free the oldest finished job to make room; -ENOSPC when all are live. */
static struct job *alloc_slot(struct ctl_jobs *J)
{
    struct job *oldest = NULL;
    for (int i = 0; i < JOBS_MAX; i++) {
        struct job *j = &J->jobs[i];
        if (!j->used)
            return j;
        if (j->state >= JOB_DONE && (!oldest || j->id < oldest->id))
            oldest = j;
    }
    if (oldest) {
        json_decref(oldest->result);
        free_inputs(oldest);
        memset(oldest, 0, sizeof *oldest);
    }
    return oldest;
}

/* Read a numeric JSON array or a raw float64 file into a malloc'd series. */
static json_t *load_series(struct ctl *c, json_t *req, const char *key, const char *file_key,
                           double **out, size_t *n)
{
    json_t *a = json_object_get(req, key);
    const char *file = json_string_value(json_object_get(req, file_key));
    if (a && file)
        return ctl_reply_err("bad_request", "give either %s or %s, not both", key, file_key);
    if (file) {
        void *buf;
        size_t len;
        int rc = rtd_read_file(file, &buf, &len);
        if (rc)
            return ctl_reply_err("bad_value", "%s %s: %s", file_key, file, strerror(-rc));
        if (len % 8 || len / 8 > SERIES_MAX) {
            free(buf);
            return ctl_reply_err("bad_value",
                                 "%s %s: %zu bytes is not a float64 series "
                                 "of at most %u samples",
                                 file_key, file, len, SERIES_MAX);
        }
        *out = buf;
        *n = len / 8;
    } else {
        if (!json_is_array(a))
            return ctl_reply_err("bad_request", "%s: want an array of numbers (or %s)", key,
                                 file_key);
        size_t k = json_array_size(a);
        if (k > SERIES_MAX)
            return ctl_reply_err("out_of_range", "%s: at most %u samples", key, SERIES_MAX);
        double *v = malloc((k ? k : 1) * sizeof *v);
        if (!v)
            return ctl_reply_err("no_memory", "out of memory");
        for (size_t i = 0; i < k; i++) {
            json_t *e = json_array_get(a, i);
            if (!json_is_number(e)) {
                free(v);
                return ctl_reply_err("bad_value", "%s[%zu] is not a number", key, i);
            }
            v[i] = json_number_value(e);
        }
        *out = v;
        *n = k;
    }
    for (size_t i = 0; i < *n; i++)
        if (!isfinite((*out)[i])) {
            free(*out);
            *out = NULL;
            return ctl_reply_err("bad_value", "%s[%zu] is not finite", key, i);
        }
    (void)c;
    return NULL;
}

static int get_num(json_t *req, const char *key, double def, double lo, double hi, double *out,
                   json_t **err)
{
    json_t *v = json_object_get(req, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v)) {
        *err = ctl_reply_err("bad_value", "%s wants a number", key);
        return -1;
    }
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) {
        *err = ctl_reply_err("out_of_range", "%s = %g is outside [%g, %g]", key, d, lo, hi);
        return -1;
    }
    *out = d;
    return 0;
}

static json_t *submit(struct ctl *c, json_t *req)
{
    struct ctl_jobs *J = c->jobs;
    const char *type = json_string_value(json_object_get(req, "type"));
    if (!type)
        return ctl_reply_err("bad_request", "submit wants \"type\": \"wct\" or \"fits\"");
    struct job in = {0};
    json_t *err = NULL;
    double d;
    if (!strcmp(type, "wct")) {
#ifndef RTD_CTL_HAVE_WAVELET
        return ctl_reply_err("not_available", "job type wct is not available in this build "
                                              "(proc/wavelet was not built)");
#else
        size_t ny = 0;
        if ((err = load_series(c, req, "x", "x_file", &in.x, &in.n)) ||
            (err = load_series(c, req, "y", "y_file", &in.y, &ny)))
            goto bad;
        if (in.n != ny || in.n < 16) {
            err = ctl_reply_err("bad_value", "x and y need the same length >= 16 (%zu, %zu)", in.n,
                                ny);
            goto bad;
        }
        if (get_num(req, "dt", 1, 1e-12, 1e12, &in.dt, &err) ||
            get_num(req, "dj", 1.0 / 12, 1e-3, 1, &in.dj, &err) ||
            get_num(req, "s0", -1, -1, 1e12, &in.s0, &err) ||
            get_num(req, "level", 0.95, 0.5, 0.9999, &in.level, &err))
            goto bad;
        if (get_num(req, "J", -1, -1, 1000, &d, &err))
            goto bad;
        in.J = (int)d;
        if (get_num(req, "mc_count", 300, 0, 100000, &d, &err))
            goto bad;
        in.mc_count = (int)d;
        if (get_num(req, "threads", 1, 1, 64, &d, &err))
            goto bad;
        in.threads = (int)d;
        if (get_num(req, "seed", 1, 0, 9007199254740992.0, &d, &err))
            goto bad;
        in.seed = (uint64_t)d;
#endif
    } else if (!strcmp(type, "fits")) {
#ifndef RTD_CTL_HAVE_FITS
        return ctl_reply_err("not_available", "job type fits is not available in this build "
                                              "(acq recordings or proc/pipeline were not built)");
#else
        const char *path = json_string_value(json_object_get(req, "recording"));
        if (!path || !*path || strlen(path) >= sizeof in.path)
            return ctl_reply_err("bad_request", "fits wants \"recording\": PATH");
        if (c->o.job_dir && strncmp(path, c->o.job_dir, strlen(c->o.job_dir)))
            return ctl_reply_err("forbidden", "recordings must lie under %s", c->o.job_dir);
        snprintf(in.path, sizeof in.path, "%s", path);
        const char *an = json_string_value(json_object_get(req, "analysis"));
        snprintf(in.analysis, sizeof in.analysis, "%s", an ? an : "static");
        if (get_num(req, "max_frames", 0, 0, 1e12, &d, &err))
            goto bad;
        in.max_frames = (uint64_t)d;
#endif
    } else {
        return ctl_reply_err("bad_value", "unknown job type '%s' (wct, fits)", type);
    }
    const char *output = json_string_value(json_object_get(req, "output"));
    if (output) {
        if (strlen(output) >= sizeof in.output) {
            err = ctl_reply_err("bad_value", "output path too long");
            goto bad;
        }
        snprintf(in.output, sizeof in.output, "%s", output);
    }
    pthread_mutex_lock(&J->mu);
    struct job *j = count_state(J, JOB_QUEUED) >= J->queue_max ? NULL : alloc_slot(J);
    if (!j) {
        pthread_mutex_unlock(&J->mu);
        err = ctl_reply_err("queue_full", "job queue is full (%d queued); try again later",
                            J->queue_max);
        goto bad;
    }
    *j = in;
    j->used = 1;
    j->id = J->next_id++;
    snprintf(j->type, sizeof j->type, "%s", type);
    j->state = JOB_QUEUED;
    j->submitted_ns = rtd_now_ns();
    snprintf(j->message, sizeof j->message, "queued");
    j->version = 1;
    json_t *r = ctl_reply_ok();
    json_object_set_new(r, "job", job_json(j, 0));
    atomic_fetch_add_explicit(c->c_jobs_submitted, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(c->g_jobs_queued, 1, memory_order_relaxed);
    pthread_cond_signal(&J->cv);
    pthread_mutex_unlock(&J->mu);
    return r;
bad:
    free(in.x);
    free(in.y);
    return err;
}

json_t *ctl_jobs_handle(struct ctl *c, json_t *req)
{
    struct ctl_jobs *J = c->jobs;
    const char *a = json_string_value(json_object_get(req, "action"));
    if (!a)
        return ctl_reply_err("bad_request",
                             "jobs wants \"action\": submit, status, cancel or list");
    if (!strcmp(a, "submit"))
        return submit(c, req);
    if (!strcmp(a, "list")) {
        json_t *r = ctl_reply_ok(), *arr = json_array();
        pthread_mutex_lock(&J->mu);
        for (uint64_t id = 1; id < J->next_id; id++) {
            struct job *j = find_job(J, id);
            if (j)
                json_array_append_new(arr, job_json(j, 0));
        }
        pthread_mutex_unlock(&J->mu);
        json_object_set_new(r, "jobs", arr);
        return r;
    }
    if (strcmp(a, "status") && strcmp(a, "cancel"))
        return ctl_reply_err("bad_value", "jobs action '%s': want submit, status, cancel or list",
                             a);
    json_t *jid = json_object_get(req, "id");
    if (!json_is_integer(jid))
        return ctl_reply_err("bad_request", "jobs %s wants an integer \"id\"", a);
    pthread_mutex_lock(&J->mu);
    struct job *j = find_job(J, (uint64_t)json_integer_value(jid));
    json_t *r;
    if (!j) {
        r = ctl_reply_err("no_such_job", "no job %lld", (long long)json_integer_value(jid));
    } else if (!strcmp(a, "status")) {
        r = ctl_reply_ok();
        json_object_set_new(r, "job", job_json(j, 1));
    } else if (j->state == JOB_QUEUED) {
        j->state = JOB_CANCELLED;
        j->finished_ns = rtd_now_ns();
        snprintf(j->message, sizeof j->message, "cancelled before it started");
        free_inputs(j);
        j->version++;
        atomic_fetch_sub_explicit(c->g_jobs_queued, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(c->c_jobs_cancelled, 1, memory_order_relaxed);
        r = ctl_reply_ok();
        json_object_set_new(r, "job", job_json(j, 0));
    } else if (j->state == JOB_RUNNING) {
        atomic_store(&j->cancel, 1);
        r = ctl_reply_ok();
        json_object_set_new(r, "job", job_json(j, 0));
    } else {
        r = ctl_reply_err("not_cancellable", "job %llu already %s", (unsigned long long)j->id,
                          state_names[j->state]);
    }
    pthread_mutex_unlock(&J->mu);
    return r;
}

json_t *ctl_jobs_summary(struct ctl *c)
{
    struct ctl_jobs *J = c->jobs;
    pthread_mutex_lock(&J->mu);
    json_t *o =
        json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i}", "queued", count_state(J, JOB_QUEUED),
                  "running", count_state(J, JOB_RUNNING), "done", count_state(J, JOB_DONE),
                  "failed", count_state(J, JOB_FAILED), "cancelled", count_state(J, JOB_CANCELLED),
                  "parallel", J->nthreads, "queue_max", J->queue_max);
    json_t *types = json_array();
#ifdef RTD_CTL_HAVE_WAVELET
    json_array_append_new(types, json_string("wct"));
#endif
#ifdef RTD_CTL_HAVE_FITS
    json_array_append_new(types, json_string("fits"));
#endif
    json_object_set_new(o, "types", types);
    pthread_mutex_unlock(&J->mu);
    return o;
}

void ctl_jobs_publish_events(struct ctl *c)
{
    struct ctl_jobs *J = c->jobs;
    json_t *ev[16];
    int n = 0;
    pthread_mutex_lock(&J->mu);
    for (int i = 0; i < JOBS_MAX && n < 16; i++) {
        struct job *j = &J->jobs[i];
        if (!j->used || j->version == j->published_version)
            continue;
        j->published_version = j->version;
        ev[n++] = job_json(j, 0);
    }
    pthread_mutex_unlock(&J->mu);
    for (int i = 0; i < n; i++) {
        json_t *h = json_pack("{s:s, s:i, s:s, s:I, s:I, s:o}", "schema", "rtdaq.job", "version",
                              CTL_SCHEMA_VERSION, "instance", c->instance, "seq",
                              (json_int_t)++c->topic_seq[CTL_SEQ_EVENT], "time_ns",
                              (json_int_t)rtd_realtime_ns(), "job", ev[i]);
        ctl_publish(c, "jobs", h, NULL, 0);
        json_decref(h);
    }
}
