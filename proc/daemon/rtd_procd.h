/* SPDX-License-Identifier: MIT */
/*
 * rtdaq-proc as a library entry: the daemon's main() is a thin wrapper
 * (rtdaq_proc.c) and `rtdaq run --single` calls the same code in a thread,
 * with the workers as threads instead of forked processes.
 */
#ifndef RTD_PROCD_H
#define RTD_PROCD_H

/*
 * Run rtdaq-proc with its command line until rtd_proc_request_stop() or
 * --duration. threads = 0: fork one process per worker (the daemon); else
 * one thread per worker, not restarted. Installs no signal handlers.
 * Returns the daemon's exit status (0, 1 failure, 2 usage). One at a time
 * per process: the stop flag is process-wide.
 */
int rtd_proc_main(int argc, char **argv, int threads);

/* Async-signal-safe: ask rtd_proc_main and its workers to stop. */
void rtd_proc_request_stop(void);

#endif
