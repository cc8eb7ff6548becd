/* SPDX-License-Identifier: MIT */
/*
 * Helpers for acq's program tests: start the real binaries (rtdaq-acq and the
 * rtdaq CLI) as child processes, derive ports and instance names from the pid
 * so parallel runs never collide, read counters from acq's stats segment and
 * wait for its rings. Header-only: each test is one .c file.
 */
#ifndef ACQ_TEST_H
#define ACQ_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rtd_shm.h"
#include "rtd_util.h"

extern char **environ;

#define ACQ_BIN RTD_BIN_DIR "/acq/rtdaq-acq"
#define CLI_BIN RTD_BIN_DIR "/tools/rtdaq"

static int t_failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            t_failures++;                                                                          \
        }                                                                                          \
    } while (0)

/*
 * Ports from the pid, below the kernel's ephemeral range (32768..) so that no client socket
 * can hold them, never the defaults 7000/7001: 20000 + 16 * (pid % 750) + k, k < 16.
 */
static inline int t_port(int k)
{
    return 20000 + 16 * (int)(getpid() % 750) + k;
}

static inline void t_instance(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "acqt%d%s", (int)getpid(), tag);
}

static inline void t_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Start argv[0] with stdout to out_path (NULL: inherit). Returns the pid or -1. */
static inline pid_t t_spawn(char *const argv[], const char *out_path)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (out_path)
        posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc) {
        fprintf(stderr, "spawn %s: %s\n", argv[0], strerror(rc));
        return -1;
    }
    return pid;
}

/* Exit status, 128+signal when killed, -1 on timeout (the child is then killed). */
static inline int t_wait(pid_t pid, int timeout_ms)
{
    for (int waited = 0;; waited += 10) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0)
            return -1;
        if (waited >= timeout_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        t_sleep_ms(10);
    }
}

/* Run a command to completion; its stdout goes to out_path. Exit status or -1. */
static inline int t_run(char *const argv[], const char *out_path, int timeout_ms)
{
    pid_t pid = t_spawn(argv, out_path);
    return pid < 0 ? -1 : t_wait(pid, timeout_ms);
}

/* Wait until rtdaq-acq's rings and stats exist (it calls sd_ready after that). */
static inline int t_wait_acq(const char *instance, pid_t acq, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 20) {
        struct rtd_stats_view *v;
        if (rtd_stats_open(&v, instance, "acq") == 0) {
            rtd_stats_view_close(v);
            t_sleep_ms(100); /* sockets are bound right after the segments */
            return 0;
        }
        int st;
        if (waitpid(acq, &st, WNOHANG) == acq) {
            fprintf(stderr, "rtdaq-acq exited during start-up\n");
            return -1;
        }
        t_sleep_ms(20);
    }
    fprintf(stderr, "rtdaq-acq did not come up within %d ms\n", timeout_ms);
    return -1;
}

struct t_find {
    const char *label;
    uint64_t value;
    int found;
};

static inline void t_find_cb(const char *label, enum rtd_counter_kind kind, uint64_t value,
                             void *arg)
{
    struct t_find *f = arg;
    (void)kind;
    if (!strcmp(label, f->label)) {
        f->value = value;
        f->found = 1;
    }
}

/* A counter of stats.acq (flushed every 100 ms by acq), or UINT64_MAX when absent. */
static inline uint64_t t_counter(const char *instance, const char *label)
{
    struct rtd_stats_view *v;
    if (rtd_stats_open(&v, instance, "acq"))
        return UINT64_MAX;
    struct t_find f = {.label = label};
    rtd_stats_view_foreach(v, t_find_cb, &f);
    rtd_stats_view_close(v);
    return f.found ? f.value : UINT64_MAX;
}

/* Poll a counter until it reaches want (or timeout); returns its last value. */
static inline uint64_t t_counter_wait(const char *instance, const char *label, uint64_t want,
                                      int timeout_ms)
{
    uint64_t v = 0;
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        v = t_counter(instance, label);
        if (v != UINT64_MAX && v >= want)
            return v;
        t_sleep_ms(20);
    }
    return v;
}

static inline int t_read_text(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t r = fread(buf, 1, n - 1, f);
    buf[r] = 0;
    fclose(f);
    return (int)r;
}

/* Integer value of "key": in a one-line JSON text (enough for our own --json output). */
static inline long long t_json_int(const char *txt, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(txt, pat);
    return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

#endif
