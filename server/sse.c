/* sse.c: an incremental WHATWG server-sent-events splitter for the upstream's streamed replies. */
#include <stdlib.h>
#include <string.h>

#include "gh.h"
#include "sse.h"

#define SSE_DEFAULT_MAX_EVENT ((size_t)16 * 1024 * 1024)
#define SSE_MIN_CAP ((size_t)256)

/* Returns the byte budget of one event: its name plus its joined data, i.e. what the callback
 * would receive. Comments and ignored fields never count. */
static size_t sse_limit(const gh_sse_parser_t *p)
{
    return p->max_event != 0 ? p->max_event : SSE_DEFAULT_MAX_EVENT;
}

/* Tells whether a + b + c <= limit, without overflowing. */
static int sse_within(size_t limit, size_t a, size_t b, size_t c)
{
    return a <= limit && b <= limit - a && c <= limit - a - b;
}

/* Makes *buf (owned by the parser) hold at least need bytes, doubling so that appends stay
 * amortised O(1). */
static int sse_reserve(char **buf, size_t *cap, size_t need)
{
    size_t ncap;
    char *nbuf;

    if (need <= *cap)
        return GH_OK;
    ncap = *cap != 0 ? *cap : SSE_MIN_CAP;
    while (ncap < need)
        ncap = ncap > (size_t)-1 / 2 ? need : ncap * 2;
    nbuf = realloc(*buf, ncap);
    if (nbuf == NULL)
        return GH_ERR;
    *buf = nbuf;
    *cap = ncap;
    return GH_OK;
}

/* Puts the parser in its stopped state: every later feed fails at once. The header has no
 * error flag, so a NULL callback is that state (a parser without a callback is useless). */
static int sse_stop(gh_sse_parser_t *p)
{
    p->cb = NULL;
    return GH_ERR;
}

/* Prepares p; buffers are allocated on demand. Set p->max_event after this call. */
void gh_sse_init(gh_sse_parser_t *p, gh_sse_event_cb cb, void *arg)
{
    memset(p, 0, sizeof *p);
    p->cb = cb;
    p->arg = arg;
}

/* Frees the buffers owned by p and leaves it zeroed, so it may be initialised again. */
void gh_sse_free(gh_sse_parser_t *p)
{
    free(p->line);
    free(p->event);
    free(p->data);
    memset(p, 0, sizeof *p);
}

/* Hands the finished event to the callback and starts a new one. WHATWG drops an event that
 * had no data field; the event name never carries over. */
static int sse_dispatch(gh_sse_parser_t *p)
{
    int rc = GH_OK;

    if (p->have_data) {
        const char *ev = p->event_len != 0 ? p->event : "message";
        size_t evlen = p->event_len != 0 ? p->event_len : 7;
        p->events++;
        rc = p->cb(p->arg, ev, evlen, p->data != NULL ? p->data : "", p->data_len);
    }
    p->have_data = 0;
    p->data_len = 0;
    p->event_len = 0;
    return rc == GH_OK ? GH_OK : GH_ERR;
}

/* Applies one complete line (without its end) s[0..n), which may point into the caller's
 * chunk or into p->line. */
static int sse_line(gh_sse_parser_t *p, const char *s, size_t n)
{
    const char *colon, *v;
    size_t namelen, vlen, limit = sse_limit(p);

    if (n == 0)
        return sse_dispatch(p);
    if (s[0] == ':')
        return GH_OK;
    colon = memchr(s, ':', n);
    if (colon != NULL) {
        namelen = (size_t)(colon - s);
        v = colon + 1;
        vlen = n - namelen - 1;
        if (vlen > 0 && *v == ' ') {
            v++;
            vlen--;
        }
    } else {
        namelen = n;
        v = s + n;
        vlen = 0;
    }
    if (namelen == 4 && memcmp(s, "data", 4) == 0) {
        size_t sep = p->have_data ? 1 : 0;
        if (!sse_within(limit, p->data_len + p->event_len, sep, vlen))
            return GH_ERR;
        if (sse_reserve(&p->data, &p->data_cap, p->data_len + sep + vlen + 1) != GH_OK)
            return GH_ERR;
        if (sep)
            p->data[p->data_len++] = '\n';
        memcpy(p->data + p->data_len, v, vlen);
        p->data_len += vlen;
        p->data[p->data_len] = '\0';
        p->have_data = 1;
    } else if (namelen == 5 && memcmp(s, "event", 5) == 0) {
        if (!sse_within(limit, p->data_len, vlen, 0))
            return GH_ERR;
        if (sse_reserve(&p->event, &p->event_cap, vlen + 1) != GH_OK)
            return GH_ERR;
        memcpy(p->event, v, vlen);
        p->event_len = vlen;
        p->event[vlen] = '\0';
    }
    return GH_OK;
}

/* Tells whether the line head h[0..n) may still turn into a "data" or "event" field, the only
 * ones whose value matters; everything else can be dropped while the line is still arriving. */
static int sse_relevant(const char *h, size_t n, size_t *vstart)
{
    const char *colon = memchr(h, ':', n);
    size_t namelen = colon != NULL ? (size_t)(colon - h) : n;

    *vstart = n;
    if (n > 0 && h[0] == ':')
        return 0;
    if (colon == NULL)
        return (n <= 4 && memcmp(h, "data", n) == 0) || (n <= 5 && memcmp(h, "event", n) == 0);
    if (!((namelen == 4 && memcmp(h, "data", 4) == 0) ||
          (namelen == 5 && memcmp(h, "event", 5) == 0)))
        return 0;
    *vstart = namelen + 1 + (n > namelen + 1 && h[namelen + 1] == ' ' ? 1 : 0);
    return 1;
}

/* Carries the unfinished line s[0..n) over to the next chunk. A line that cannot be a data or
 * event field is shrunk to ":" (an ignored comment) so keep-alives and unknown fields cost
 * nothing, and a value prefix that already breaks max_event fails now, exactly as the whole
 * line would, so the outcome never depends on where the network split the stream. */
static int sse_carry(gh_sse_parser_t *p, const char *s, size_t n)
{
    char head[8];
    size_t hn, total, vstart, limit = sse_limit(p);

    if (n == 0 || (p->line_len == 1 && p->line[0] == ':'))
        return GH_OK;
    /* Only the first 7 bytes ("event: ") decide the field, so look at them without copying. */
    hn = p->line_len < sizeof head ? p->line_len : sizeof head;
    if (hn != 0)
        memcpy(head, p->line, hn);
    if (hn < sizeof head) {
        size_t more = n < sizeof head - hn ? n : sizeof head - hn;
        memcpy(head + hn, s, more);
        hn += more;
    }
    total = p->line_len + n;
    if (!sse_relevant(head, hn, &vstart)) {
        if (sse_reserve(&p->line, &p->line_cap, 2) != GH_OK)
            return GH_ERR;
        p->line[0] = ':';
        p->line_len = 1;
        return GH_OK;
    }
    if (vstart < hn) {
        size_t vlen = total - vstart;
        int ok;
        if (head[0] == 'd')
            ok = sse_within(limit, p->data_len + p->event_len, p->have_data ? 1 : 0, vlen);
        else
            ok = sse_within(limit, p->data_len, vlen, 0);
        if (!ok)
            return GH_ERR;
    }
    if (sse_reserve(&p->line, &p->line_cap, total) != GH_OK)
        return GH_ERR;
    memcpy(p->line + p->line_len, s, n);
    p->line_len = total;
    return GH_OK;
}

/* Returns the index of the first c in buf[i..len), or len. */
static size_t sse_find(const char *buf, size_t i, size_t len, char c)
{
    const char *hit = memchr(buf + i, c, len - i);
    return hit != NULL ? (size_t)(hit - buf) : len;
}

/* Splits buf into lines and applies each; see sse.h. Whole lines are read straight from buf and
 * only the unfinished tail is copied. The next CR and LF positions are remembered, so each byte
 * is searched at most once for each of them however the lines end. */
int gh_sse_feed(gh_sse_parser_t *p, const char *buf, size_t len)
{
    size_t i = 0, lf, cr;

    if (p->cb == NULL)
        return GH_ERR;
    if (len == 0)
        return GH_OK;
    if (buf == NULL)
        return sse_stop(p);
    if (p->skip_lf) {
        p->skip_lf = 0;
        if (buf[0] == '\n')
            i = 1;
    }
    lf = sse_find(buf, i, len, '\n');
    cr = sse_find(buf, i, len, '\r');
    while (i < len) {
        size_t e;
        int rc;
        if (lf < i)
            lf = sse_find(buf, i, len, '\n');
        if (cr < i)
            cr = sse_find(buf, i, len, '\r');
        e = lf < cr ? lf : cr;
        if (e == len) {
            if (sse_carry(p, buf + i, len - i) != GH_OK)
                return sse_stop(p);
            break;
        }
        if (p->line_len != 0) {
            if (sse_carry(p, buf + i, e - i) != GH_OK)
                return sse_stop(p);
            rc = sse_line(p, p->line, p->line_len);
            p->line_len = 0;
        } else {
            rc = sse_line(p, buf + i, e - i);
        }
        if (rc != GH_OK)
            return sse_stop(p);
        i = e + 1;
        if (buf[e] == '\r') {
            if (i == len)
                p->skip_lf = 1;
            else if (buf[i] == '\n')
                i++;
        }
    }
    return GH_OK;
}
