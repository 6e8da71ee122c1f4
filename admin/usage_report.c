/* usage_report.c: the admin API's read-only reports: usage aggregates (/admin/usage), raw usage
 * rows (/admin/usage/logs) and Prometheus metrics (/metrics). */
#include "config.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "gh.h"
#include "json.h"
#include "log.h"
#include "quota.h"
#include "shm.h"

#define GH_LOGS_DEFAULT_LIMIT 50
#define GH_LOGS_MAX_LIMIT 1000
#define GH_USAGE_MAX_GROUPS 4

/* A group_by value: what it selects and what it groups on. Constants only: the SQL text is
 * assembled from these, never from the query string. */
typedef struct {
    const char *name;
    const char *select;
    const char *group;
} usage_group_t;

static const usage_group_t usage_groups[] = {
    {"key", "u.key_id AS key_id, k.name AS key_name", "u.key_id, k.name"},
    {"model", "u.model AS model", "u.model"},
    {"provider", "u.provider AS provider", "u.provider"},
    {"day", "substr(u.started_at, 1, 10) AS day", "substr(u.started_at, 1, 10)"},
};

/* The sums every report row carries; errors counts like the usage_daily view does. */
#define USAGE_SUMS                                                                                 \
    "count(*) AS requests, "                                                                       \
    "coalesce(sum(CASE WHEN u.status >= 400 OR u.error_type IS NOT NULL THEN 1 ELSE 0 END), 0) "   \
    "AS errors, "                                                                                  \
    "coalesce(sum(u.input_tokens), 0) AS input_tokens, "                                           \
    "coalesce(sum(u.output_tokens), 0) AS output_tokens, "                                         \
    "coalesce(sum(u.cache_creation_input_tokens), 0) AS cache_creation_input_tokens, "             \
    "coalesce(sum(u.cache_read_input_tokens), 0) AS cache_read_input_tokens, "                     \
    "round(coalesce(sum(u.cost_usd), 0), 6) AS cost_usd "

/* The filters of a usage report, normalised. */
typedef struct {
    const char *from; /* NULL = unbounded */
    const char *to;
    const char *key_id;
    char from_buf[32];
    char to_buf[32];
    const usage_group_t *groups[GH_USAGE_MAX_GROUPS];
    size_t ngroups;
} usage_q_t;

/* Parses group_by ("key,model"): each value known and given once. list is modified. */
static int usage_group_by(char *list, usage_q_t *q, gh_adm_err_t *err)
{
    char *tok, *save = NULL;
    size_t i, j;

    for (tok = strtok_r(list, ", ", &save); tok != NULL; tok = strtok_r(NULL, ", ", &save)) {
        for (i = 0; i < GH_ARRAY_LEN(usage_groups); i++)
            if (strcmp(tok, usage_groups[i].name) == 0)
                break;
        if (i == GH_ARRAY_LEN(usage_groups)) {
            snprintf(err->msg, sizeof(err->msg),
                     "group_by: unknown value '%.64s' (use key, model, provider, day)", tok);
            return GH_ERR;
        }
        for (j = 0; j < q->ngroups; j++)
            if (q->groups[j] == &usage_groups[i]) {
                snprintf(err->msg, sizeof(err->msg), "group_by: '%s' is given twice", tok);
                return GH_ERR;
            }
        q->groups[q->ngroups++] = &usage_groups[i];
    }
    return GH_OK;
}

/* Reads from/to/key_id/group_by. groups_buf receives a copy of group_by for tokenising. */
static int usage_params(const gh_adm_query_t *qs, usage_q_t *q, char *groups_buf, size_t gsz,
                        gh_adm_err_t *err)
{
    const char *from = gh_adm_query_get(qs, "from"), *to = gh_adm_query_get(qs, "to");
    const char *gb = gh_adm_query_get(qs, "group_by");

    if (from != NULL) {
        if (gh_adm_parse_time(from, q->from_buf) != GH_OK) {
            snprintf(err->msg, sizeof(err->msg),
                     "from: must be a date (YYYY-MM-DD) or an ISO 8601 UTC time");
            return GH_ERR;
        }
        q->from = q->from_buf;
    }
    if (to != NULL) {
        if (gh_adm_parse_time(to, q->to_buf) != GH_OK) {
            snprintf(err->msg, sizeof(err->msg),
                     "to: must be a date (YYYY-MM-DD) or an ISO 8601 UTC time");
            return GH_ERR;
        }
        q->to = q->to_buf;
    }
    q->key_id = gh_adm_query_get(qs, "key_id");
    if (q->key_id != NULL && q->key_id[0] == '\0')
        q->key_id = NULL;
    if (gb == NULL)
        return GH_OK;
    if (strlen(gb) >= gsz) {
        snprintf(err->msg, sizeof(err->msg), "group_by: too long");
        return GH_ERR;
    }
    snprintf(groups_buf, gsz, "%s", gb);
    return usage_group_by(groups_buf, q, err);
}

/* Runs one aggregate over the filters, grouped by ngroups groups (0 = the total). Returns the
 * rows as a JSON array, or NULL after logging. */
static json_object *usage_query(sqlite3 *db, const usage_q_t *q, size_t ngroups)
{
    char sql[2048];
    const char *binds[3];
    sqlite3_stmt *st = NULL;
    json_object *rows = NULL, *row;
    size_t used, i, nb = 0;
    int src;

    used = (size_t)snprintf(sql, sizeof(sql), "SELECT ");
    for (i = 0; i < ngroups; i++)
        used += (size_t)snprintf(sql + used, sizeof(sql) - used, "%s, ", q->groups[i]->select);
    used += (size_t)snprintf(sql + used, sizeof(sql) - used,
                             USAGE_SUMS "FROM usage_log u LEFT JOIN virtual_keys k "
                                        "ON k.id = u.key_id WHERE 1 = 1");
    /* only the filters given, so the started_at and key_id indexes can be used */
    if (q->from != NULL) {
        binds[nb++] = q->from;
        used += (size_t)snprintf(sql + used, sizeof(sql) - used, " AND u.started_at >= ?%zu", nb);
    }
    if (q->to != NULL) {
        binds[nb++] = q->to;
        used += (size_t)snprintf(sql + used, sizeof(sql) - used, " AND u.started_at < ?%zu", nb);
    }
    if (q->key_id != NULL) {
        binds[nb++] = q->key_id;
        used += (size_t)snprintf(sql + used, sizeof(sql) - used, " AND u.key_id = ?%zu", nb);
    }
    for (i = 0; i < ngroups; i++)
        used += (size_t)snprintf(sql + used, sizeof(sql) - used, "%s%s",
                                 i == 0 ? " GROUP BY " : ", ", q->groups[i]->group);
    if (ngroups > 0)
        used += (size_t)snprintf(sql + used, sizeof(sql) - used,
                                 " ORDER BY cost_usd DESC, requests DESC");
    for (i = 0; i < ngroups; i++)
        used += (size_t)snprintf(sql + used, sizeof(sql) - used, ", %s", q->groups[i]->group);
    if (used >= sizeof(sql)) {
        gh_log_error("usage report SQL does not fit %zu bytes", sizeof(sql));
        goto fail;
    }
    if (gh_adm_prepare(db, sql, &st) != GH_OK)
        goto fail;
    for (i = 0; i < nb; i++)
        if (sqlite3_bind_text(st, (int)i + 1, binds[i], -1, SQLITE_STATIC) != SQLITE_OK) {
            gh_log_error("sqlite3_bind_text(usage filter %zu): %s", i + 1, sqlite3_errmsg(db));
            goto fail;
        }
    rows = json_object_new_array();
    if (rows == NULL)
        goto fail;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        row = gh_adm_row(st);
        if (row == NULL || json_object_array_add(rows, row) != 0) {
            json_object_put(row);
            goto fail;
        }
    }
    if (src != SQLITE_DONE) {
        gh_log_error("sqlite3_step(usage report): %s", sqlite3_errmsg(db));
        goto fail;
    }
    sqlite3_finalize(st);
    return rows;
fail:
    sqlite3_finalize(st);
    json_object_put(rows);
    return NULL;
}

/* GET /admin/usage: {"from","to","group_by","data","total"}. Without group_by, data holds the
 * total alone (or nothing when there was no request). */
static void usage_report(gh_adm_ctx_t *c)
{
    static const char *const allowed[] = {"from", "to", "key_id", "group_by", NULL};
    json_object *out = NULL, *data = NULL, *total = NULL, *gb, *t;
    char groups_buf[256];
    gh_adm_query_t qs;
    gh_adm_err_t err;
    usage_q_t q;
    size_t i;

    memset(&q, 0, sizeof(q));
    if (gh_adm_query_parse(c->req->head.query, allowed, &qs, &err) != GH_OK ||
        usage_params(&qs, &q, groups_buf, sizeof(groups_buf), &err) != GH_OK) {
        gh_adm_bad_request(c->req, &err);
        goto done;
    }
    data = usage_query(c->db, &q, q.ngroups);
    total = usage_query(c->db, &q, 0);
    out = json_object_new_object();
    gb = json_object_new_array();
    if (data == NULL || total == NULL || out == NULL || gb == NULL) {
        json_object_put(gb);
        gh_adm_internal(c->req);
        goto done;
    }
    for (i = 0; i < q.ngroups; i++)
        json_object_array_add(gb, json_object_new_string(q.groups[i]->name));
    t = json_object_get(json_object_array_get_idx(total, 0));
    if (q.ngroups == 0 && json_object_get_int64(json_object_object_get(t, "requests")) == 0)
        json_object_array_del_idx(data, 0, 1);
    json_object_object_add(out, "from", q.from ? json_object_new_string(q.from) : NULL);
    json_object_object_add(out, "to", q.to ? json_object_new_string(q.to) : NULL);
    if (q.key_id != NULL)
        json_object_object_add(out, "key_id", json_object_new_string(q.key_id));
    json_object_object_add(out, "group_by", gb);
    json_object_object_add(out, "data", data);
    json_object_object_add(out, "total", t);
    data = NULL;
    gh_adm_reply(c->req, 200, out);
    out = NULL;
done:
    json_object_put(out);
    json_object_put(data);
    json_object_put(total);
    gh_adm_query_free(&qs);
}

/* Parses a positive decimal integer query value; GH_ERR for anything else. */
static int usage_posint(const char *s, long long *v)
{
    char *end;

    if (s == NULL || s[0] < '0' || s[0] > '9')
        return GH_ERR;
    *v = strtoll(s, &end, 10);
    return *end == '\0' && *v > 0 ? GH_OK : GH_ERR;
}

/* GET /admin/usage/logs: newest rows first (by id), paged with before=<id>. Every column is
 * answered as stored, so new usage_log columns show up without a change here. */
static void usage_logs(gh_adm_ctx_t *c)
{
    static const char *const allowed[] = {"key_id", "limit", "before", NULL};
    const char *key_id, *s;
    long long limit = GH_LOGS_DEFAULT_LIMIT, before = 0, last_id = 0;
    json_object *out = NULL, *data = NULL, *row;
    sqlite3_stmt *st = NULL;
    gh_adm_query_t qs;
    gh_adm_err_t err;
    int src, nb = 0, has_more = 0, answered = 1;
    char sql[256];

    if (gh_adm_query_parse(c->req->head.query, allowed, &qs, &err) != GH_OK) {
        gh_adm_bad_request(c->req, &err);
        goto done;
    }
    key_id = gh_adm_query_get(&qs, "key_id");
    if ((s = gh_adm_query_get(&qs, "limit")) != NULL &&
        (usage_posint(s, &limit) != GH_OK || limit > GH_LOGS_MAX_LIMIT)) {
        gh_adm_error(c->req, 400, "invalid_request_error", "limit: must be an integer from 1 to %d",
                     GH_LOGS_MAX_LIMIT);
        goto done;
    }
    if ((s = gh_adm_query_get(&qs, "before")) != NULL && usage_posint(s, &before) != GH_OK) {
        gh_adm_error(c->req, 400, "invalid_request_error",
                     "before: must be a positive integer (a usage_log id)");
        goto done;
    }
    answered = 0;
    snprintf(sql, sizeof(sql), "SELECT * FROM usage_log WHERE 1 = 1%s%s ORDER BY id DESC LIMIT ?%d",
             key_id != NULL ? " AND key_id = ?1" : "",
             before > 0 ? (key_id != NULL ? " AND id < ?2" : " AND id < ?1") : "",
             1 + (key_id != NULL) + (before > 0));
    if (gh_adm_prepare(c->db, sql, &st) != GH_OK)
        goto done;
    if ((key_id != NULL && sqlite3_bind_text(st, ++nb, key_id, -1, SQLITE_STATIC) != SQLITE_OK) ||
        (before > 0 && sqlite3_bind_int64(st, ++nb, before) != SQLITE_OK) ||
        sqlite3_bind_int64(st, ++nb, limit + 1) != SQLITE_OK) {
        gh_log_error("sqlite3_bind(usage_log filters): %s", sqlite3_errmsg(c->db));
        goto done;
    }
    data = json_object_new_array();
    if (data == NULL)
        goto done;
    /* one row more than asked tells whether another page exists */
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if ((long long)json_object_array_length(data) == limit) {
            has_more = 1;
            break;
        }
        row = gh_adm_row(st);
        if (row == NULL || json_object_array_add(data, row) != 0) {
            json_object_put(row);
            goto done;
        }
        last_id = sqlite3_column_int64(st, 0);
    }
    if (!has_more && src != SQLITE_DONE) {
        gh_log_error("sqlite3_step(SELECT FROM usage_log): %s", sqlite3_errmsg(c->db));
        goto done;
    }
    out = json_object_new_object();
    if (out == NULL)
        goto done;
    json_object_object_add(out, "data", data);
    data = NULL;
    json_object_object_add(out, "has_more", json_object_new_boolean(has_more));
    json_object_object_add(out, "next_before", last_id > 0 ? json_object_new_int64(last_id) : NULL);
    gh_adm_reply(c->req, 200, out);
    out = NULL;
    answered = 1;
done:
    sqlite3_finalize(st);
    if (!answered)
        gh_adm_internal(c->req);
    json_object_put(out);
    json_object_put(data);
    gh_adm_query_free(&qs);
}

/* Routes /admin/usage and /admin/usage/logs (GET only). */
void gh_adm_usage(gh_adm_ctx_t *c)
{
    int logs = c->nseg == 3 && strcmp(c->seg[2], "logs") == 0;

    if (c->nseg != 2 && !logs)
        gh_adm_error(c->req, 404, "not_found_error", "no route for %s %s", c->req->head.method,
                     c->req->head.path);
    else if (strcmp(c->method, "GET") != 0)
        gh_adm_method_not_allowed(c, "GET, HEAD");
    else if (logs)
        usage_logs(c);
    else
        usage_report(c);
}

/* Writes v as a Prometheus label value: backslash, quote and newline escaped. */
static void metrics_label(FILE *f, const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\\' || *v == '"')
            fprintf(f, "\\%c", *v);
        else if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
}

/* Writes one metric family header. */
static void metrics_head(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The database part of /metrics: key and provider counts, and requests of the last 24 hours by
 * provider and status. */
static int metrics_db(sqlite3 *db, FILE *f)
{
    sqlite3_stmt *st = NULL;
    const char *p;
    int src, rc = GH_ERR;

    if (gh_adm_prepare(db,
                       "SELECT coalesce(sum(revoked_at IS NULL), 0), "
                       "coalesce(sum(revoked_at IS NOT NULL), 0), "
                       "(SELECT count(*) FROM providers) FROM virtual_keys",
                       &st) != GH_OK)
        goto done;
    if (sqlite3_step(st) != SQLITE_ROW) {
        gh_log_error("sqlite3_step(metrics counts): %s", sqlite3_errmsg(db));
        goto done;
    }
    metrics_head(f, "gatehouse_virtual_keys", "gauge", "Virtual keys by state.");
    fprintf(f, "gatehouse_virtual_keys{state=\"active\"} %lld\n",
            (long long)sqlite3_column_int64(st, 0));
    fprintf(f, "gatehouse_virtual_keys{state=\"revoked\"} %lld\n",
            (long long)sqlite3_column_int64(st, 1));
    metrics_head(f, "gatehouse_providers", "gauge", "Configured upstream providers.");
    fprintf(f, "gatehouse_providers %lld\n", (long long)sqlite3_column_int64(st, 2));
    sqlite3_finalize(st);
    st = NULL;
    if (gh_adm_prepare(db,
                       "SELECT coalesce(provider, ''), status, count(*) FROM usage_log "
                       "WHERE started_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day') "
                       "GROUP BY 1, 2 ORDER BY 1, 2",
                       &st) != GH_OK)
        goto done;
    metrics_head(f, "gatehouse_requests_24h", "gauge",
                 "Requests logged in the last 24 hours by provider and status.");
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        p = (const char *)sqlite3_column_text(st, 0);
        fputs("gatehouse_requests_24h{provider=\"", f);
        metrics_label(f, p != NULL ? p : "");
        fprintf(f, "\",status=\"%d\"} %lld\n", sqlite3_column_int(st, 1),
                (long long)sqlite3_column_int64(st, 2));
    }
    if (src != SQLITE_DONE) {
        gh_log_error("sqlite3_step(metrics requests_24h): %s", sqlite3_errmsg(db));
        goto done;
    }
    rc = GH_OK;
done:
    sqlite3_finalize(st);
    return rc;
}

/* GET /metrics: Prometheus text format 0.0.4, built in a memory stream. */
void gh_adm_metrics(gh_adm_ctx_t *c)
{
    static const char ctype[] = "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n";
    uint64_t pub = 0, wr = 0, drop = 0, epoch = 0;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = NULL;
    int ok;

    if (strcmp(c->method, "GET") != 0) {
        gh_adm_method_not_allowed(c, "GET, HEAD");
        goto done;
    }
    if (gh_shm != NULL) {
        pub = atomic_load(&gh_shm->usage_published);
        wr = atomic_load(&gh_shm->usage_written);
        drop = atomic_load(&gh_shm->usage_dropped);
        epoch = atomic_load(&gh_shm->config_epoch);
    }
    f = open_memstream(&buf, &len);
    if (f == NULL) {
        gh_log_error("open_memstream(metrics) failed");
        gh_adm_internal(c->req);
        goto done;
    }
    metrics_head(f, "gatehouse_usage_records_published_total", "counter",
                 "Usage records workers published to shared memory.");
    fprintf(f, "gatehouse_usage_records_published_total %llu\n", (unsigned long long)pub);
    metrics_head(f, "gatehouse_usage_records_written_total", "counter",
                 "Usage records written to SQLite.");
    fprintf(f, "gatehouse_usage_records_written_total %llu\n", (unsigned long long)wr);
    metrics_head(f, "gatehouse_usage_records_dropped_total", "counter",
                 "Usage records lost because every shared-memory slot was busy.");
    fprintf(f, "gatehouse_usage_records_dropped_total %llu\n", (unsigned long long)drop);
    metrics_head(f, "gatehouse_config_epoch", "gauge",
                 "Configuration epoch, bumped by every admin write.");
    fprintf(f, "gatehouse_config_epoch %llu\n", (unsigned long long)epoch);
    {
        static const char *const reasons[GH_LIMITS_NREASONS] = {
            "requests_rate_limited", "tokens_rate_limited", "concurrency_limited",
            "budget_exceeded"};
        uint64_t refused[GH_LIMITS_NREASONS];
        int i;
        gh_limits_stats(refused);
        metrics_head(f, "gatehouse_refusals_total", "counter",
                     "Requests gatehouse refused itself, by reason.");
        for (i = 0; i < GH_LIMITS_NREASONS; i++)
            fprintf(f, "gatehouse_refusals_total{reason=\"%s\"} %llu\n", reasons[i],
                    (unsigned long long)refused[i]);
        metrics_head(f, "gatehouse_limits_fail_open_total", "counter",
                     "Limit checks that admitted a request because a limits table was full.");
        fprintf(f, "gatehouse_limits_fail_open_total %llu\n",
                (unsigned long long)gh_limits_fail_opens());
    }
    ok = metrics_db(c->db, f) == GH_OK;
    if (fclose(f) != 0 || buf == NULL) {
        gh_log_error("fclose(metrics memory stream) failed");
        ok = 0;
    }
    f = NULL;
    if (!ok)
        gh_adm_internal(c->req);
    else
        gh_http_respond(c->req, 200, ctype, sizeof(ctype) - 1, buf, len);
done:
    if (f != NULL)
        fclose(f);
    free(buf);
}
