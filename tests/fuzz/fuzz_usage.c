/* fuzz_usage.c: libFuzzer target for token extraction from answers and stream events. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "usage.h"

/* Feeds the input as a whole answer and as message_start / message_delta event data; counts
 * must never go negative. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gh_tokens_t t;
    memset(&t, 0, sizeof(t));
    gh_usage_from_message((const char *)data, size, &t);
    gh_usage_from_sse("message_start", 13, (const char *)data, size, &t);
    gh_usage_from_sse("message_delta", 13, (const char *)data, size, &t);
    if (t.input < 0 || t.output < 0 || t.cache_creation < 0 || t.cache_read < 0)
        __builtin_trap();
    return 0;
}
