/* SPDX-License-Identifier: MIT */
/* Process-level helpers shared by every rtdaq program (see rtd_util.h). */
#include "rtd_util.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <pthread.h>

#include <systemd/sd-daemon.h>

static const char *log_prog = "rtdaq";
static int log_level = RTD_LOG_INFO;

void rtd_log_init(const char *progname, int level)
{
    log_prog = progname;
    log_level = level;
    const char *env = getenv("RTDAQ_LOG_LEVEL");
    if (env && *env)
        log_level = atoi(env);
}

void rtd_log(int level, const char *fmt, ...)
{
    if (level > log_level)
        return;
    static const char *names[8] = {"emerg",   "alert",  "crit", "error",
                                   "warning", "notice", "info", "debug"};
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* One write() per line so lines from several processes do not interleave. */
    char line[1200];
    int n = snprintf(line, sizeof line, "%s: %s: %s\n", log_prog, names[level & 7], msg);
    if (n > 0)
        (void)!write(STDERR_FILENO, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

int rtd_pin_cpu(int cpu)
{
    if (cpu < 0 || cpu >= CPU_SETSIZE)
        return -EINVAL;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    return rc ? -rc : 0;
}

int rtd_cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 1;
    int n = CPU_COUNT(&set);
    return n > 0 ? n : 1;
}

int rtd_pick_cpu(int first, int index)
{
    cpu_set_t set;
    int cpus[CPU_SETSIZE], n = 0;
    if (sched_getaffinity(0, sizeof set, &set) < 0)
        return first + index;
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &set))
            cpus[n++] = i;
    if (n == 0)
        return -1;
    int at = 0;
    for (int i = 0; i < n; i++)
        if (cpus[i] == first)
            at = i;
    return cpus[(at + index) % n];
}

int rtd_realtime_setup(int fifo_prio, int mlock)
{
    int done = 0;
    if (fifo_prio > 0) {
        struct sched_param sp = {.sched_priority = fifo_prio};
        if (sched_setscheduler(0, SCHED_FIFO, &sp) == 0)
            done |= RTD_RT_FIFO;
        else
            rtd_log(RTD_LOG_WARN, "SCHED_FIFO %d not permitted (%s): running SCHED_OTHER",
                    fifo_prio, strerror(errno));
    }
    if (mlock) {
        if (mlockall(MCL_CURRENT | MCL_FUTURE) == 0)
            done |= RTD_RT_MLOCK;
        else
            rtd_log(RTD_LOG_WARN, "mlockall failed (%s): raise LimitMEMLOCK / ulimit -l",
                    strerror(errno));
    }
    return done;
}

int rtd_read_file(const char *path, void **buf, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    size_t cap = (size_t)st.st_size;
    char *p = malloc(cap + 1);
    if (!p) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < cap) {
        ssize_t r = read(fd, p + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = -errno;
            free(p);
            close(fd);
            return e;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    p[got] = 0;
    *buf = p;
    *len = got;
    return 0;
}

int rtd_write_file(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = -errno;
            close(fd);
            return e;
        }
        p += w;
        len -= (size_t)w;
    }
    return close(fd) ? -errno : 0;
}

void rtd_sd_ready(void)
{
    sd_notify(0, "READY=1");
}

void rtd_sd_stopping(void)
{
    sd_notify(0, "STOPPING=1");
}

void rtd_sd_status(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sd_notifyf(0, "STATUS=%s", msg);
}

void rtd_sd_watchdog(void)
{
    static uint64_t interval_ns, last_ns;
    static int checked;
    if (!checked) {
        uint64_t usec = 0;
        checked = 1;
        if (sd_watchdog_enabled(0, &usec) > 0)
            interval_ns = usec * 1000ull / 2;
    }
    if (!interval_ns)
        return;
    uint64_t now = rtd_now_ns();
    if (now - last_ns >= interval_ns) {
        sd_notify(0, "WATCHDOG=1");
        last_ns = now;
    }
}
