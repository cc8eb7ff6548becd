/* SPDX-License-Identifier: MIT */
/*
 * Helpers the rtdaq-proc program tests share: start the real daemon, read a
 * worker's counters from its stats segment, wait with a deadline. Plain C
 * (these tests run under ThreadSanitizer, where Criterion cannot).
 */
#ifndef RTD_PROC_TEST_H
#define RTD_PROC_TEST_H

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rtd_shm.h"
#include "rtd_util.h"

#define PROC_BIN RTD_BIN_DIR "/proc/daemon/rtdaq-proc"

extern char **environ;

static int t_failed;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            t_failed = 1;                                                                          \
        }                                                                                          \
    } while (0)

static void t_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Start rtdaq-proc with a NULL-terminated argument list (after argv[0]). */
static pid_t t_spawn_proc(const char *const *args)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = PROC_BIN;
    for (int i = 0; args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid;
    int rc = posix_spawn(&pid, PROC_BIN, NULL, NULL, (char *const *)(uintptr_t)argv, environ);
    if (rc != 0) {
        fprintf(stderr, "spawn %s: %s\n", PROC_BIN, strerror(rc));
        return -1;
    }
    return pid;
}

struct t_counter_query {
    const char *label;
    uint64_t value;
    int found;
};

static void t_counter_cb(const char *label, enum rtd_counter_kind kind, uint64_t value, void *arg)
{
    struct t_counter_query *q = arg;
    (void)kind;
    if (!strcmp(label, q->label)) {
        q->value = value;
        q->found = 1;
    }
}

/* A counter of process `process` ("proc.w0"), or -1 when the segment or counter is missing. */
static int64_t t_counter(const char *instance, const char *process, const char *label)
{
    struct rtd_stats_view *v;
    if (rtd_stats_open(&v, instance, process) < 0)
        return -1;
    struct t_counter_query q = {label, 0, 0};
    rtd_stats_view_foreach(v, t_counter_cb, &q);
    rtd_stats_view_close(v);
    return q.found ? (int64_t)q.value : -1;
}

/* Wait for the child to exit within timeout_ms; its exit status, or -1 (then it is killed). */
static int t_wait_exit(pid_t pid, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 10) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        t_sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

struct t_list {
    int n;
    char names[32][64];
};

static void t_list_cb(const char *ring, void *arg)
{
    struct t_list *l = arg;
    if (l->n < 32)
        snprintf(l->names[l->n++], 64, "%s", ring);
}

#endif
