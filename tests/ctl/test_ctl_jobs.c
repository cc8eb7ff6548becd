/* SPDX-License-Identifier: MIT */
/*
 * Analysis jobs: a wavelet-coherence job with Monte Carlo significance runs,
 * reports rising progress, and can be cancelled; a short one finishes with a
 * result; jobs outlive the connection that submitted them (every request here
 * is a fresh connection); the queue is bounded; a bad submission creates no
 * job; progress events appear on topic "jobs". Skips (77) when this build has
 * no proc/wavelet.
 */
#include "ctl_test.h"

static json_t *req_json(const struct t_ctl *t, json_t *req)
{
    char *body = json_dumps(req, JSON_COMPACT), *rep = NULL;
    json_decref(req);
    int rc = rtd_ctl_request(t->ctl, body, 5000, NULL, &rep);
    free(body);
    if (rc)
        return NULL;
    json_t *j = json_loads(rep, 0, NULL);
    free(rep);
    return j;
}

static json_t *wct_request(int n, int mc)
{
    json_t *x = json_array(), *y = json_array();
    uint64_t s = 12345;
    for (int i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double noise = (double)(s >> 11) / 9007199254740992.0 - 0.5;
        json_array_append_new(x, json_real(sin(2 * M_PI * i / 32.0) + 0.3 * noise));
        json_array_append_new(y, json_real(sin(2 * M_PI * i / 32.0 + 0.5) - 0.3 * noise));
    }
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:f, s:i, s:i}", "cmd", "jobs", "action", "submit",
                     "type", "wct", "x", x, "y", y, "dt", 1.0, "mc_count", mc, "seed", 7);
}

static json_t *job_status(const struct t_ctl *t, json_int_t id)
{
    json_t *r =
        req_json(t, json_pack("{s:s, s:s, s:I}", "cmd", "jobs", "action", "status", "id", id));
    json_t *j = json_incref(json_object_get(r, "job"));
    json_decref(r);
    return j;
}

static const char *jstate(json_t *j)
{
    const char *s = json_string_value(json_object_get(j, "state"));
    return s ? s : "?";
}

int main(void)
{
    char inst[32];
    snprintf(inst, sizeof inst, "tjob%d", (int)getpid());
    struct t_ctl t = {0};
    json_t *r = NULL, *j = NULL;
    void *ctx = zmq_ctx_new(), *sub = NULL;
    int port = t_port_base(), skip = 0;
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    sub = t_sub(ctx, ep, "jobs");
    int rc = t_ctl_start(&t, inst, port, "--jobs-parallel", "1", "--jobs-queue", "2", (char *)NULL);
    REQUIRE(rc == 0, "rtdaq-ctl did not start: %d", rc);

    r = req_json(&t, wct_request(256, 10));
    REQUIRE(r, "no reply to submit");
    if (!t_ok(r) && !strcmp(json_string_value(json_object_get(r, "code")), "not_available")) {
        printf("SKIP: %s\n", json_string_value(json_object_get(r, "error")));
        skip = 1;
        goto out;
    }
    REQUIRE(t_ok(r), "submit short job: %s", json_string_value(json_object_get(r, "error")));
    json_int_t short_id = json_integer_value(json_object_get(json_object_get(r, "job"), "id"));
    json_decref(r);
    r = NULL;

    /* The short job finishes with a result. */
    for (int i = 0; i < 200 * T_SLOW; i++) {
        json_decref(j);
        j = job_status(&t, short_id);
        if (j && strcmp(jstate(j), "queued") && strcmp(jstate(j), "running"))
            break;
        usleep(50000);
    }
    REQUIRE(j && !strcmp(jstate(j), "done"), "short job state %s (%s)", jstate(j),
            json_string_value(json_object_get(j, "message")));
    json_t *res = json_object_get(j, "result");
    size_t ns = (size_t)json_integer_value(json_object_get(res, "nscales"));
    CHECK(ns > 5 && json_array_size(json_object_get(res, "period")) == ns &&
              json_array_size(json_object_get(res, "mean_wct")) == ns,
          "result arrays (nscales %zu)", ns);
    CHECK(json_number_value(json_object_get(j, "progress")) == 1.0, "progress 1 when done");

    /* A long job: progress rises, then cancel. */
    r = req_json(&t, wct_request(256, 100000));
    REQUIRE(t_ok(r), "submit long job");
    json_int_t long_id = json_integer_value(json_object_get(json_object_get(r, "job"), "id"));
    json_decref(r);
    r = NULL;
    double p1 = -1, p2 = -1;
    for (int i = 0; i < 200 * T_SLOW && p1 <= 0; i++) {
        json_decref(j);
        j = job_status(&t, long_id);
        if (!strcmp(jstate(j), "running"))
            p1 = json_number_value(json_object_get(j, "progress"));
        usleep(20000);
    }
    for (int i = 0; i < 200 * T_SLOW; i++) {
        usleep(50000);
        json_decref(j);
        j = job_status(&t, long_id);
        p2 = json_number_value(json_object_get(j, "progress"));
        if (p2 > p1)
            break;
    }
    printf("progress %.6f -> %.6f\n", p1, p2);
    CHECK(p1 > 0 && p2 > p1 && p2 < 1, "progress rises (%g -> %g)", p1, p2);

    /* Bounded queue: one running, two queued, the next is refused. */
    json_int_t q[2];
    for (int i = 0; i < 2; i++) {
        r = req_json(&t, wct_request(64, 100000));
        CHECK(t_ok(r), "queued job %d", i);
        q[i] = json_integer_value(json_object_get(json_object_get(r, "job"), "id"));
        json_decref(r);
    }
    r = req_json(&t, wct_request(64, 10));
    CHECK(r && !t_ok(r) && !strcmp(json_string_value(json_object_get(r, "code")), "queue_full"),
          "third queued job refused");
    json_decref(r);
    /* A bad submission creates no job. */
    r = req_json(&t, json_pack("{s:s, s:s, s:s, s:[f,f], s:[f]}", "cmd", "jobs", "action", "submit",
                               "type", "wct", "x", 1.0, 2.0, "y", 1.0));
    CHECK(r && !t_ok(r), "mismatched series refused");
    json_decref(r);
    r = req_json(&t, json_pack("{s:s, s:s}", "cmd", "jobs", "action", "list"));
    CHECK(json_array_size(json_object_get(r, "jobs")) == 4, "4 jobs listed, got %zu",
          json_array_size(json_object_get(r, "jobs")));
    json_decref(r);
    r = NULL;

    /* Cancel: queued ones at once, the running one at its next chunk. */
    for (int i = 0; i < 2; i++) {
        r = req_json(&t,
                     json_pack("{s:s, s:s, s:I}", "cmd", "jobs", "action", "cancel", "id", q[i]));
        CHECK(t_ok(r), "cancel queued");
        json_decref(r);
    }
    r = req_json(&t,
                 json_pack("{s:s, s:s, s:I}", "cmd", "jobs", "action", "cancel", "id", long_id));
    CHECK(t_ok(r), "cancel running");
    json_decref(r);
    r = NULL;
    uint64_t t0 = rtd_now_ns();
    for (int i = 0; i < 200 * T_SLOW; i++) {
        json_decref(j);
        j = job_status(&t, long_id);
        if (!strcmp(jstate(j), "cancelled"))
            break;
        usleep(20000);
    }
    printf("cancelled after %.3f s\n", (double)(rtd_now_ns() - t0) / 1e9);
    CHECK(!strcmp(jstate(j), "cancelled"), "long job state %s", jstate(j));
    json_decref(j);
    j = job_status(&t, q[0]);
    CHECK(!strcmp(jstate(j), "cancelled"), "queued job state %s", jstate(j));
    r = req_json(&t,
                 json_pack("{s:s, s:s, s:I}", "cmd", "jobs", "action", "cancel", "id", short_id));
    CHECK(r && !t_ok(r), "a finished job cannot be cancelled");
    json_decref(r);
    r = NULL;

    /* Events on topic "jobs". */
    json_t *ev = t_recv_topic(sub, "jobs", 1000, NULL);
    CHECK(ev && json_object_get(ev, "job"), "a job event was published");
    json_decref(ev);
    CHECK(t_ctl_stop(&t) == 0, "exit status");
out:
    json_decref(r);
    json_decref(j);
    t_ctl_stop(&t);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    if (skip)
        return 77;
    printf("%s\n", t_failed ? "FAILED" : "ok");
    return t_failed ? 1 : 0;
}
