/* route.c: turns the model name a client sent into the chain of provider/model targets to try,
 * and rewrites the request body (model, merged parameters) with a byte-preserving splice. */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gh.h"
#include "jscan.h"
#include "log.h"
#include "route.h"

typedef struct {
    char provider[64];
    char model[GH_MODEL_MAX];
} route_target_t;

typedef struct {
    char *name;
    int enforce_context;
    int64_t max_input_tokens;
    route_target_t *targets;
    size_t ntargets;
} route_row_t;

static struct {
    route_row_t *rows;
    size_t n;
} routes;

/* Frees one generation of the route cache. */
static void free_rows(route_row_t *rows, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        free(rows[i].name);
        free(rows[i].targets);
    }
    free(rows);
}

/* One query, ordered by route then position, grouped into rows as it is read. */
int gh_route_load(sqlite3 *db)
{
    static const char sql[] =
        "SELECT r.id, r.name, r.enforce_context, r.max_input_tokens, t.provider, t.model "
        "FROM routes r LEFT JOIN route_targets t ON t.route_id = r.id "
        "ORDER BY r.id, t.position";
    sqlite3_stmt *st = NULL;
    route_row_t *rows = NULL, *cur = NULL;
    size_t n = 0, cap = 0;
    int64_t cur_id = -1;
    int rc = GH_ERR, s;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        gh_log_error("sqlite3_prepare_v2(load routes) failed: %s", sqlite3_errmsg(db));
        goto done;
    }
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        const char *prov = (const char *)sqlite3_column_text(st, 4);
        const char *model = (const char *)sqlite3_column_text(st, 5);

        if (id != cur_id) {
            const char *name = (const char *)sqlite3_column_text(st, 1);
            if (n == cap) {
                route_row_t *nr = realloc(rows, (cap ? cap * 2 : 16) * sizeof(*rows));
                if (nr == NULL)
                    goto done;
                rows = nr;
                cap = cap ? cap * 2 : 16;
            }
            cur = &rows[n++];
            memset(cur, 0, sizeof(*cur));
            cur_id = id;
            if ((cur->name = strdup(name != NULL ? name : "")) == NULL)
                goto done;
            cur->enforce_context = sqlite3_column_int(st, 2);
            cur->max_input_tokens = sqlite3_column_int64(st, 3);
        }
        if (prov != NULL && model != NULL && cur->ntargets < GH_ROUTE_MAX_TARGETS) {
            route_target_t *nt = realloc(cur->targets, (cur->ntargets + 1) * sizeof(*nt));
            if (nt == NULL)
                goto done;
            cur->targets = nt;
            snprintf(nt[cur->ntargets].provider, sizeof(nt->provider), "%s", prov);
            snprintf(nt[cur->ntargets].model, sizeof(nt->model), "%s", model);
            cur->ntargets++;
        }
    }
    if (s != SQLITE_DONE) {
        gh_log_error("sqlite3_step(load routes) failed: %s", sqlite3_errmsg(db));
        goto done;
    }
    free_rows(routes.rows, routes.n);
    routes.rows = rows;
    routes.n = n;
    rows = NULL;
    n = 0;
    rc = GH_OK;
done:
    free_rows(rows, n);
    sqlite3_finalize(st);
    return rc;
}

void gh_route_free(void)
{
    free_rows(routes.rows, routes.n);
    routes.rows = NULL;
    routes.n = 0;
}

size_t gh_route_count(void)
{
    return routes.n;
}

/* Calls fn with every route name. */
void gh_route_each(void (*fn)(void *arg, const char *name), void *arg)
{
    size_t i;
    for (i = 0; i < routes.n; i++)
        fn(arg, routes.rows[i].name);
}

/* The cached route called name, or NULL. */
static const route_row_t *find_route(const char *name)
{
    size_t i;
    for (i = 0; i < routes.n; i++)
        if (strcmp(routes.rows[i].name, name) == 0)
            return &routes.rows[i];
    return NULL;
}

/* The provider of generation ps called name (len bytes), or NULL. */
static const gh_provider_t *find_provider(const gh_provset_t *ps, const char *name, size_t len)
{
    size_t i;
    for (i = 0; i < ps->n; i++)
        if (strlen(ps->p[i].name) == len && memcmp(ps->p[i].name, name, len) == 0)
            return &ps->p[i];
    return NULL;
}

/* Appends one "k=v" parameter as a JSON member: numbers, true/false/null stay literals,
 * anything else becomes a string. */
static int add_param(gh_resolved_t *r, const char *k, size_t klen, const char *v, size_t vlen)
{
    char lit[64], quoted[512];
    size_t used = strlen(r->params), i;
    const char *val;
    int n;

    if (klen == 0 || klen > 64)
        return GH_ERR;
    for (i = 0; i < klen; i++)
        if (!(islower((unsigned char)k[i]) || k[i] == '_' || isdigit((unsigned char)k[i])))
            return GH_ERR;
    val = NULL;
    if (vlen > 0 && vlen + 8 < sizeof(lit)) {
        /* a value that is a JSON literal on its own (number, true, false, null) stays one */
        static const char *const x[] = {"x"};
        gh_jspan_t sp;
        n = snprintf(lit, sizeof(lit), "{\"x\":%.*s}", (int)vlen, v);
        if (gh_jscan_object(lit, (size_t)n, x, 1, &sp, NULL) == GH_OK &&
            (sp.type == GH_JSON_NUMBER || sp.type == GH_JSON_TRUE || sp.type == GH_JSON_FALSE ||
             sp.type == GH_JSON_NULL)) {
            memmove(lit, lit + 5, vlen);
            lit[vlen] = '\0';
            val = lit;
        }
    }
    if (val == NULL) {
        if (gh_json_quote(v, vlen, quoted, sizeof(quoted)) < 0)
            return GH_ERR;
        val = quoted;
    }
    n = snprintf(r->params + used, sizeof(r->params) - used, "%s\"%.*s\":%s", used ? "," : "",
                 (int)klen, k, val);
    if (n < 0 || (size_t)n >= sizeof(r->params) - used)
        return GH_ERR;
    return GH_OK;
}

/* Parses "a=1&b=x" into r->params. */
static int parse_params(gh_resolved_t *r, const char *q)
{
    while (*q != '\0') {
        const char *amp = strchr(q, '&'), *eq;
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        eq = memchr(q, '=', len);
        if (len > 0) {
            if (eq == NULL ||
                add_param(r, q, (size_t)(eq - q), eq + 1, len - (size_t)(eq - q) - 1) != GH_OK)
                return GH_ERR;
        }
        q += len + (amp ? 1 : 0);
    }
    return GH_OK;
}

/* Resolution order: force_model, then aliases, then parameters and pins, then routes. */
int gh_route_resolve(const gh_provset_t *ps, const gh_vkey_t *key, const char *model,
                     gh_resolved_t *out, char *err, size_t errsz)
{
    char buf[GH_MODEL_MAX];
    const char *name = model, *q, *alias;
    const gh_provider_t *pin = NULL;
    const route_row_t *route;
    size_t i, sep;

    memset(out, 0, sizeof(*out));
    if (key != NULL && key->force_model[0] != '\0')
        name = key->force_model;
    else if (key != NULL && (alias = gh_auth_alias(key, model)) != NULL)
        name = alias;
    if (strlen(name) >= GH_MODEL_MAX) {
        snprintf(err, errsz, "model: name too long (at most %d bytes)", GH_MODEL_MAX - 1);
        return GH_ERR;
    }
    snprintf(buf, sizeof(buf), "%s", name);
    q = strchr(buf, '?');
    if (q != NULL) {
        buf[q - buf] = '\0';
        if (parse_params(out, q + 1) != GH_OK) {
            snprintf(err, errsz, "model: malformed parameters in '%s' (expected name=value&...)",
                     model);
            return GH_ERR;
        }
    }
    /* "provider:model" and "provider/model" pin a provider when the prefix names one */
    sep = strcspn(buf, ":/");
    if (buf[sep] != '\0') {
        pin = find_provider(ps, buf, sep);
        if (pin == NULL && buf[sep] == ':') {
            snprintf(err, errsz, "model: unknown provider '%.*s' in '%s'", (int)sep, buf, model);
            return GH_ERR;
        }
    }
    if (pin != NULL) {
        snprintf(out->pinned, sizeof(out->pinned), "%s", pin->name);
        snprintf(out->name, sizeof(out->name), "%.*s", GH_MODEL_MAX - 1, buf + sep + 1);
        out->targets[0].prov = pin;
        snprintf(out->targets[0].model, sizeof(out->targets[0].model), "%.*s", GH_MODEL_MAX - 1,
                 buf + sep + 1);
        out->ntargets = 1;
        return GH_OK;
    }
    snprintf(out->name, sizeof(out->name), "%.*s", GH_MODEL_MAX - 1, buf);
    route = find_route(buf);
    if (route != NULL) {
        out->is_route = 1;
        out->enforce_context = route->enforce_context;
        out->max_input_tokens = route->max_input_tokens;
        for (i = 0; i < route->ntargets; i++) {
            const gh_provider_t *p =
                find_provider(ps, route->targets[i].provider, strlen(route->targets[i].provider));
            if (p == NULL)
                continue;
            out->targets[out->ntargets].prov = p;
            snprintf(out->targets[out->ntargets].model, sizeof(out->targets[0].model), "%s",
                     route->targets[i].model);
            out->ntargets++;
        }
        if (out->ntargets == 0) {
            snprintf(err, errsz, "route '%s' has no target whose provider exists", buf);
            return GH_ERR;
        }
        return GH_OK;
    }
    out->targets[0].prov = gh_worker_default_provider(ps);
    snprintf(out->targets[0].model, sizeof(out->targets[0].model), "%.*s", GH_MODEL_MAX - 1, buf);
    out->ntargets = out->targets[0].prov != NULL ? 1 : 0;
    return GH_OK;
}

/* Allowlist check on the resolved name (a pinned request may match with or without its
 * provider prefix). */
int gh_route_allowed(const gh_vkey_t *key, const gh_resolved_t *r)
{
    char full[GH_MODEL_MAX + 70];

    if (gh_auth_model_allowed(key, r->name))
        return 1;
    if (r->pinned[0] == '\0')
        return 0;
    snprintf(full, sizeof(full), "%s/%s", r->pinned, r->name);
    return gh_auth_model_allowed(key, full);
}

/* Growing output buffer for the splice. */
typedef struct {
    char *p;
    size_t len, cap;
} sbuf_t;

static int sb_add(sbuf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *np;
        while (cap < b->len + n + 1)
            cap *= 2;
        np = realloc(b->p, cap);
        if (np == NULL)
            return GH_ERR;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return GH_OK;
}

/* Splits a raw member list "\"a\":1,\"b\":\"x\"" into the names it sets (for removal of the
 * existing members). Returns the count, at most max. */
static size_t param_names(const char *params, char names[][72], size_t max)
{
    size_t n = 0;
    const char *p = params;

    while (*p == '"' && n < max) {
        const char *end = strchr(p + 1, '"');
        const char *next;
        if (end == NULL || (size_t)(end - p - 1) >= sizeof(names[0]))
            break;
        memcpy(names[n], p + 1, (size_t)(end - p - 1));
        names[n][end - p - 1] = '\0';
        n++;
        /* values are literals or quoted strings without raw commas outside quotes */
        next = end + 2;
        if (*next == '"') {
            next++;
            while (*next != '\0' && *next != '"') {
                if (*next == '\\' && next[1] != '\0')
                    next++;
                next++;
            }
            if (*next == '"')
                next++;
        } else {
            while (*next != '\0' && *next != ',')
                next++;
        }
        p = *next == ',' ? next + 1 : next;
    }
    return n;
}

/* Copies body, dropping the members params replaces, swapping the model value, and adding
 * params before the closing brace. */
int gh_route_rewrite_body(const char *body, size_t len, const char *model, const char *params,
                          char **out, size_t *outlen)
{
    char names[16][72];
    const char *keys[17];
    gh_jspan_t spans[17];
    char quoted[GH_MODEL_MAX * 6 + 3];
    size_t nnames, i, pos = 0, close;
    sbuf_t b = {NULL, 0, 0};
    int first_member = 1;

    nnames = param_names(params, names, 16);
    keys[0] = "model";
    for (i = 0; i < nnames; i++)
        keys[i + 1] = names[i];
    if (gh_jscan_object(body, len, keys, nnames + 1, spans, NULL) != GH_OK)
        return GH_ERR;
    if (gh_json_quote(model, strlen(model), quoted, sizeof(quoted)) < 0)
        return GH_ERR;
    close = len;
    while (close > 0 && body[close - 1] != '}')
        close--;
    if (close == 0)
        return GH_ERR;
    close--; /* index of the final '}' */

    /* Walk the members to cut in order of position: model (replace) and params (remove). */
    for (;;) {
        size_t best = (size_t)-1, bi = 0;
        for (i = 0; i < nnames + 1; i++)
            if (spans[i].type != GH_JSON_ABSENT && spans[i].member_off >= pos &&
                spans[i].member_off < best) {
                best = spans[i].member_off;
                bi = i;
            }
        if (best == (size_t)-1)
            break;
        if (bi == 0) {
            if (sb_add(&b, body + pos, spans[0].off - pos) != GH_OK ||
                sb_add(&b, quoted, strlen(quoted)) != GH_OK)
                goto fail;
            pos = spans[0].off + spans[0].len;
        } else {
            /* remove the member and one adjacent comma so the object stays valid */
            size_t start = spans[bi].member_off, end = start + spans[bi].member_len, j;
            j = end;
            while (j < close &&
                   (body[j] == ' ' || body[j] == '\t' || body[j] == '\n' || body[j] == '\r'))
                j++;
            if (j < close && body[j] == ',') {
                end = j + 1;
            } else {
                /* last member: eat the comma before it instead */
                size_t k = start;
                while (k > pos && body[k - 1] != ',')
                    k--;
                if (k > pos)
                    start = k - 1;
            }
            if (sb_add(&b, body + pos, start - pos) != GH_OK)
                goto fail;
            pos = end;
        }
        spans[bi].type = GH_JSON_ABSENT;
    }
    if (sb_add(&b, body + pos, close - pos) != GH_OK)
        goto fail;
    if (params[0] != '\0') {
        /* is there any member left before the brace? */
        size_t k = b.len;
        while (k > 0 && (b.p[k - 1] == ' ' || b.p[k - 1] == '\n' || b.p[k - 1] == '\t' ||
                         b.p[k - 1] == '\r'))
            k--;
        first_member = k > 0 && b.p[k - 1] == '{';
        if ((!first_member && sb_add(&b, ",", 1) != GH_OK) ||
            sb_add(&b, params, strlen(params)) != GH_OK)
            goto fail;
    }
    if (sb_add(&b, body + close, len - close) != GH_OK)
        goto fail;
    *out = b.p;
    *outlen = b.len;
    return GH_OK;
fail:
    free(b.p);
    return GH_ERR;
}
