/* json.h: request-input and answer helpers for the admin handlers: JSON bodies on json-c with
 * typed field getters, query strings, URL decoding, timestamps, and JSON or error answers. */
#ifndef GH_ADMIN_JSON_H
#define GH_ADMIN_JSON_H

#include <json-c/json.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

/* The message of the first bad input, for a 400; it never quotes a value, only names. */
typedef struct {
    char msg[512];
} gh_adm_err_t;

/* What a request field held. */
typedef enum {
    GH_ADM_ABSENT = 0,
    GH_ADM_NULL,
    GH_ADM_VALUE,
} gh_adm_has_t;

typedef struct {
    gh_adm_has_t has;
    int64_t v;
} gh_adm_int_t;

typedef struct {
    gh_adm_has_t has;
    double v;
} gh_adm_num_t;

typedef struct {
    gh_adm_has_t has;
    const char *v; /* points into the json object it came from */
} gh_adm_str_t;

/* Parses the request body as one JSON object into *out (caller puts it). On failure answers 400
 * invalid_request_error itself and returns GH_ERR: the request is then finished. */
int gh_adm_body(gh_http_req_t *req, json_object **out);

/* Fails naming every member of obj whose key is not in the NULL-terminated allowed list. */
int gh_adm_check_fields(json_object *obj, const char *const *allowed, const char *where,
                        gh_adm_err_t *err);

/* Typed getters of obj's member field. Absent stays GH_ADM_ABSENT; null is refused unless
 * nullable. On a wrong type or range they fail with "field 'x': must be ...". */
int gh_adm_get_int(json_object *obj, const char *field, int64_t min, int64_t max, int nullable,
                   gh_adm_int_t *out, gh_adm_err_t *err);
int gh_adm_get_num(json_object *obj, const char *field, double min, double max, int nullable,
                   gh_adm_num_t *out, gh_adm_err_t *err);
/* Strings must be 1..maxlen bytes without control characters. */
int gh_adm_get_str(json_object *obj, const char *field, size_t maxlen, int nullable,
                   gh_adm_str_t *out, gh_adm_err_t *err);

/* Sets err to "field 'x': fmt..." and returns GH_ERR, for checks the getters cannot make. */
int gh_adm_field_error(gh_adm_err_t *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A parsed query string: names and values URL-decoded ('+' is a space), buf owned here. */
#define GH_ADM_MAX_PARAMS 16
typedef struct {
    char *buf;
    size_t n;
    const char *name[GH_ADM_MAX_PARAMS];
    const char *value[GH_ADM_MAX_PARAMS];
} gh_adm_query_t;

/* Puts "prefix: " in front of err's message (the position of a nested element). */
void gh_adm_err_prefix(gh_adm_err_t *err, const char *prefix);

/* Parses query (may be NULL) into q, refusing repeated or unknown names (allowed is
 * NULL-terminated). Free q with gh_adm_query_free even on failure. */
int gh_adm_query_parse(const char *query, const char *const *allowed, gh_adm_query_t *q,
                       gh_adm_err_t *err);
void gh_adm_query_free(gh_adm_query_t *q);

/* The value of parameter name, or NULL when it was not given. */
const char *gh_adm_query_get(const gh_adm_query_t *q, const char *name);

/* Decodes %XX escapes of a path segment in place ('+' stays). GH_ERR on a bad escape or %00. */
int gh_adm_url_decode(char *s);

/* Normalises an ISO 8601 date ("YYYY-MM-DD", midnight UTC) or time ("YYYY-MM-DDTHH:MM[:SS[.f]]"
 * with Z, an offset, or nothing for UTC) to "YYYY-MM-DDTHH:MM:SS.mmmZ" in out. */
int gh_adm_parse_time(const char *s, char out[32]);

/* A double for an answer, serialised in its shortest exact form rather than with %.17g noise. */
json_object *gh_adm_new_double(double d);

/* Column i of the current row of st as JSON (NULL for SQL NULL). */
json_object *gh_adm_column(sqlite3_stmt *st, int i);

/* Every column of the current row of st as a JSON object keyed by column name. */
json_object *gh_adm_row(sqlite3_stmt *st);

/* A TEXT column holding JSON (models, metadata) parsed back into JSON, or NULL. */
json_object *gh_adm_column_json(sqlite3_stmt *st, int i);

/* Serialises obj, answers it with status and puts obj. NULL obj answers 500. */
void gh_adm_reply(gh_http_req_t *req, int status, json_object *obj);

/* Answers an error in Anthropic's shape (message printf-formatted). */
void gh_adm_error(gh_http_req_t *req, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Common answers: 400 with err's message, 404 naming what, 500 after an internal failure. */
void gh_adm_bad_request(gh_http_req_t *req, const gh_adm_err_t *err);
void gh_adm_not_found(gh_http_req_t *req, const char *what, const char *name);
void gh_adm_internal(gh_http_req_t *req);

#endif
