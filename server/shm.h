/* shm.h: the shared-memory segment the master maps before fork: usage records on their way to
 * SQLite, the configuration epoch, and (later) rate-limit windows and counters. */
#ifndef GH_SHM_H
#define GH_SHM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "usage.h"

#define GH_SHM_MAGIC 0x67687331u /* "ghs1" */
#define GH_USAGE_SLOTS 4096      /* 20 ms of recorder latency at 200k requests/s */

enum {
    GH_SLOT_FREE = 0,    /* available to any worker */
    GH_SLOT_WRITING = 1, /* claimed by pid, being filled */
    GH_SLOT_READY = 2,   /* complete: the recorder may write it to SQLite */
};

/* One usage record in flight from a worker to the recorder. */
typedef struct {
    _Atomic uint32_t state;
    _Atomic int32_t pid; /* the claiming worker, so a dead writer's slot can be freed */
    _Atomic uint64_t claimed_us;
    gh_usage_rec_t rec;
} gh_usage_slot_t;

/* The whole segment. Only atomics are shared-written; everything else is set before fork. */
typedef struct {
    uint32_t magic;
    uint32_t nslots;
    uint32_t usage_off; /* GATEHOUSE_USAGE_LOG=off: records are not kept (benchmarks only) */
    _Atomic uint64_t config_epoch; /* bumped by every admin write: workers reload their caches */
    _Atomic uint64_t request_seq;  /* source of unique request ids across workers */
    _Atomic uint64_t usage_published;
    _Atomic uint64_t usage_written;
    _Atomic uint64_t usage_dropped; /* records lost because every slot was busy */
    _Atomic uint32_t slot_hint;     /* where the next claim starts looking */
    gh_usage_slot_t slots[GH_USAGE_SLOTS];
} gh_shm_t;

/* The segment of this process tree (NULL before gh_shm_create). */
extern gh_shm_t *gh_shm;

/* Maps an anonymous shared segment (MAP_SHARED|MAP_ANONYMOUS) and sets gh_shm. Called by the
 * master before forking, or by tests. */
int gh_shm_create(void);

/* Unmaps the segment. */
void gh_shm_destroy(void);

/* Copies rec into a free slot and marks it ready. Never blocks: when every slot is busy the
 * record is counted in usage_dropped and GH_ERR is returned (and logged, rate-limited). */
int gh_shm_usage_publish(const gh_usage_rec_t *rec);

/* Configuration epoch: read by workers on every request; bumped after an admin write. */
uint64_t gh_shm_epoch(void);
void gh_shm_epoch_bump(void);

/* A unique request id "req_gh_<hex>" (NUL-terminated in out, at least 32 bytes). */
void gh_shm_request_id(char *out, size_t outsz);

#endif
