/* SPDX-License-Identifier: MIT */
/* The configuration merge: file < environment < flags, and clear errors naming the key. */
#include "rtd_config.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct option opts[] = {{"instance", required_argument, 0, 'I'},
                                     {"workers", required_argument, 0, 'w'},
                                     {"cpu", required_argument, 0, 'c'},
                                     {"mlock", no_argument, 0, 'm'},
                                     {0, 0, 0, 0}};

static char path[64];

static void write_cfg(const char *text)
{
    snprintf(path, sizeof path, "/tmp/rtdaq-test-config-%d.ini", (int)getpid());
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static int merge(int argc, const char **in, char ***out, char *err, size_t cap)
{
    char **argv = calloc((size_t)argc + 1, sizeof *argv);
    for (int i = 0; i < argc; i++)
        argv[i] = strdup(in[i]);
    int rc = rtd_config_argv("proc", opts, &argc, &argv, err, cap);
    *out = argv;
    return rc < 0 ? rc : argc;
}

/* The merge reads RTDAQ_* variables: start from none (CI sets RTDAQ_INSTANCE). */
static void clean_env(void)
{
    extern char **environ;
    for (int again = 1; again;) {
        again = 0;
        for (char **e = environ; *e; e++)
            if (!strncmp(*e, "RTDAQ_", 6)) {
                char name[128];
                size_t n = strcspn(*e, "=");
                snprintf(name, sizeof name, "%.*s", (int)n, *e);
                unsetenv(name);
                again = 1;
                break;
            }
    }
}

static void cleanup(void)
{
    unlink(path);
    unsetenv("RTDAQ_WORKERS");
    unsetenv("RTDAQ_PROC_CPU");
    unsetenv("RTDAQ_CONFIG");
}

Test(config, file_then_environment_then_flags_in_that_order, .init = clean_env, .fini = cleanup)
{
    write_cfg(
        "[rtdaq]\ninstance = lab\n[proc]\nworkers = 2\ncpu = 1\nmlock = yes\n[acq]\nbogus = 1\n");
    setenv("RTDAQ_WORKERS", "3", 1);
    const char *argv[] = {"rtdaq-proc", "--config", path, "--cpu", "5", NULL};
    char **out, err[256] = "";
    int n = merge(5, argv, &out, err, sizeof err);
    cr_assert_gt(n, 0, "%s", err);
    /* Expected: file keys, then the env override, then the command line. */
    const char *want[] = {"rtdaq-proc", "--instance", "lab",       "--workers", "2",     "--cpu",
                          "1",          "--mlock",    "--workers", "3",         "--cpu", "5"};
    cr_assert_eq(n, (int)(sizeof want / sizeof want[0]));
    for (int i = 0; i < n; i++)
        cr_assert_str_eq(out[i], want[i], "argv[%d]", i);
}

Test(config, unknown_key_is_an_error_naming_the_key, .init = clean_env, .fini = cleanup)
{
    write_cfg("[proc]\nworkrs = 2\n");
    const char *argv[] = {"rtdaq-proc", "--config", path, NULL};
    char **out, err[256] = "";
    cr_assert_lt(merge(3, argv, &out, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "workrs"), "%s", err);
    cr_assert_not_null(strstr(err, "[proc]"), "%s", err);
}

Test(config, bad_boolean_and_missing_file_are_errors, .init = clean_env, .fini = cleanup)
{
    write_cfg("[proc]\nmlock = maybe\n");
    const char *argv[] = {"rtdaq-proc", "--config", path, NULL};
    char **out, err[256] = "";
    cr_assert_lt(merge(3, argv, &out, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "mlock"), "%s", err);
    const char *argv2[] = {"rtdaq-proc", "--config", "/nonexistent/rtdaq.ini", NULL};
    cr_assert_lt(merge(3, argv2, &out, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "/nonexistent/rtdaq.ini"), "%s", err);
}

Test(config, section_specific_environment_wins_and_syntax_errors_are_reported, .init = clean_env,
     .fini = cleanup)
{
    setenv("RTDAQ_PROC_CPU", "7", 1);
    const char *argv[] = {"rtdaq-proc", NULL};
    char **out, err[256] = "";
    int n = merge(1, argv, &out, err, sizeof err);
    cr_assert_eq(n, 3, "%s", err);
    cr_assert_str_eq(out[1], "--cpu");
    cr_assert_str_eq(out[2], "7");
    write_cfg("[proc]\nthis line has no equals sign\n");
    const char *argv2[] = {"rtdaq-proc", "--config", path, NULL};
    cr_assert_lt(merge(3, argv2, &out, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "syntax"), "%s", err);
}
