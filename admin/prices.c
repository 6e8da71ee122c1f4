/* prices.c: the admin API's /admin/prices resource: per-million-token prices by model id or by a
 * glob ending in '*', read for cost and budgets. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "gh.h"
#include "json.h"
#include "log.h"

#define GH_PRICE_MODEL_MAX 200
#define GH_PRICE_MAX 1e9 /* USD per million tokens: far above any real price */
#define GH_PRICE_TOKENS_MAX 2147483647

#define PRICE_COLS                                                                                 \
    "model, input_per_mtok, output_per_mtok, cache_write_per_mtok, cache_read_per_mtok, "          \
    "max_input_tokens, updated_at"

/* The four required prices, in column order. */
static const char *const price_fields[] = {"input_per_mtok", "output_per_mtok",
                                           "cache_write_per_mtok", "cache_read_per_mtok"};
#define GH_PRICE_NFIELDS (sizeof(price_fields) / sizeof(price_fields[0]))

/* A model id or pattern: printable, no spaces, and '*' only at the end (the lookup treats a
 * trailing '*' as "any suffix"; one elsewhere would never match). */
static int price_model_ok(const char *m, gh_adm_err_t *err)
{
    size_t len = strlen(m), i;

    if (len == 0 || len > GH_PRICE_MODEL_MAX) {
        snprintf(err->msg, sizeof(err->msg), "the model name must be 1 to %d bytes long",
                 GH_PRICE_MODEL_MAX);
        return GH_ERR;
    }
    for (i = 0; i < len; i++) {
        if ((unsigned char)m[i] <= 0x20 || m[i] == 0x7f) {
            snprintf(err->msg, sizeof(err->msg),
                     "the model name must not contain spaces or control characters");
            return GH_ERR;
        }
        if (m[i] == '*' && i != len - 1) {
            snprintf(err->msg, sizeof(err->msg), "the model name may have '*' only at its end");
            return GH_ERR;
        }
    }
    return GH_OK;
}

/* Lists every price row (model NULL) as {"data": [...]} or returns one (a gh_adm_load_fn); *out
 * is NULL with GH_OK when the model has no row. */
static int price_load(sqlite3 *db, const char *model, json_object **out)
{
    gh_adm_set_t where = gh_adm_set_text("model", model);
    sqlite3_stmt *st = NULL;
    int rc = GH_ERR;

    if (gh_adm_prepare(db,
                       "SELECT " PRICE_COLS " FROM model_prices WHERE ?1 IS NULL OR model = ?1 "
                       "ORDER BY model",
                       &st) == GH_OK &&
        gh_adm_bind(st, 1, &where) == GH_OK)
        rc = gh_adm_collect(db, st, NULL, NULL, model != NULL, out, "model_prices");
    sqlite3_finalize(st);
    return rc;
}

/* Reads the PUT body: the four prices are required, max_input_tokens is optional. */
static int price_parse(json_object *body, gh_adm_num_t *prices, gh_adm_int_t *maxin,
                       gh_adm_err_t *err)
{
    static const char *const allowed[] = {"input_per_mtok",       "output_per_mtok",
                                          "cache_write_per_mtok", "cache_read_per_mtok",
                                          "max_input_tokens",     NULL};
    size_t i;

    if (gh_adm_check_fields(body, allowed, NULL, err) != GH_OK)
        return GH_ERR;
    for (i = 0; i < GH_PRICE_NFIELDS; i++) {
        if (gh_adm_get_num(body, price_fields[i], 0, GH_PRICE_MAX, 0, &prices[i], err) != GH_OK)
            return GH_ERR;
        if (prices[i].has != GH_ADM_VALUE)
            return gh_adm_field_error(err, price_fields[i], "is required");
    }
    return gh_adm_get_int(body, "max_input_tokens", 1, GH_PRICE_TOKENS_MAX, 1, maxin, err);
}

/* PUT /admin/prices/{model}: creates or replaces the whole row (PUT semantics: an omitted
 * max_input_tokens becomes NULL). A failure with a message in err is the client's (400); one
 * without is ours (500, logged where it happened). */
static void price_put(gh_adm_ctx_t *c, const char *model)
{
    gh_adm_num_t prices[GH_PRICE_NFIELDS];
    json_object *body = NULL;
    sqlite3_stmt *st = NULL;
    gh_adm_int_t maxin;
    gh_adm_err_t err;
    int answered = 0, bound = 1;
    size_t i;

    err.msg[0] = '\0';
    if (gh_adm_body(c->req, &body) != GH_OK) {
        answered = 1;
        goto done;
    }
    if (price_model_ok(model, &err) != GH_OK || price_parse(body, prices, &maxin, &err) != GH_OK)
        goto done;
    if (gh_adm_prepare(c->db,
                       "INSERT INTO model_prices (model, input_per_mtok, output_per_mtok, "
                       "cache_write_per_mtok, cache_read_per_mtok, max_input_tokens) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (model) DO UPDATE SET "
                       "input_per_mtok = excluded.input_per_mtok, "
                       "output_per_mtok = excluded.output_per_mtok, "
                       "cache_write_per_mtok = excluded.cache_write_per_mtok, "
                       "cache_read_per_mtok = excluded.cache_read_per_mtok, "
                       "max_input_tokens = excluded.max_input_tokens, "
                       "updated_at = " GH_ADM_NOW,
                       &st) != GH_OK)
        goto done;
    bound = sqlite3_bind_text(st, 1, model, -1, SQLITE_STATIC) == SQLITE_OK;
    for (i = 0; i < GH_PRICE_NFIELDS; i++)
        bound = bound && sqlite3_bind_double(st, (int)i + 2, prices[i].v) == SQLITE_OK;
    bound = bound && (maxin.has == GH_ADM_VALUE ? sqlite3_bind_int64(st, 6, maxin.v)
                                                : sqlite3_bind_null(st, 6)) == SQLITE_OK;
    if (!bound || sqlite3_step(st) != SQLITE_DONE) {
        gh_log_error("INSERT INTO model_prices: %s", sqlite3_errmsg(c->db));
        goto done;
    }
    gh_adm_changed();
    gh_adm_answer(c, price_load, model, 200, "price for model");
    answered = 1;
done:
    sqlite3_finalize(st);
    if (!answered && err.msg[0] != '\0')
        gh_adm_bad_request(c->req, &err);
    else if (!answered)
        gh_adm_internal(c->req);
    json_object_put(body);
}

/* Routes /admin/prices[/{model}]. */
void gh_adm_prices(gh_adm_ctx_t *c)
{
    if (c->nseg == 2) {
        if (strcmp(c->method, "GET") == 0)
            gh_adm_answer(c, price_load, NULL, 200, "price for model");
        else
            gh_adm_method_not_allowed(c, "GET, HEAD");
    } else if (c->nseg == 3) {
        if (strcmp(c->method, "GET") == 0)
            gh_adm_answer(c, price_load, c->seg[2], 200, "price for model");
        else if (strcmp(c->method, "PUT") == 0)
            price_put(c, c->seg[2]);
        else
            gh_adm_method_not_allowed(c, "GET, HEAD, PUT");
    } else {
        gh_adm_error(c->req, 404, "not_found_error", "no route for %s %s", c->req->head.method,
                     c->req->head.path);
    }
}
