/* fuzz_sse.c: libFuzzer target checking that how a stream is split never changes its events. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gh.h"
#include "sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts on a broken invariant; assert() would vanish under NDEBUG. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* A digest of the events one run delivered. */
typedef struct {
    uint64_t hash;
    size_t count;
    size_t stop_at; /* make the callback fail at this event (1-based); 0 = never */
} digest_t;

/* Folds n bytes into an FNV-1a hash. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* Adds one event to the digest, lengths included so that boundaries count. */
static int on_event(void *arg, const char *event, size_t event_len, const char *data,
                    size_t data_len)
{
    digest_t *d = arg;
    CHECK(event[event_len] == '\0' && data[data_len] == '\0' && event_len > 0);
    d->hash = fnv(d->hash, &event_len, sizeof event_len);
    d->hash = fnv(d->hash, event, event_len);
    d->hash = fnv(d->hash, &data_len, sizeof data_len);
    d->hash = fnv(d->hash, data, data_len);
    d->count++;
    return d->stop_at != 0 && d->count >= d->stop_at ? GH_ERR : GH_OK;
}

/* Feeds buf[0..len) cut at the ascending offsets cuts[0..ncuts) and returns the digest; *rc is
 * GH_ERR once any feed failed (feeds after a failure must fail too). */
static digest_t run(const char *buf, size_t len, const size_t *cuts, size_t ncuts, size_t max_event,
                    size_t stop_at, int *rc)
{
    gh_sse_parser_t p;
    digest_t d = {0xcbf29ce484222325ull, 0, stop_at};
    size_t prev = 0;

    gh_sse_init(&p, on_event, &d);
    p.max_event = max_event;
    *rc = GH_OK;
    for (size_t c = 0; c <= ncuts; c++) {
        size_t end = c < ncuts ? cuts[c] : len;
        int r = gh_sse_feed(&p, buf + prev, end - prev);
        CHECK(*rc == GH_OK || r == GH_ERR);
        if (r != GH_OK)
            *rc = r;
        prev = end;
    }
    CHECK(p.events == d.count);
    gh_sse_free(&p);
    return d;
}

/* The first three bytes choose the cuts, the event size limit and when the callback stops; the
 * rest is the stream, fed whole, in three pieces and (when short) byte by byte. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t cuts[2], max_event, stop_at, len;
    digest_t whole, split;
    int rc_whole, rc_split;
    char *buf;

    if (size < 3)
        return 0;
    len = size - 3;
    buf = malloc(len ? len : 1);
    CHECK(buf != NULL);
    if (len)
        memcpy(buf, data + 3, len);
    cuts[0] = len * data[0] / 255;
    cuts[1] = cuts[0] + (len - cuts[0]) * data[1] / 255;
    max_event = data[2] & 0x3f;
    stop_at = data[2] >> 6;

    whole = run(buf, len, NULL, 0, max_event, stop_at, &rc_whole);
    split = run(buf, len, cuts, 2, max_event, stop_at, &rc_split);
    CHECK(rc_whole == rc_split && whole.count == split.count && whole.hash == split.hash);

    if (len <= 512) {
        size_t every[512];
        for (size_t i = 0; i < len; i++)
            every[i] = i;
        split = run(buf, len, every, len, max_event, stop_at, &rc_split);
        CHECK(rc_whole == rc_split && whole.count == split.count && whole.hash == split.hash);
    }
    free(buf);
    return 0;
}
