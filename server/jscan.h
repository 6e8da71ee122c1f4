/* jscan.h: a zero-allocation validating scan of a JSON object that locates top-level members,
 * so native requests can be forwarded byte for byte and only spliced where they must change. */
#ifndef GH_JSCAN_H
#define GH_JSCAN_H

#include <stddef.h>

typedef enum {
    GH_JSON_ABSENT = 0, /* the key was not found at the top level */
    GH_JSON_STRING,
    GH_JSON_NUMBER,
    GH_JSON_TRUE,
    GH_JSON_FALSE,
    GH_JSON_NULL,
    GH_JSON_OBJECT,
    GH_JSON_ARRAY,
} gh_json_type_t;

/* Where one top-level member sits in the buffer. off/len cover the raw value bytes exactly as
 * written (a string includes its quotes). member_off/member_len cover the whole member from the
 * key's opening quote through the end of the value (no surrounding comma or white space), so a
 * caller can remove or replace the member. */
typedef struct {
    gh_json_type_t type;
    size_t off;
    size_t len;
    size_t member_off;
    size_t member_len;
} gh_jspan_t;

#define GH_JSCAN_MAX_DEPTH 256

/* Validates that buf[0..len) is exactly one JSON object (RFC 8259, surrounding white space
 * allowed, nesting up to GH_JSCAN_MAX_DEPTH) and, for each of the nkeys top-level keys named in
 * keys, fills spans[i] (type GH_JSON_ABSENT when missing; the last occurrence wins when a key is
 * repeated). Keys are compared after unescaping (so "mo\u0064el" matches "model"). Keys inside
 * nested objects or arrays never match. Returns GH_OK, or GH_ERR when the text is not a valid
 * JSON object; then *err_off (if not NULL) is the byte offset where parsing failed. */
int gh_jscan_object(const char *buf, size_t len, const char *const *keys, size_t nkeys,
                    gh_jspan_t *spans, size_t *err_off);

/* Decodes the JSON string value at span (type GH_JSON_STRING) into out as UTF-8, NUL-terminated.
 * Returns the decoded length, or -1 when the span is not a string, the escape is invalid or the
 * result does not fit in outsz bytes (including the NUL). */
long gh_jscan_string(const char *buf, const gh_jspan_t *span, char *out, size_t outsz);

/* Writes s as a JSON string literal (with quotes and escapes) into out, NUL-terminated.
 * Returns the length written, or -1 when it does not fit in outsz bytes. */
long gh_json_quote(const char *s, size_t slen, char *out, size_t outsz);

#endif
