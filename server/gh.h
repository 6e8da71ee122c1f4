/* gh.h: return codes, small helpers and limits shared by every gatehouse module. */
#ifndef GH_H
#define GH_H

#include <stddef.h>
#include <stdint.h>

#define GH_OK 0
#define GH_ERR (-1)

#define GH_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define GH_UNUSED(x) ((void)(x))
/* A string literal and its length, for initialisers and memcpy. */
#define GH_LIT(s) (s), (sizeof(s) - 1)

/* Defaults of the command line contract (DESIGN.md section 4). */
#define GH_DEFAULT_LISTEN "127.0.0.1:8080"
#define GH_DEFAULT_ADMIN_LISTEN "127.0.0.1:8081"
#define GH_DEFAULT_DATA_DIR "./var"
#define GH_DEFAULT_DRAIN_TIMEOUT 30
#define GH_DEFAULT_MAX_BODY (32u * 1024u * 1024u)
#define GH_DEFAULT_MAX_UPLOAD ((size_t)500u * 1024u * 1024u)
#define GH_DEFAULT_UPSTREAM_TIMEOUT_MS 600000
#define GH_DEFAULT_BASE_URL "https://api.anthropic.com"

#endif
