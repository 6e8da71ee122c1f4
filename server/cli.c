/* cli.c: parses and validates the command line of DESIGN.md section 4. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "gh.h"

/* Fills cfg with the contract's defaults; workers = 0 means "one per CPU" until parse resolves it.
 */
void gh_config_defaults(gh_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    gh_parse_hostport(GH_DEFAULT_LISTEN, &cfg->listen);
    gh_parse_hostport(GH_DEFAULT_ADMIN_LISTEN, &cfg->admin_listen);
    snprintf(cfg->data_dir, sizeof(cfg->data_dir), "%s", GH_DEFAULT_DATA_DIR);
    cfg->workers = 0;
    cfg->drain_timeout = GH_DEFAULT_DRAIN_TIMEOUT;
    cfg->max_body = GH_DEFAULT_MAX_BODY;
    cfg->max_upload = GH_DEFAULT_MAX_UPLOAD;
}

/* Parses a decimal integer in [lo, hi] with nothing after it. */
static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    long v;

    if (s == NULL || *s == '\0')
        return GH_ERR;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return GH_ERR;
    *out = v;
    return GH_OK;
}

/* Splits HOST:PORT; an IPv6 host is written in brackets, which are removed in out->host. */
int gh_parse_hostport(const char *s, gh_hostport_t *out)
{
    const char *colon, *host = s;
    size_t hlen;
    long port;

    if (s == NULL || *s == '\0')
        return GH_ERR;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return GH_ERR;
        host = s + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return GH_ERR;
        if (memchr(s, ':', (size_t)(colon - s)) != NULL)
            return GH_ERR; /* an unbracketed IPv6 address is ambiguous */
        hlen = (size_t)(colon - s);
    }
    if (parse_long(colon + 1, 0, 65535, &port) != GH_OK)
        return GH_ERR;
    if (hlen == 0) {
        host = "127.0.0.1";
        hlen = strlen(host);
    }
    if (hlen >= sizeof(out->host))
        return GH_ERR;
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    snprintf(out->port, sizeof(out->port), "%ld", port);
    return GH_OK;
}

/* Parses a size with an optional K/M/G suffix (powers of 1024). */
static int parse_size(const char *s, size_t *out)
{
    char *end = NULL;
    unsigned long long v, mul = 1;

    if (s == NULL || *s < '0' || *s > '9')
        return GH_ERR;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0)
        return GH_ERR;
    if (*end == 'k' || *end == 'K')
        mul = 1024ULL, end++;
    else if (*end == 'm' || *end == 'M')
        mul = 1024ULL * 1024ULL, end++;
    else if (*end == 'g' || *end == 'G')
        mul = 1024ULL * 1024ULL * 1024ULL, end++;
    if (*end != '\0' || v == 0 || v > (1ULL << 40) / mul)
        return GH_ERR;
    *out = (size_t)(v * mul);
    return GH_OK;
}

/* Walks argv; every flag but --version/--help takes a value, inline after '=' or as the next
 * argument. */
int gh_config_parse(gh_config_t *cfg, int argc, char **argv, char *err, size_t errsz)
{
    static const char *const valued[] = {"--listen",    "--admin-listen",  "--data-dir",
                                         "--workers",   "--drain-timeout", "--max-body",
                                         "--max-upload"};
    int i;

    for (i = 1; i < argc; i++) {
        const char *arg = argv[i], *val = NULL, *eq;
        char name[64];
        size_t nlen, k;
        long n;
        int takes_value = 0;

        if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0) {
            cfg->show_version = 1;
            continue;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            cfg->show_help = 1;
            continue;
        }
        eq = strchr(arg, '=');
        nlen = eq ? (size_t)(eq - arg) : strlen(arg);
        if (nlen >= sizeof(name)) {
            snprintf(err, errsz, "unknown option: %.40s...", arg);
            return GH_ERR;
        }
        memcpy(name, arg, nlen);
        name[nlen] = '\0';
        for (k = 0; k < GH_ARRAY_LEN(valued); k++)
            if (strcmp(name, valued[k]) == 0)
                takes_value = 1;
        if (!takes_value) {
            snprintf(err, errsz, "unknown option: %s", name);
            return GH_ERR;
        }
        if (eq != NULL)
            val = eq + 1;
        else if (i + 1 < argc)
            val = argv[++i];
        else {
            snprintf(err, errsz, "option %s needs a value", name);
            return GH_ERR;
        }

        if (strcmp(name, "--listen") == 0) {
            if (gh_parse_hostport(val, &cfg->listen) != GH_OK)
                goto bad;
        } else if (strcmp(name, "--admin-listen") == 0) {
            if (gh_parse_hostport(val, &cfg->admin_listen) != GH_OK)
                goto bad;
        } else if (strcmp(name, "--data-dir") == 0) {
            if (*val == '\0' || strlen(val) >= sizeof(cfg->data_dir))
                goto bad;
            snprintf(cfg->data_dir, sizeof(cfg->data_dir), "%s", val);
        } else if (strcmp(name, "--workers") == 0) {
            if (parse_long(val, 1, 1024, &n) != GH_OK)
                goto bad;
            cfg->workers = (int)n;
        } else if (strcmp(name, "--drain-timeout") == 0) {
            if (parse_long(val, 0, 86400, &n) != GH_OK)
                goto bad;
            cfg->drain_timeout = (int)n;
        } else if (strcmp(name, "--max-body") == 0) {
            if (parse_size(val, &cfg->max_body) != GH_OK)
                goto bad;
        } else if (strcmp(name, "--max-upload") == 0) {
            if (parse_size(val, &cfg->max_upload) != GH_OK)
                goto bad;
        }
        continue;
    bad:
        snprintf(err, errsz, "invalid value for %s: '%.200s'", name, val);
        return GH_ERR;
    }
    if (cfg->workers == 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->workers = ncpu > 0 ? (int)ncpu : 1;
    }
    return GH_OK;
}

/* Prints the usage text of the contract. */
void gh_config_usage(void *f)
{
    fprintf(
        (FILE *)f,
        "usage: gatehouse [--listen HOST:PORT] [--admin-listen HOST:PORT] [--data-dir DIR]\n"
        "                 [--workers N] [--drain-timeout SECONDS] [--max-body SIZE]\n"
        "                 [--max-upload SIZE]\n"
        "                 [--version] [--help]\n"
        "\n"
        "  --listen HOST:PORT         client API (default %s)\n"
        "  --admin-listen HOST:PORT   admin API (default %s)\n"
        "  --data-dir DIR             gatehouse.db, master.key, admin.token (default %s)\n"
        "  --workers N                worker processes (default: number of CPUs)\n"
        "  --drain-timeout SECONDS    grace period for in-flight requests on stop (default %d)\n"
        "  --max-body SIZE            largest request body, e.g. 32M (default 32M)\n"
        "  --max-upload SIZE          largest file upload, streamed (default 500M)\n"
        "\n"
        "environment: GATEHOUSE_ADMIN_TOKEN, GATEHOUSE_MASTER_KEY, ANTHROPIC_API_KEY,\n"
        "             ANTHROPIC_BASE_URL, GH_LOG_LEVEL (debug|info|warn|error)\n",
        GH_DEFAULT_LISTEN, GH_DEFAULT_ADMIN_LISTEN, GH_DEFAULT_DATA_DIR, GH_DEFAULT_DRAIN_TIMEOUT);
}
