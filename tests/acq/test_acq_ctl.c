/* SPDX-License-Identifier: MIT */
/*
 * rtdaq-acq driven by rtdaq-ctl through the control block: stop and start
 * (multiple, N frames exactly), record start/stop (a finalised recording),
 * and acq.frame_rate_limit. Real processes: rtdaq-ctl, rtdaq-acq with the
 * synthetic camera, and the rtdaq CLI. Skips (77) when rtdaq-ctl is not built.
 */
#include <dirent.h>
#include <sys/stat.h>

#include "acq_test.h"
#include "rtd_rec.h"

#define CTL_BIN RTD_BIN_DIR "/ctl/rtdaq-ctl"

static char ctl_ep[64];

static int cli(char *a1, char *a2, char *a3, char *a4, char *a5)
{
    char *argv[] = {CLI_BIN, a1, a2, a3, a4, a5, NULL, NULL, NULL};
    int n = 1;
    while (argv[n])
        n++;
    argv[n] = "--ctl";
    argv[n + 1] = ctl_ep;
    return t_run(argv, "/dev/null", 10000);
}

static uint64_t frames_after(const char *inst, int ms)
{
    t_sleep_ms(ms);
    return t_counter(inst, "frames.rx");
}

int main(void)
{
    if (access(CTL_BIN, X_OK)) {
        printf("skip: %s not built\n", CTL_BIN);
        return 77;
    }
    char inst[48], pub[64], dir[128];
    t_instance(inst, sizeof inst, "k");
    int port = t_port(12);
    snprintf(pub, sizeof pub, "tcp://127.0.0.1:%d", port);
    snprintf(ctl_ep, sizeof ctl_ep, "tcp://127.0.0.1:%d", port + 1);
    snprintf(dir, sizeof dir, "/tmp/acqt%d.ctl", (int)getpid());
    char *ctl_argv[] = {CTL_BIN, "--instance", inst,         "--pub", pub,
                        "--ctl", ctl_ep,       "--duration", "60",    NULL};
    pid_t ctl = t_spawn(ctl_argv, "/dev/null");
    t_sleep_ms(300);
    char *acq_argv[] = {ACQ_BIN,     "--instance",       inst,   "--packet-port", "0",  "--source",
                        "synthetic", "--synthetic-rate", "1000", "--width",       "64", "--height",
                        "64",        "--duration",       "60",   "--quiet",       NULL};
    pid_t acq = t_spawn(acq_argv, NULL);
    if (ctl < 0 || acq < 0 || t_wait_acq(inst, acq, 10000))
        return 1;
    t_sleep_ms(1200); /* acq attaches to the control block within a second */

    CHECK(cli("stop", NULL, NULL, NULL, NULL) == 0, "rtdaq stop failed");
    uint64_t a = frames_after(inst, 300), b = frames_after(inst, 300);
    CHECK(a == b && a > 0, "frames still flowing after stop: %llu -> %llu", (unsigned long long)a,
          (unsigned long long)b);

    CHECK(cli("start", "--mode", "multiple", "--count", "50") == 0, "rtdaq start failed");
    uint64_t c = t_counter_wait(inst, "frames.rx", b + 50, 5000);
    c = frames_after(inst, 300); /* and no more after the 50th */
    CHECK(c == b + 50, "multiple 50: %llu frames, want %llu", (unsigned long long)(c - b), 50ull);

    CHECK(cli("record", "start", dir, NULL, NULL) == 0, "record start failed");
    CHECK(cli("start", "--mode", "continuous", NULL, NULL) == 0, "start continuous failed");
    t_sleep_ms(500);
    CHECK(cli("record", "stop", NULL, NULL, NULL) == 0, "record stop failed");
    t_sleep_ms(300);
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[400] = "";
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".rtdrec") && !strstr(e->d_name, ".json"))
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (d)
        closedir(d);
    struct rtd_rec_reader *r;
    uint64_t n = 0;
    if (path[0] && rtd_rec_open(&r, path) == 0) {
        struct rtd_rec_record rec;
        while (rtd_rec_next(r, &rec) > 0)
            n++;
        CHECK(rtd_rec_complete(r), "recording stopped by ctl is not finalised");
        rtd_rec_close(r);
    }
    CHECK(n > 100, "recording %s holds %llu frames", path, (unsigned long long)n);

    CHECK(cli("set", "acq.frame_rate_limit=100", NULL, NULL, NULL) == 0, "set failed");
    t_sleep_ms(200);
    uint64_t f0 = t_counter(inst, "frames.rx"), f1 = frames_after(inst, 2000);
    /* 1000 Hz camera capped at 100/s; a loaded host may deliver fewer, never many more. */
    CHECK(f1 - f0 >= 40 && f1 - f0 <= 260, "rate limit 100/s: %llu frames in 2 s",
          (unsigned long long)(f1 - f0));

    kill(acq, SIGTERM);
    CHECK(t_wait(acq, 10000) == 0, "acq did not stop cleanly");
    kill(ctl, SIGTERM);
    t_wait(ctl, 10000);
    if (path[0]) {
        unlink(path);
        strcat(path, ".json");
        unlink(path);
    }
    rmdir(dir);
    printf("%s\n", t_failures ? "FAIL" : "ok");
    return t_failures ? 1 : 0;
}
