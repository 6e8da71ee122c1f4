/* keys.c: the admin API's /admin/keys resource: virtual keys, whose secret is shown once (create
 * and rotate answers) and stored only as a keyed hash. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "admin.h"
#include "gh.h"
#include "json.h"
#include "log.h"
#include "route.h"

#define GH_VK_NAME_MAX 200
#define GH_VK_MODEL_MAX 256
#define GH_VK_MAX_MODELS 256
#define GH_VK_METADATA_MAX 16384
#define GH_VK_INT_MAX 2147483647
#define GH_VK_BUDGET_MAX 1e12
#define GH_VK_ID_LEN 19 /* "vk_" + 16 hex */
#define GH_VK_SECRET_SZ 128
#define GH_VK_REWRITE_MAX (GH_MODEL_MAX - 1) /* force_model, alias names and targets */
#define GH_VK_MAX_ALIASES 64

static const char *const vk_fields[] = {
    "name",       "models",        "rpm_limit",  "itpm_limit", "otpm_limit",  "max_parallel",
    "budget_usd", "budget_period", "expires_at", "metadata",   "force_model", "aliases",
    NULL,
};

/* The nullable limit columns, in the answer's order. */
static const char *const vk_ints[] = {"rpm_limit", "itpm_limit", "otpm_limit", "max_parallel"};
#define GH_VK_NINTS (sizeof(vk_ints) / sizeof(vk_ints[0]))

/* A validated create or patch body. Strings point into the request's JSON, except the
 * normalised expiry which is ours. */
typedef struct {
    gh_adm_str_t name;
    gh_adm_has_t models_has;
    const char *models; /* JSON text of the array */
    gh_adm_int_t ints[GH_VK_NINTS];
    gh_adm_num_t budget;
    gh_adm_str_t period;
    gh_adm_has_t expires_has;
    char expires[32];
    gh_adm_has_t metadata_has;
    const char *metadata; /* JSON text of the object */
    gh_adm_str_t force_model;
    gh_adm_has_t aliases_has;
    const char *aliases; /* JSON text of the object */
} vk_in_t;

/* Serialises v the way it is stored (compact, '/' unescaped). */
static const char *vk_json_text(json_object *v)
{
    return json_object_to_json_string_ext(v,
                                          JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* Reads models: null = every model, [] = none, else an array of glob strings. */
static int vk_models(json_object *body, vk_in_t *in, gh_adm_err_t *err)
{
    json_object *arr = NULL, *el;
    size_t i, n, len, j;
    const char *s;

    if (!json_object_object_get_ex(body, "models", &arr))
        return GH_OK;
    in->models_has = arr == NULL ? GH_ADM_NULL : GH_ADM_VALUE;
    if (arr == NULL)
        return GH_OK;
    if (!json_object_is_type(arr, json_type_array))
        return gh_adm_field_error(err, "models",
                                  "must be an array of model names or patterns "
                                  "(null = every model)");
    n = json_object_array_length(arr);
    if (n > GH_VK_MAX_MODELS)
        return gh_adm_field_error(err, "models", "must have at most %d entries", GH_VK_MAX_MODELS);
    for (i = 0; i < n; i++) {
        el = json_object_array_get_idx(arr, i);
        if (!json_object_is_type(el, json_type_string))
            return gh_adm_field_error(err, "models", "entry %zu must be a string", i);
        s = json_object_get_string(el);
        len = (size_t)json_object_get_string_len(el);
        if (len == 0 || len > GH_VK_MODEL_MAX)
            return gh_adm_field_error(err, "models", "entry %zu must be 1 to %d bytes long", i,
                                      GH_VK_MODEL_MAX);
        for (j = 0; j < len; j++)
            if ((unsigned char)s[j] < 0x20 || s[j] == 0x7f)
                return gh_adm_field_error(err, "models", "entry %zu has control characters", i);
    }
    in->models = vk_json_text(arr);
    return GH_OK;
}

/* 1 when s (len bytes) is a usable alias name or target: 1..GH_VK_REWRITE_MAX bytes, no control
 * characters (it is matched against, or becomes, the model name of a request). */
static int vk_rewrite_ok(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > GH_VK_REWRITE_MAX)
        return 0;
    for (i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

/* Reads aliases: null = none, else an object mapping names clients send to the route or model
 * names used instead (which may pin "provider/" or carry "?parameters", as a client's may). */
static int vk_aliases(json_object *body, vk_in_t *in, gh_adm_err_t *err)
{
    json_object *obj = NULL;

    if (!json_object_object_get_ex(body, "aliases", &obj))
        return GH_OK;
    in->aliases_has = obj == NULL ? GH_ADM_NULL : GH_ADM_VALUE;
    if (obj == NULL)
        return GH_OK;
    if (!json_object_is_type(obj, json_type_object))
        return gh_adm_field_error(err, "aliases",
                                  "must be an object mapping model names to route or model "
                                  "names, or null");
    if (json_object_object_length(obj) > GH_VK_MAX_ALIASES)
        return gh_adm_field_error(err, "aliases", "must have at most %d entries",
                                  GH_VK_MAX_ALIASES);
    json_object_object_foreach(obj, from, to)
    {
        if (!vk_rewrite_ok(from, strlen(from)))
            return gh_adm_field_error(err, "aliases",
                                      "every name must be 1 to %d bytes without control "
                                      "characters",
                                      GH_VK_REWRITE_MAX);
        if (to == NULL || !json_object_is_type(to, json_type_string) ||
            !vk_rewrite_ok(json_object_get_string(to), (size_t)json_object_get_string_len(to)))
            return gh_adm_field_error(err, "aliases",
                                      "the value of '%s' must be a route or model name (a "
                                      "string of 1 to %d bytes without control characters)",
                                      from, GH_VK_REWRITE_MAX);
    }
    in->aliases = vk_json_text(obj);
    return GH_OK;
}

/* Validates a create or patch body into in. */
static int vk_parse(json_object *body, int create, vk_in_t *in, gh_adm_err_t *err)
{
    json_object *meta = NULL;
    gh_adm_str_t exp;
    size_t i;

    if (gh_adm_check_fields(body, vk_fields, NULL, err) != GH_OK)
        return GH_ERR;
    if (gh_adm_get_str(body, "name", GH_VK_NAME_MAX, 0, &in->name, err) != GH_OK)
        return GH_ERR;
    if (create && in->name.has != GH_ADM_VALUE)
        return gh_adm_field_error(err, "name", "is required");
    if (vk_models(body, in, err) != GH_OK)
        return GH_ERR;
    for (i = 0; i < GH_VK_NINTS; i++)
        if (gh_adm_get_int(body, vk_ints[i], 0, GH_VK_INT_MAX, 1, &in->ints[i], err) != GH_OK)
            return GH_ERR;
    if (gh_adm_get_num(body, "budget_usd", 0, GH_VK_BUDGET_MAX, 1, &in->budget, err) != GH_OK)
        return GH_ERR;
    if (gh_adm_get_str(body, "budget_period", 2, 1, &in->period, err) != GH_OK)
        return gh_adm_field_error(err, "budget_period", "must be \"1d\", \"1w\", \"1M\" or null");
    if (in->period.has == GH_ADM_VALUE && strcmp(in->period.v, "1d") != 0 &&
        strcmp(in->period.v, "1w") != 0 && strcmp(in->period.v, "1M") != 0)
        return gh_adm_field_error(err, "budget_period", "must be \"1d\", \"1w\", \"1M\" or null");
    if (gh_adm_get_str(body, "expires_at", 64, 1, &exp, err) != GH_OK)
        return GH_ERR;
    in->expires_has = exp.has;
    if (exp.has == GH_ADM_VALUE && gh_adm_parse_time(exp.v, in->expires) != GH_OK)
        return gh_adm_field_error(err, "expires_at",
                                  "must be an ISO 8601 UTC time like \"2026-12-31T00:00:00Z\"");
    if (json_object_object_get_ex(body, "metadata", &meta)) {
        in->metadata_has = meta == NULL ? GH_ADM_NULL : GH_ADM_VALUE;
        if (meta != NULL && !json_object_is_type(meta, json_type_object))
            return gh_adm_field_error(err, "metadata", "must be an object or null");
        if (meta != NULL) {
            in->metadata = vk_json_text(meta);
            if (in->metadata == NULL || strlen(in->metadata) > GH_VK_METADATA_MAX)
                return gh_adm_field_error(err, "metadata", "must be at most %d bytes as JSON",
                                          GH_VK_METADATA_MAX);
        }
    }
    if (gh_adm_get_str(body, "force_model", GH_VK_REWRITE_MAX, 1, &in->force_model, err) != GH_OK)
        return GH_ERR;
    return vk_aliases(body, in, err);
}

/* Turns the parsed fields into column assignments. stored_period is the row's budget_period
 * (NULL for a new key): a budget without a period gets "1M", and clearing the budget clears the
 * period unless one is given. */
static size_t vk_sets(const vk_in_t *in, const char *stored_period, gh_adm_set_t *sets)
{
    size_t i, n = 0;

    if (in->name.has == GH_ADM_VALUE)
        sets[n++] = gh_adm_set_text("name", in->name.v);
    if (in->models_has != GH_ADM_ABSENT)
        sets[n++] = gh_adm_set_text("models", in->models_has == GH_ADM_VALUE ? in->models : NULL);
    for (i = 0; i < GH_VK_NINTS; i++) {
        if (in->ints[i].has == GH_ADM_VALUE)
            sets[n++] = gh_adm_set_int(vk_ints[i], in->ints[i].v);
        else if (in->ints[i].has == GH_ADM_NULL)
            sets[n++] = gh_adm_set_null(vk_ints[i]);
    }
    if (in->budget.has == GH_ADM_VALUE)
        sets[n++] = gh_adm_set_double("budget_usd", in->budget.v);
    else if (in->budget.has == GH_ADM_NULL)
        sets[n++] = gh_adm_set_null("budget_usd");
    if (in->period.has != GH_ADM_ABSENT)
        sets[n++] = gh_adm_set_text("budget_period", in->period.v);
    else if (in->budget.has == GH_ADM_VALUE && stored_period == NULL)
        sets[n++] = gh_adm_set_text("budget_period", "1M");
    else if (in->budget.has == GH_ADM_NULL)
        sets[n++] = gh_adm_set_null("budget_period");
    if (in->expires_has != GH_ADM_ABSENT)
        sets[n++] =
            gh_adm_set_text("expires_at", in->expires_has == GH_ADM_VALUE ? in->expires : NULL);
    if (in->metadata_has != GH_ADM_ABSENT)
        sets[n++] =
            gh_adm_set_text("metadata", in->metadata_has == GH_ADM_VALUE ? in->metadata : NULL);
    if (in->force_model.has != GH_ADM_ABSENT)
        sets[n++] = gh_adm_set_text("force_model", in->force_model.v);
    if (in->aliases_has != GH_ADM_ABSENT)
        sets[n++] =
            gh_adm_set_text("aliases", in->aliases_has == GH_ADM_VALUE ? in->aliases : NULL);
    return n;
}

/* The key columns answers are built from, in vk_object's index order. Neither the secret nor
 * its hash is ever selected. */
#define VK_COLS                                                                                    \
    "id, name, key_last4 AS last4, models, rpm_limit, itpm_limit, otpm_limit, max_parallel, "      \
    "budget_usd, budget_period, expires_at, metadata, revoked_at, created_at, updated_at, "        \
    "force_model, aliases"

/* Builds the answer for the key row in st (columns of VK_COLS), adding "revoked" after
 * "metadata" and the model rewrites before the times (a gh_adm_row_fn; db and arg are unused).
 * The caller owns the result. */
static json_object *vk_object(sqlite3 *db, sqlite3_stmt *st, void *arg)
{
    json_object *o = json_object_new_object();
    int i;

    (void)db;
    (void)arg;
    if (o == NULL)
        return NULL;
    for (i = 0; i <= 12; i++) {
        if (i == 3 || i == 11)
            json_object_object_add(o, sqlite3_column_name(st, i), gh_adm_column_json(st, i));
        else
            json_object_object_add(o, sqlite3_column_name(st, i), gh_adm_column(st, i));
        if (i == 11)
            json_object_object_add(
                o, "revoked", json_object_new_boolean(sqlite3_column_type(st, 12) != SQLITE_NULL));
    }
    json_object_object_add(o, "force_model", gh_adm_column(st, 15));
    json_object_object_add(o, "aliases", gh_adm_column_json(st, 16));
    json_object_object_add(o, "created_at", gh_adm_column(st, 13));
    json_object_object_add(o, "updated_at", gh_adm_column(st, 14));
    return o;
}

/* Lists every key (id NULL) as {"data": [...]} or returns one (a gh_adm_load_fn); *out NULL
 * with GH_OK when the key does not exist. */
static int vk_load(sqlite3 *db, const char *id, json_object **out)
{
    gh_adm_set_t where = gh_adm_set_text("id", id);
    sqlite3_stmt *st = NULL;
    int rc = GH_ERR;

    if (gh_adm_prepare(db,
                       "SELECT " VK_COLS " FROM virtual_keys WHERE ?1 IS NULL OR id = ?1 "
                       "ORDER BY created_at, id",
                       &st) == GH_OK &&
        gh_adm_bind(st, 1, &where) == GH_OK)
        rc = gh_adm_collect(db, st, vk_object, NULL, id != NULL, out, "virtual_keys");
    sqlite3_finalize(st);
    return rc;
}

/* Answers one key with status; secret, when not NULL, is added as "key" (create, rotate). */
static void vk_answer(gh_adm_ctx_t *c, const char *id, int status, const char *secret)
{
    json_object *o = NULL;

    if (vk_load(c->db, id, &o) != GH_OK) {
        gh_adm_internal(c->req);
        return;
    }
    if (o == NULL) {
        gh_adm_not_found(c->req, "key", id);
        return;
    }
    if (secret != NULL)
        json_object_object_add(o, "key", json_object_new_string(secret));
    gh_adm_reply(c->req, status, o);
}

/* Reads whether key id exists (*exists), is revoked, and its budget period (copied into period,
 * "" when NULL). The caller holds the transaction. */
static int vk_state(sqlite3 *db, const char *id, int *exists, int *revoked, char period[4])
{
    sqlite3_stmt *st = NULL;
    const char *p;
    int src, rc = GH_ERR;

    *exists = *revoked = 0;
    period[0] = '\0';
    if (gh_adm_prepare(db,
                       "SELECT revoked_at IS NOT NULL, budget_period FROM virtual_keys "
                       "WHERE id = ?1",
                       &st) != GH_OK)
        goto done;
    if (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK) {
        gh_log_error("sqlite3_bind_text(virtual_keys.id): %s", sqlite3_errmsg(db));
        goto done;
    }
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        *exists = 1;
        *revoked = sqlite3_column_int(st, 0);
        p = (const char *)sqlite3_column_text(st, 1);
        snprintf(period, 4, "%s", p != NULL ? p : "");
    } else if (src != SQLITE_DONE) {
        gh_log_error("sqlite3_step(SELECT FROM virtual_keys): %s", sqlite3_errmsg(db));
        goto done;
    }
    rc = GH_OK;
done:
    sqlite3_finalize(st);
    return rc;
}

/* Makes a new secret with its hash and last four characters. */
static int vk_secret(const gh_keys_t *keys, char secret[GH_VK_SECRET_SZ],
                     char hash[GH_HASH_HEX_LEN + 1], char last4[5])
{
    if (gh_vkey_generate(secret, GH_VK_SECRET_SZ) != GH_OK)
        return GH_ERR;
    gh_secret_hash_hex(keys, secret, strlen(secret), hash);
    if (hash[0] == '\0')
        return GH_ERR;
    gh_secret_last4(secret, last4);
    return GH_OK;
}

/* POST /admin/keys: answers 201 with the key object and its secret, shown this once. */
static void vk_create(gh_adm_ctx_t *c)
{
    char id[GH_VK_ID_LEN + 1], secret[GH_VK_SECRET_SZ], hash[GH_HASH_HEX_LEN + 1], last4[5];
    gh_adm_set_t sets[16], where;
    json_object *body = NULL;
    sqlite3_stmt *st = NULL;
    unsigned char rnd[8];
    gh_adm_err_t err;
    vk_in_t in;
    int answered = 1;
    size_t n;

    memset(&in, 0, sizeof(in));
    secret[0] = '\0';
    if (gh_adm_body(c->req, &body) != GH_OK)
        goto done;
    if (vk_parse(body, 1, &in, &err) != GH_OK) {
        gh_adm_bad_request(c->req, &err);
        goto done;
    }
    answered = 0;
    randombytes_buf(rnd, sizeof(rnd));
    memcpy(id, "vk_", 3);
    sodium_bin2hex(id + 3, sizeof(id) - 3, rnd, sizeof(rnd));
    if (vk_secret(c->keys, secret, hash, last4) != GH_OK || gh_adm_begin(c->db) != GH_OK)
        goto done;
    if (gh_adm_prepare(c->db,
                       "INSERT INTO virtual_keys (id, name, key_hash, key_last4) "
                       "VALUES (?1, ?2, ?3, ?4)",
                       &st) != GH_OK)
        goto done;
    if (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, in.name.v, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 3, hash, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 4, last4, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_DONE) {
        gh_log_error("INSERT INTO virtual_keys: %s", sqlite3_errmsg(c->db));
        goto done;
    }
    n = vk_sets(&in, NULL, sets);
    where = gh_adm_set_text("id", id);
    if (gh_adm_update(c->db, "virtual_keys", &where, sets, n) < 0 || gh_adm_commit(c->db) != GH_OK)
        goto done;
    gh_adm_changed();
    vk_answer(c, id, 201, secret);
    answered = 1;
done:
    sqlite3_finalize(st);
    gh_adm_rollback(c->db);
    if (!answered)
        gh_adm_internal(c->req);
    sodium_memzero(secret, sizeof(secret));
    json_object_put(body);
}

/* PATCH /admin/keys/{id} and POST /admin/keys/{id}/rotate: both refuse a revoked key with 409,
 * since reviving one by accident would undo a revocation. */
static void vk_update(gh_adm_ctx_t *c, const char *id, int rotate)
{
    char secret[GH_VK_SECRET_SZ], hash[GH_HASH_HEX_LEN + 1], last4[5], period[4];
    gh_adm_set_t sets[16], where = gh_adm_set_text("id", id);
    json_object *body = NULL;
    int exists, revoked, answered = 1;
    gh_adm_err_t err;
    vk_in_t in;
    size_t n = 0;

    memset(&in, 0, sizeof(in));
    secret[0] = '\0';
    if (!rotate) {
        if (gh_adm_body(c->req, &body) != GH_OK)
            goto done;
        if (vk_parse(body, 0, &in, &err) != GH_OK) {
            gh_adm_bad_request(c->req, &err);
            goto done;
        }
    }
    answered = 0;
    if (rotate && vk_secret(c->keys, secret, hash, last4) != GH_OK)
        goto done;
    if (gh_adm_begin(c->db) != GH_OK || vk_state(c->db, id, &exists, &revoked, period) != GH_OK)
        goto done;
    if (!exists || revoked) {
        if (!exists)
            gh_adm_not_found(c->req, "key", id);
        else
            gh_adm_error(c->req, 409, "invalid_request_error",
                         "key '%s' is revoked and cannot be %s", id,
                         rotate ? "rotated" : "changed");
        answered = 1;
        goto done;
    }
    if (rotate) {
        sets[n++] = gh_adm_set_text("key_hash", hash);
        sets[n++] = gh_adm_set_text("key_last4", last4);
    } else {
        n = vk_sets(&in, period[0] != '\0' ? period : NULL, sets);
    }
    if (gh_adm_update(c->db, "virtual_keys", &where, sets, n) < 0 || gh_adm_commit(c->db) != GH_OK)
        goto done;
    gh_adm_changed();
    vk_answer(c, id, 200, rotate ? secret : NULL);
    answered = 1;
done:
    gh_adm_rollback(c->db);
    if (!answered)
        gh_adm_internal(c->req);
    sodium_memzero(secret, sizeof(secret));
    json_object_put(body);
}

/* DELETE /admin/keys/{id}: revokes (the row stays so usage_log rows keep their name). Revoking
 * twice keeps the first revocation time. */
static void vk_revoke(gh_adm_ctx_t *c, const char *id)
{
    sqlite3_stmt *st = NULL;
    int answered = 0;

    if (gh_adm_prepare(c->db,
                       "UPDATE virtual_keys SET revoked_at = coalesce(revoked_at, " GH_ADM_NOW
                       "), updated_at = " GH_ADM_NOW " WHERE id = ?1",
                       &st) != GH_OK)
        goto done;
    if (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_DONE) {
        gh_log_error("UPDATE virtual_keys SET revoked_at: %s", sqlite3_errmsg(c->db));
        goto done;
    }
    answered = 1;
    if (sqlite3_changes(c->db) == 0) {
        gh_adm_not_found(c->req, "key", id);
        goto done;
    }
    gh_adm_changed();
    vk_answer(c, id, 200, NULL);
done:
    sqlite3_finalize(st);
    if (!answered)
        gh_adm_internal(c->req);
}

/* Routes /admin/keys[/{id}[/rotate]] by segment count and method. */
void gh_adm_keys(gh_adm_ctx_t *c)
{
    const char *m = c->method;

    if (c->nseg == 2) {
        if (strcmp(m, "GET") == 0)
            gh_adm_answer(c, vk_load, NULL, 200, "key");
        else if (strcmp(m, "POST") == 0)
            vk_create(c);
        else
            gh_adm_method_not_allowed(c, "GET, POST");
    } else if (c->nseg == 3) {
        if (strcmp(m, "GET") == 0)
            vk_answer(c, c->seg[2], 200, NULL);
        else if (strcmp(m, "PATCH") == 0)
            vk_update(c, c->seg[2], 0);
        else if (strcmp(m, "DELETE") == 0)
            vk_revoke(c, c->seg[2]);
        else
            gh_adm_method_not_allowed(c, "GET, PATCH, DELETE");
    } else if (c->nseg == 4 && strcmp(c->seg[3], "rotate") == 0) {
        if (strcmp(m, "POST") == 0)
            vk_update(c, c->seg[2], 1);
        else
            gh_adm_method_not_allowed(c, "POST");
    } else {
        gh_adm_error(c->req, 404, "not_found_error", "no route for %s %s", c->req->head.method,
                     c->req->head.path);
    }
}
