/* providers.c: the admin API's /admin/providers resource: upstream providers and their sealed API
 * keys, which are accepted here and never shown again (only id, last4 and weight). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin.h"
#include "gh.h"
#include "json.h"
#include "log.h"
#include "quota.h"

#define GH_PROV_NAME_MAX 63 /* fits gh_usage_rec_t.provider */
#define GH_PROV_URL_MAX 2048
#define GH_PROV_KEY_MAX 4096
#define GH_PROV_MAX_KEYS 64
#define GH_PROV_WEIGHT_MAX 1000000
#define GH_PROV_INT_MAX 2147483647
#define GH_PROV_MAX_BETAS 32
#define GH_PROV_BETA_MAX 64

/* The integer columns a client may set, with their lower bound and whether null (unlimited) is
 * allowed. The order is the order of the answer's fields. */
static const struct {
    const char *name;
    int64_t min;
    int nullable;
} prov_ints[] = {
    {"timeout_ms", 1, 0},     {"rpm_limit", 0, 1},   {"itpm_limit", 0, 1},
    {"otpm_limit", 0, 1},     {"max_retries", 0, 0}, {"backoff_initial_ms", 0, 0},
    {"backoff_max_ms", 0, 0},
};
#define GH_PROV_NINTS (sizeof(prov_ints) / sizeof(prov_ints[0]))

/* The anthropic-beta policy columns (comma-separated lists, NULL for none), in the answer's
 * order. */
static const char *const prov_betas[] = {"beta_add", "beta_strip"};
#define GH_PROV_NBETAS (sizeof(prov_betas) / sizeof(prov_betas[0]))

static const char *const prov_fields[] = {
    "name",           "base_url",   "api_keys",   "api_key",     "timeout_ms",
    "rpm_limit",      "itpm_limit", "otpm_limit", "max_retries", "backoff_initial_ms",
    "backoff_max_ms", "beta_add",   "beta_strip", NULL,
};
static const char *const key_fields[] = {"key", "weight", NULL};

/* One provider key on its way in: secret points into the request's JSON; sealed is ours. */
typedef struct {
    const char *secret;
    int weight;
    unsigned char *sealed;
    size_t sealed_len;
    char last4[5];
} prov_key_t;

/* A validated create or patch body. */
typedef struct {
    gh_adm_str_t name;
    char *url; /* normalised base_url, malloc'd, or NULL when not given */
    gh_adm_int_t ints[GH_PROV_NINTS];
    gh_adm_has_t betas_has[GH_PROV_NBETAS];
    char *betas[GH_PROV_NBETAS]; /* joined with ",", malloc'd; NULL for null or [] */
    int has_keys;
    prov_key_t keys[GH_PROV_MAX_KEYS];
    size_t nkeys;
} prov_in_t;

/* Frees what prov_parse and prov_seal allocated. */
static void prov_in_free(prov_in_t *in)
{
    size_t i;

    for (i = 0; i < in->nkeys; i++)
        free(in->keys[i].sealed);
    for (i = 0; i < GH_PROV_NBETAS; i++)
        free(in->betas[i]);
    free(in->url);
}

/* Same rule as the store: the name is used in URLs and in "provider/model" model names. */
static int prov_name_ok(const char *name)
{
    const char *p;

    for (p = name; *p != '\0'; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '.' || *p == '-'))
            return 0;
    return p != name;
}

/* Checks the scheme and host and drops trailing slashes, since paths are appended to it. */
static int prov_url(const char *s, char **out, gh_adm_err_t *err)
{
    size_t skip, len;

    if (strncasecmp(s, "http://", 7) == 0)
        skip = 7;
    else if (strncasecmp(s, "https://", 8) == 0)
        skip = 8;
    else
        return gh_adm_field_error(err, "base_url", "must start with http:// or https://");
    if (strchr(s, ' ') != NULL)
        return gh_adm_field_error(err, "base_url", "must not contain spaces");
    len = strlen(s);
    while (len > skip && s[len - 1] == '/')
        len--;
    if (len == skip || s[skip] == '/')
        return gh_adm_field_error(err, "base_url", "must name a host");
    *out = strndup(s, len);
    if (*out == NULL) {
        gh_log_error("strndup(base_url) failed");
        return gh_adm_field_error(err, "base_url", "could not be stored (out of memory)");
    }
    return GH_OK;
}

/* 1 when s (len bytes) is a usable anthropic-beta name: 1..GH_PROV_BETA_MAX bytes of letters,
 * digits, '.', '_' or '-', so it can be neither split nor trimmed when the list is read back. */
static int prov_beta_ok(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > GH_PROV_BETA_MAX)
        return 0;
    for (i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return 0;
    return 1;
}

/* Reads the beta list field (beta_add or beta_strip): null or [] = none, else an array of
 * anthropic-beta names, joined with "," into *joined (malloc'd) the way the store keeps it. */
static int prov_betas_parse(json_object *body, const char *field, gh_adm_has_t *has, char **joined,
                            gh_adm_err_t *err)
{
    json_object *arr = NULL, *el;
    char where[32], *out;
    size_t i, n, len, total = 0;

    if (!json_object_object_get_ex(body, field, &arr))
        return GH_OK;
    *has = arr == NULL ? GH_ADM_NULL : GH_ADM_VALUE;
    if (arr == NULL)
        return GH_OK;
    if (!json_object_is_type(arr, json_type_array))
        return gh_adm_field_error(err, field, "must be an array of anthropic-beta names, or null");
    n = json_object_array_length(arr);
    if (n > GH_PROV_MAX_BETAS)
        return gh_adm_field_error(err, field, "must have at most %d entries", GH_PROV_MAX_BETAS);
    for (i = 0; i < n; i++) {
        el = json_object_array_get_idx(arr, i);
        snprintf(where, sizeof(where), "%s[%zu]", field, i);
        if (el == NULL || !json_object_is_type(el, json_type_string) ||
            !prov_beta_ok(json_object_get_string(el), (size_t)json_object_get_string_len(el)))
            return gh_adm_field_error(err, where,
                                      "must be a string of 1 to %d letters, digits, '.', '_' "
                                      "or '-'",
                                      GH_PROV_BETA_MAX);
        total += (size_t)json_object_get_string_len(el) + 1;
    }
    if (n == 0)
        return GH_OK;
    out = malloc(total);
    if (out == NULL) {
        gh_log_error("malloc(%s) failed", field);
        return gh_adm_field_error(err, field, "could not be stored (out of memory)");
    }
    for (i = 0, total = 0; i < n; i++) {
        el = json_object_array_get_idx(arr, i);
        len = (size_t)json_object_get_string_len(el);
        if (i > 0)
            out[total++] = ',';
        memcpy(out + total, json_object_get_string(el), len);
        total += len;
    }
    out[total] = '\0';
    *joined = out;
    return GH_OK;
}

/* Reads one {key, weight} object; where ("api_keys[2]", or NULL for a body that is the object
 * itself) prefixes error messages. The key is never quoted in a message. */
static int prov_key_parse(json_object *el, const char *where, prov_key_t *k, gh_adm_err_t *err)
{
    gh_adm_str_t key;
    gh_adm_int_t weight;

    if (!json_object_is_type(el, json_type_object))
        return gh_adm_field_error(err, where != NULL ? where : "body",
                                  "must be an object {\"key\": ..., \"weight\": ...}");
    if (gh_adm_check_fields(el, key_fields, where, err) != GH_OK)
        goto fail;
    if (gh_adm_get_str(el, "key", GH_PROV_KEY_MAX, 0, &key, err) != GH_OK ||
        gh_adm_get_int(el, "weight", 1, GH_PROV_WEIGHT_MAX, 0, &weight, err) != GH_OK)
        goto fail;
    if (key.has != GH_ADM_VALUE) {
        gh_adm_field_error(err, "key", "is required");
        goto fail;
    }
    if (strchr(key.v, ' ') != NULL) {
        gh_adm_field_error(err, "key", "must not contain spaces");
        goto fail;
    }
    k->secret = key.v;
    k->weight = weight.has == GH_ADM_VALUE ? (int)weight.v : 1;
    return GH_OK;
fail:
    if (where != NULL && strncmp(err->msg, where, strlen(where)) != 0)
        gh_adm_err_prefix(err, where);
    return GH_ERR;
}

/* Reads api_keys (an array of {key, weight}) or its shorthand api_key (one string). */
static int prov_keys_parse(json_object *body, prov_in_t *in, gh_adm_err_t *err)
{
    json_object *arr = NULL;
    gh_adm_str_t one;
    char where[32];
    size_t i, n;
    int has_arr;

    has_arr = json_object_object_get_ex(body, "api_keys", &arr);
    if (gh_adm_get_str(body, "api_key", GH_PROV_KEY_MAX, 0, &one, err) != GH_OK)
        return GH_ERR;
    if (has_arr && one.has != GH_ADM_ABSENT)
        return gh_adm_field_error(err, "api_key", "give either 'api_keys' or 'api_key', not both");
    if (one.has == GH_ADM_VALUE) {
        if (strchr(one.v, ' ') != NULL)
            return gh_adm_field_error(err, "api_key", "must not contain spaces");
        in->has_keys = 1;
        in->keys[0].secret = one.v;
        in->keys[0].weight = 1;
        in->nkeys = 1;
        return GH_OK;
    }
    if (!has_arr)
        return GH_OK;
    if (!json_object_is_type(arr, json_type_array) || json_object_array_length(arr) < 1)
        return gh_adm_field_error(err, "api_keys",
                                  "must be a non-empty array of {\"key\": ..., \"weight\": ...}");
    n = json_object_array_length(arr);
    if (n > GH_PROV_MAX_KEYS)
        return gh_adm_field_error(err, "api_keys", "must have at most %d keys", GH_PROV_MAX_KEYS);
    for (i = 0; i < n; i++) {
        snprintf(where, sizeof(where), "api_keys[%zu]", i);
        if (prov_key_parse(json_object_array_get_idx(arr, i), where, &in->keys[i], err) != GH_OK)
            return GH_ERR;
    }
    in->has_keys = 1;
    in->nkeys = n;
    return GH_OK;
}

/* Validates a create (all required fields) or patch body into in; the caller frees in. */
static int prov_parse(json_object *body, int create, prov_in_t *in, gh_adm_err_t *err)
{
    gh_adm_str_t url;
    size_t i;

    if (gh_adm_check_fields(body, prov_fields, NULL, err) != GH_OK)
        return GH_ERR;
    if (gh_adm_get_str(body, "name", GH_PROV_NAME_MAX, 0, &in->name, err) != GH_OK)
        return GH_ERR;
    if (in->name.has == GH_ADM_VALUE && !prov_name_ok(in->name.v))
        return gh_adm_field_error(err, "name", "must be letters, digits, '_', '.' or '-'");
    if (gh_adm_get_str(body, "base_url", GH_PROV_URL_MAX, 0, &url, err) != GH_OK)
        return GH_ERR;
    if (url.has == GH_ADM_VALUE && prov_url(url.v, &in->url, err) != GH_OK)
        return GH_ERR;
    for (i = 0; i < GH_PROV_NINTS; i++)
        if (gh_adm_get_int(body, prov_ints[i].name, prov_ints[i].min, GH_PROV_INT_MAX,
                           prov_ints[i].nullable, &in->ints[i], err) != GH_OK)
            return GH_ERR;
    for (i = 0; i < GH_PROV_NBETAS; i++)
        if (prov_betas_parse(body, prov_betas[i], &in->betas_has[i], &in->betas[i], err) != GH_OK)
            return GH_ERR;
    if (prov_keys_parse(body, in, err) != GH_OK)
        return GH_ERR;
    if (create && in->name.has != GH_ADM_VALUE)
        return gh_adm_field_error(err, "name", "is required");
    if (create && in->url == NULL)
        return gh_adm_field_error(err, "base_url", "is required");
    if (create && !in->has_keys)
        return gh_adm_field_error(err, "api_keys", "is required (or 'api_key')");
    return GH_OK;
}

/* Seals every key before any transaction starts, so the write lock is not held during crypto. */
static int prov_seal(const gh_keys_t *keys, prov_key_t *k, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (gh_secret_seal(keys, k[i].secret, strlen(k[i].secret), &k[i].sealed,
                           &k[i].sealed_len) != GH_OK)
            return GH_ERR;
        gh_secret_last4(k[i].secret, k[i].last4);
    }
    return GH_OK;
}

/* Inserts one sealed key of provider pid; *id_out receives its id. */
static int prov_key_insert(sqlite3 *db, int64_t pid, const prov_key_t *k, int64_t *id_out)
{
    sqlite3_stmt *st = NULL;
    int rc = GH_ERR;

    if (gh_adm_prepare(db,
                       "INSERT INTO provider_keys (provider_id, key_sealed, key_last4, weight) "
                       "VALUES (?1, ?2, ?3, ?4)",
                       &st) != GH_OK)
        goto done;
    if (sqlite3_bind_int64(st, 1, pid) != SQLITE_OK ||
        sqlite3_bind_blob(st, 2, k->sealed, (int)k->sealed_len, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 3, k->last4, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int(st, 4, k->weight) != SQLITE_OK) {
        gh_log_error("sqlite3_bind(INSERT INTO provider_keys): %s", sqlite3_errmsg(db));
        goto done;
    }
    if (sqlite3_step(st) != SQLITE_DONE) {
        gh_log_error("sqlite3_step(INSERT INTO provider_keys): %s", sqlite3_errmsg(db));
        goto done;
    }
    if (id_out != NULL)
        *id_out = sqlite3_last_insert_rowid(db);
    gh_limits_cooldown_clear(sqlite3_last_insert_rowid(db));
    rc = GH_OK;
done:
    sqlite3_finalize(st);
    return rc;
}

/* Finds a provider's id by name: GH_OK with *id (0 when there is none) or GH_ERR. */
static int prov_id(sqlite3 *db, const char *name, int64_t *id)
{
    sqlite3_stmt *st = NULL;
    int src, rc = GH_ERR;

    *id = 0;
    if (gh_adm_prepare(db, "SELECT id FROM providers WHERE name = ?1", &st) != GH_OK)
        goto done;
    if (sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) != SQLITE_OK) {
        gh_log_error("sqlite3_bind_text(providers.name): %s", sqlite3_errmsg(db));
        goto done;
    }
    src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        *id = sqlite3_column_int64(st, 0);
    else if (src != SQLITE_DONE) {
        gh_log_error("sqlite3_step(SELECT id FROM providers): %s", sqlite3_errmsg(db));
        goto done;
    }
    rc = GH_OK;
done:
    sqlite3_finalize(st);
    return rc;
}

/* Writes the parsed columns (and the key set when given) of provider pid; the caller holds the
 * transaction. */
static int prov_write(sqlite3 *db, int64_t pid, const prov_in_t *in)
{
    gh_adm_set_t sets[GH_PROV_NINTS + GH_PROV_NBETAS + 1], where = gh_adm_set_int("id", pid);
    sqlite3_stmt *st = NULL;
    size_t i, n = 0;
    int rc = GH_ERR;

    if (in->url != NULL)
        sets[n++] = gh_adm_set_text("base_url", in->url);
    for (i = 0; i < GH_PROV_NINTS; i++) {
        if (in->ints[i].has == GH_ADM_VALUE)
            sets[n++] = gh_adm_set_int(prov_ints[i].name, in->ints[i].v);
        else if (in->ints[i].has == GH_ADM_NULL)
            sets[n++] = gh_adm_set_null(prov_ints[i].name);
    }
    for (i = 0; i < GH_PROV_NBETAS; i++) {
        if (in->betas[i] != NULL)
            sets[n++] = gh_adm_set_text(prov_betas[i], in->betas[i]);
        else if (in->betas_has[i] != GH_ADM_ABSENT)
            sets[n++] = gh_adm_set_null(prov_betas[i]);
    }
    if (gh_adm_update(db, "providers", &where, sets, n) < 0)
        goto done;
    if (!in->has_keys) {
        rc = GH_OK;
        goto done;
    }
    if (gh_adm_prepare(db, "DELETE FROM provider_keys WHERE provider_id = ?1", &st) != GH_OK)
        goto done;
    if (sqlite3_bind_int64(st, 1, pid) != SQLITE_OK || sqlite3_step(st) != SQLITE_DONE) {
        gh_log_error("DELETE FROM provider_keys: %s", sqlite3_errmsg(db));
        goto done;
    }
    for (i = 0; i < in->nkeys; i++)
        if (prov_key_insert(db, pid, &in->keys[i], NULL) != GH_OK)
            goto done;
    rc = GH_OK;
done:
    sqlite3_finalize(st);
    return rc;
}

/* The provider columns answers are built from, in prov_object's index order. */
#define PROV_COLS                                                                                  \
    "id, name, base_url, timeout_ms, rpm_limit, itpm_limit, otpm_limit, max_retries, "             \
    "backoff_initial_ms, backoff_max_ms, beta_add, beta_strip, created_at, updated_at"

/* The comma-separated list in column i of st as a JSON array of its (trimmed, non-empty) entries,
 * read the way the store reads it; [] for NULL. */
static json_object *prov_beta_array(sqlite3_stmt *st, int i)
{
    const char *s = (const char *)sqlite3_column_text(st, i), *a, *comma;
    json_object *arr = json_object_new_array(), *v;
    size_t len;

    while (arr != NULL && s != NULL && *s != '\0') {
        comma = strchr(s, ',');
        len = comma != NULL ? (size_t)(comma - s) : strlen(s);
        a = s;
        while (len > 0 && (*a == ' ' || *a == '\t'))
            a++, len--;
        while (len > 0 && (a[len - 1] == ' ' || a[len - 1] == '\t'))
            len--;
        if (len > 0) {
            v = json_object_new_string_len(a, (int)len);
            if (v == NULL || json_object_array_add(arr, v) != 0) {
                json_object_put(v);
                json_object_put(arr);
                return NULL;
            }
        }
        s = comma != NULL ? comma + 1 : s + strlen(s);
    }
    return arr;
}

/* Builds the answer object for the provider row in st (the columns of PROV_COLS), with its keys
 * listed through arg, the keys statement (a gh_adm_row_fn). Never reads key_sealed. The caller
 * owns the result. */
static json_object *prov_object(sqlite3 *db, sqlite3_stmt *st, void *arg)
{
    json_object *o = json_object_new_object(), *keys = json_object_new_array(), *k, *b;
    sqlite3_stmt *kst = arg;
    int i, src;

    if (o == NULL || keys == NULL)
        goto fail;
    for (i = 1; i <= 9; i++)
        json_object_object_add(o, sqlite3_column_name(st, i), gh_adm_column(st, i));
    for (i = 10; i <= 11; i++) {
        b = prov_beta_array(st, i);
        if (b == NULL) {
            gh_log_error("json_object_new_array(%s) failed", sqlite3_column_name(st, i));
            goto fail;
        }
        json_object_object_add(o, sqlite3_column_name(st, i), b);
    }
    if (sqlite3_reset(kst) != SQLITE_OK ||
        sqlite3_bind_int64(kst, 1, sqlite3_column_int64(st, 0)) != SQLITE_OK) {
        gh_log_error("sqlite3_bind_int64(provider_keys.provider_id): %s", sqlite3_errmsg(db));
        goto fail;
    }
    while ((src = sqlite3_step(kst)) == SQLITE_ROW) {
        k = gh_adm_row(kst);
        if (k == NULL || json_object_array_add(keys, k) != 0) {
            json_object_put(k);
            goto fail;
        }
    }
    if (src != SQLITE_DONE) {
        gh_log_error("sqlite3_step(SELECT FROM provider_keys): %s", sqlite3_errmsg(db));
        goto fail;
    }
    json_object_object_add(o, "api_keys", keys);
    json_object_object_add(o, "created_at", gh_adm_column(st, 12));
    json_object_object_add(o, "updated_at", gh_adm_column(st, 13));
    return o;
fail:
    json_object_put(keys);
    json_object_put(o);
    return NULL;
}

/* Lists providers (name NULL) as {"data": [...]} or returns one provider (a gh_adm_load_fn).
 * *out is NULL with GH_OK when the named provider does not exist. */
static int prov_load(sqlite3 *db, const char *name, json_object **out)
{
    gh_adm_set_t where = gh_adm_set_text("name", name);
    sqlite3_stmt *st = NULL, *kst = NULL;
    int rc = GH_ERR;

    if (gh_adm_prepare(db,
                       "SELECT " PROV_COLS " FROM providers WHERE ?1 IS NULL OR name = ?1 "
                       "ORDER BY name",
                       &st) == GH_OK &&
        gh_adm_prepare(db,
                       "SELECT id, key_last4 AS last4, weight FROM provider_keys "
                       "WHERE provider_id = ?1 ORDER BY id",
                       &kst) == GH_OK &&
        gh_adm_bind(st, 1, &where) == GH_OK)
        rc = gh_adm_collect(db, st, prov_object, kst, name != NULL, out, "providers");
    sqlite3_finalize(st);
    sqlite3_finalize(kst);
    return rc;
}

/* POST /admin/providers (create) and PATCH /admin/providers/{name} (update). Anything not
 * answered by the time of the cleanup is an internal failure, logged where it happened. */
static void prov_save(gh_adm_ctx_t *c, const char *path_name)
{
    json_object *body = NULL;
    sqlite3_stmt *st = NULL;
    gh_adm_err_t err;
    prov_in_t in;
    int64_t pid = 0;
    int src, answered = 1;

    memset(&in, 0, sizeof(in));
    if (gh_adm_body(c->req, &body) != GH_OK)
        goto done;
    if (prov_parse(body, path_name == NULL, &in, &err) != GH_OK) {
        gh_adm_bad_request(c->req, &err);
        goto done;
    }
    if (path_name != NULL && in.name.has == GH_ADM_VALUE && strcmp(in.name.v, path_name) != 0) {
        gh_adm_error(c->req, 400, "invalid_request_error",
                     "field 'name': renaming a provider is not allowed");
        goto done;
    }
    answered = 0;
    if (prov_seal(c->keys, in.keys, in.nkeys) != GH_OK || gh_adm_begin(c->db) != GH_OK)
        goto done;
    if (path_name == NULL) {
        if (gh_adm_prepare(c->db, "INSERT INTO providers (name, base_url) VALUES (?1, ?2)", &st) !=
                GH_OK ||
            sqlite3_bind_text(st, 1, in.name.v, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(st, 2, in.url, -1, SQLITE_STATIC) != SQLITE_OK)
            goto done;
        src = sqlite3_step(st);
        if (src != SQLITE_DONE && sqlite3_extended_errcode(c->db) == SQLITE_CONSTRAINT_UNIQUE) {
            gh_adm_error(c->req, 409, "invalid_request_error", "provider '%s' already exists",
                         in.name.v);
            answered = 1;
            goto done;
        }
        if (src != SQLITE_DONE) {
            gh_log_error("sqlite3_step(INSERT INTO providers): %s", sqlite3_errmsg(c->db));
            goto done;
        }
        pid = sqlite3_last_insert_rowid(c->db);
    } else {
        if (prov_id(c->db, path_name, &pid) != GH_OK)
            goto done;
        if (pid == 0) {
            gh_adm_not_found(c->req, "provider", path_name);
            answered = 1;
            goto done;
        }
    }
    if (prov_write(c->db, pid, &in) != GH_OK || gh_adm_commit(c->db) != GH_OK)
        goto done;
    gh_adm_changed();
    gh_adm_answer(c, prov_load, path_name != NULL ? path_name : in.name.v,
                  path_name != NULL ? 200 : 201, "provider");
    answered = 1;
done:
    sqlite3_finalize(st);
    gh_adm_rollback(c->db);
    if (!answered)
        gh_adm_internal(c->req);
    prov_in_free(&in);
    json_object_put(body);
}

/* DELETE /admin/providers/{name}: its keys go with it (ON DELETE CASCADE). */
static void prov_delete(gh_adm_ctx_t *c, const char *name)
{
    sqlite3_stmt *st = NULL;
    json_object *o;
    int src, answered = 0;

    if (gh_adm_prepare(c->db, "DELETE FROM providers WHERE name = ?1", &st) != GH_OK ||
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) != SQLITE_OK)
        goto done;
    src = sqlite3_step(st);
    answered = 1;
    if (src != SQLITE_DONE && sqlite3_extended_errcode(c->db) == SQLITE_CONSTRAINT_FOREIGNKEY) {
        gh_adm_error(c->req, 409, "invalid_request_error",
                     "provider '%s' is still used (by a route?); remove those uses first", name);
    } else if (src != SQLITE_DONE) {
        gh_log_error("sqlite3_step(DELETE FROM providers): %s", sqlite3_errmsg(c->db));
        answered = 0;
    } else if (sqlite3_changes(c->db) == 0) {
        gh_adm_not_found(c->req, "provider", name);
    } else {
        gh_adm_changed();
        o = json_object_new_object();
        if (o != NULL) {
            json_object_object_add(o, "deleted", json_object_new_boolean(1));
            json_object_object_add(o, "name", json_object_new_string(name));
        }
        gh_adm_reply(c->req, 200, o);
    }
done:
    sqlite3_finalize(st);
    if (!answered)
        gh_adm_internal(c->req);
}

/* POST /admin/providers/{name}/keys: adds one key and answers {"id","last4","weight"}. */
static void prov_key_add(gh_adm_ctx_t *c, const char *name)
{
    gh_adm_set_t where;
    json_object *body = NULL, *o;
    gh_adm_err_t err;
    prov_key_t k;
    int64_t pid = 0, kid = 0;
    int answered = 1;

    memset(&k, 0, sizeof(k));
    if (gh_adm_body(c->req, &body) != GH_OK)
        goto done;
    if (prov_key_parse(body, NULL, &k, &err) != GH_OK) {
        gh_adm_bad_request(c->req, &err);
        goto done;
    }
    answered = 0;
    if (prov_seal(c->keys, &k, 1) != GH_OK || gh_adm_begin(c->db) != GH_OK ||
        prov_id(c->db, name, &pid) != GH_OK)
        goto done;
    if (pid == 0) {
        gh_adm_not_found(c->req, "provider", name);
        answered = 1;
        goto done;
    }
    where = gh_adm_set_int("id", pid);
    if (prov_key_insert(c->db, pid, &k, &kid) != GH_OK ||
        gh_adm_update(c->db, "providers", &where, NULL, 0) < 0 || gh_adm_commit(c->db) != GH_OK)
        goto done;
    gh_adm_changed();
    o = json_object_new_object();
    if (o != NULL) {
        json_object_object_add(o, "id", json_object_new_int64(kid));
        json_object_object_add(o, "last4", json_object_new_string(k.last4));
        json_object_object_add(o, "weight", json_object_new_int(k.weight));
    }
    gh_adm_reply(c->req, 201, o);
    answered = 1;
done:
    gh_adm_rollback(c->db);
    if (!answered)
        gh_adm_internal(c->req);
    free(k.sealed);
    json_object_put(body);
}

/* DELETE /admin/providers/{name}/keys/{id}; removing the last key is allowed (the provider then
 * cannot serve until a key is added). */
static void prov_key_delete(gh_adm_ctx_t *c, const char *name, const char *id_s)
{
    sqlite3_stmt *st = NULL;
    gh_adm_set_t where;
    json_object *o;
    int64_t pid = 0;
    long long kid;
    int answered = 1;
    char *end;

    kid = strtoll(id_s, &end, 10);
    if (*end != '\0' || kid <= 0 || id_s[0] < '0' || id_s[0] > '9') {
        gh_adm_not_found(c->req, "provider key", id_s);
        goto done;
    }
    answered = 0;
    if (gh_adm_begin(c->db) != GH_OK || prov_id(c->db, name, &pid) != GH_OK)
        goto done;
    if (pid == 0) {
        gh_adm_not_found(c->req, "provider", name);
        answered = 1;
        goto done;
    }
    if (gh_adm_prepare(c->db, "DELETE FROM provider_keys WHERE id = ?1 AND provider_id = ?2",
                       &st) != GH_OK)
        goto done;
    if (sqlite3_bind_int64(st, 1, kid) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, pid) != SQLITE_OK || sqlite3_step(st) != SQLITE_DONE) {
        gh_log_error("DELETE FROM provider_keys: %s", sqlite3_errmsg(c->db));
        goto done;
    }
    if (sqlite3_changes(c->db) == 0) {
        gh_adm_not_found(c->req, "provider key", id_s);
        answered = 1;
        goto done;
    }
    where = gh_adm_set_int("id", pid);
    if (gh_adm_update(c->db, "providers", &where, NULL, 0) < 0 || gh_adm_commit(c->db) != GH_OK)
        goto done;
    gh_adm_changed();
    o = json_object_new_object();
    if (o != NULL) {
        json_object_object_add(o, "deleted", json_object_new_boolean(1));
        json_object_object_add(o, "id", json_object_new_int64(kid));
    }
    gh_adm_reply(c->req, 200, o);
    answered = 1;
done:
    sqlite3_finalize(st);
    gh_adm_rollback(c->db);
    if (!answered)
        gh_adm_internal(c->req);
}

/* Routes /admin/providers[/{name}[/keys[/{id}]]] by segment count and method. */
void gh_adm_providers(gh_adm_ctx_t *c)
{
    const char *m = c->method;

    if (c->nseg == 2) {
        if (strcmp(m, "GET") == 0)
            gh_adm_answer(c, prov_load, NULL, 200, "provider");
        else if (strcmp(m, "POST") == 0)
            prov_save(c, NULL);
        else
            gh_adm_method_not_allowed(c, "GET, POST");
    } else if (c->nseg == 3) {
        if (strcmp(m, "GET") == 0)
            gh_adm_answer(c, prov_load, c->seg[2], 200, "provider");
        else if (strcmp(m, "PATCH") == 0)
            prov_save(c, c->seg[2]);
        else if (strcmp(m, "DELETE") == 0)
            prov_delete(c, c->seg[2]);
        else
            gh_adm_method_not_allowed(c, "GET, PATCH, DELETE");
    } else if (c->nseg == 4 && strcmp(c->seg[3], "keys") == 0) {
        if (strcmp(m, "POST") == 0)
            prov_key_add(c, c->seg[2]);
        else
            gh_adm_method_not_allowed(c, "POST");
    } else if (c->nseg == 5 && strcmp(c->seg[3], "keys") == 0) {
        if (strcmp(m, "DELETE") == 0)
            prov_key_delete(c, c->seg[2], c->seg[4]);
        else
            gh_adm_method_not_allowed(c, "DELETE");
    } else {
        gh_adm_error(c->req, 404, "not_found_error", "no route for %s %s", c->req->head.method,
                     c->req->head.path);
    }
}
