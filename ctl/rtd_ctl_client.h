/* SPDX-License-Identifier: MIT */
/*
 * Client side of rtdaq-ctl's control socket, shared by the `rtdaq` CLI and
 * the tests: one JSON request, one JSON reply, with a deadline, optionally
 * over CURVE. Also the key-file helpers both sides use.
 *
 * Key files (Z85 text, 40 characters, one line):
 *   PREFIX.pub     the public key (give it to the other side)
 *   PREFIX.secret  the secret key (mode 0600; the public key is derived from it)
 * An allow-list is a directory of *.pub files or a file with one public key per
 * line ('#' starts a comment).
 */
#ifndef RTD_CTL_CLIENT_H
#define RTD_CTL_CLIENT_H

#include <stddef.h>

#define RTD_CTL_PUB_DEFAULT "tcp://127.0.0.1:5556"
#define RTD_CTL_CTL_DEFAULT "tcp://127.0.0.1:5557"
#define RTD_CURVE_KEY_LEN   40

/* Optional CURVE credentials for a client socket; NULL fields mean plain. */
struct rtd_curve_client {
    const char *server_pub_file; /* the server's PREFIX.pub */
    const char *client_secret;   /* our PREFIX.secret (or PREFIX) */
};

/*
 * Send one request and wait for its reply. *reply is malloc'd (NUL-terminated
 * JSON) on success. 0, -ETIMEDOUT (no reply within timeout_ms: daemon not
 * there, or CURVE refused us), -EINVAL bad endpoint/keys, other -errno.
 */
int rtd_ctl_request(const char *endpoint, const char *request, int timeout_ms,
                    const struct rtd_curve_client *curve, char **reply);

/* Apply client CURVE options to a ZeroMQ socket (PUB subscribers use it too). 0 or -errno. */
int rtd_curve_client_setup(void *sock, const struct rtd_curve_client *curve);

/* Write PREFIX.pub and PREFIX.secret (0600). 0 or -errno. */
int rtd_curve_gen_keys(const char *prefix);
/* Load a secret key (PREFIX.secret, or PREFIX with .secret appended); derive the public. */
int rtd_curve_load_secret(const char *path, char pub[RTD_CURVE_KEY_LEN + 1],
                          char sec[RTD_CURVE_KEY_LEN + 1]);
/* Load a public key file (PREFIX.pub or PREFIX with .pub appended). */
int rtd_curve_load_public(const char *path, char pub[RTD_CURVE_KEY_LEN + 1]);
/*
 * Load an allow-list into a malloc'd array of 41-byte Z85 strings. Count or
 * -errno; a malformed key is -EINVAL with the line named in err.
 */
int rtd_curve_load_allowed(const char *path, char (**keys)[RTD_CURVE_KEY_LEN + 1], char *err,
                           size_t errcap);

/* True when a ZeroMQ endpoint binds only loopback or ipc/inproc (CURVE optional). */
int rtd_endpoint_is_local(const char *endpoint);

#endif
