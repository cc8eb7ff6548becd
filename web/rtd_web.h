/* SPDX-License-Identifier: MIT */
/*
 * rtdaq-web, the live web view and HTTP API of an rtdaq instance, as a library
 * entry point: `rtdaq-web` is a thin main() around it, and `rtdaq run` starts
 * the program (see docs/web.md for its options and readiness line).
 */
#ifndef RTD_WEB_H
#define RTD_WEB_H

/*
 * Parse argv, serve until SIGINT/SIGTERM (the handlers are installed here and
 * set an atomic stop flag), clean up. Returns the process exit code: 0 after a
 * clean stop or --check-config, 1 on a failure at run time, 2 on bad options.
 */
int rtd_web_main(int argc, char **argv);

#endif
