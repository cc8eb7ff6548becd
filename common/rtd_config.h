/* SPDX-License-Identifier: MIT */
/*
 * One configuration file for every rtdaq process (INI, parsed by libinih), with
 * the precedence operators expect: built-in defaults < file < environment <
 * command line. Each key of a section is the long option of that program
 * ("workers = auto" in [proc] is `rtdaq-proc --workers auto`), so the file, the
 * flags and the documentation cannot drift apart.
 *
 * rtd_config_argv() rewrites a program's argv before getopt_long sees it:
 *   argv[0], keys of [rtdaq] and [<section>] from the file named by --config or
 *   $RTDAQ_CONFIG, then $RTDAQ_<SECTION>_<KEY> and $RTDAQ_<KEY> variables
 *   (e.g. RTDAQ_WORKERS=4, RTDAQ_PROC_CPU=1), then the original arguments.
 * getopt_long keeps the last value of an option, so later sources win.
 * A key the program does not know is an error naming the file, line and key,
 * reported before anything starts. Boolean keys (options without an argument)
 * take true/false/yes/no/1/0.
 */
#ifndef RTD_CONFIG_H
#define RTD_CONFIG_H

#include <getopt.h>
#include <stddef.h>

/*
 * section: "acq", "proc", "ctl", "run", "sim". opts: the program's getopt_long
 * table (terminated by a zero entry). On success argc and argv point at a new
 * malloc'd vector (freed at exit by the OS; programs call this once) and 0 is
 * returned; on error -EINVAL (or -errno of the file) with a message in err.
 * The returned vector never contains --config. A file longer than
 * RTD_CONFIG_MAX_BYTES is refused (-EFBIG) as soon as the bound is passed, so
 * a wrong path (a recording, a device, an endless pipe) is never read whole.
 */
#define RTD_CONFIG_MAX_BYTES (1u << 20)
int rtd_config_argv(const char *section, const struct option *opts, int *argc, char ***argv,
                    char *err, size_t errcap);
/* Free a vector returned by rtd_config_argv() (for callers that parse more than once). */
void rtd_config_argv_free(char **argv);

/* The configuration file used by the last rtd_config_argv() call, or NULL. */
const char *rtd_config_path(void);

/* True when --check-config was given: validate everything, print "config ok", exit 0. */
int rtd_config_check_only(void);

#endif
