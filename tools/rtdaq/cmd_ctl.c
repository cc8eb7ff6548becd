/* SPDX-License-Identifier: MIT */
/*
 * `rtdaq status|top|start|stop|set|record|jobs|shutdown`: the operator's side
 * of rtdaq-ctl's control socket. Each command sends one JSON request (see
 * docs/ctl.md) and prints the reply for people, or verbatim with --json.
 * Exit codes scripts can rely on: 0 ok, 1 the daemon refused or the command
 * failed, 2 bad usage, 3 daemon unreachable within --timeout-ms.
 */
#include "rtdaq_cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "rtd_ctl_client.h"
#include "rtd_util.h"

struct cli {
    const char *cmd;
    const char *endpoint;
    int json, timeout_ms, once, wait;
    int ack_ms; /* --timeout S: how long the owner may take to apply (0: --no-wait) */
    double interval_s;
    int iterations;
    struct rtd_curve_client curve;
};

static const char usage[] =
    "usage:\n"
    "  rtdaq status                        one screen of the current state\n"
    "  rtdaq top [--once] [--interval S]   live table (processes, rings, rates, drops, latency)\n"
    "  rtdaq start [--mode single|multiple|continuous] [--count N]\n"
    "  rtdaq stop\n"
    "  rtdaq set NAME=VALUE [NAME=VALUE...] | rtdaq set --list\n"
    "  rtdaq params                        requested and applied value, owner, generation\n"
    "  rtdaq record start [PATH] | rtdaq record stop\n"
    "  start, stop, set and record return once the owning process applied the command\n"
    "  (exit 0), refused it (exit 1 with its reason) or did not answer (exit 1):\n"
    "    --timeout S         wait at most S seconds for the owner (default 2)\n"
    "    --no-wait           return once rtdaq-ctl has passed it on\n"
    "  rtdaq jobs list | status ID [--wait] | cancel ID\n"
    "  rtdaq jobs submit wct (--x-file F --y-file F | --json-args '{\"x\":[..],\"y\":[..]}')\n"
    "        [--dt S] [--dj D] [--mc N] [--level P] [--seed N] [--threads N] [--output F] "
    "[--wait]\n"
    "  rtdaq jobs submit fits --recording PATH [--analysis static|shm] [--max-frames N]\n"
    "        [--output F.csv] [--wait]\n"
    "  rtdaq shutdown\n"
    "common options:\n"
    "  --ctl EP              control endpoint (default $RTDAQ_CTL or " RTD_CTL_CTL_DEFAULT ")\n"
    "  --json                print the daemon's JSON reply\n"
    "  --timeout-ms N        give up on reaching rtdaq-ctl after N ms (default 3000): exit 3\n"
    "  --curve-server-key F  server public key (PREFIX.pub) for a CURVE endpoint\n"
    "  --curve-key F         our secret key (PREFIX.secret)\n"
    "exit codes: 0 ok, 1 command failed, 2 usage, 3 daemon unreachable\n";

/* Send req (stolen), store the reply; returns an exit code. */
static int request(struct cli *cl, json_t *req, json_t **reply)
{
    char *body = json_dumps(req, JSON_COMPACT), *rep = NULL;
    json_decref(req);
    *reply = NULL;
    if (!body)
        return RTD_EXIT_FAIL;
    /* ctl answers a waiting command once its owner acknowledged: allow for that wait. */
    int tmo = cl->ack_ms + 1000 > cl->timeout_ms ? cl->ack_ms + 1000 : cl->timeout_ms;
    int rc = rtd_ctl_request(cl->endpoint, body, tmo, &cl->curve, &rep);
    free(body);
    if (rc == -ETIMEDOUT) {
        fprintf(stderr, "rtdaq %s: no reply from %s within %d ms (is rtdaq-ctl running?%s)\n",
                cl->cmd, cl->endpoint, tmo,
                cl->curve.server_pub_file ? " is our key on its allow-list?" : "");
        return RTD_EXIT_UNREACHABLE;
    }
    if (rc) {
        fprintf(stderr, "rtdaq %s: %s: %s\n", cl->cmd, cl->endpoint, strerror(-rc));
        return rc == -EINVAL ? RTD_EXIT_USAGE : RTD_EXIT_UNREACHABLE;
    }
    json_error_t e;
    *reply = json_loads(rep, 0, &e);
    if (!*reply) {
        fprintf(stderr, "rtdaq %s: unreadable reply: %s\n", cl->cmd, e.text);
        free(rep);
        return RTD_EXIT_FAIL;
    }
    if (cl->json)
        printf("%s\n", rep);
    free(rep);
    if (!json_is_true(json_object_get(*reply, "ok"))) {
        if (!cl->json)
            fprintf(stderr, "rtdaq %s: %s\n", cl->cmd,
                    json_string_value(json_object_get(*reply, "error"))
                        ? json_string_value(json_object_get(*reply, "error"))
                        : "failed");
        return RTD_EXIT_FAIL;
    }
    return RTD_EXIT_OK;
}

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static double jnum(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : (double)NAN;
}

static void fmt_rate(char *out, size_t cap, double v)
{
    if (!isfinite(v))
        snprintf(out, cap, "-");
    else if (v >= 1e9)
        snprintf(out, cap, "%.2fG", v / 1e9);
    else if (v >= 1e6)
        snprintf(out, cap, "%.2fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(out, cap, "%.1fk", v / 1e3);
    else
        snprintf(out, cap, "%.0f", v);
}

static void fmt_ns(char *out, size_t cap, double ns)
{
    if (!isfinite(ns) || ns <= 0)
        snprintf(out, cap, "-");
    else if (ns >= 1e9)
        snprintf(out, cap, "%.2fs", ns / 1e9);
    else if (ns >= 1e6)
        snprintf(out, cap, "%.2fms", ns / 1e6);
    else if (ns >= 1e3)
        snprintf(out, cap, "%.1fus", ns / 1e3);
    else
        snprintf(out, cap, "%.0fns", ns);
}

/*
 * The busiest event counter of a process: what `top` shows in its RATE column.
 * Byte and nanosecond counters are skipped (bytes/s and busy ns/s are not events).
 */
static void main_rate(json_t *p, const char **label, double *rate)
{
    const char *k;
    json_t *v;
    *label = "";
    *rate = (double)NAN;
    json_object_foreach(json_object_get(p, "rates"), k, v)
    {
        size_t l = strlen(k);
        if ((l >= 3 && !strcmp(k + l - 3, "_ns")) || (l >= 5 && !strcmp(k + l - 5, "bytes")))
            continue;
        double r = json_number_value(v);
        if (!isfinite(*rate) || r > *rate) {
            *rate = r;
            *label = k;
        }
    }
}

/* Worst p99 among the process's latency histograms. */
static void worst_latency(json_t *p, const char **label, double *p99, double *max)
{
    const char *k;
    json_t *v;
    *label = "";
    *p99 = *max = (double)NAN;
    json_object_foreach(json_object_get(p, "latency"), k, v)
    {
        double q = jnum(v, "p99_ns");
        if (jnum(v, "count") > 0 && (!isfinite(*p99) || q > *p99)) {
            *p99 = q;
            *max = jnum(v, "max_ns");
            *label = k;
        }
    }
}

static uint64_t counter_sum_suffix(json_t *p, const char *suffix)
{
    const char *k;
    json_t *v;
    uint64_t s = 0;
    size_t sl = strlen(suffix);
    json_object_foreach(json_object_get(p, "counters"), k, v)
    {
        size_t l = strlen(k);
        if (l >= sl && !strcmp(k + l - sl, suffix))
            s += (uint64_t)json_integer_value(v);
    }
    return s;
}

static void print_tables(json_t *r)
{
    char a[32], b[32], c[32];
    printf("%-14s %7s %5s %9s %6s %9s %-18s %9s %9s %9s  %s\n", "PROCESS", "PID", "ALIVE", "UPTIME",
           "BUSY%", "RATE/s", "(counter)", "DROPPED", "P99", "MAX", "STATUS");
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(r, "processes"), i, p)
    {
        const char *rl, *ll;
        double rate, p99, mx;
        main_rate(p, &rl, &rate);
        worst_latency(p, &ll, &p99, &mx);
        fmt_rate(a, sizeof a, rate);
        fmt_ns(b, sizeof b, p99);
        fmt_ns(c, sizeof c, mx);
        char name[64];
        const char *w = jstr(p, "worker");
        snprintf(name, sizeof name, "%s%s%s", jstr(p, "process"), *w ? "." : "", w);
        double busy = jnum(p, "busy_pct");
        char busy_s[16];
        if (isfinite(busy))
            snprintf(busy_s, sizeof busy_s, "%.1f", busy);
        else
            snprintf(busy_s, sizeof busy_s, "-");
        printf("%-14s %7d %5s %8.1fs %6s %9s %-18.18s %9llu %9s %9s  %s\n", name,
               (int)json_integer_value(json_object_get(p, "pid")),
               json_is_true(json_object_get(p, "alive")) ? "yes" : "NO", jnum(p, "uptime_s"),
               busy_s, a, rl, (unsigned long long)counter_sum_suffix(p, "dropped"), b, c,
               jstr(p, "status"));
    }
    printf("\n%-14s %-6s %6s %9s %10s %9s  %s\n", "RING", "KIND", "FILL%", "REC/s", "DROPPED",
           "DROP/s", "CONSUMERS (label lag lapped)");
    json_array_foreach(json_object_get(r, "rings"), i, p)
    {
        fmt_rate(a, sizeof a, jnum(p, "records_per_s"));
        fmt_rate(b, sizeof b, jnum(p, "dropped_per_s"));
        printf("%-14s %-6s %6.1f %9s %10lld %9s  ", jstr(p, "name"), jstr(p, "kind"),
               100.0 * jnum(p, "fill"), a,
               (long long)json_integer_value(json_object_get(p, "dropped")), b);
        size_t k;
        json_t *cs;
        json_array_foreach(json_object_get(p, "consumers"), k, cs)
        {
            printf("%s%s %lld %lld", k ? ", " : "", jstr(cs, "label"),
                   (long long)json_integer_value(json_object_get(cs, "lag")),
                   (long long)json_integer_value(json_object_get(cs, "lapped")));
        }
        printf("\n");
    }
}

static void print_status(json_t *r)
{
    json_t *ctl = json_object_get(r, "ctl"), *acq = json_object_get(r, "acquisition"),
           *rec = json_object_get(r, "recording"), *jobs = json_object_get(r, "jobs");
    printf("rtdaq instance '%s': ctl pid %lld, up %.1f s, pub %s, CURVE %s, %lld msgs published, "
           "%lld dropped, %lld subscriptions\n",
           jstr(r, "instance"), (long long)json_integer_value(json_object_get(ctl, "pid")),
           jnum(ctl, "uptime_s"), json_string_value(json_array_get(json_object_get(ctl, "pub"), 0)),
           json_is_true(json_object_get(ctl, "curve")) ? "on" : "off",
           (long long)json_integer_value(json_object_get(ctl, "pub_msgs")),
           (long long)json_integer_value(json_object_get(ctl, "pub_dropped")),
           (long long)json_integer_value(json_object_get(ctl, "subscriptions")));
    if (!strcmp(jstr(acq, "requested"), "none"))
        printf("acquisition: no command yet; acq %s (%s), %lld frames\n", jstr(acq, "state"),
               json_is_true(json_object_get(acq, "acq_alive")) ? "attached" : "not attached",
               (long long)json_integer_value(json_object_get(acq, "frames_done")));
    else
        printf("acquisition: requested %s %s (count %lld, seq %lld), %s; acq %s, %lld frames\n",
               jstr(acq, "requested"), jstr(acq, "mode"),
               (long long)json_integer_value(json_object_get(acq, "count")),
               (long long)json_integer_value(json_object_get(acq, "seq")),
               json_is_true(json_object_get(acq, "acknowledged")) ? "acknowledged"
                                                                  : "not acknowledged yet",
               jstr(acq, "state"),
               (long long)json_integer_value(json_object_get(acq, "frames_done")));
    if (!strcmp(jstr(rec, "requested"), "none"))
        printf("recording:   no command yet\n");
    else
        printf("recording:   requested %s %s, %s, active %s, result %s, %lld records kept, "
               "%lld dropped, %lld bytes\n",
               jstr(rec, "requested"), jstr(rec, "path"),
               json_is_true(json_object_get(rec, "acknowledged")) ? "acknowledged"
                                                                  : "not acknowledged yet",
               json_is_true(json_object_get(rec, "active")) ? "yes" : "no",
               json_integer_value(json_object_get(rec, "result"))
                   ? strerror((int)-json_integer_value(json_object_get(rec, "result")))
                   : "ok",
               (long long)json_integer_value(json_object_get(rec, "records")),
               (long long)json_integer_value(json_object_get(rec, "dropped")),
               (long long)json_integer_value(json_object_get(rec, "bytes")));
    if (jstr(rec, "warning")[0])
        printf("WARNING:     %s\n", jstr(rec, "warning"));
    printf("jobs:        %lld queued, %lld running, %lld done, %lld failed, %lld cancelled\n\n",
           (long long)json_integer_value(json_object_get(jobs, "queued")),
           (long long)json_integer_value(json_object_get(jobs, "running")),
           (long long)json_integer_value(json_object_get(jobs, "done")),
           (long long)json_integer_value(json_object_get(jobs, "failed")),
           (long long)json_integer_value(json_object_get(jobs, "cancelled")));
    print_tables(r);
}

static int do_top(struct cli *cl)
{
    int tty = isatty(STDOUT_FILENO) && !cl->once;
    for (int it = 0; cl->once ? it < 1 : (cl->iterations <= 0 || it < cl->iterations); it++) {
        json_t *r;
        int rc = request(cl, json_pack("{s:s}", "cmd", "status"), &r);
        if (rc)
            return rc;
        if (!cl->json) {
            if (tty)
                fputs("\033[H\033[2J", stdout); /* home, clear: redraw in place */
            time_t now = time(NULL);
            char ts[32];
            strftime(ts, sizeof ts, "%H:%M:%S", localtime(&now));
            printf("rtdaq top - %s - instance %s - %zu processes, %zu rings\n\n", ts,
                   jstr(r, "instance"), json_array_size(json_object_get(r, "processes")),
                   json_array_size(json_object_get(r, "rings")));
            json_t *rec = json_object_get(r, "recording");
            if (jstr(rec, "warning")[0])
                printf("WARNING: %s\n\n", jstr(rec, "warning"));
            print_tables(r);
        }
        fflush(stdout);
        json_decref(r);
        if (cl->once || (cl->iterations > 0 && it + 1 >= cl->iterations))
            break;
        struct timespec ts = {(time_t)cl->interval_s,
                              (long)((cl->interval_s - (double)(time_t)cl->interval_s) * 1e9)};
        nanosleep(&ts, NULL);
    }
    return RTD_EXIT_OK;
}

static void print_job(json_t *j)
{
    printf("job %lld %-5s %-9s %5.1f%%  %6.1fs  %s\n",
           (long long)json_integer_value(json_object_get(j, "id")), jstr(j, "type"),
           jstr(j, "state"), 100 * jnum(j, "progress"), jnum(j, "elapsed_s"), jstr(j, "message"));
}

/* Poll a job until it finishes; returns an exit code (1 unless it ended "done"). */
static int wait_job(struct cli *cl, json_int_t id)
{
    for (;;) {
        json_t *r;
        int json = cl->json;
        cl->json = 0;
        int rc = request(
            cl, json_pack("{s:s, s:s, s:I}", "cmd", "jobs", "action", "status", "id", id), &r);
        cl->json = json;
        if (rc)
            return rc;
        json_t *j = json_object_get(r, "job");
        const char *st = jstr(j, "state");
        if (strcmp(st, "queued") && strcmp(st, "running")) {
            if (cl->json) {
                char *s = json_dumps(r, JSON_COMPACT);
                printf("%s\n", s);
                free(s);
            } else {
                print_job(j);
                json_t *res = json_object_get(j, "result");
                if (res) {
                    char *s = json_dumps(res, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
                    printf("%s\n", s);
                    free(s);
                }
            }
            rc = strcmp(st, "done") ? RTD_EXIT_FAIL : RTD_EXIT_OK;
            json_decref(r);
            return rc;
        }
        json_decref(r);
        usleep(200000);
    }
}

static int parse_num(const char *s, double *out)
{
    char *end;
    *out = strtod(s, &end);
    return end != s && !*end && isfinite(*out) ? 0 : -1;
}

static int do_jobs(struct cli *cl, int argc, char **argv, int first)
{
    if (first >= argc) {
        fputs(usage, stderr);
        return RTD_EXIT_USAGE;
    }
    const char *action = argv[first];
    json_t *req = json_pack("{s:s, s:s}", "cmd", "jobs", "action", action), *r;
    int rc;
    if (!strcmp(action, "list")) {
        if ((rc = request(cl, req, &r)))
            return rc;
        if (!cl->json) {
            size_t i;
            json_t *j;
            json_array_foreach(json_object_get(r, "jobs"), i, j) print_job(j);
        }
        json_decref(r);
        return RTD_EXIT_OK;
    }
    if (!strcmp(action, "status") || !strcmp(action, "cancel")) {
        char *end;
        long long id = first + 1 < argc ? strtoll(argv[first + 1], &end, 10) : -1;
        if (first + 1 >= argc || *end || id < 1) {
            json_decref(req);
            fprintf(stderr, "rtdaq jobs %s: want a job id\n", action);
            return RTD_EXIT_USAGE;
        }
        if (!strcmp(action, "status") && cl->wait) {
            json_decref(req);
            return wait_job(cl, id);
        }
        json_object_set_new(req, "id", json_integer(id));
        if ((rc = request(cl, req, &r)))
            return rc;
        if (!cl->json) {
            json_t *j = json_object_get(r, "job");
            print_job(j);
            json_t *res = json_object_get(j, "result");
            if (res) {
                char *s = json_dumps(res, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
                printf("%s\n", s);
                free(s);
            }
        }
        json_decref(r);
        return RTD_EXIT_OK;
    }
    if (strcmp(action, "submit") || first + 1 >= argc) {
        json_decref(req);
        fputs(usage, stderr);
        return RTD_EXIT_USAGE;
    }
    json_object_set_new(req, "type", json_string(argv[first + 1]));
    /* Remaining "--key value" pairs become request fields (numbers where they parse). */
    static const struct {
        const char *flag, *key;
        int numeric;
    } map[] = {
        {"--x-file", "x_file", 0},
        {"--y-file", "y_file", 0},
        {"--dt", "dt", 1},
        {"--dj", "dj", 1},
        {"--s0", "s0", 1},
        {"--J", "J", 1},
        {"--mc", "mc_count", 1},
        {"--level", "level", 1},
        {"--seed", "seed", 1},
        {"--threads", "threads", 1},
        {"--output", "output", 0},
        {"--recording", "recording", 0},
        {"--analysis", "analysis", 0},
        {"--max-frames", "max_frames", 1},
    };
    for (int i = first + 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json-args") && i + 1 < argc) {
            json_error_t e;
            json_t *extra = json_loads(argv[++i], 0, &e);
            if (!json_is_object(extra)) {
                fprintf(stderr, "rtdaq jobs submit: --json-args: %s\n",
                        extra ? "not an object" : e.text);
                json_decref(extra);
                json_decref(req);
                return RTD_EXIT_USAGE;
            }
            json_object_update(req, extra);
            json_decref(extra);
            continue;
        }
        size_t k;
        for (k = 0; k < sizeof map / sizeof map[0]; k++)
            if (!strcmp(argv[i], map[k].flag))
                break;
        if (k == sizeof map / sizeof map[0] || i + 1 >= argc) {
            fprintf(stderr, "rtdaq jobs submit: unknown option or missing value: %s\n", argv[i]);
            json_decref(req);
            return RTD_EXIT_USAGE;
        }
        const char *v = argv[++i];
        double d;
        if (map[k].numeric) {
            if (parse_num(v, &d)) {
                fprintf(stderr, "rtdaq jobs submit: %s wants a number, not '%s'\n", map[k].flag, v);
                json_decref(req);
                return RTD_EXIT_USAGE;
            }
            json_object_set_new(req, map[k].key,
                                d == floor(d) && fabs(d) < 9e15 ? json_integer((json_int_t)d)
                                                                : json_real(d));
        } else {
            json_object_set_new(req, map[k].key, json_string(v));
        }
    }
    if ((rc = request(cl, req, &r)))
        return rc;
    json_int_t id = json_integer_value(json_object_get(json_object_get(r, "job"), "id"));
    if (!cl->json && !cl->wait)
        print_job(json_object_get(r, "job"));
    json_decref(r);
    return cl->wait ? wait_job(cl, id) : RTD_EXIT_OK;
}

/* start/stop/set/record: how long ctl waits for the owner (docs/ctl.md). */
static void add_wait(const struct cli *cl, json_t *req)
{
    if (cl->ack_ms)
        json_object_set_new(req, "timeout_ms", json_integer(cl->ack_ms));
    else
        json_object_set_new(req, "wait", json_false());
}

static void print_value(json_t *v)
{
    if (json_is_null(v) || !v)
        printf(" %14s", "-");
    else
        printf(" %14g", json_number_value(v));
}

/* `rtdaq params`: requested and applied values side by side, with the owner's state. */
static int do_params(struct cli *cl)
{
    json_t *r;
    int rc = request(cl, json_pack("{s:s}", "cmd", "params"), &r);
    if (rc)
        return rc;
    if (!cl->json) {
        size_t i;
        json_t *p;
        printf("%-22s %-5s %14s %14s %10s  %s\n", "NAME", "OWNER", "REQUESTED", "APPLIED",
               "GENERATION", "STATE");
        json_array_foreach(json_object_get(r, "params"), i, p)
        {
            printf("%-22s %-5s", jstr(p, "name"), jstr(p, "owner"));
            json_t *req = json_object_get(p, "requested"), *ap = json_object_get(p, "applied");
            if (json_is_null(req))
                printf(" %14s", "(config)");
            else
                print_value(req);
            print_value(ap);
            json_t *g = json_object_get(p, "applied_generation");
            if (json_is_integer(g))
                printf(" %10lld", (long long)json_integer_value(g));
            else
                printf(" %10s", "-");
            const char *state = !json_is_true(json_object_get(p, "owner_running"))
                                    ? "owner not running"
                                : json_object_get(p, "pending") ? "pending"
                                                                : "applied";
            printf("  %s\n", state);
        }
        printf("generation %lld\n",
               (long long)json_integer_value(json_object_get(r, "generation")));
    }
    json_decref(r);
    return RTD_EXIT_OK;
}

static int do_set(struct cli *cl, int argc, char **argv, int first, int list)
{
    json_t *r;
    int rc;
    if (list) {
        if ((rc = request(cl, json_pack("{s:s}", "cmd", "params"), &r)))
            return rc;
        if (!cl->json) {
            size_t i;
            json_t *p;
            printf("%-22s %-5s %14s %14s %14s  %s\n", "NAME", "OWNER", "VALUE", "MIN", "MAX",
                   "MEANING");
            json_array_foreach(json_object_get(r, "params"), i, p)
            {
                printf("%-22s %-5s %14g %14g %14g  %s (%s)\n", jstr(p, "name"), jstr(p, "owner"),
                       jnum(p, "value"), jnum(p, "min"), jnum(p, "max"), jstr(p, "help"),
                       jstr(p, "unit"));
            }
        }
        json_decref(r);
        return RTD_EXIT_OK;
    }
    if (first >= argc) {
        fprintf(stderr, "rtdaq set: want NAME=VALUE ... (or --list)\n");
        return RTD_EXIT_USAGE;
    }
    json_t *params = json_object();
    for (int i = first; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        double d;
        if (!eq || eq == argv[i] || parse_num(eq + 1, &d)) {
            fprintf(stderr, "rtdaq set: '%s' is not NAME=NUMBER\n", argv[i]);
            json_decref(params);
            return RTD_EXIT_USAGE;
        }
        *eq = 0;
        json_object_set_new(params, argv[i],
                            d == floor(d) && fabs(d) < 9e15 ? json_integer((json_int_t)d)
                                                            : json_real(d));
    }
    json_t *req = json_pack("{s:s, s:o}", "cmd", "set", "params", params);
    add_wait(cl, req);
    if ((rc = request(cl, req, &r)))
        return rc;
    if (!cl->json) {
        json_t *ap = json_object_get(r, "applied");
        if (!ap) {
            printf("ok: passed on as parameter generation %lld (%s)\n",
                   (long long)json_integer_value(json_object_get(r, "generation")),
                   json_is_true(json_object_get(r, "acknowledged")) ? "applied by rtdaq-ctl"
                                                                    : "not awaited: --no-wait");
        } else {
            const char *owner;
            json_t *o;
            json_object_foreach(ap, owner, o)
            {
                const char *name;
                json_t *v;
                char vals[512] = "";
                size_t at = 0;
                json_object_foreach(json_object_get(o, "values"), name, v)
                {
                    char *t = json_dumps(v, JSON_ENCODE_ANY);
                    at += (size_t)snprintf(vals + at, at < sizeof vals ? sizeof vals - at : 0,
                                           "%s%s=%s", at ? " " : "", name, t ? t : "?");
                    free(t);
                }
                int np = (int)json_integer_value(json_object_get(o, "processes"));
                printf("ok: %s applied by %s%s%s (generation %lld)\n", vals, owner,
                       np > 1 ? ", all " : "", np > 1 ? "workers" : "",
                       (long long)json_integer_value(json_object_get(o, "generation")));
            }
        }
    }
    json_decref(r);
    return RTD_EXIT_OK;
}

int rtd_cmd_ctl(const char *cmd, int argc, char **argv)
{
    struct cli cl = {.cmd = cmd, .timeout_ms = 3000, .interval_s = 1.0, .ack_ms = 2000};
    cl.endpoint = getenv("RTDAQ_CTL") ? getenv("RTDAQ_CTL") : RTD_CTL_CTL_DEFAULT;
    cl.curve.server_pub_file = getenv("RTDAQ_CURVE_SERVER_KEY");
    cl.curve.client_secret = getenv("RTDAQ_CURVE_KEY");
    const char *mode = NULL;
    long long count = -1;
    int list = 0;
    static const struct option opts[] = {
        {"ctl", required_argument, 0, 'c'},
        {"json", no_argument, 0, 'j'},
        {"timeout-ms", required_argument, 0, 't'},
        {"once", no_argument, 0, '1'},
        {"interval", required_argument, 0, 'i'},
        {"iterations", required_argument, 0, 'n'},
        {"mode", required_argument, 0, 'm'},
        {"count", required_argument, 0, 'C'},
        {"list", no_argument, 0, 'l'},
        {"wait", no_argument, 0, 'w'},
        {"timeout", required_argument, 0, 'T'},
        {"no-wait", no_argument, 0, 'W'},
        {"curve-server-key", required_argument, 0, 'S'},
        {"curve-key", required_argument, 0, 'K'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    /* Job options (--dt ...) are not ours: stop at the first non-option for `jobs`. */
    int is_jobs = !strcmp(cmd, "jobs");
    int opt;
    char *end;
    optind = 1;
    opterr = !is_jobs;
    while ((opt = getopt_long(argc, argv, is_jobs ? "+h" : "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            cl.endpoint = optarg;
            break;
        case 'j':
            cl.json = 1;
            break;
        case 't':
            cl.timeout_ms = (int)strtol(optarg, &end, 10);
            if (*end || cl.timeout_ms < 1)
                goto usage;
            break;
        case '1':
            cl.once = 1;
            break;
        case 'i':
            cl.interval_s = strtod(optarg, &end);
            if (*end || !(cl.interval_s >= 0.05))
                goto usage;
            break;
        case 'n':
            cl.iterations = (int)strtol(optarg, &end, 10);
            if (*end)
                goto usage;
            break;
        case 'm':
            mode = optarg;
            break;
        case 'C':
            count = strtoll(optarg, &end, 10);
            if (*end || count < 0)
                goto usage;
            break;
        case 'l':
            list = 1;
            break;
        case 'w':
            cl.wait = 1;
            break;
        case 'T': {
            double t = strtod(optarg, &end);
            if (*end || !(t >= 0.001 && t <= 60)) {
                fprintf(stderr, "rtdaq %s: --timeout %s: want seconds in [0.001, 60]\n", cmd,
                        optarg);
                return RTD_EXIT_USAGE;
            }
            cl.ack_ms = (int)(t * 1000 + 0.5);
            break;
        }
        case 'W':
            cl.ack_ms = 0;
            break;
        case 'S':
            cl.curve.server_pub_file = optarg;
            break;
        case 'K':
            cl.curve.client_secret = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return RTD_EXIT_OK;
        default:
            goto usage;
        }
    }
    json_t *r;
    int rc;
    if (!strcmp(cmd, "status")) {
        if ((rc = request(&cl, json_pack("{s:s}", "cmd", "status"), &r)))
            return rc;
        if (!cl.json)
            print_status(r);
        json_decref(r);
        return RTD_EXIT_OK;
    }
    if (!strcmp(cmd, "top"))
        return do_top(&cl);
    if (!strcmp(cmd, "params"))
        return do_params(&cl);
    if (!strcmp(cmd, "set"))
        return do_set(&cl, argc, argv, optind, list);
    if (!strcmp(cmd, "jobs")) {
        /* Global options may also follow the job arguments. */
        int n = 0;
        char **rest = calloc((size_t)argc + 1, sizeof *rest);
        if (!rest)
            return RTD_EXIT_FAIL;
        for (int i = optind; i < argc; i++) {
            if (!strcmp(argv[i], "--json"))
                cl.json = 1;
            else if (!strcmp(argv[i], "--wait"))
                cl.wait = 1;
            else if (!strcmp(argv[i], "--ctl") && i + 1 < argc)
                cl.endpoint = argv[++i];
            else if (!strcmp(argv[i], "--timeout-ms") && i + 1 < argc)
                cl.timeout_ms = atoi(argv[++i]);
            else
                rest[n++] = argv[i];
        }
        rc = do_jobs(&cl, n, rest, 0);
        free(rest);
        return rc;
    }
    json_t *req;
    if (!strcmp(cmd, "start")) {
        req = json_pack("{s:s, s:s}", "cmd", "start", "mode",
                        mode ? mode : (count > 1 ? "multiple" : "continuous"));
        if (optind < argc && count < 0) { /* `rtdaq start 100` = multiple 100 */
            count = strtoll(argv[optind], &end, 10);
            if (*end || count < 1) {
                json_decref(req);
                goto usage;
            }
            if (!mode)
                json_object_set_new(req, "mode", json_string(count == 1 ? "single" : "multiple"));
        }
        if (count >= 0)
            json_object_set_new(req, "count", json_integer(count));
    } else if (!strcmp(cmd, "stop")) {
        req = json_pack("{s:s}", "cmd", "stop");
    } else if (!strcmp(cmd, "record")) {
        if (optind >= argc || (strcmp(argv[optind], "start") && strcmp(argv[optind], "stop")))
            goto usage;
        req = json_pack("{s:s, s:s}", "cmd", "record", "action", argv[optind]);
        if (optind + 1 < argc)
            json_object_set_new(req, "path", json_string(argv[optind + 1]));
    } else if (!strcmp(cmd, "shutdown")) {
        req = json_pack("{s:s}", "cmd", "shutdown");
    } else {
        goto usage;
    }
    if (strcmp(cmd, "shutdown"))
        add_wait(&cl, req);
    if ((rc = request(&cl, req, &r)))
        return rc;
    if (!cl.json) {
        json_t *a = json_object_get(r, "acquisition"), *rec = json_object_get(r, "recording");
        const char *how = cl.ack_ms ? "acknowledged by rtdaq-acq" : "passed on, not awaited";
        if (a)
            printf("ok: %s%s%s (seq %lld, %s; acq is %s, %lld frames)\n", jstr(a, "requested"),
                   strcmp(cmd, "start") ? "" : " ", strcmp(cmd, "start") ? "" : jstr(a, "mode"),
                   (long long)json_integer_value(json_object_get(a, "seq")), how, jstr(a, "state"),
                   (long long)json_integer_value(json_object_get(a, "frames_done")));
        else if (rec && !strcmp(jstr(rec, "requested"), "start"))
            printf("ok: recording %s (seq %lld, %s)\n",
                   jstr(rec, "path")[0] ? jstr(rec, "path") : "into acq's record directory",
                   (long long)json_integer_value(json_object_get(rec, "seq")), how);
        else if (rec)
            printf("ok: recording stopped: %lld records kept, %lld dropped, %lld bytes (%s)\n",
                   (long long)json_integer_value(json_object_get(rec, "records")),
                   (long long)json_integer_value(json_object_get(rec, "dropped")),
                   (long long)json_integer_value(json_object_get(rec, "bytes")), how);
        else
            printf("ok\n");
        if (rec && jstr(rec, "warning")[0])
            fprintf(stderr, "rtdaq %s: warning: %s\n", cmd, jstr(rec, "warning"));
    }
    json_decref(r);
    return RTD_EXIT_OK;
usage:
    fputs(usage, stderr);
    return RTD_EXIT_USAGE;
}
