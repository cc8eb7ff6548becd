/* SPDX-License-Identifier: MIT */
/*
 * Small helpers every rtdaq process shares: clocks, CPU pinning, real-time
 * set-up, whole-file reads, logging and systemd notification. Nothing here
 * touches shared memory; nothing here is on a hot path except the clocks.
 */
#ifndef RTD_UTIL_H
#define RTD_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in ns: the clock every in-process latency is measured on. */
static inline uint64_t rtd_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CLOCK_REALTIME in ns: wall time for records that leave the machine. */
static inline uint64_t rtd_realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Pin the calling thread to one CPU. 0 or -errno (-EINVAL for a CPU not in our set). */
int rtd_pin_cpu(int cpu);

/* Number of CPUs this process may run on (sched_getaffinity), at least 1. */
int rtd_cpu_count(void);

/* The index-th CPU this process may run on, counting (cyclically) from CPU `first`, or from
 * the first allowed CPU if `first` is not allowed: where rtdaq-proc puts worker `index`. */
int rtd_pick_cpu(int first, int index);

/*
 * Optional real-time set-up: SCHED_FIFO at prio (0 = leave the policy alone) and
 * mlockall. Each step that is not permitted logs one warning and is skipped: a lab
 * machine without CAP_SYS_NICE still runs, only with worse tails. Returns a bitmask
 * of what took effect (RTD_RT_FIFO, RTD_RT_MLOCK).
 */
enum { RTD_RT_FIFO = 1, RTD_RT_MLOCK = 2 };
int rtd_realtime_setup(int fifo_prio, int mlock);

/*
 * Read a whole file into a malloc'd buffer. 0 or -errno; *len is the byte count.
 * The buffer has one extra zero byte so text can be parsed in place.
 */
int rtd_read_file(const char *path, void **buf, size_t *len);

/* Write len bytes to path (created/truncated, 0644). 0 or -errno. */
int rtd_write_file(const char *path, const void *buf, size_t len);

/* Logging to stderr with the process name; levels as syslog's. */
enum { RTD_LOG_ERR = 3, RTD_LOG_WARN = 4, RTD_LOG_INFO = 6, RTD_LOG_DEBUG = 7 };
void rtd_log_init(const char *progname, int level);
void rtd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * systemd notification (sd_notify). All are no-ops when not started by systemd.
 * rtd_sd_ready(): after sockets are bound and segments attached.
 * rtd_sd_watchdog(): call from the main loop; pings at half of WatchdogSec at most.
 */
void rtd_sd_ready(void);
void rtd_sd_stopping(void);
void rtd_sd_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void rtd_sd_watchdog(void);

#endif
