/* buf.c: a small growable byte buffer, always NUL-terminated once written to. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "gh.h"

#define BUF_MIN_CAP ((size_t)64)

/* Makes room for n more bytes plus the terminating NUL, doubling so that appends stay amortised
 * O(1); the buffer keeps ownership of its memory. */
int gh_buf_reserve(gh_buf_t *b, size_t n)
{
    size_t need, ncap;
    char *nd;

    if (n > (size_t)-1 - b->len - 1)
        return GH_ERR;
    need = b->len + n + 1;
    if (need <= b->cap)
        return GH_OK;
    ncap = b->cap != 0 ? b->cap : BUF_MIN_CAP;
    while (ncap < need)
        ncap = ncap > (size_t)-1 / 2 ? need : ncap * 2;
    nd = realloc(b->data, ncap);
    if (nd == NULL)
        return GH_ERR;
    if (b->data == NULL)
        nd[0] = '\0';
    b->data = nd;
    b->cap = ncap;
    return GH_OK;
}

/* Appends n bytes copied from p (p may be NULL when n is 0). */
int gh_buf_append(gh_buf_t *b, const void *p, size_t n)
{
    if (gh_buf_reserve(b, n) != GH_OK)
        return GH_ERR;
    if (n != 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return GH_OK;
}

/* Appends the NUL-terminated string s without its NUL. */
int gh_buf_puts(gh_buf_t *b, const char *s)
{
    return gh_buf_append(b, s, strlen(s));
}

/* Appends printf-formatted text; the first vsnprintf tries the spare room, a second one runs
 * only when the text did not fit. */
int gh_buf_vprintf(gh_buf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    int n;
    int rc = GH_ERR;

    if (gh_buf_reserve(b, 0) != GH_OK)
        return GH_ERR;
    va_copy(ap2, ap);
    n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    if (n < 0)
        goto done;
    if ((size_t)n >= b->cap - b->len) {
        if (gh_buf_reserve(b, (size_t)n) != GH_OK)
            goto done;
        if (vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap2) != n)
            goto done;
    }
    b->len += (size_t)n;
    rc = GH_OK;
done:
    va_end(ap2);
    if (b->data != NULL)
        b->data[b->len] = '\0';
    return rc;
}

/* Appends printf-formatted text. */
int gh_buf_printf(gh_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = gh_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

/* Empties the buffer; the memory stays with it for the next use. */
void gh_buf_reset(gh_buf_t *b)
{
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

/* Gives the caller the malloc'd contents (an empty buffer gives a fresh "") and forgets them. */
char *gh_buf_detach(gh_buf_t *b, size_t *len)
{
    char *p;

    if (gh_buf_reserve(b, 0) != GH_OK)
        return NULL;
    p = b->data;
    if (len != NULL)
        *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

/* Releases the memory; the buffer is empty and may be used again. */
void gh_buf_free(gh_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

/* ---- printf-free formatting for the request path -------------------------------------------
 * snprintf and gmtime_r cost thousands of instructions a call; the per-request headers and
 * timestamps below are written by hand instead. */

/* See buf.h. */
size_t gh_fmt_u64(char *dst, uint64_t v)
{
    char tmp[20];
    size_t n = 0, i;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (i = 0; i < n; i++)
        dst[i] = tmp[n - 1 - i];
    return n;
}

/* See buf.h. */
size_t gh_fmt_i64(char *dst, int64_t v)
{
    if (v < 0) {
        dst[0] = '-';
        return 1 + gh_fmt_u64(dst + 1, (uint64_t)0 - (uint64_t)v);
    }
    return gh_fmt_u64(dst, (uint64_t)v);
}

/* See buf.h. */
void gh_fmt_hex32(char *dst, uint32_t v)
{
    static const char hex[] = "0123456789abcdef";
    int i;

    for (i = 7; i >= 0; i--) {
        dst[i] = hex[v & 0xf];
        v >>= 4;
    }
}

/* Writes v as exactly two digits. */
static void two(char *dst, unsigned v)
{
    dst[0] = (char)('0' + v / 10 % 10);
    dst[1] = (char)('0' + v % 10);
}

/* See buf.h. The calendar arithmetic is Howard Hinnant's days-to-civil; the last second's
 * answer is kept because consecutive requests almost always share it. */
void gh_fmt_iso_sec(char *dst, int64_t sec)
{
    static int64_t last_sec = INT64_MIN;
    static char last[GH_ISO_SEC_LEN];
    int64_t days, rem, era, doe, yoe, y, doy, mp, d, m;

    if (sec == last_sec) {
        memcpy(dst, last, GH_ISO_SEC_LEN);
        return;
    }
    days = sec >= 0 ? sec / 86400 : -((-sec + 86399) / 86400);
    rem = sec - days * 86400;
    days += 719468;
    era = (days >= 0 ? days : days - 146096) / 146097;
    doe = days - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    if (y < 0 || y > 9999)
        y = y < 0 ? 0 : 9999;
    two(last, (unsigned)(y / 100));
    two(last + 2, (unsigned)(y % 100));
    last[4] = '-';
    two(last + 5, (unsigned)m);
    last[7] = '-';
    two(last + 8, (unsigned)d);
    last[10] = 'T';
    two(last + 11, (unsigned)(rem / 3600));
    last[13] = ':';
    two(last + 14, (unsigned)(rem / 60 % 60));
    last[16] = ':';
    two(last + 17, (unsigned)(rem % 60));
    last_sec = sec;
    memcpy(dst, last, GH_ISO_SEC_LEN);
}

/* See buf.h. */
void gh_fmt_iso_ms(char *dst, int64_t ms)
{
    int64_t sec = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    unsigned frac = (unsigned)(ms - sec * 1000);

    gh_fmt_iso_sec(dst, sec);
    dst[GH_ISO_SEC_LEN] = '.';
    dst[GH_ISO_SEC_LEN + 1] = (char)('0' + frac / 100);
    dst[GH_ISO_SEC_LEN + 2] = (char)('0' + frac / 10 % 10);
    dst[GH_ISO_SEC_LEN + 3] = (char)('0' + frac % 10);
    dst[GH_ISO_SEC_LEN + 4] = 'Z';
}
