/* SPDX-License-Identifier: MIT */
/*
 * rtdaq-acq: the ingest daemon. parse -> run (set-up, loop, clean-up inside
 * rtd_acq_run) -> exit. SIGINT/SIGTERM stop it cleanly: rings unlinked,
 * recording finalised.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "rtd_acq.h"
#include "rtd_config.h"
#include "rtd_util.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

int main(int argc, char **argv)
{
    struct rtd_acq_config cfg;
    rtd_acq_config_defaults(&cfg);
    int rc = rtd_acq_config_parse(&cfg, argc, argv);
    if (rc)
        return rc > 0 ? 0 : 2;
    if (rtd_config_check_only()) {
        printf("config ok\n");
        return 0;
    }
    rtd_log_init("rtdaq-acq", cfg.quiet ? RTD_LOG_WARN : RTD_LOG_INFO);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    rc = rtd_acq_run(&cfg, &stop_flag);
    return rc ? 1 : 0;
}
