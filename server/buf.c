/* buf.c: a small growable byte buffer, always NUL-terminated once written to. */
#include <stdarg.h>
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
