/* SPDX-License-Identifier: MIT */
/*
 * Control socket: good commands change the control block and the daemon's
 * state; malformed JSON, unknown commands, unknown parameters and
 * out-of-range values get an error reply and change nothing (the block is
 * compared byte for byte). An acknowledgement written the way acq writes it
 * shows up in `status`. Acknowledged control: a `set` of an acq parameter
 * with no acq answers "owner_not_running"; with an owner (a child process
 * that acknowledges the way acq does) it answers with the applied values, and
 * a refusal answers the owner's reason and withdraws the request's values.
 * The CLI's exit codes: 0 ok, 1 refused, 2 usage, 3 unreachable. `shutdown`
 * ends the daemon with status 0.
 */
#include "ctl_test.h"
#include "rtd_ctlblock.h"
#include "rtd_shm.h"

static int same(const struct rtd_ctl_snapshot *a, const struct rtd_ctl_snapshot *b)
{
    return !memcmp(a, b, sizeof *a);
}

/* Acknowledges parameter generations in acq's slot as acq does; refuses acq.roi.x > 500. */
static void fake_acq(const char *inst, double seconds)
{
    struct rtd_ctlblock *b = NULL;
    if (rtd_ctlblock_attach(&b, inst))
        _exit(1);
    rtd_ctlblock_owner_attach(b, RTD_CTL_SLOT_ACQ, RTD_OWNER_ACQ);
    uint64_t handled = UINT64_MAX;
    for (int i = 0; i < (int)(seconds * 1000); i++) {
        struct rtd_ctl_snapshot s;
        if (rtd_ctlblock_read(b, &s) == 0 && s.generation != handled) {
            handled = s.generation;
            if (rtd_ctl_param_u64(&s, RTD_P_ACQ_ROI_X) > 500)
                rtd_ctlblock_owner_ack(b, RTD_CTL_SLOT_ACQ, s.generation, -ERANGE, RTD_P_ACQ_ROI_X,
                                       "ROI beyond the 300x300 frame", NULL);
            else
                rtd_ctlblock_owner_ack(b, RTD_CTL_SLOT_ACQ, s.generation, 0, -1, NULL, &s);
        }
        usleep(1000);
    }
    _exit(0);
}

int main(void)
{
    char inst[32], ctl_ep[64], dead_ep[64], port_s[16];
    snprintf(inst, sizeof inst, "tctl%d", (int)getpid());
    struct t_ctl t = {0};
    struct rtd_ctlblock *blk = NULL;
    struct rtd_ctl_snapshot s0, s1;
    json_t *r = NULL;
    void *ctx = zmq_ctx_new(), *sub = NULL;
    int port = t_port_base();
    snprintf(port_s, sizeof port_s, "%d", port);
    int rc = t_ctl_start(&t, inst, port, "--interval-ms", "500", (char *)NULL);
    REQUIRE(rc == 0, "rtdaq-ctl did not start: %d", rc);
    rc = rtd_ctlblock_attach(&blk, inst);
    REQUIRE(rc == 0, "attach ctl.params: %d", rc);
    rtd_ctlblock_read(blk, &s0);

    /* Requests that must fail and change nothing. */
    static const char *bad[] = {
        "not json at all",
        "[1,2,3]",
        "{\"nocmd\":1}",
        "{\"cmd\":\"frobnicate\"}",
        "{\"cmd\":\"set\",\"params\":{\"bogus.param\":1}}",
        "{\"cmd\":\"set\",\"params\":{\"ctl.interval_ms\":5}}",
        "{\"cmd\":\"set\",\"params\":{\"acq.roi.x\":1.5}}",
        "{\"cmd\":\"set\",\"params\":{\"acq.roi.x\":\"ten\"}}",
        "{\"cmd\":\"set\",\"params\":{\"acq.roi.x\":5,\"bogus\":1}}",
        "{\"cmd\":\"set\",\"params\":{\"acq.roi.x\":65000,\"acq.roi.width\":1000}}",
        "{\"cmd\":\"set\",\"params\":{}}",
        "{\"cmd\":\"start\",\"mode\":\"sometimes\"}",
        "{\"cmd\":\"start\",\"mode\":\"multiple\",\"count\":0}",
        "{\"cmd\":\"start\",\"mode\":\"single\",\"count\":3}",
        "{\"cmd\":\"start\",\"mode\":\"continuous\",\"count\":3}",
        "{\"cmd\":\"record\"}",
        "{\"cmd\":\"record\",\"action\":\"pause\"}",
        "{\"cmd\":\"jobs\"}",
        "{\"cmd\":\"jobs\",\"action\":\"status\",\"id\":999}",
        "{\"cmd\":\"jobs\",\"action\":\"submit\",\"type\":\"astrology\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = t_req(&t, "%s", bad[i]);
        REQUIRE(r, "no reply to %s", bad[i]);
        CHECK(json_is_false(json_object_get(r, "ok")), "accepted: %s", bad[i]);
        CHECK(json_string_value(json_object_get(r, "error")) &&
                  json_string_value(json_object_get(r, "code")),
              "no error/code for %s", bad[i]);
        rtd_ctlblock_read(blk, &s1);
        CHECK(same(&s0, &s1), "state changed by %s", bad[i]);
        json_decref(r);
        r = NULL;
    }

    /* set: applied atomically, generation bumped. */
    /* No acq and no proc: a waiting set names the owner that is not running. */
    r = t_req(&t, "{\"cmd\":\"set\",\"params\":{\"acq.roi.x\":3},\"timeout_ms\":300}");
    REQUIRE(r, "no reply to a set without owner");
    CHECK(json_is_false(json_object_get(r, "ok")) &&
              !strcmp(json_string_value(json_object_get(r, "code")), "owner_not_running") &&
              strstr(json_string_value(json_object_get(r, "error")), "rtdaq-acq"),
          "set without acq: %s", json_string_value(json_object_get(r, "error")));
    json_decref(r);
    rtd_ctlblock_read(blk, &s0); /* the request stays asked: it applies when acq starts */
    r = t_req(&t, "{\"cmd\":\"set\",\"params\":{\"acq.roi.x\":10,\"acq.roi.y\":20,"
                  "\"acq.roi.width\":100,\"acq.roi.height\":50,\"proc.threshold\":12.5},"
                  "\"wait\":false}");
    REQUIRE(t_ok(r), "set ROI");
    rtd_ctlblock_read(blk, &s1);
    CHECK(s1.generation == s0.generation + 1, "generation %llu", (unsigned long long)s1.generation);
    CHECK(rtd_ctl_param_u64(&s1, RTD_P_ACQ_ROI_X) == 10 &&
              rtd_ctl_param_u64(&s1, RTD_P_ACQ_ROI_HEIGHT) == 50,
          "ROI in the block");
    CHECK(rtd_ctl_param_f64(&s1, RTD_P_PROC_THRESHOLD) == 12.5, "threshold");
    json_decref(r);

    /* start/stop/record reach the block with a new seq each. */
    r = t_req(&t, "{\"cmd\":\"start\",\"mode\":\"multiple\",\"count\":10,\"wait\":false}");
    REQUIRE(t_ok(r), "start");
    json_decref(r);
    rtd_ctlblock_read(blk, &s1);
    CHECK(s1.acq_cmd == RTD_ACQ_CMD_START && s1.acq_mode == RTD_ACQ_MULTIPLE &&
              s1.acq_count == 10 && s1.acq_cmd_seq == 1,
          "start in the block");
    r = t_req(&t, "{\"cmd\":\"status\"}");
    REQUIRE(t_ok(r), "status");
    CHECK(json_is_false(json_object_get(json_object_get(r, "acquisition"), "acknowledged")),
          "not acknowledged before acq acts");
    json_decref(r);
    /* What acq does when it handles the command. */
    rtd_ctlblock_ack_acq(blk, s1.acq_cmd_seq, RTD_ACQ_ACQUIRING, 3);
    r = t_req(&t, "{\"cmd\":\"status\"}");
    REQUIRE(t_ok(r), "status");
    json_t *acq = json_object_get(r, "acquisition");
    CHECK(json_is_true(json_object_get(acq, "acknowledged")), "acknowledged");
    CHECK(!strcmp(json_string_value(json_object_get(acq, "state")), "acquiring"), "state");
    CHECK(json_integer_value(json_object_get(acq, "frames_done")) == 3, "frames_done");
    CHECK(json_integer_value(json_object_get(json_object_get(r, "params"), "acq.roi.width")) == 100,
          "params in status");
    json_decref(r);
    r = t_req(&t, "{\"cmd\":\"stop\",\"wait\":false}");
    CHECK(t_ok(r), "stop");
    json_decref(r);
    r = t_req(&t, "{\"cmd\":\"record\",\"action\":\"start\",\"path\":\"/var/lib/rtdaq/x.rec\","
                  "\"wait\":false}");
    CHECK(t_ok(r), "record start");
    json_decref(r);
    r = NULL;
    rtd_ctlblock_read(blk, &s1);
    CHECK(s1.acq_cmd == RTD_ACQ_CMD_STOP && s1.acq_cmd_seq == 2, "stop in the block");
    CHECK(s1.rec_cmd == RTD_REC_CMD_START && !strcmp(s1.rec_path, "/var/lib/rtdaq/x.rec") &&
              s1.rec_cmd_seq == 1,
          "record in the block");

    /* With an owner: applied values come back; a refusal is reported and withdrawn. */
    {
        pid_t owner = fork();
        REQUIRE(owner >= 0, "fork");
        if (owner == 0)
            fake_acq(inst, 5.0);
        r = t_req(&t, "{\"cmd\":\"set\",\"params\":{\"acq.frame_rate_limit\":100}}");
        CHECK(t_ok(r), "set with an owner");
        json_t *ap =
            json_object_get(json_object_get(json_object_get(r, "applied"), "rtdaq-acq"), "values");
        CHECK(json_integer_value(json_object_get(ap, "acq.frame_rate_limit")) == 100,
              "applied value in the reply");
        json_decref(r);
        rtd_ctlblock_read(blk, &s0);
        r = t_req(&t, "{\"cmd\":\"set\",\"params\":{\"acq.roi.x\":900}}");
        CHECK(r && json_is_false(json_object_get(r, "ok")) &&
                  !strcmp(json_string_value(json_object_get(r, "code")), "refused") &&
                  strstr(json_string_value(json_object_get(r, "error")), "beyond the 300x300"),
              "refusal with the owner's reason");
        json_decref(r);
        rtd_ctlblock_read(blk, &s1);
        CHECK(s1.params[RTD_P_ACQ_ROI_X] == s0.params[RTD_P_ACQ_ROI_X] &&
                  s1.generation > s0.generation,
              "refused value withdrawn (roi.x word %llu)",
              (unsigned long long)s1.params[RTD_P_ACQ_ROI_X]);
        r = t_req(&t, "{\"cmd\":\"params\"}");
        json_t *pa = json_array_get(json_object_get(r, "params"), RTD_P_ACQ_FRAME_RATE_LIMIT);
        CHECK(json_integer_value(json_object_get(pa, "applied")) == 100 &&
                  json_is_true(json_object_get(pa, "owner_running")),
              "params: applied value and owner");
        json_decref(r);
        r = NULL;
        kill(owner, SIGKILL);
        waitpid(owner, NULL, 0);
    }

    /* A ctl-owned setting applies at once: stats come every 100 ms. */
    sub = t_sub(ctx, t.pub, "stats.ctl");
    usleep(200000);
    r = t_req(&t, "{\"cmd\":\"set\",\"name\":\"ctl.interval_ms\",\"value\":100}");
    CHECK(t_ok(r), "set interval");
    json_decref(r);
    r = NULL;
    json_t *m = t_recv_topic(sub, "stats.ctl", 1500, NULL);
    json_decref(m);
    m = t_recv_topic(sub, "stats.ctl", 1000, NULL);
    json_decref(m);
    m = t_recv_topic(sub, "stats.ctl", 1000, NULL);
    CHECK(m && json_number_value(json_object_get(m, "interval_s")) < 0.2, "interval after set: %g",
          m ? json_number_value(json_object_get(m, "interval_s")) : -1);
    json_decref(m);

    /* The CLI's exit codes. */
    snprintf(ctl_ep, sizeof ctl_ep, "%s", t.ctl);
    snprintf(dead_ep, sizeof dead_ep, "tcp://127.0.0.1:%d", port + 7);
    if (access(CLI_BIN, X_OK) == 0) {
        const char *st[] = {CLI_BIN, "status", "--ctl", ctl_ep, NULL};
        CHECK(t_run(st, 0) == 0, "rtdaq status");
        const char *stj[] = {CLI_BIN, "status", "--json", "--ctl", ctl_ep, NULL};
        CHECK(t_run(stj, 0) == 0, "rtdaq status --json");
        const char *top[] = {CLI_BIN, "top", "--once", "--ctl", ctl_ep, NULL};
        CHECK(t_run(top, 0) == 0, "rtdaq top --once");
        const char *set_nowner[] = {CLI_BIN, "set",   "acq.roi.y=7", "--timeout",
                                    "0.3",   "--ctl", ctl_ep,        NULL};
        CHECK(t_run(set_nowner, 0) == 1, "rtdaq set without its owner -> 1");
        const char *set_ok[] = {CLI_BIN, "set", "acq.roi.y=7", "--no-wait", "--ctl", ctl_ep, NULL};
        CHECK(t_run(set_ok, 0) == 0, "rtdaq set acq.roi.y=7 --no-wait");
        rtd_ctlblock_read(blk, &s1);
        CHECK(rtd_ctl_param_u64(&s1, RTD_P_ACQ_ROI_Y) == 7, "CLI set reached the block");
        const char *set_bad[] = {CLI_BIN, "set", "bogus=1", "--ctl", ctl_ep, NULL};
        CHECK(t_run(set_bad, 0) == 1, "rtdaq set bogus=1 -> 1");
        const char *set_range[] = {CLI_BIN, "set", "ctl.interval_ms=1", "--ctl", ctl_ep, NULL};
        CHECK(t_run(set_range, 0) == 1, "out of range -> 1");
        const char *set_usage[] = {CLI_BIN, "set", "--ctl", ctl_ep, NULL};
        CHECK(t_run(set_usage, 0) == 2, "rtdaq set (nothing) -> 2");
        const char *list[] = {CLI_BIN, "set", "--list", "--ctl", ctl_ep, NULL};
        CHECK(t_run(list, 0) == 0, "rtdaq set --list");
        const char *start_bad[] = {CLI_BIN, "start", "--mode", "sometimes", "--ctl", ctl_ep, NULL};
        CHECK(t_run(start_bad, 0) == 1, "rtdaq start --mode sometimes -> 1");
        const char *start_ok[] = {CLI_BIN, "start", "5", "--no-wait", "--ctl", ctl_ep, NULL};
        CHECK(t_run(start_ok, 0) == 0, "rtdaq start 5 --no-wait");
        const char *stop_nowner[] = {CLI_BIN, "stop", "--timeout", "0.3", "--ctl", ctl_ep, NULL};
        CHECK(t_run(stop_nowner, 0) == 1, "rtdaq stop without acq -> 1");
        rtd_ctlblock_read(blk, &s1);
        CHECK(s1.acq_mode == RTD_ACQ_MULTIPLE && s1.acq_count == 5, "CLI start 5");
        const char *jobs[] = {CLI_BIN, "jobs", "list", "--ctl", ctl_ep, NULL};
        CHECK(t_run(jobs, 0) == 0, "rtdaq jobs list");
        const char *dead[] = {CLI_BIN, "status", "--ctl", dead_ep, "--timeout-ms", "300", NULL};
        CHECK(t_run(dead, 0) == 3, "unreachable -> 3");
        const char *rec_usage[] = {CLI_BIN, "record", "--ctl", ctl_ep, NULL};
        CHECK(t_run(rec_usage, 0) == 2, "rtdaq record (nothing) -> 2");
    } else {
        printf("note: %s not built; CLI checks skipped\n", CLI_BIN);
    }

    /* shutdown: the daemon exits 0 and removes its control block. */
    r = t_req(&t, "{\"cmd\":\"shutdown\"}");
    CHECK(t_ok(r), "shutdown");
    int st = -1;
    for (int i = 0; i < 300 && t.pid; i++) {
        int ws;
        if (waitpid(t.pid, &ws, WNOHANG) == t.pid) {
            st = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
            t.pid = 0;
        }
        usleep(10000);
    }
    CHECK(st == 0, "exit status after shutdown: %d", st);
out:
    json_decref(r);
    t_ctl_stop(&t);
    if (blk)
        rtd_ctlblock_close(blk);
    if (sub)
        zmq_close(sub);
    zmq_ctx_term(ctx);
    printf("%s\n", t_failed ? "FAILED" : "ok");
    return t_failed ? 1 : 0;
}
