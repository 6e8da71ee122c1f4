/* buf.h: a small growable byte buffer, always NUL-terminated once written to. */
#ifndef GH_BUF_H
#define GH_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* data is owned by the buffer; after any successful gh_buf_* call it is non-NULL and
 * data[len] == '\0', so it can be handed to str* functions. A zeroed buffer is empty and valid. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} gh_buf_t;

#define GH_BUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* Makes room for n more bytes (plus the NUL) without changing the contents. */
int gh_buf_reserve(gh_buf_t *b, size_t n);

/* Appends n bytes from p. */
int gh_buf_append(gh_buf_t *b, const void *p, size_t n);

/* Appends the NUL-terminated string s. */
int gh_buf_puts(gh_buf_t *b, const char *s);

/* Appends printf-formatted text. */
int gh_buf_printf(gh_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends printf-formatted text from a va_list. */
int gh_buf_vprintf(gh_buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Empties the buffer but keeps its memory for reuse. */
void gh_buf_reset(gh_buf_t *b);

/* Hands the contents to the caller (who frees them with free()) and leaves b empty. Returns NULL
 * only when memory runs out; an empty buffer yields "". *len (if not NULL) gets the length. */
char *gh_buf_detach(gh_buf_t *b, size_t *len);

/* Frees the memory and leaves b empty and reusable. */
void gh_buf_free(gh_buf_t *b);

/* printf-free formatting for the request path; none of these writes a NUL. */

/* Writes v in decimal to dst (room for 20 bytes); returns the number of bytes written. */
size_t gh_fmt_u64(char *dst, uint64_t v);

/* Writes v in decimal, with a '-' when negative (room for 20 bytes); returns the length. */
size_t gh_fmt_i64(char *dst, int64_t v);

/* Writes v as exactly 8 lowercase hex digits. */
void gh_fmt_hex32(char *dst, uint32_t v);

/* Length of "YYYY-MM-DDTHH:MM:SS". */
#define GH_ISO_SEC_LEN 19

/* Writes the UTC time sec (seconds since the epoch) as "YYYY-MM-DDTHH:MM:SS" (GH_ISO_SEC_LEN
 * bytes; years clamp to 0000..9999). */
void gh_fmt_iso_sec(char *dst, int64_t sec);

/* Length of "YYYY-MM-DDTHH:MM:SS.mmmZ". */
#define GH_ISO_MS_LEN (GH_ISO_SEC_LEN + 5)

/* Writes the UTC time ms (milliseconds since the epoch) as "YYYY-MM-DDTHH:MM:SS.mmmZ"
 * (GH_ISO_MS_LEN bytes). */
void gh_fmt_iso_ms(char *dst, int64_t ms);

#endif
