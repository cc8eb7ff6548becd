/* SPDX-License-Identifier: MIT */
/*
 * A "fits" job on a recording: the test writes a recording of synthetic
 * camera frames (known ions) with acq's recording writer, submits the job,
 * waits for it, and checks frames, ions and the CSV output. Skips (77) when
 * this build has no fits job type.
 */
#include "ctl_test.h"
#include "rtd_rec.h"
#include "rtd_synth.h"

int main(void)
{
    char inst[32], dir[256], rec[300], csv[300];
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/rtdaq-fitsjob-XXXXXX", tmp);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(rec, sizeof rec, "%s/run.rec", dir);
    snprintf(csv, sizeof csv, "%s/ions.csv", dir);
    snprintf(inst, sizeof inst, "tfj%d", (int)getpid());
    struct t_ctl t = {0};
    struct rtd_synth syn = {0};
    struct rtd_rec_writer *w = NULL;
    json_t *r = NULL, *j = NULL;
    int skip = 0, nframes = 40, nions = 5;
    REQUIRE(rtd_synth_init(&syn, 128, 96, (uint32_t)nions, 8, 42) == 0, "synth");
    REQUIRE(rtd_rec_writer_open(&w, rec, inst, "{}", 0) == 0, "recording writer");
    for (int i = 0; i < nframes; i++) {
        struct rtd_rec_frame fr = {
            .frame_id = (uint64_t)i, .width = 128, .height = 96, .pixfmt = 2};
        uint64_t now = rtd_now_ns();
        REQUIRE(rtd_rec_write(w, RTD_REC_FRAME, 0, now, rtd_realtime_ns(), &fr, sizeof fr,
                              rtd_synth_frame(&syn, (uint64_t)i), 128 * 96 * 2) == 0,
                "write frame %d", i);
    }
    REQUIRE(rtd_rec_writer_close(w) == 0, "close recording");
    w = NULL;

    int rc = t_ctl_start(&t, inst, t_port_base(), (char *)NULL);
    REQUIRE(rc == 0, "rtdaq-ctl did not start: %d", rc);
    r = t_req(&t,
              "{\"cmd\":\"jobs\",\"action\":\"submit\",\"type\":\"fits\",\"recording\":\"%s\","
              "\"output\":\"%s\"}",
              rec, csv);
    REQUIRE(r, "no reply");
    if (!t_ok(r) && !strcmp(json_string_value(json_object_get(r, "code")), "not_available")) {
        printf("SKIP: %s\n", json_string_value(json_object_get(r, "error")));
        skip = 1;
        goto out;
    }
    REQUIRE(t_ok(r), "submit: %s", json_string_value(json_object_get(r, "error")));
    json_int_t id = json_integer_value(json_object_get(json_object_get(r, "job"), "id"));
    const char *st = "?";
    for (int i = 0; i < 600; i++) {
        json_decref(r);
        r = t_req(&t, "{\"cmd\":\"jobs\",\"action\":\"status\",\"id\":%lld}", (long long)id);
        j = json_object_get(r, "job");
        st = json_string_value(json_object_get(j, "state"));
        if (st && strcmp(st, "queued") && strcmp(st, "running"))
            break;
        usleep(50000);
    }
    REQUIRE(st && !strcmp(st, "done"), "job state %s: %s", st,
            json_string_value(json_object_get(j, "message")));
    json_t *res = json_object_get(j, "result");
    int64_t frames = json_integer_value(json_object_get(res, "frames"));
    int64_t ions = json_integer_value(json_object_get(res, "ions"));
    printf("fits job: %lld frames, %lld ions, mean sigma %.3f\n", (long long)frames,
           (long long)ions, json_number_value(json_object_get(res, "mean_sigma")));
    CHECK(frames == nframes, "frames %lld", (long long)frames);
    CHECK(ions >= (int64_t)(0.8 * nframes * nions) && ions <= (int64_t)(1.2 * nframes * nions),
          "ions %lld for %d x %d", (long long)ions, nframes, nions);
    FILE *f = fopen(csv, "r");
    CHECK(f, "CSV output");
    if (f) {
        int lines = 0, c;
        while ((c = fgetc(f)) != EOF)
            lines += c == '\n';
        fclose(f);
        CHECK(lines == ions + 1, "CSV lines %d for %lld ions", lines, (long long)ions);
    }
    CHECK(t_ctl_stop(&t) == 0, "exit status");
out:
    json_decref(r);
    t_ctl_stop(&t);
    if (w)
        rtd_rec_writer_close(w);
    rtd_synth_free(&syn);
    unlink(csv);
    unlink(rec);
    char side[320];
    snprintf(side, sizeof side, "%s.json", rec);
    unlink(side);
    rmdir(dir);
    if (skip)
        return 77;
    printf("%s\n", t_failed ? "FAILED" : "ok");
    return t_failed ? 1 : 0;
}
