/* SPDX-License-Identifier: MIT */
/*
 * End to end with the real acq: rtdaq-ctl and rtdaq-acq (synthetic camera)
 * on one instance. `stop` stops acquisition, `start multiple 50` acquires
 * exactly 50 frames and acq reports idle again, and `record start|stop`
 * makes acq write a recording — all acknowledged through the control block
 * and visible in `status`. Skips (77) when rtdaq-acq is not built.
 */
#include <dirent.h>

#include "ctl_test.h"

#define ACQ_BIN RTD_BIN_DIR "/acq/rtdaq-acq"

static json_t *acq_state(struct t_ctl *t)
{
    json_t *r = t_req(t, "{\"cmd\":\"status\"}");
    json_t *a = json_incref(json_object_get(r, "acquisition"));
    json_decref(r);
    return a;
}

/* Wait until acq has acknowledged the latest command and `pred` holds. */
static json_t *wait_acq(struct t_ctl *t, const char *state, int64_t frames, int secs)
{
    json_t *a = NULL;
    uint64_t end = rtd_now_ns() + (uint64_t)secs * T_SLOW * 1000000000ull;
    while (rtd_now_ns() < end) {
        json_decref(a);
        a = acq_state(t);
        if (json_is_true(json_object_get(a, "acknowledged")) &&
            !strcmp(json_string_value(json_object_get(a, "state")), state) &&
            (frames < 0 || json_integer_value(json_object_get(a, "frames_done")) == frames))
            return a;
        usleep(50000);
    }
    return a;
}

int main(void)
{
    if (access(ACQ_BIN, X_OK)) {
        printf("SKIP: %s not built\n", ACQ_BIN);
        return 77;
    }
    char inst[32], dir[256], pp[16], fp[16];
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/rtdaq-ctlacq-XXXXXX", tmp);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(inst, sizeof inst, "tacq%d", (int)getpid());
    struct t_ctl t = {0};
    json_t *r = NULL, *a = NULL;
    pid_t acq = 0;
    int port = t_port_base();
    snprintf(pp, sizeof pp, "%d", port + 5);
    snprintf(fp, sizeof fp, "%d", port + 6);
    int rc = t_ctl_start(&t, inst, port, "--interval-ms", "200", (char *)NULL);
    REQUIRE(rc == 0, "rtdaq-ctl did not start: %d", rc);
    acq = fork();
    if (acq == 0) {
        execl(ACQ_BIN, ACQ_BIN, "--instance", inst, "--source", "synthetic", "--synthetic-rate",
              "500", "--width", "64", "--height", "64", "--ions", "2", "--packet-port", pp,
              "--frame-port", fp, "--quiet", (char *)NULL);
        _exit(127);
    }
    /* acq looks for the control block once a second. */
    uint64_t end = rtd_now_ns() + 10ull * T_SLOW * 1000000000ull;
    int attached = 0;
    while (!attached && rtd_now_ns() < end) {
        json_decref(a);
        a = acq_state(&t);
        attached = json_is_true(json_object_get(a, "acq_alive"));
        usleep(100000);
    }
    REQUIRE(attached, "acq never attached to the control block");

    r = t_req(&t, "{\"cmd\":\"stop\"}");
    REQUIRE(t_ok(r), "stop");
    json_decref(r);
    r = NULL;
    json_decref(a);
    a = wait_acq(&t, "idle", -1, 5);
    CHECK(json_is_true(json_object_get(a, "acknowledged")) &&
              !strcmp(json_string_value(json_object_get(a, "state")), "idle"),
          "acq idle after stop");

    r = t_req(&t, "{\"cmd\":\"start\",\"mode\":\"multiple\",\"count\":50}");
    REQUIRE(t_ok(r), "start multiple 50");
    json_decref(r);
    r = NULL;
    json_decref(a);
    a = wait_acq(&t, "idle", 50, 10);
    printf("after start multiple 50: state %s, frames_done %lld, acknowledged %d\n",
           json_string_value(json_object_get(a, "state")),
           (long long)json_integer_value(json_object_get(a, "frames_done")),
           json_is_true(json_object_get(a, "acknowledged")));
    CHECK(json_integer_value(json_object_get(a, "frames_done")) == 50 &&
              !strcmp(json_string_value(json_object_get(a, "state")), "idle"),
          "50 frames, then idle");

    /* Recording: start (acq writes into dir), then stop. */
    char path[300];
    snprintf(path, sizeof path, "%s/run.rtdrec", dir);
    r = t_req(&t, "{\"cmd\":\"record\",\"action\":\"start\",\"path\":\"%s\"}", path);
    REQUIRE(t_ok(r), "record start");
    json_decref(r);
    r = NULL;
    int active = 0;
    for (int i = 0; i < 100 * T_SLOW && !active; i++) {
        usleep(50000);
        json_decref(r);
        r = t_req(&t, "{\"cmd\":\"status\"}");
        json_t *rec = json_object_get(r, "recording");
        active = json_is_true(json_object_get(rec, "acknowledged")) &&
                 json_is_true(json_object_get(rec, "active")) &&
                 json_integer_value(json_object_get(rec, "result")) == 0;
    }
    CHECK(active, "acq acknowledged an active recording");
    json_decref(r);
    r = t_req(&t, "{\"cmd\":\"record\",\"action\":\"stop\"}");
    CHECK(t_ok(r), "record stop");
    int stopped = 0;
    for (int i = 0; i < 100 * T_SLOW && !stopped; i++) {
        usleep(50000);
        json_decref(r);
        r = t_req(&t, "{\"cmd\":\"status\"}");
        json_t *rec = json_object_get(r, "recording");
        stopped = json_is_true(json_object_get(rec, "acknowledged")) &&
                  !json_is_true(json_object_get(rec, "active"));
    }
    CHECK(stopped, "acq acknowledged the end of the recording");
    CHECK(access(path, R_OK) == 0, "recording %s exists", path);
    CHECK(t_ctl_stop(&t) == 0, "ctl exit status");
out:
    json_decref(r);
    json_decref(a);
    t_ctl_stop(&t);
    if (acq > 0) {
        kill(acq, SIGTERM);
        waitpid(acq, NULL, 0);
    }
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            char p[600];
            if (e->d_name[0] == '.')
                continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
        rmdir(dir);
    }
    printf("%s\n", t_failed ? "FAILED" : "ok");
    return t_failed ? 1 : 0;
}
