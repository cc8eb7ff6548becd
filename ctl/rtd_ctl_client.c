/* SPDX-License-Identifier: MIT */
/*
 * Control-socket client (one request, one reply, deadline) and CURVE key
 * files. See rtd_ctl_client.h.
 */
#include "rtd_ctl_client.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zmq.h>

#include "rtd_util.h"

int rtd_endpoint_is_local(const char *ep)
{
    if (!strncmp(ep, "ipc://", 6) || !strncmp(ep, "inproc://", 9))
        return 1;
    if (strncmp(ep, "tcp://", 6))
        return 0;
    const char *h = ep + 6;
    /* A "source;destination" form binds the part after ';' for connects only. */
    if (!strncmp(h, "127.", 4) || !strncmp(h, "localhost:", 10) || !strncmp(h, "[::1]:", 6) ||
        !strncmp(h, "lo:", 3))
        return 1;
    return 0;
}

/* Read a one-line Z85 key from path (or path+suffix when path does not exist). */
static int read_key(const char *path, const char *suffix, char key[RTD_CURVE_KEY_LEN + 1])
{
    char buf[4096];
    void *data;
    size_t len;
    int rc = rtd_read_file(path, &data, &len);
    if (rc == -ENOENT) {
        snprintf(buf, sizeof buf, "%s%s", path, suffix);
        rc = rtd_read_file(buf, &data, &len);
    }
    if (rc)
        return rc;
    const char *s = data;
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t n = 0;
    while (s[n] && !isspace((unsigned char)s[n]))
        n++;
    rc = n == RTD_CURVE_KEY_LEN ? 0 : -EINVAL;
    if (!rc) {
        memcpy(key, s, n);
        key[n] = 0;
        uint8_t raw[32];
        if (!zmq_z85_decode(raw, key))
            rc = -EINVAL;
    }
    free(data);
    return rc;
}

int rtd_curve_load_public(const char *path, char pub[RTD_CURVE_KEY_LEN + 1])
{
    return read_key(path, ".pub", pub);
}

int rtd_curve_load_secret(const char *path, char pub[RTD_CURVE_KEY_LEN + 1],
                          char sec[RTD_CURVE_KEY_LEN + 1])
{
    int rc = read_key(path, ".secret", sec);
    if (rc)
        return rc;
    if (zmq_curve_public(pub, sec) != 0)
        return -errno;
    return 0;
}

int rtd_curve_gen_keys(const char *prefix)
{
    char pub[RTD_CURVE_KEY_LEN + 1], sec[RTD_CURVE_KEY_LEN + 1], path[4096], line[64];
    if (zmq_curve_keypair(pub, sec) != 0)
        return errno == ENOTSUP ? -ENOTSUP : -errno;
    snprintf(path, sizeof path, "%s.secret", prefix);
    snprintf(line, sizeof line, "%s\n", sec);
    mode_t old = umask(077);
    int rc = rtd_write_file(path, line, strlen(line));
    umask(old);
    if (rc)
        return rc;
    snprintf(path, sizeof path, "%s.pub", prefix);
    snprintf(line, sizeof line, "%s\n", pub);
    return rtd_write_file(path, line, strlen(line));
}

static int push_key(char (**keys)[RTD_CURVE_KEY_LEN + 1], int *n, const char *k)
{
    char(*nk)[RTD_CURVE_KEY_LEN + 1] = realloc(*keys, (size_t)(*n + 1) * sizeof **keys);
    if (!nk)
        return -ENOMEM;
    *keys = nk;
    memcpy(nk[*n], k, RTD_CURVE_KEY_LEN + 1);
    (*n)++;
    return 0;
}

int rtd_curve_load_allowed(const char *path, char (**keys)[RTD_CURVE_KEY_LEN + 1], char *err,
                           size_t errcap)
{
    struct stat st;
    int n = 0, rc = 0;
    *keys = NULL;
    if (stat(path, &st) < 0) {
        rc = -errno;
        snprintf(err, errcap, "allow-list %s: %s", path, strerror(errno));
        return rc;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) {
            rc = -errno;
            snprintf(err, errcap, "allow-list %s: %s", path, strerror(errno));
            return rc;
        }
        struct dirent *e;
        while ((e = readdir(d))) {
            size_t l = strlen(e->d_name);
            if (l < 5 || strcmp(e->d_name + l - 4, ".pub"))
                continue;
            char p[4096], k[RTD_CURVE_KEY_LEN + 1];
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            if ((rc = read_key(p, "", k))) {
                snprintf(err, errcap, "allow-list %s: not a Z85 public key", p);
                break;
            }
            if ((rc = push_key(keys, &n, k)))
                break;
        }
        closedir(d);
    } else {
        void *data;
        size_t len;
        if ((rc = rtd_read_file(path, &data, &len))) {
            snprintf(err, errcap, "allow-list %s: %s", path, strerror(-rc));
            return rc;
        }
        char *save = NULL, *line = strtok_r(data, "\n", &save);
        for (int ln = 1; line && !rc; line = strtok_r(NULL, "\n", &save), ln++) {
            char *h = strchr(line, '#');
            if (h)
                *h = 0;
            char k[64];
            if (sscanf(line, "%63s", k) != 1)
                continue;
            uint8_t raw[32];
            if (strlen(k) != RTD_CURVE_KEY_LEN || !zmq_z85_decode(raw, k)) {
                snprintf(err, errcap, "allow-list %s: entry %d is not a Z85 public key", path, ln);
                rc = -EINVAL;
                break;
            }
            rc = push_key(keys, &n, k);
        }
        free(data);
    }
    if (rc) {
        free(*keys);
        *keys = NULL;
        return rc;
    }
    return n;
}

int rtd_curve_client_setup(void *sock, const struct rtd_curve_client *curve)
{
    if (!curve || !curve->server_pub_file)
        return 0;
    char server[RTD_CURVE_KEY_LEN + 1], pub[RTD_CURVE_KEY_LEN + 1], sec[RTD_CURVE_KEY_LEN + 1];
    int rc = rtd_curve_load_public(curve->server_pub_file, server);
    if (rc)
        return rc;
    if (curve->client_secret) {
        if ((rc = rtd_curve_load_secret(curve->client_secret, pub, sec)))
            return rc;
    } else if (zmq_curve_keypair(pub, sec) != 0) {
        /* An anonymous key: the server's allow-list will refuse it; useful for tests. */
        return -errno;
    }
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server, RTD_CURVE_KEY_LEN) ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, pub, RTD_CURVE_KEY_LEN) ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec, RTD_CURVE_KEY_LEN))
        return -errno;
    return 0;
}

int rtd_ctl_request(const char *endpoint, const char *request, int timeout_ms,
                    const struct rtd_curve_client *curve, char **reply)
{
    *reply = NULL;
    void *ctx = zmq_ctx_new();
    if (!ctx)
        return -ENOMEM;
    int rc = 0, zero = 0;
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    if (!s) {
        rc = -errno;
        goto out_ctx;
    }
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if ((rc = rtd_curve_client_setup(s, curve)))
        goto out;
    if (zmq_connect(s, endpoint) != 0) {
        rc = -EINVAL;
        goto out;
    }
    /* An empty delimiter first, as REQ would send: the server answers both styles. */
    if (zmq_send(s, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 && errno != EAGAIN) {
        rc = -errno;
        goto out;
    }
    /* DEALER queues until connected; the deadline below covers an absent daemon. */
    zmq_send(s, request, strlen(request), ZMQ_DONTWAIT);
    uint64_t deadline = rtd_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        int64_t left = (int64_t)(deadline - rtd_now_ns()) / 1000000;
        if ((int64_t)(deadline - rtd_now_ns()) <= 0) {
            rc = -ETIMEDOUT;
            goto out;
        }
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        int n = zmq_poll(&it, 1, left > 0 ? (long)left : 1);
        if (n < 0 && errno != EINTR) {
            rc = -errno;
            goto out;
        }
        if (n > 0)
            break;
    }
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s, 0) < 0) {
            rc = -errno;
            zmq_msg_close(&m);
            goto out;
        }
        int more = zmq_msg_more(&m);
        size_t len = zmq_msg_size(&m);
        if (len > 0 && !*reply) {
            char *r = malloc(len + 1);
            if (!r) {
                rc = -ENOMEM;
                zmq_msg_close(&m);
                goto out;
            }
            memcpy(r, zmq_msg_data(&m), len);
            r[len] = 0;
            *reply = r;
        }
        zmq_msg_close(&m);
        if (!more)
            break;
    }
    if (!*reply)
        rc = -EPROTO;
out:
    zmq_close(s);
out_ctx:
    zmq_ctx_term(ctx);
    return rc;
}
