/* SPDX-License-Identifier: MIT */
/* Configuration file + environment + flags merged into one argv (see rtd_config.h). */
#include "rtd_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

static int check_only;
static const char *config_path;

const char *rtd_config_path(void)
{
    return config_path;
}

int rtd_config_check_only(void)
{
    return check_only;
}

struct vec {
    char **v;
    int n, cap;
};

static int vec_push(struct vec *a, const char *s)
{
    if (a->n + 2 > a->cap) {
        int cap = a->cap ? a->cap * 2 : 32;
        char **v = realloc(a->v, (size_t)cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        a->v = v;
        a->cap = cap;
    }
    char *d = strdup(s);
    if (!d)
        return -ENOMEM;
    a->v[a->n++] = d;
    a->v[a->n] = NULL;
    return 0;
}

static void vec_free(struct vec *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

/*
 * The file is read through this bound: a configuration is a page of key = value lines, so
 * anything longer is a wrong path (a recording, a device, a pipe that never ends) and is
 * refused with that reason instead of being read to its end. Counted byte by byte, not by
 * strlen, so a file of NUL bytes cannot slip past.
 */
struct bounded_file {
    FILE *f;
    size_t bytes;
    int over;
};

static char *bounded_gets(char *str, int num, void *stream)
{
    struct bounded_file *b = stream;
    int i = 0, ch;
    while (i < num - 1 && (ch = getc(b->f)) != EOF) {
        if (++b->bytes > RTD_CONFIG_MAX_BYTES) {
            b->over = 1;
            return NULL;
        }
        str[i++] = (char)ch;
        if (ch == '\n')
            break;
    }
    if (!i)
        return NULL;
    str[i] = 0;
    return str;
}

static const struct option *find_opt(const struct option *opts, const char *name)
{
    for (; opts && opts->name; opts++)
        if (!strcmp(opts->name, name))
            return opts;
    return NULL;
}

/* true/false in every spelling a person writes; -1 for anything else. */
static int parse_bool(const char *v)
{
    static const char *yes[] = {"1", "true", "yes", "on"}, *no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i]))
            return 1;
        if (!strcasecmp(v, no[i]))
            return 0;
    }
    return -1;
}

/* Append "--name [value]" for one key, validating name and boolean values. */
static int add_kv(struct vec *out, const struct option *opts, const char *name, const char *value,
                  const char *where, char *err, size_t errcap)
{
    const struct option *o = find_opt(opts, name);
    if (!o || !strcmp(name, "config")) {
        snprintf(err, errcap, "%s: unknown key '%s'", where, name);
        return -EINVAL;
    }
    char flag[96];
    snprintf(flag, sizeof flag, "--%s", name);
    if (o->has_arg == no_argument) {
        int b = parse_bool(value);
        if (b < 0) {
            snprintf(err, errcap, "%s: key '%s' wants true or false, not '%s'", where, name, value);
            return -EINVAL;
        }
        return b ? vec_push(out, flag) : 0;
    }
    if (!*value && o->has_arg == required_argument) {
        snprintf(err, errcap, "%s: key '%s' has an empty value", where, name);
        return -EINVAL;
    }
    int rc = vec_push(out, flag);
    return rc ? rc : vec_push(out, value);
}

struct ini_ctx {
    const char *path, *section;
    const struct option *opts;
    struct vec *out;
    char *err;
    size_t errcap;
    int rc;
};

/* Sections other programs own are skipped: one file configures every process. */
static int on_ini(void *user, const char *section, const char *name, const char *value)
{
    struct ini_ctx *c = user;
    if (c->rc)
        return 0;
    if (strcmp(section, "rtdaq") && strcmp(section, c->section))
        return 1;
    if (!strcmp(section, "rtdaq") && !find_opt(c->opts, name))
        return 1; /* a global key this program does not use (e.g. ports of another daemon) */
    char where[512];
    snprintf(where, sizeof where, "%s: [%s]", c->path, section);
    c->rc = add_kv(c->out, c->opts, name, value, where, c->err, c->errcap);
    return c->rc ? 0 : 1;
}

/* RTDAQ_<SECTION>_<KEY> wins over RTDAQ_<KEY>; '-' in keys becomes '_'. */
static int add_env(struct vec *out, const char *section, const struct option *opts, char *err,
                   size_t errcap)
{
    for (const struct option *o = opts; o && o->name; o++) {
        if (!strcmp(o->name, "config") || !strcmp(o->name, "help"))
            continue;
        char key[128], var[192];
        size_t i;
        for (i = 0; o->name[i] && i < sizeof key - 1; i++)
            key[i] = o->name[i] == '-' ? '_' : (char)toupper((unsigned char)o->name[i]);
        key[i] = 0;
        char sec[32];
        for (i = 0; section[i] && i < sizeof sec - 1; i++)
            sec[i] = (char)toupper((unsigned char)section[i]);
        sec[i] = 0;
        snprintf(var, sizeof var, "RTDAQ_%s_%s", sec, key);
        const char *v = getenv(var);
        if (!v) {
            snprintf(var, sizeof var, "RTDAQ_%s", key);
            v = getenv(var);
        }
        if (!v)
            continue;
        char where[256];
        snprintf(where, sizeof where, "environment %s", var);
        int rc = add_kv(out, opts, o->name, v, where, err, errcap);
        if (rc)
            return rc;
    }
    return 0;
}

int rtd_config_argv(const char *section, const struct option *opts, int *argc, char ***argv,
                    char *err, size_t errcap)
{
    struct vec out = {0}, rest = {0};
    const char *path = getenv("RTDAQ_CONFIG");
    int rc = vec_push(&out, (*argv)[0]);
    if (rc)
        goto fail;
    /* Pull --config and --check-config out first: the file goes before the flags. */
    for (int i = 1; i < *argc; i++) {
        const char *a = (*argv)[i];
        if (!strcmp(a, "--check-config")) {
            check_only = 1;
        } else if (!strcmp(a, "--config") && i + 1 < *argc) {
            path = (*argv)[++i];
        } else if (!strncmp(a, "--config=", 9)) {
            path = a + 9;
        } else if (!strcmp(a, "--config")) {
            snprintf(err, errcap, "--config needs a file name");
            rc = -EINVAL;
            goto fail;
        } else if ((rc = vec_push(&rest, a))) {
            goto fail;
        }
    }
    config_path = path && *path ? path : NULL;
    if (path && *path) {
        FILE *f = fopen(path, "r");
        if (!f) {
            rc = -errno;
            snprintf(err, errcap, "config %s: %s", path, strerror(errno));
            goto fail;
        }
        struct ini_ctx c = {path, section, opts, &out, err, errcap, 0};
        struct bounded_file bf = {.f = f};
        int line = ini_parse_stream(bounded_gets, &bf, on_ini, &c);
        fclose(f);
        if (bf.over) {
            snprintf(err, errcap,
                     "config %s: longer than %u bytes, so not a configuration file (wrong path?)",
                     path, RTD_CONFIG_MAX_BYTES);
            rc = -EFBIG;
            goto fail;
        }
        if ((rc = c.rc))
            goto fail;
        if (line > 0) {
            snprintf(err, errcap, "config %s:%d: syntax error (want key = value under [section])",
                     path, line);
            rc = -EINVAL;
            goto fail;
        }
    }
    if ((rc = add_env(&out, section, opts, err, errcap)))
        goto fail;
    for (int i = 0; i < rest.n; i++)
        if ((rc = vec_push(&out, rest.v[i])))
            goto fail;
    vec_free(&rest); /* copied into out: LeakSanitizer would report them */
    *argc = out.n;
    *argv = out.v;
    return 0;
fail:
    vec_free(&rest);
    vec_free(&out);
    return rc;
}

void rtd_config_argv_free(char **argv)
{
    for (char **p = argv; p && *p; p++)
        free(*p);
    free(argv);
}
