/* SPDX-License-Identifier: MIT */
/*
 * rtdaq-proc's main(): SIGINT/SIGTERM ask the daemon (rtd_proc_main, in the
 * rtd_procd library shared with `rtdaq run --single`) to stop.
 */
#include <signal.h>
#include <string.h>

#include "rtd_procd.h"

static void on_signal(int sig)
{
    (void)sig;
    rtd_proc_request_stop();
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return rtd_proc_main(argc, argv, 0);
}
