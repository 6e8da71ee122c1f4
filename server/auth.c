/* auth.c: the worker's cache of virtual keys (looked up by keyed hash) and prices, credential
 * extraction, and model allowlists. */
#include "config.h"

#include <fnmatch.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth.h"
#include "gh.h"
#include "log.h"

typedef struct {
    char *pattern;
    size_t len; /* pattern length without a trailing '*', for "longest match wins" */
    int is_glob;
    gh_price_t price;
    int64_t max_input_tokens;
} price_row_t;

static struct {
    gh_vkey_t *keys; /* sorted by hash for bsearch */
    size_t nkeys;
    price_row_t *prices;
    size_t nprices;
    /* the last model looked up and its row: requests come in runs of one model, and the scan
     * below (with its globs) is not free; cleared whenever prices are reloaded */
    char memo_model[160];
    const price_row_t *memo_row;
    int memo_valid;
} cache;

/* Skips "Bearer " / "Token " (any case) and surrounding blanks. */
static int strip_scheme(const char *v, size_t len, const char **key, size_t *klen)
{
    static const char *const schemes[] = {"Bearer ", "Token "};
    size_t i;

    for (i = 0; i < GH_ARRAY_LEN(schemes); i++) {
        size_t sl = strlen(schemes[i]);
        if (len > sl && strncasecmp(v, schemes[i], sl) == 0) {
            v += sl;
            len -= sl;
            while (len > 0 && (*v == ' ' || *v == '\t'))
                v++, len--;
            if (len == 0)
                return GH_ERR;
            *key = v;
            *klen = len;
            return GH_OK;
        }
    }
    return GH_ERR;
}

/* x-api-key wins over Authorization, as in Anthropic's SDKs where both may be set. */
int gh_auth_extract(const gh_http_head_t *h, const char **key, size_t *len)
{
    const gh_header_t *x = gh_http_header(h, "x-api-key");
    const gh_header_t *a;

    if (x != NULL && x->value_len > 0) {
        *key = x->value;
        *len = x->value_len;
        return GH_OK;
    }
    a = gh_http_header(h, "authorization");
    if (a != NULL && strip_scheme(a->value, a->value_len, key, len) == GH_OK)
        return GH_OK;
    return GH_ERR;
}

/* fnmatch without FNM_PATHNAME, so '*' also spans '/' in "provider/model" names. */
int gh_auth_glob(const char *pattern, const char *s)
{
    return fnmatch(pattern, s, 0) == 0;
}

/* Checks the allowlist (see auth.h). */
int gh_auth_model_allowed(const gh_vkey_t *k, const char *model)
{
    size_t i;

    if (k->models_all)
        return 1;
    for (i = 0; i < k->nmodels; i++)
        if (gh_auth_glob(k->models[i], model))
            return 1;
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm), so no
 * timezone state (timegm/TZ) is involved. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Accepts YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|+00:00]. */
int gh_auth_parse_time(const char *s, int64_t *ms)
{
    int y, mo, d, hh = 0, mi = 0, ss = 0, n = 0, frac = 0, fdig = 0;
    const char *p;

    if (s == NULL || sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
        return GH_ERR;
    p = s + 10;
    if (*p == 'T' || *p == ' ') {
        if (sscanf(p + 1, "%2d:%2d%n", &hh, &mi, &n) != 2 || n != 5)
            return GH_ERR;
        p += 6;
        if (*p == ':') {
            if (sscanf(p + 1, "%2d%n", &ss, &n) != 1 || n != 2)
                return GH_ERR;
            p += 3;
            if (*p == '.') {
                p++;
                while (*p >= '0' && *p <= '9') {
                    if (fdig < 3) {
                        frac = frac * 10 + (*p - '0');
                        fdig++;
                    }
                    p++;
                }
                while (fdig > 0 && fdig < 3)
                    frac *= 10, fdig++;
            }
        }
    }
    if (*p == 'Z')
        p++;
    else if (strcmp(p, "+00:00") == 0)
        p += 6;
    if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || hh > 23 || mi > 59 || ss > 60)
        return GH_ERR;
    *ms = ((days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss) * 1000) + frac;
    return GH_OK;
}

/* Frees one generation of the cache. */
static void free_keys(gh_vkey_t *keys, size_t n)
{
    size_t i, j;
    for (i = 0; i < n; i++) {
        for (j = 0; j < keys[i].nmodels; j++)
            free(keys[i].models[j]);
        free(keys[i].models);
        for (j = 0; j < keys[i].naliases; j++) {
            free(keys[i].alias_from[j]);
            free(keys[i].alias_to[j]);
        }
        free(keys[i].alias_from);
        free(keys[i].alias_to);
    }
    free(keys);
}

static void free_prices(price_row_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        free(p[i].pattern);
    free(p);
}

/* bsearch/qsort order of keys. */
static int cmp_key(const void *a, const void *b)
{
    return strcmp(((const gh_vkey_t *)a)->hash, ((const gh_vkey_t *)b)->hash);
}

/* Reads a nullable integer column (-1 for NULL). */
static int64_t col_limit(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, i);
}

/* Copies a text column into a fixed buffer ("" for NULL). */
static void col_text(sqlite3_stmt *st, int i, char *out, size_t outsz)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(out, outsz, "%s", t != NULL ? (const char *)t : "");
}

/* Parses the models JSON array into k (NULL column = all models). */
static int load_models(gh_vkey_t *k, const char *json)
{
    struct json_object *arr;
    size_t i, n;
    int rc = GH_ERR;

    if (json == NULL) {
        k->models_all = 1;
        return GH_OK;
    }
    arr = json_tokener_parse(json);
    if (arr == NULL || !json_object_is_type(arr, json_type_array)) {
        gh_log_error("virtual key %s: models is not a JSON array", k->id);
        goto done;
    }
    n = json_object_array_length(arr);
    k->models = calloc(n ? n : 1, sizeof(char *));
    if (k->models == NULL)
        goto done;
    for (i = 0; i < n; i++) {
        const char *s = json_object_get_string(json_object_array_get_idx(arr, i));
        if ((k->models[i] = strdup(s != NULL ? s : "")) == NULL)
            goto done;
        k->nmodels++;
    }
    rc = GH_OK;
done:
    json_object_put(arr);
    return rc;
}

/* Parses the aliases JSON object into k (NULL column = none). */
static int load_aliases(gh_vkey_t *k, const char *json)
{
    struct json_object *obj;
    size_t n;
    int rc = GH_ERR;

    if (json == NULL)
        return GH_OK;
    obj = json_tokener_parse(json);
    if (obj == NULL || !json_object_is_type(obj, json_type_object)) {
        gh_log_error("virtual key %s: aliases is not a JSON object", k->id);
        goto done;
    }
    n = (size_t)json_object_object_length(obj);
    k->alias_from = calloc(n ? n : 1, sizeof(char *));
    k->alias_to = calloc(n ? n : 1, sizeof(char *));
    if (k->alias_from == NULL || k->alias_to == NULL)
        goto done;
    {
        json_object_object_foreach(obj, name, val)
        {
            const char *to = json_object_get_string(val);
            k->alias_from[k->naliases] = strdup(name);
            k->alias_to[k->naliases] = strdup(to != NULL ? to : "");
            if (k->alias_from[k->naliases] == NULL || k->alias_to[k->naliases] == NULL) {
                free(k->alias_from[k->naliases]);
                free(k->alias_to[k->naliases]);
                goto done;
            }
            k->naliases++;
        }
    }
    rc = GH_OK;
done:
    json_object_put(obj);
    return rc;
}

/* The alias target of name, or NULL. */
const char *gh_auth_alias(const gh_vkey_t *k, const char *name)
{
    size_t i;
    for (i = 0; i < k->naliases; i++)
        if (strcmp(k->alias_from[i], name) == 0)
            return k->alias_to[i];
    return NULL;
}

/* Loads the keys into a new array, then swaps it in. */
static int load_keys(sqlite3 *db)
{
    static const char sql[] =
        "SELECT id, name, key_hash, models, rpm_limit, itpm_limit, otpm_limit, max_parallel, "
        "budget_usd, budget_period, expires_at, revoked_at IS NOT NULL, force_model, aliases "
        "FROM virtual_keys";
    sqlite3_stmt *st = NULL;
    gh_vkey_t *keys = NULL;
    size_t n = 0, cap = 0;
    int rc = GH_ERR, s;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        gh_log_error("sqlite3_prepare_v2(load virtual keys) failed: %s", sqlite3_errmsg(db));
        goto done;
    }
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        gh_vkey_t *k;
        const char *exp;
        if (n == cap) {
            gh_vkey_t *nk = realloc(keys, (cap ? cap * 2 : 64) * sizeof(*keys));
            if (nk == NULL)
                goto done;
            keys = nk;
            cap = cap ? cap * 2 : 64;
        }
        k = &keys[n];
        memset(k, 0, sizeof(*k));
        n++;
        col_text(st, 0, k->id, sizeof(k->id));
        col_text(st, 1, k->name, sizeof(k->name));
        col_text(st, 2, k->hash, sizeof(k->hash));
        if (load_models(k, (const char *)sqlite3_column_text(st, 3)) != GH_OK)
            goto done;
        k->rpm_limit = col_limit(st, 4);
        k->itpm_limit = col_limit(st, 5);
        k->otpm_limit = col_limit(st, 6);
        k->max_parallel = col_limit(st, 7);
        k->budget_usd =
            sqlite3_column_type(st, 8) == SQLITE_NULL ? -1.0 : sqlite3_column_double(st, 8);
        col_text(st, 9, k->budget_period, sizeof(k->budget_period));
        exp = (const char *)sqlite3_column_text(st, 10);
        if (exp != NULL && gh_auth_parse_time(exp, &k->expires_at_ms) != GH_OK) {
            gh_log_warn("virtual key %s: unreadable expires_at; treating it as expired", k->id);
            k->expires_at_ms = 1;
        }
        k->revoked = sqlite3_column_int(st, 11);
        col_text(st, 12, k->force_model, sizeof(k->force_model));
        if (load_aliases(k, (const char *)sqlite3_column_text(st, 13)) != GH_OK)
            goto done;
    }
    if (s != SQLITE_DONE) {
        gh_log_error("sqlite3_step(load virtual keys) failed: %s", sqlite3_errmsg(db));
        goto done;
    }
    if (n > 1)
        qsort(keys, n, sizeof(*keys), cmp_key);
    free_keys(cache.keys, cache.nkeys);
    cache.keys = keys;
    cache.nkeys = n;
    keys = NULL;
    n = 0;
    rc = GH_OK;
done:
    free_keys(keys, n);
    sqlite3_finalize(st);
    return rc;
}

/* Loads the price rows into a new array, then swaps it in. */
static int load_prices(sqlite3 *db)
{
    static const char sql[] = "SELECT model, input_per_mtok, output_per_mtok, "
                              "cache_write_per_mtok, cache_read_per_mtok, max_input_tokens "
                              "FROM model_prices";
    sqlite3_stmt *st = NULL;
    price_row_t *rows = NULL;
    size_t n = 0, cap = 0;
    int rc = GH_ERR, s;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        gh_log_error("sqlite3_prepare_v2(load prices) failed: %s", sqlite3_errmsg(db));
        goto done;
    }
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        price_row_t *r;
        const char *m = (const char *)sqlite3_column_text(st, 0);
        if (n == cap) {
            price_row_t *nr = realloc(rows, (cap ? cap * 2 : 32) * sizeof(*rows));
            if (nr == NULL)
                goto done;
            rows = nr;
            cap = cap ? cap * 2 : 32;
        }
        r = &rows[n];
        memset(r, 0, sizeof(*r));
        if ((r->pattern = strdup(m != NULL ? m : "")) == NULL)
            goto done;
        n++;
        r->is_glob = strpbrk(r->pattern, "*?[") != NULL;
        r->len = strcspn(r->pattern, "*?[");
        r->price.input_per_mtok = sqlite3_column_double(st, 1);
        r->price.output_per_mtok = sqlite3_column_double(st, 2);
        r->price.cache_write_per_mtok = sqlite3_column_double(st, 3);
        r->price.cache_read_per_mtok = sqlite3_column_double(st, 4);
        r->max_input_tokens = sqlite3_column_int64(st, 5);
    }
    if (s != SQLITE_DONE) {
        gh_log_error("sqlite3_step(load prices) failed: %s", sqlite3_errmsg(db));
        goto done;
    }
    free_prices(cache.prices, cache.nprices);
    cache.prices = rows;
    cache.nprices = n;
    cache.memo_valid = 0;
    rows = NULL;
    n = 0;
    rc = GH_OK;
done:
    free_prices(rows, n);
    sqlite3_finalize(st);
    return rc;
}

/* Reloads both caches; each keeps its previous generation when its load fails. */
int gh_auth_load(sqlite3 *db)
{
    int a = load_keys(db);
    int b = load_prices(db);
    return a == GH_OK && b == GH_OK ? GH_OK : GH_ERR;
}

/* Frees everything cached. */
void gh_auth_free(void)
{
    free_keys(cache.keys, cache.nkeys);
    free_prices(cache.prices, cache.nprices);
    memset(&cache, 0, sizeof(cache));
}

/* Hashes the presented secret with the keyed hash and finds its row; the final comparison is
 * constant-time even though the keyed hash already hides the secret. */
gh_auth_result_t gh_auth_lookup(const gh_keys_t *keys, const char *secret, size_t len,
                                int64_t now_ms, const gh_vkey_t **out)
{
    gh_vkey_t probe;
    const gh_vkey_t *k;

    *out = NULL;
    if (secret == NULL || len == 0)
        return GH_AUTH_MISSING;
    gh_secret_hash_hex(keys, secret, len, probe.hash);
    k = cache.nkeys == 0 ? NULL
                         : bsearch(&probe, cache.keys, cache.nkeys, sizeof(*cache.keys), cmp_key);
    if (k == NULL || !gh_ct_equal(k->hash, GH_HASH_HEX_LEN, probe.hash, GH_HASH_HEX_LEN))
        return GH_AUTH_UNKNOWN;
    *out = k;
    if (k->revoked)
        return GH_AUTH_REVOKED;
    if (k->expires_at_ms != 0 && now_ms >= k->expires_at_ms)
        return GH_AUTH_EXPIRED;
    return GH_AUTH_OK;
}

/* Remembers row as the answer for model (when the name fits the memo) and returns it. */
static const price_row_t *memo(const char *model, const price_row_t *row)
{
    size_t n = strlen(model);

    if (n < sizeof(cache.memo_model)) {
        memcpy(cache.memo_model, model, n + 1);
        cache.memo_row = row;
        cache.memo_valid = 1;
    }
    return row;
}

/* Exact row first; among glob rows, the one with the longest literal prefix. */
static const price_row_t *price_row(const char *model)
{
    const price_row_t *best = NULL;
    size_t i;

    if (model == NULL)
        return NULL;
    if (cache.memo_valid && strcmp(cache.memo_model, model) == 0)
        return cache.memo_row;
    for (i = 0; i < cache.nprices; i++) {
        const price_row_t *r = &cache.prices[i];
        if (!r->is_glob) {
            if (strcmp(r->pattern, model) == 0)
                return memo(model, r);
            continue;
        }
        if ((best == NULL || r->len > best->len) && gh_auth_glob(r->pattern, model))
            best = r;
    }
    return memo(model, best);
}

/* See auth.h. */
const gh_price_t *gh_auth_price(const char *model)
{
    const price_row_t *r = price_row(model);
    return r != NULL ? &r->price : NULL;
}

/* See auth.h. */
int64_t gh_auth_context_window(const char *model)
{
    const price_row_t *r = price_row(model);
    return r != NULL ? r->max_input_tokens : 0;
}

size_t gh_auth_nkeys(void)
{
    return cache.nkeys;
}

size_t gh_auth_nprices(void)
{
    return cache.nprices;
}

/* See auth.h. */
gh_auth_result_t gh_auth_request(const gh_http_head_t *h, const gh_keys_t *keys,
                                 const gh_vkey_t **vk, const char **msg)
{
    static const char *const msgs[] = {
        [GH_AUTH_OK] = "",
        [GH_AUTH_MISSING] = "missing API key: send a gatehouse virtual key in x-api-key or "
                            "Authorization: Bearer",
        [GH_AUTH_UNKNOWN] = "invalid API key",
        [GH_AUTH_REVOKED] = "API key has been revoked",
        [GH_AUTH_EXPIRED] = "API key has expired",
    };
    const char *secret = NULL;
    size_t slen = 0;
    gh_auth_result_t r;

    gh_auth_extract(h, &secret, &slen);
    r = gh_auth_lookup(keys, secret, slen, gh_wall_ms(), vk);
    *msg = msgs[r];
    return r;
}
