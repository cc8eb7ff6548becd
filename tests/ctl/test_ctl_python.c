/* SPDX-License-Identifier: MIT */
/*
 * The Python subscriber example (examples/rtdaq_subscribe.py) receives and
 * decodes stats from a real rtdaq-ctl. Runs it with the first interpreter
 * that imports zmq (/usr/bin/python3, then python3 on PATH); skips (77) with
 * a message when none can.
 */
#include "ctl_test.h"

static int can_import(const char *py)
{
    const char *argv[] = {py, "-c", "import zmq", NULL};
    if (py[0] == '/' && access(py, X_OK))
        return 0;
    if (py[0] != '/') { /* search PATH via a shell-free lookup */
        const char *path = getenv("PATH");
        static char found[512];
        if (!path)
            return 0;
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", path);
        int ok = 0;
        for (char *save = NULL, *d = strtok_r(buf, ":", &save); d && !ok;
             d = strtok_r(NULL, ":", &save)) {
            snprintf(found, sizeof found, "%s/%s", d, py);
            ok = access(found, X_OK) == 0;
        }
        if (!ok)
            return 0;
        argv[0] = found;
    }
    return t_run(argv, 0) == 0;
}

int main(void)
{
    const char *py = NULL;
    if (can_import("/usr/bin/python3"))
        py = "/usr/bin/python3";
    else if (can_import("python3"))
        py = "python3";
    if (!py) {
        printf("SKIP: no python3 that can import zmq (Debian: apt-get install python3-zmq)\n");
        return 77;
    }
    char inst[32];
    snprintf(inst, sizeof inst, "tpy%d", (int)getpid());
    struct t_ctl t = {0};
    int port = t_port_base(), n = 0, ok_lines = 0;
    FILE *f = NULL;
    int rc = t_ctl_start(&t, inst, port, "--interval-ms", "200", (char *)NULL);
    REQUIRE(rc == 0, "rtdaq-ctl did not start: %d", rc);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "'%s' '%s/rtdaq_subscribe.py' --pub '%s' --topic stats.ctl --count 3 --timeout 5 "
             "--json",
             py, RTD_EXAMPLES_DIR, t.pub);
    f = popen(cmd, "r");
    REQUIRE(f, "popen");
    char line[65536];
    while (fgets(line, sizeof line, f)) {
        n++;
        json_t *j = json_loads(line, 0, NULL);
        if (j && !strcmp(json_string_value(json_object_get(j, "schema")), "rtdaq.stats") &&
            !strcmp(json_string_value(json_object_get(j, "_topic")), "stats.ctl") &&
            json_object_get(j, "rates"))
            ok_lines++;
        json_decref(j);
    }
    int st = pclose(f);
    f = NULL;
    CHECK(st == 0, "example exit status %d", st);
    CHECK(n == 3 && ok_lines == 3, "%d lines, %d decoded stats messages", n, ok_lines);
    /* The human-readable mode too. */
    snprintf(cmd, sizeof cmd,
             "'%s' '%s/rtdaq_subscribe.py' --pub '%s' --count 2 --timeout 5 >/dev/null", py,
             RTD_EXAMPLES_DIR, t.pub);
    CHECK(system(cmd) == 0, "human-readable mode failed");
    CHECK(t_ctl_stop(&t) == 0, "exit status");
out:
    if (f)
        pclose(f);
    t_ctl_stop(&t);
    printf("%s\n", t_failed ? "FAILED" : "ok");
    return t_failed ? 1 : 0;
}
