/* SPDX-License-Identifier: MIT */
/*
 * CURVE: keys made with `rtdaq-ctl --gen-keys`; a client whose public key is
 * on the allow-list is answered and can subscribe; an unknown key and a plain
 * (non-CURVE) client get nothing; binding a non-loopback address without keys
 * is refused at start-up, and allowed with them.
 */
#include <ftw.h>

#include "ctl_test.h"

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(p);
}

static int gen(const char *prefix)
{
    const char *argv[] = {CTL_BIN, "--gen-keys", prefix, NULL};
    return t_run(argv, 0);
}

int main(void)
{
    char dir[256], inst[32], srv[300], cl1[300], cl2[300], allowed[300], port_s[64], any_ep[64],
        pub_ep[64];
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/rtdaq-curve-XXXXXX", tmp);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(inst, sizeof inst, "tcurve%d", (int)getpid());
    snprintf(allowed, sizeof allowed, "%s/allowed", dir);
    mkdir(allowed, 0700);
    snprintf(srv, sizeof srv, "%s/server", dir);
    snprintf(cl1, sizeof cl1, "%s/allowed/client1", dir);
    snprintf(cl2, sizeof cl2, "%s/stranger", dir);
    struct t_ctl t = {0};
    void *ctx = zmq_ctx_new(), *sub_ok = NULL, *sub_bad = NULL;
    json_t *r = NULL, *m = NULL;
    char srv_pub[320], srv_sec[320], cl1_sec[400], cl2_sec[400];
    snprintf(srv_pub, sizeof srv_pub, "%s.pub", srv);
    snprintf(srv_sec, sizeof srv_sec, "%s.secret", srv);
    snprintf(cl1_sec, sizeof cl1_sec, "%s.secret", cl1);
    snprintf(cl2_sec, sizeof cl2_sec, "%s.secret", cl2);
    REQUIRE(gen(srv) == 0 && gen(cl1) == 0 && gen(cl2) == 0, "--gen-keys failed");
    /* The allow-list directory holds only *.pub files that count; drop client1's secret. */
    char moved[340];
    snprintf(moved, sizeof moved, "%s/client1.secret", dir);
    REQUIRE(rename(cl1_sec, moved) == 0, "move secret");
    snprintf(cl1_sec, sizeof cl1_sec, "%s", moved);
    struct stat sb;
    REQUIRE(stat(srv_sec, &sb) == 0 && (sb.st_mode & 077) == 0, "secret key file mode %o",
            sb.st_mode & 0777);

    struct rtd_curve_client good = {srv_pub, cl1_sec}, bad = {srv_pub, cl2_sec};
    int port = t_port_base();
    t_curve = &good;
    int rc = t_ctl_start(&t, inst, port, "--curve-server-key", srv_sec, "--curve-allowed", allowed,
                         "--interval-ms", "200", (char *)NULL);
    REQUIRE(rc == 0, "rtdaq-ctl with CURVE did not answer an allowed client: %d", rc);
    r = t_req(&t, "{\"cmd\":\"status\"}");
    REQUIRE(t_ok(r), "status over CURVE");
    CHECK(json_is_true(json_object_get(json_object_get(r, "ctl"), "curve")), "curve on");
    json_decref(r);
    r = NULL;

    char *rep = NULL;
    rc = rtd_ctl_request(t.ctl, "{\"cmd\":\"status\"}", 800, &bad, &rep);
    CHECK(rc == -ETIMEDOUT && !rep, "unknown key answered (rc %d)", rc);
    free(rep);
    rep = NULL;
    rc = rtd_ctl_request(t.ctl, "{\"cmd\":\"status\"}", 800, NULL, &rep);
    CHECK(rc == -ETIMEDOUT && !rep, "plain client answered (rc %d)", rc);
    free(rep);
    rep = NULL;

    /* Subscribers: the allowed one receives stats (and sees the refusals counted). */
    sub_ok = zmq_socket(ctx, ZMQ_SUB);
    sub_bad = zmq_socket(ctx, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(sub_ok, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sub_bad, ZMQ_LINGER, &zero, sizeof zero);
    CHECK(rtd_curve_client_setup(sub_ok, &good) == 0, "client setup");
    CHECK(rtd_curve_client_setup(sub_bad, &bad) == 0, "client setup");
    zmq_setsockopt(sub_ok, ZMQ_SUBSCRIBE, "stats.ctl", 9);
    zmq_setsockopt(sub_bad, ZMQ_SUBSCRIBE, "", 0);
    zmq_connect(sub_ok, t.pub);
    zmq_connect(sub_bad, t.pub);
    m = t_recv_topic(sub_ok, "stats.ctl", 1500, NULL);
    REQUIRE(m, "allowed subscriber got no stats");
    json_decref(m);
    m = t_recv_topic(sub_ok, "stats.ctl", 1500, NULL);
    REQUIRE(m, "allowed subscriber got no second stats message");
    uint64_t denied = (uint64_t)json_integer_value(
        json_object_get(json_object_get(m, "counters"), "curve.denied"));
    CHECK(denied >= 2, "curve.denied = %llu", (unsigned long long)denied);
    json_decref(m);
    m = t_recv_topic(sub_bad, "stats.ctl", 800, NULL);
    CHECK(!m, "unknown subscriber received stats");
    json_decref(m);
    m = NULL;
    CHECK(t_ctl_stop(&t) == 0, "exit status");

    /* A non-loopback bind without keys: refused before anything starts. */
    snprintf(any_ep, sizeof any_ep, "tcp://0.0.0.0:%d", port + 3);
    snprintf(pub_ep, sizeof pub_ep, "tcp://127.0.0.1:%d", port + 4);
    char inst2[40];
    snprintf(inst2, sizeof inst2, "%sb", inst);
    const char *refuse[] = {CTL_BIN, "--instance", inst2,        "--ctl", any_ep,
                            "--pub", pub_ep,       "--duration", "1",     NULL};
    CHECK(t_run(refuse, 0) == 1, "non-loopback bind without CURVE was not refused");
    /* ... and with keys it runs. */
    snprintf(port_s, sizeof port_s, "tcp://0.0.0.0:%d", port + 5);
    t_curve = &good;
    rc = t_ctl_start(&t, inst2, port + 4, "--ctl", port_s, "--curve-server-key", srv_sec,
                     "--curve-allowed", allowed, (char *)NULL);
    /* t_ctl_start pinged port+5 on 127.0.0.1, which the 0.0.0.0 bind covers. */
    CHECK(rc == 0, "non-loopback bind with CURVE: %d", rc);
    CHECK(t_ctl_stop(&t) == 0, "exit status");
out:
    json_decref(r);
    json_decref(m);
    t_ctl_stop(&t);
    if (sub_ok)
        zmq_close(sub_ok);
    if (sub_bad)
        zmq_close(sub_bad);
    zmq_ctx_term(ctx);
    nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    printf("%s\n", t_failed ? "FAILED" : "ok");
    return t_failed ? 1 : 0;
}
