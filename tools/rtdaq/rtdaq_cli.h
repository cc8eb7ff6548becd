/* SPDX-License-Identifier: MIT */
/*
 * The operator's CLI: `rtdaq <command> ...`. Each command lives in its own
 * cmd_*.c file and returns the process exit code: 0 success, 1 failure at run
 * time (the error was printed), 2 bad usage or bad input, 3 daemon unreachable.
 */
#ifndef RTDAQ_CLI_H
#define RTDAQ_CLI_H

enum { RTD_EXIT_OK = 0, RTD_EXIT_FAIL = 1, RTD_EXIT_USAGE = 2, RTD_EXIT_UNREACHABLE = 3 };

int rtd_cmd_stat(int argc, char **argv);       /* cmd_stat.c: shm/ */
int rtd_cmd_fit(int argc, char **argv);        /* cmd_fit.c: proc/fit */
int rtd_cmd_fit_frames(int argc, char **argv); /* cmd_fit_frames.c: proc/pipeline */
int rtd_cmd_wavelet(int argc, char **argv);    /* cmd_wavelet.c: proc/wavelet */
int rtd_cmd_sim(int argc, char **argv);        /* cmd_sim.c: acq/ simulators */
int rtd_cmd_replay(int argc, char **argv);     /* cmd_replay.c: acq/ recordings */
int rtd_cmd_ctl(const char *cmd, int argc,
                char **argv);           /* cmd_ctl.c: status top start stop set record jobs */
int rtd_cmd_run(int argc, char **argv); /* cmd_run.c: the launcher */

#endif
