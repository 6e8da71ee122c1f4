/* routes.c: the admin API's /admin/routes resource: model names clients send, each mapped to an
 * ordered chain of {provider, model} targets that the workers try in turn. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "gh.h"
#include "json.h"
#include "log.h"
#include "route.h"

#define GH_RT_NAME_MAX (GH_MODEL_MAX - 1) /* what the worker's resolved name holds */
#define GH_RT_PROV_MAX 63                 /* providers.c's GH_PROV_NAME_MAX */
#define GH_RT_TOKENS_MAX 2147483647

static const char *const rt_fields[] = {"name", "targets", "enforce_context", "max_input_tokens",
                                        NULL};
static const char *const rt_target_fields[] = {"provider", "model", NULL};

/* One target on its way in; both strings point into the request's JSON. */
typedef struct {
    const char *provider;
    const char *model;
} rt_target_t;

/* A validated POST or PUT body. */
typedef struct {
    gh_adm_str_t name;
    rt_target_t targets[GH_ROUTE_MAX_TARGETS];
    size_t ntargets;
    int enforce_context;
    gh_adm_int_t max_input;
} rt_in_t;

/* Checks a route name, from the body or the path. '?' starts the parameters of a model name and
 * ':' a "provider:model" pin (an unknown provider is an error there), so a name holding either
 * could never be reached by a client. */
static int rt_name_ok(const char *name, gh_adm_err_t *err)
{
    size_t len = strlen(name), i;

    if (len == 0 || len > GH_RT_NAME_MAX)
        return gh_adm_field_error(err, "name", "must be 1 to %d bytes long", GH_RT_NAME_MAX);
    for (i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return gh_adm_field_error(err, "name", "must not contain control characters");
    if (strchr(name, '?') != NULL)
        return gh_adm_field_error(
            err, "name", "must not contain '?' (it starts the parameters of a model name)");
    if (strchr(name, ':') != NULL)
        return gh_adm_field_error(err, "name",
                                  "must not contain ':' (it pins a provider in a model name)");
    return GH_OK;
}

/* Re-labels a getter's "field 'model': ..." message as "field 'targets[i].model': ...", so the
 * client sees which element is wrong. Returns GH_ERR. */
static int rt_relabel(gh_adm_err_t *err, const char *field, const char *full)
{
    char rest[sizeof(err->msg)];
    int n;

    n = snprintf(rest, sizeof(rest), "field '%s': ", field);
    if (n > 0 && strncmp(err->msg, rest, (size_t)n) == 0) {
        snprintf(rest, sizeof(rest), "%s", err->msg + n);
        return gh_adm_field_error(err, full, "%s", rest);
    }
    gh_adm_err_prefix(err, full);
    return GH_ERR;
}

/* Reads one string member of target i into *out (required), naming it targets[i].field. */
static int rt_target_str(json_object *el, size_t i, const char *field, size_t maxlen,
                         const char **out, gh_adm_err_t *err)
{
    gh_adm_str_t s;
    char full[48];

    snprintf(full, sizeof(full), "targets[%zu].%s", i, field);
    if (gh_adm_get_str(el, field, maxlen, 0, &s, err) != GH_OK)
        return rt_relabel(err, field, full);
    if (s.has != GH_ADM_VALUE)
        return gh_adm_field_error(err, full, "is required");
    *out = s.v;
    return GH_OK;
}

/* Reads targets: a required array of 1..GH_ROUTE_MAX_TARGETS {provider, model} objects. Whether
 * each provider exists is checked later, inside the write's transaction. */
static int rt_targets_parse(json_object *body, rt_in_t *in, gh_adm_err_t *err)
{
    json_object *arr = NULL, *el;
    char where[32];
    size_t i, n;

    if (!json_object_object_get_ex(body, "targets", &arr))
        return gh_adm_field_error(err, "targets", "is required");
    if (arr == NULL || !json_object_is_type(arr, json_type_array))
        return gh_adm_field_error(err, "targets",
                                  "must be an array of {\"provider\": ..., \"model\": ...}");
    n = json_object_array_length(arr);
    if (n < 1 || n > GH_ROUTE_MAX_TARGETS)
        return gh_adm_field_error(err, "targets", "must have 1 to %d entries",
                                  GH_ROUTE_MAX_TARGETS);
    for (i = 0; i < n; i++) {
        snprintf(where, sizeof(where), "targets[%zu]", i);
        el = json_object_array_get_idx(arr, i);
        if (el == NULL || !json_object_is_type(el, json_type_object))
            return gh_adm_field_error(err, where,
                                      "must be an object {\"provider\": ..., \"model\": ...}");
        if (gh_adm_check_fields(el, rt_target_fields, where, err) != GH_OK ||
            rt_target_str(el, i, "provider", GH_RT_PROV_MAX, &in->targets[i].provider, err) !=
                GH_OK ||
            rt_target_str(el, i, "model", GH_RT_NAME_MAX, &in->targets[i].model, err) != GH_OK)
            return GH_ERR;
        /* a target's model goes upstream as it is: parameters there would never be merged */
        if (strchr(in->targets[i].model, '?') != NULL) {
            snprintf(where, sizeof(where), "targets[%zu].model", i);
            return gh_adm_field_error(err, where,
                                      "must not contain '?' (parameters belong in the name "
                                      "clients send)");
        }
    }
    in->ntargets = n;
    return GH_OK;
}

/* Validates a POST or PUT body into in (PUT semantics: what is omitted takes its default). */
static int rt_parse(json_object *body, rt_in_t *in, gh_adm_err_t *err)
{
    json_object *v = NULL;

    if (gh_adm_check_fields(body, rt_fields, NULL, err) != GH_OK)
        return GH_ERR;
    if (gh_adm_get_str(body, "name", GH_RT_NAME_MAX, 0, &in->name, err) != GH_OK)
        return GH_ERR;
    if (in->name.has == GH_ADM_VALUE && rt_name_ok(in->name.v, err) != GH_OK)
        return GH_ERR;
    if (rt_targets_parse(body, in, err) != GH_OK)
        return GH_ERR;
    if (json_object_object_get_ex(body, "enforce_context", &v)) {
        if (v == NULL || !json_object_is_type(v, json_type_boolean))
            return gh_adm_field_error(err, "enforce_context", "must be true or false");
        in->enforce_context = json_object_get_boolean(v) ? 1 : 0;
    }
    return gh_adm_get_int(body, "max_input_tokens", 1, GH_RT_TOKENS_MAX, 1, &in->max_input, err);
}

/* Sets *exists to whether a provider called name (its first len bytes) exists. */
static int rt_provider_exists(sqlite3 *db, const char *name, size_t len, int *exists)
{
    sqlite3_stmt *st = NULL;
    int src, rc = GH_ERR;

    *exists = 0;
    if (gh_adm_prepare(db, "SELECT 1 FROM providers WHERE name = ?1", &st) != GH_OK)
        goto done;
    if (sqlite3_bind_text(st, 1, name, (int)len, SQLITE_STATIC) != SQLITE_OK) {
        gh_log_error("sqlite3_bind_text(providers.name): %s", sqlite3_errmsg(db));
        goto done;
    }
    src = sqlite3_step(st);
    if (src != SQLITE_ROW && src != SQLITE_DONE) {
        gh_log_error("sqlite3_step(SELECT FROM providers): %s", sqlite3_errmsg(db));
        goto done;
    }
    *exists = src == SQLITE_ROW;
    rc = GH_OK;
done:
    sqlite3_finalize(st);
    return rc;
}

/* The checks that read other tables, made inside the transaction so they still hold at the
 * write: every target's provider exists, and the name does not begin with "provider/" (which
 * the worker reads as a pin, so the route would never be used). GH_ERR with err->msg set is the
 * client's error; with it empty, ours (logged). */
static int rt_check_refs(sqlite3 *db, const char *name, const rt_in_t *in, gh_adm_err_t *err)
{
    const char *slash = strchr(name, '/');
    char full[48];
    int exists;
    size_t i;

    for (i = 0; i < in->ntargets; i++) {
        if (rt_provider_exists(db, in->targets[i].provider, strlen(in->targets[i].provider),
                               &exists) != GH_OK)
            return GH_ERR;
        if (!exists) {
            snprintf(full, sizeof(full), "targets[%zu].provider", i);
            return gh_adm_field_error(err, full, "provider '%s' does not exist",
                                      in->targets[i].provider);
        }
    }
    if (slash == NULL)
        return GH_OK;
    if (rt_provider_exists(db, name, (size_t)(slash - name), &exists) != GH_OK)
        return GH_ERR;
    if (exists)
        return gh_adm_field_error(err, "name",
                                  "must not start with a provider's name and '/' (clients "
                                  "sending it would pin provider '%.*s')",
                                  (int)(slash - name), name);
    return GH_OK;
}

/* Finds a route's id by name: GH_OK with *id (0 when there is none) or GH_ERR. */
static int rt_id(sqlite3 *db, const char *name, int64_t *id)
{
    sqlite3_stmt *st = NULL;
    int src, rc = GH_ERR;

    *id = 0;
    if (gh_adm_prepare(db, "SELECT id FROM routes WHERE name = ?1", &st) != GH_OK)
        goto done;
    if (sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) != SQLITE_OK) {
        gh_log_error("sqlite3_bind_text(routes.name): %s", sqlite3_errmsg(db));
        goto done;
    }
    src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        *id = sqlite3_column_int64(st, 0);
    else if (src != SQLITE_DONE) {
        gh_log_error("sqlite3_step(SELECT id FROM routes): %s", sqlite3_errmsg(db));
        goto done;
    }
    rc = GH_OK;
done:
    sqlite3_finalize(st);
    return rc;
}

/* Inserts the route row; *id receives its id, or stays 0 when the name is taken. */
static int rt_insert(sqlite3 *db, const char *name, const rt_in_t *in, int64_t *id)
{
    gh_adm_set_t maxin = in->max_input.has == GH_ADM_VALUE
                             ? gh_adm_set_int("max_input_tokens", in->max_input.v)
                             : gh_adm_set_null("max_input_tokens");
    sqlite3_stmt *st = NULL;
    int src, rc = GH_ERR;

    *id = 0;
    if (gh_adm_prepare(db,
                       "INSERT INTO routes (name, enforce_context, max_input_tokens) "
                       "VALUES (?1, ?2, ?3)",
                       &st) != GH_OK)
        goto done;
    if (sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int(st, 2, in->enforce_context) != SQLITE_OK ||
        gh_adm_bind(st, 3, &maxin) != GH_OK) {
        gh_log_error("sqlite3_bind(INSERT INTO routes): %s", sqlite3_errmsg(db));
        goto done;
    }
    src = sqlite3_step(st);
    if (src != SQLITE_DONE && sqlite3_extended_errcode(db) == SQLITE_CONSTRAINT_UNIQUE) {
        rc = GH_OK;
        goto done;
    }
    if (src != SQLITE_DONE) {
        gh_log_error("sqlite3_step(INSERT INTO routes): %s", sqlite3_errmsg(db));
        goto done;
    }
    *id = sqlite3_last_insert_rowid(db);
    rc = GH_OK;
done:
    sqlite3_finalize(st);
    return rc;
}

/* Writes route id's settings (unless fresh: its INSERT set them) and replaces its target list;
 * the caller holds the transaction. Positions are 0-based, in array order. */
static int rt_replace(sqlite3 *db, int64_t id, const rt_in_t *in, int fresh)
{
    gh_adm_set_t sets[2], where = gh_adm_set_int("id", id);
    sqlite3_stmt *st = NULL;
    size_t i;
    int rc = GH_ERR;

    if (!fresh) {
        sets[0] = gh_adm_set_int("enforce_context", in->enforce_context);
        sets[1] = in->max_input.has == GH_ADM_VALUE
                      ? gh_adm_set_int("max_input_tokens", in->max_input.v)
                      : gh_adm_set_null("max_input_tokens");
        if (gh_adm_update(db, "routes", &where, sets, 2) < 0)
            goto done;
        if (gh_adm_prepare(db, "DELETE FROM route_targets WHERE route_id = ?1", &st) != GH_OK)
            goto done;
        if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK || sqlite3_step(st) != SQLITE_DONE) {
            gh_log_error("DELETE FROM route_targets: %s", sqlite3_errmsg(db));
            goto done;
        }
        sqlite3_finalize(st);
        st = NULL;
    }
    if (gh_adm_prepare(db,
                       "INSERT INTO route_targets (route_id, position, provider, model) "
                       "VALUES (?1, ?2, ?3, ?4)",
                       &st) != GH_OK)
        goto done;
    for (i = 0; i < in->ntargets; i++) {
        if (sqlite3_reset(st) != SQLITE_OK || sqlite3_bind_int64(st, 1, id) != SQLITE_OK ||
            sqlite3_bind_int(st, 2, (int)i) != SQLITE_OK ||
            sqlite3_bind_text(st, 3, in->targets[i].provider, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(st, 4, in->targets[i].model, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_step(st) != SQLITE_DONE) {
            gh_log_error("INSERT INTO route_targets: %s", sqlite3_errmsg(db));
            goto done;
        }
    }
    rc = GH_OK;
done:
    sqlite3_finalize(st);
    return rc;
}

/* The route columns answers are built from, in rt_object's index order. */
#define RT_COLS "id, name, enforce_context, max_input_tokens, created_at, updated_at"

/* Builds the answer object for the route row in st (the columns of RT_COLS), with its targets
 * listed through arg, the targets statement (a gh_adm_row_fn). The caller owns the result. */
static json_object *rt_object(sqlite3 *db, sqlite3_stmt *st, void *arg)
{
    json_object *o = json_object_new_object(), *targets = json_object_new_array(), *t;
    sqlite3_stmt *tst = arg;
    int src;

    if (o == NULL || targets == NULL)
        goto fail;
    if (sqlite3_reset(tst) != SQLITE_OK ||
        sqlite3_bind_int64(tst, 1, sqlite3_column_int64(st, 0)) != SQLITE_OK) {
        gh_log_error("sqlite3_bind_int64(route_targets.route_id): %s", sqlite3_errmsg(db));
        goto fail;
    }
    while ((src = sqlite3_step(tst)) == SQLITE_ROW) {
        t = gh_adm_row(tst);
        if (t == NULL || json_object_array_add(targets, t) != 0) {
            json_object_put(t);
            goto fail;
        }
    }
    if (src != SQLITE_DONE) {
        gh_log_error("sqlite3_step(SELECT FROM route_targets): %s", sqlite3_errmsg(db));
        goto fail;
    }
    json_object_object_add(o, "name", gh_adm_column(st, 1));
    json_object_object_add(o, "targets", targets);
    json_object_object_add(o, "enforce_context",
                           json_object_new_boolean(sqlite3_column_int(st, 2) != 0));
    json_object_object_add(o, "max_input_tokens", gh_adm_column(st, 3));
    json_object_object_add(o, "created_at", gh_adm_column(st, 4));
    json_object_object_add(o, "updated_at", gh_adm_column(st, 5));
    return o;
fail:
    json_object_put(targets);
    json_object_put(o);
    return NULL;
}

/* Lists routes (name NULL) as {"data": [...]} ordered by name, or returns one route (a
 * gh_adm_load_fn). *out is NULL with GH_OK when the named route does not exist. */
static int rt_load(sqlite3 *db, const char *name, json_object **out)
{
    gh_adm_set_t where = gh_adm_set_text("name", name);
    sqlite3_stmt *st = NULL, *tst = NULL;
    int rc = GH_ERR;

    if (gh_adm_prepare(db,
                       "SELECT " RT_COLS " FROM routes WHERE ?1 IS NULL OR name = ?1 "
                       "ORDER BY name",
                       &st) == GH_OK &&
        gh_adm_prepare(db,
                       "SELECT provider, model FROM route_targets WHERE route_id = ?1 "
                       "ORDER BY position",
                       &tst) == GH_OK &&
        gh_adm_bind(st, 1, &where) == GH_OK)
        rc = gh_adm_collect(db, st, rt_object, tst, name != NULL, out, "routes");
    sqlite3_finalize(st);
    sqlite3_finalize(tst);
    return rc;
}

/* POST /admin/routes (create; 409 when the name is taken) and PUT /admin/routes/{name} (create
 * with 201 or replace the whole route with 200). The reference checks and the write share one
 * transaction. A failure with a message in err is the client's (400); one without is ours (500,
 * logged where it happened). */
static void rt_save(gh_adm_ctx_t *c, const char *path_name)
{
    json_object *body = NULL;
    const char *name = path_name;
    gh_adm_err_t err;
    int64_t id = 0;
    int answered = 0, fresh = 0;
    rt_in_t in;

    memset(&in, 0, sizeof(in));
    err.msg[0] = '\0';
    if (gh_adm_body(c->req, &body) != GH_OK) {
        answered = 1;
        goto done;
    }
    if (path_name != NULL && rt_name_ok(path_name, &err) != GH_OK)
        goto done;
    if (rt_parse(body, &in, &err) != GH_OK)
        goto done;
    if (path_name == NULL && in.name.has != GH_ADM_VALUE) {
        gh_adm_field_error(&err, "name", "is required");
        goto done;
    }
    if (path_name != NULL && in.name.has == GH_ADM_VALUE && strcmp(in.name.v, path_name) != 0) {
        gh_adm_field_error(&err, "name",
                           "must match the name in the path (renaming a route is "
                           "a DELETE and a new route)");
        goto done;
    }
    if (name == NULL)
        name = in.name.v;
    if (gh_adm_begin(c->db) != GH_OK || rt_check_refs(c->db, name, &in, &err) != GH_OK)
        goto done;
    if (path_name != NULL && rt_id(c->db, name, &id) != GH_OK)
        goto done;
    if (id == 0) {
        if (rt_insert(c->db, name, &in, &id) != GH_OK)
            goto done;
        if (id == 0) {
            gh_adm_error(c->req, 409, "invalid_request_error", "route '%s' already exists", name);
            answered = 1;
            goto done;
        }
        fresh = 1;
    }
    if (rt_replace(c->db, id, &in, fresh) != GH_OK || gh_adm_commit(c->db) != GH_OK)
        goto done;
    gh_adm_changed();
    gh_adm_answer(c, rt_load, name, fresh ? 201 : 200, "route");
    answered = 1;
done:
    gh_adm_rollback(c->db);
    if (!answered && err.msg[0] != '\0')
        gh_adm_bad_request(c->req, &err);
    else if (!answered)
        gh_adm_internal(c->req);
    json_object_put(body);
}

/* DELETE /admin/routes/{name}: its targets go with it (ON DELETE CASCADE). */
static void rt_delete(gh_adm_ctx_t *c, const char *name)
{
    sqlite3_stmt *st = NULL;
    json_object *o;
    int answered = 0;

    if (gh_adm_prepare(c->db, "DELETE FROM routes WHERE name = ?1", &st) != GH_OK)
        goto done;
    if (sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_DONE) {
        gh_log_error("DELETE FROM routes: %s", sqlite3_errmsg(c->db));
        goto done;
    }
    answered = 1;
    if (sqlite3_changes(c->db) == 0) {
        gh_adm_not_found(c->req, "route", name);
        goto done;
    }
    gh_adm_changed();
    o = json_object_new_object();
    if (o != NULL) {
        json_object_object_add(o, "deleted", json_object_new_boolean(1));
        json_object_object_add(o, "name", json_object_new_string(name));
    }
    gh_adm_reply(c->req, 200, o);
done:
    sqlite3_finalize(st);
    if (!answered)
        gh_adm_internal(c->req);
}

/* Routes /admin/routes[/{name}] by segment count and method. A name is one path segment, so a
 * '/' in it travels as %2F (the router decodes segments after splitting). */
void gh_adm_routes(gh_adm_ctx_t *c)
{
    const char *m = c->method;

    if (c->nseg == 2) {
        if (strcmp(m, "GET") == 0)
            gh_adm_answer(c, rt_load, NULL, 200, "route");
        else if (strcmp(m, "POST") == 0)
            rt_save(c, NULL);
        else
            gh_adm_method_not_allowed(c, "GET, HEAD, POST");
    } else if (c->nseg == 3) {
        if (strcmp(m, "GET") == 0)
            gh_adm_answer(c, rt_load, c->seg[2], 200, "route");
        else if (strcmp(m, "PUT") == 0)
            rt_save(c, c->seg[2]);
        else if (strcmp(m, "DELETE") == 0)
            rt_delete(c, c->seg[2]);
        else
            gh_adm_method_not_allowed(c, "GET, HEAD, PUT, DELETE");
    } else {
        gh_adm_error(c->req, 404, "not_found_error",
                     "no route for %s %s (a route name containing '/' is sent as %%2F)",
                     c->req->head.method, c->req->head.path);
    }
}
