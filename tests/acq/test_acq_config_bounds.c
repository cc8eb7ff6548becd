/* SPDX-License-Identifier: MIT */
/*
 * The configuration file is bounded (RTD_CONFIG_MAX_BYTES, 1 MiB): rtdaq-acq
 * --check-config refuses a longer file, and a device that never ends
 * (/dev/zero), with a clear error and exit 2, promptly, instead of reading it
 * all; a file just under the bound is still accepted. Real rtdaq-acq processes.
 */
#include "acq_test.h"

#include "rtd_config.h"

/* rtdaq-acq --config PATH --check-config; exit status (-1: hung), stderr into err. */
static int check_config(const char *path, char *err, size_t errcap)
{
    char errpath[64];
    snprintf(errpath, sizeof errpath, "/tmp/acqcfg%d.err", (int)getpid());
    char *argv[] = {ACQ_BIN, "--config", (char *)(uintptr_t)path, "--check-config", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc)
        return -2;
    rc = t_wait(pid, 10000);
    if (t_read_text(errpath, err, errcap) < 0)
        err[0] = 0;
    unlink(errpath);
    return rc;
}

/* A file of n bytes: one [acq] key, then comment lines. */
static void write_file(const char *path, size_t n)
{
    FILE *f = fopen(path, "w");
    if (!f)
        exit(1);
    size_t w = (size_t)fprintf(f, "[acq]\nwidth = 64\n");
    for (; w + 64 <= n; w += 64)
        fprintf(f, ";%062u\n", 0u);
    for (; w + 1 < n; w++)
        fputc(';', f);
    if (w < n)
        fputc('\n', f);
    fclose(f);
}

int main(void)
{
    char path[64], err[2048];
    snprintf(path, sizeof path, "/tmp/acqcfg%d.ini", (int)getpid());

    write_file(path, RTD_CONFIG_MAX_BYTES);
    int rc = check_config(path, err, sizeof err);
    CHECK(rc == 0, "a %u-byte file (the bound) was refused: exit %d, %s", RTD_CONFIG_MAX_BYTES, rc,
          err);

    write_file(path, 2u * RTD_CONFIG_MAX_BYTES);
    rc = check_config(path, err, sizeof err);
    CHECK(rc == 2 && strstr(err, "longer than 1048576 bytes"),
          "a 2 MiB file: exit %d (want 2), stderr '%s'", rc, err);

    rc = check_config("/dev/zero", err, sizeof err);
    CHECK(rc == 2 && strstr(err, "longer than 1048576 bytes"),
          "/dev/zero: exit %d (want 2, not a hang: -1), stderr '%s'", rc, err);
    unlink(path);
    printf("%s\n", t_failures ? "FAIL" : "ok");
    return t_failures ? 1 : 0;
}
