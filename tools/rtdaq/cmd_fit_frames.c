/* SPDX-License-Identifier: MIT */
/* Placeholder until this command lands. */
#include "rtdaq_cli.h"
#include <stdio.h>

int rtd_cmd_fit_frames(int argc, char **argv)
{
    fprintf(stderr, "rtdaq %s: not built yet\n", argv[0]);
    return RTD_EXIT_FAIL;
}
