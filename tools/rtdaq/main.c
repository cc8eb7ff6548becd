/* SPDX-License-Identifier: MIT */
/* `rtdaq`: one entry point for the operator's commands; dispatch only. */
#include "rtdaq_cli.h"

#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: rtdaq <command> [options]   (rtdaq <command> --help for its options)\n"
    "\n"
    "running the system\n"
    "  run          start acq, proc and ctl on the built-in defaults (the demo)\n"
    "  status       one screen of the current state (via the control socket)\n"
    "  top          live table of processes, rings, rates, drops and latency\n"
    "  start|stop   start or stop acquisition\n"
    "  set          change a parameter at run time\n"
    "  record       start|stop recording\n"
    "  jobs         submit|status|cancel|list offline analysis jobs\n"
    "  stat         print every ring, consumer and counter from shared memory (no daemon needed)\n"
    "\n"
    "tools\n"
    "  sim          packet and frame simulators\n"
    "  replay       feed a recording back into the rings\n"
    "  fit          batch Levenberg-Marquardt fits on raw arrays\n"
    "  fit-frames   detect and fit ions in raw camera frames\n"
    "  wavelet      cwt|icwt|signif|wct|wct-signif on raw float64 series\n";

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? RTD_EXIT_USAGE : RTD_EXIT_OK;
    }
    const char *cmd = argv[1];
    /* Sub-commands see argv[0] = the command name, as getopt expects. */
    int sargc = argc - 1;
    char **sargv = argv + 1;
    if (!strcmp(cmd, "stat"))
        return rtd_cmd_stat(sargc, sargv);
    if (!strcmp(cmd, "fit"))
        return rtd_cmd_fit(sargc, sargv);
    if (!strcmp(cmd, "fit-frames"))
        return rtd_cmd_fit_frames(sargc, sargv);
    if (!strcmp(cmd, "wavelet"))
        return rtd_cmd_wavelet(sargc, sargv);
    if (!strcmp(cmd, "sim"))
        return rtd_cmd_sim(sargc, sargv);
    if (!strcmp(cmd, "replay"))
        return rtd_cmd_replay(sargc, sargv);
    if (!strcmp(cmd, "run"))
        return rtd_cmd_run(sargc, sargv);
    static const char *ctl_cmds[] = {"status", "top",    "start", "stop",    "params",
                                     "set",    "record", "jobs",  "shutdown"};
    for (size_t i = 0; i < sizeof ctl_cmds / sizeof ctl_cmds[0]; i++)
        if (!strcmp(cmd, ctl_cmds[i]))
            return rtd_cmd_ctl(cmd, sargc, sargv);
    fprintf(stderr, "rtdaq: unknown command '%s'\n\n%s", cmd, usage);
    return RTD_EXIT_USAGE;
}
