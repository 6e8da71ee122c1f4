/* json.c: request-input and answer helpers shared by the admin handlers (see json.h). */
#include "config.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gh.h"
#include "admin.h"
#include "json.h"
#include "log.h"
#include "reply.h"

/* Answers an error in Anthropic's shape; the admin API has no OpenAI routes. */
void gh_adm_error(gh_http_req_t *req, int status, const char *type, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    gh_reply_error(req, GH_SHAPE_ANTHROPIC, status, type, NULL, "%s", msg);
}

/* 400 with the message a getter or check left in err. */
void gh_adm_bad_request(gh_http_req_t *req, const gh_adm_err_t *err)
{
    gh_adm_error(req, 400, "invalid_request_error", "%s", err->msg);
}

/* 404 naming the kind of object and the name the client used. */
void gh_adm_not_found(gh_http_req_t *req, const char *what, const char *name)
{
    gh_adm_error(req, 404, "not_found_error", "%s '%s' not found", what, name);
}

/* 500 after a failure the failing site has already logged. */
void gh_adm_internal(gh_http_req_t *req)
{
    gh_adm_error(req, 500, "api_error", "internal error; see the gatehouse log");
}

/* Formats "field 'x': ..." into err; always returns GH_ERR so callers can return it directly. */
int gh_adm_field_error(gh_adm_err_t *err, const char *field, const char *fmt, ...)
{
    char what[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(err->msg, sizeof(err->msg), "field '%s': %s", field, what);
    return GH_ERR;
}

/* Parses the body with json-c in strict mode; the caller owns *out on success. Trailing bytes
 * other than white space are refused, since json-c would silently stop at the first value. */
int gh_adm_body(gh_http_req_t *req, json_object **out)
{
    json_tokener *tok = NULL;
    json_object *obj = NULL;
    enum json_tokener_error jerr;
    size_t end;
    int rc = GH_ERR;

    *out = NULL;
    if (req->body == NULL || req->body_len == 0) {
        gh_adm_error(req, 400, "invalid_request_error", "the request body must be a JSON object");
        goto done;
    }
    tok = json_tokener_new();
    if (tok == NULL) {
        gh_log_error("json_tokener_new failed");
        gh_adm_internal(req);
        goto done;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    obj = json_tokener_parse_ex(tok, req->body, (int)req->body_len);
    jerr = json_tokener_get_error(tok);
    if (jerr != json_tokener_success) {
        gh_adm_error(req, 400, "invalid_request_error", "the request body is not valid JSON: %s",
                     jerr == json_tokener_continue ? "unexpected end of input"
                                                   : json_tokener_error_desc(jerr));
        goto done;
    }
    for (end = json_tokener_get_parse_end(tok); end < req->body_len; end++) {
        if (!isspace((unsigned char)req->body[end])) {
            gh_adm_error(req, 400, "invalid_request_error",
                         "the request body is not valid JSON: data after the end of the value");
            goto done;
        }
    }
    if (obj == NULL || !json_object_is_type(obj, json_type_object)) {
        gh_adm_error(req, 400, "invalid_request_error", "the request body must be a JSON object");
        goto done;
    }
    *out = obj;
    obj = NULL;
    rc = GH_OK;
done:
    json_object_put(obj);
    if (tok != NULL)
        json_tokener_free(tok);
    return rc;
}

/* Shifts err's message right to make room for "prefix: ", truncating its end if needed. */
void gh_adm_err_prefix(gh_adm_err_t *err, const char *prefix)
{
    size_t plen = strlen(prefix) + 2, mlen = strlen(err->msg);

    if (plen + 1 >= sizeof(err->msg))
        return;
    if (mlen + plen >= sizeof(err->msg))
        mlen = sizeof(err->msg) - plen - 1;
    memmove(err->msg + plen, err->msg, mlen);
    err->msg[plen + mlen] = '\0';
    memcpy(err->msg, prefix, plen - 2);
    memcpy(err->msg + plen - 2, ": ", 2);
}

/* Lists every unknown member in one message, so a client fixes them all at once. */
int gh_adm_check_fields(json_object *obj, const char *const *allowed, const char *where,
                        gh_adm_err_t *err)
{
    char names[300] = "";
    size_t used = 0, i, nbad = 0;
    int known, n;

    json_object_object_foreach(obj, key, val)
    {
        GH_UNUSED(val);
        known = 0;
        for (i = 0; allowed[i] != NULL && !known; i++)
            known = strcmp(key, allowed[i]) == 0;
        if (known)
            continue;
        nbad++;
        n = snprintf(names + used, sizeof(names) - used, "%s'%s'", used > 0 ? ", " : "", key);
        if (n > 0 && (size_t)n < sizeof(names) - used)
            used += (size_t)n;
    }
    if (nbad == 0)
        return GH_OK;
    snprintf(err->msg, sizeof(err->msg), "%s%sunknown field%s %s", where != NULL ? where : "",
             where != NULL ? ": " : "", nbad > 1 ? "s" : "", names);
    return GH_ERR;
}

/* Looks field up; returns 0 when absent, 1 when null (refused unless nullable), 2 with a value. */
static int gh_adm_lookup(json_object *obj, const char *field, int nullable, json_object **val,
                         gh_adm_err_t *err, const char *want)
{
    *val = NULL;
    if (!json_object_object_get_ex(obj, field, val))
        return 0;
    if (*val == NULL) {
        if (!nullable) {
            gh_adm_field_error(err, field, "must be %s", want);
            return -1;
        }
        return 1;
    }
    return 2;
}

/* Describes an integer range for messages: "a non-negative integer", "an integer >= 1"... */
static void gh_adm_int_want(int64_t min, int64_t max, int nullable, char *out, size_t outsz)
{
    if (min == 0)
        snprintf(out, outsz, "a non-negative integer%s", nullable ? " or null" : "");
    else if (min == 1)
        snprintf(out, outsz, "a positive integer%s", nullable ? " or null" : "");
    else
        snprintf(out, outsz, "an integer from %lld to %lld%s", (long long)min, (long long)max,
                 nullable ? " or null" : "");
}

/* Reads an integer member; doubles like 5.0 are refused so a client sees its own mistake. */
int gh_adm_get_int(json_object *obj, const char *field, int64_t min, int64_t max, int nullable,
                   gh_adm_int_t *out, gh_adm_err_t *err)
{
    json_object *val;
    char want[96];
    int64_t v;
    int r;

    gh_adm_int_want(min, max, nullable, want, sizeof(want));
    out->has = GH_ADM_ABSENT;
    out->v = 0;
    r = gh_adm_lookup(obj, field, nullable, &val, err, want);
    if (r <= 1) {
        out->has = r == 1 ? GH_ADM_NULL : GH_ADM_ABSENT;
        return r < 0 ? GH_ERR : GH_OK;
    }
    if (!json_object_is_type(val, json_type_int))
        return gh_adm_field_error(err, field, "must be %s", want);
    v = json_object_get_int64(val);
    if (v < min)
        return gh_adm_field_error(err, field, "must be %s", want);
    if (v > max)
        return gh_adm_field_error(err, field, "must be %s, at most %lld", want, (long long)max);
    out->has = GH_ADM_VALUE;
    out->v = v;
    return GH_OK;
}

/* Reads a number member (integer or not); NaN and infinities cannot come out of JSON text. */
int gh_adm_get_num(json_object *obj, const char *field, double min, double max, int nullable,
                   gh_adm_num_t *out, gh_adm_err_t *err)
{
    json_object *val;
    char want[96];
    double v;
    int r;

    snprintf(want, sizeof(want), "a number >= %g%s", min, nullable ? " or null" : "");
    out->has = GH_ADM_ABSENT;
    out->v = 0;
    r = gh_adm_lookup(obj, field, nullable, &val, err, want);
    if (r <= 1) {
        out->has = r == 1 ? GH_ADM_NULL : GH_ADM_ABSENT;
        return r < 0 ? GH_ERR : GH_OK;
    }
    if (!json_object_is_type(val, json_type_int) && !json_object_is_type(val, json_type_double))
        return gh_adm_field_error(err, field, "must be %s", want);
    v = json_object_get_double(val);
    if (!isfinite(v) || v < min)
        return gh_adm_field_error(err, field, "must be %s", want);
    if (v > max)
        return gh_adm_field_error(err, field, "must be %s, at most %g", want, max);
    out->has = GH_ADM_VALUE;
    out->v = v;
    return GH_OK;
}

/* Reads a string member. Control characters are refused everywhere: these strings end up in
 * URLs, HTTP headers, log lines and Prometheus labels. */
int gh_adm_get_str(json_object *obj, const char *field, size_t maxlen, int nullable,
                   gh_adm_str_t *out, gh_adm_err_t *err)
{
    json_object *val;
    const char *s;
    char want[96];
    size_t len, i;
    int r;

    snprintf(want, sizeof(want), "a non-empty string%s", nullable ? " or null" : "");
    out->has = GH_ADM_ABSENT;
    out->v = NULL;
    r = gh_adm_lookup(obj, field, nullable, &val, err, want);
    if (r <= 1) {
        out->has = r == 1 ? GH_ADM_NULL : GH_ADM_ABSENT;
        return r < 0 ? GH_ERR : GH_OK;
    }
    if (!json_object_is_type(val, json_type_string))
        return gh_adm_field_error(err, field, "must be %s", want);
    s = json_object_get_string(val);
    len = (size_t)json_object_get_string_len(val);
    if (len == 0)
        return gh_adm_field_error(err, field, "must be %s", want);
    if (len > maxlen)
        return gh_adm_field_error(err, field, "must be at most %zu bytes long", maxlen);
    for (i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return gh_adm_field_error(err, field, "must not contain control characters");
    }
    out->has = GH_ADM_VALUE;
    out->v = s;
    return GH_OK;
}

/* Value of one hex digit, or -1. */
static int gh_adm_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes in place, optionally turning '+' into a space (query strings only). */
static int gh_adm_decode(char *s, int plus)
{
    char *w = s;
    int hi, lo;

    for (; *s != '\0'; s++) {
        if (*s == '%') {
            hi = gh_adm_hex(s[1]);
            lo = hi >= 0 ? gh_adm_hex(s[2]) : -1;
            if (lo < 0 || (hi == 0 && lo == 0))
                return GH_ERR;
            *w++ = (char)(hi * 16 + lo);
            s += 2;
        } else {
            *w++ = (plus && *s == '+') ? ' ' : *s;
        }
    }
    *w = '\0';
    return GH_OK;
}

/* Path segments keep '+' as it is: only query strings use it for spaces. */
int gh_adm_url_decode(char *s)
{
    return gh_adm_decode(s, 0);
}

/* Splits a copy of the query at '&' and '='; empty pieces ("a=1&&b=2") are skipped. */
int gh_adm_query_parse(const char *query, const char *const *allowed, gh_adm_query_t *q,
                       gh_adm_err_t *err)
{
    char *p, *next, *eq;
    size_t i;
    int known;

    memset(q, 0, sizeof(*q));
    if (query == NULL || query[0] == '\0')
        return GH_OK;
    q->buf = strdup(query);
    if (q->buf == NULL) {
        gh_log_error("strdup(query) failed");
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return GH_ERR;
    }
    for (p = q->buf; p != NULL; p = next) {
        next = strchr(p, '&');
        if (next != NULL)
            *next++ = '\0';
        if (*p == '\0')
            continue;
        eq = strchr(p, '=');
        if (eq != NULL)
            *eq++ = '\0';
        if (gh_adm_decode(p, 1) != GH_OK || (eq != NULL && gh_adm_decode(eq, 1) != GH_OK)) {
            snprintf(err->msg, sizeof(err->msg), "the query string has a bad %%-escape");
            return GH_ERR;
        }
        for (i = 0, known = 0; allowed[i] != NULL && !known; i++)
            known = strcmp(p, allowed[i]) == 0;
        if (!known) {
            snprintf(err->msg, sizeof(err->msg), "unknown query parameter '%.100s'", p);
            return GH_ERR;
        }
        if (gh_adm_query_get(q, p) != NULL) {
            snprintf(err->msg, sizeof(err->msg), "query parameter '%s' given twice", p);
            return GH_ERR;
        }
        if (q->n == GH_ADM_MAX_PARAMS) {
            snprintf(err->msg, sizeof(err->msg), "too many query parameters");
            return GH_ERR;
        }
        q->name[q->n] = p;
        q->value[q->n] = eq != NULL ? eq : "";
        q->n++;
    }
    return GH_OK;
}

/* Frees what gh_adm_query_parse allocated. */
void gh_adm_query_free(gh_adm_query_t *q)
{
    free(q->buf);
    memset(q, 0, sizeof(*q));
}

/* Linear search: there are at most a handful of parameters. */
const char *gh_adm_query_get(const gh_adm_query_t *q, const char *name)
{
    size_t i;

    for (i = 0; i < q->n; i++)
        if (strcmp(q->name[i], name) == 0)
            return q->value[i];
    return NULL;
}

/* Reads exactly n digits at *p into *v and advances *p. */
static int gh_adm_digits(const char **p, int n, int *v)
{
    int i;

    *v = 0;
    for (i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return GH_ERR;
        *v = *v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    return GH_OK;
}

/* A hand-written parser because strptime has no fractions or offsets, and sqlite's date functions
 * accept February 30th. The calendar check is a timegm round trip. */
int gh_adm_parse_time(const char *s, char out[32])
{
    struct tm tm, back;
    char tmp[96];
    int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0, oh = 0, om = 0, sign = 0, i;
    time_t t;

    if (gh_adm_digits(&s, 4, &y) != GH_OK || *s++ != '-' || gh_adm_digits(&s, 2, &mo) != GH_OK ||
        *s++ != '-' || gh_adm_digits(&s, 2, &d) != GH_OK)
        return GH_ERR;
    if (*s == 'T' || *s == 't' || *s == ' ') {
        s++;
        if (gh_adm_digits(&s, 2, &h) != GH_OK || *s++ != ':' || gh_adm_digits(&s, 2, &mi) != GH_OK)
            return GH_ERR;
        if (*s == ':') {
            s++;
            if (gh_adm_digits(&s, 2, &sec) != GH_OK)
                return GH_ERR;
            if (*s == '.' || *s == ',') {
                s++;
                if (!isdigit((unsigned char)*s))
                    return GH_ERR;
                /* milliseconds are kept, finer digits dropped (the database's resolution) */
                for (i = 0; isdigit((unsigned char)*s); i++, s++)
                    if (i < 3)
                        ms = ms * 10 + (*s - '0');
                for (; i < 3; i++)
                    ms *= 10;
            }
        }
        if (*s == 'Z' || *s == 'z') {
            s++;
        } else if (*s == '+' || *s == '-') {
            sign = *s++ == '-' ? -1 : 1;
            if (gh_adm_digits(&s, 2, &oh) != GH_OK)
                return GH_ERR;
            if (*s == ':')
                s++;
            if (gh_adm_digits(&s, 2, &om) != GH_OK || oh > 23 || om > 59)
                return GH_ERR;
        }
    }
    if (*s != '\0' || y < 1970 || h > 23 || mi > 59 || sec > 59)
        return GH_ERR;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    t = timegm(&tm);
    if (t == (time_t)-1 || gmtime_r(&t, &back) == NULL || back.tm_year != y - 1900 ||
        back.tm_mon != mo - 1 || back.tm_mday != d)
        return GH_ERR;
    t -= (time_t)sign * (oh * 3600 + om * 60);
    if (gmtime_r(&t, &back) == NULL || back.tm_year + 1900 > 9999)
        return GH_ERR;
    /* a roomy buffer first: the compiler cannot know the fields are in range */
    snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", back.tm_year + 1900,
             back.tm_mon + 1, back.tm_mday, back.tm_hour, back.tm_min, back.tm_sec, ms);
    if (strlen(tmp) != GH_ADM_TIME_LEN)
        return GH_ERR;
    memcpy(out, tmp, GH_ADM_TIME_LEN + 1);
    return GH_OK;
}

/* json-c prints doubles with %.17g (0.1 becomes 0.10000000000000001); the shortest %g form that
 * reads back to the same value is kept instead, as its own serialisation string. */
json_object *gh_adm_new_double(double d)
{
    char buf[64];
    int prec;

    for (prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    return json_object_new_double_s(d, buf);
}

/* Maps sqlite's dynamic types onto JSON; BLOBs never reach an answer (keys are sealed BLOBs). */
json_object *gh_adm_column(sqlite3_stmt *st, int i)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER:
        return json_object_new_int64(sqlite3_column_int64(st, i));
    case SQLITE_FLOAT:
        return gh_adm_new_double(sqlite3_column_double(st, i));
    case SQLITE_TEXT:
        return json_object_new_string_len((const char *)sqlite3_column_text(st, i),
                                          sqlite3_column_bytes(st, i));
    default:
        return NULL;
    }
}

/* Builds {column: value} for the current row; used for rows users read as they are stored. */
json_object *gh_adm_row(sqlite3_stmt *st)
{
    json_object *o = json_object_new_object();
    int i, n = sqlite3_column_count(st);

    if (o == NULL)
        return NULL;
    for (i = 0; i < n; i++)
        json_object_object_add(o, sqlite3_column_name(st, i), gh_adm_column(st, i));
    return o;
}

/* Parses a stored JSON text column; a row that does not parse (written by hand) comes back as
 * the plain string rather than failing the whole answer. */
json_object *gh_adm_column_json(sqlite3_stmt *st, int i)
{
    const char *text = (const char *)sqlite3_column_text(st, i);
    json_object *o;

    if (text == NULL)
        return NULL;
    o = json_tokener_parse(text);
    return o != NULL ? o : json_object_new_string(text);
}

/* Serialises without escaping '/', so URLs read as they were given. */
void gh_adm_reply(gh_http_req_t *req, int status, json_object *obj)
{
    const char *s;
    size_t len;

    if (obj == NULL) {
        gh_log_error("building the JSON answer failed (out of memory)");
        gh_adm_internal(req);
        return;
    }
    s = json_object_to_json_string_length(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (s == NULL) {
        gh_log_error("json_object_to_json_string_length failed");
        gh_adm_internal(req);
    } else {
        gh_reply_json(req, status, s, len);
    }
    json_object_put(obj);
}
