/* shm.c: the shared-memory segment: lock-free usage slots, the config epoch and request ids. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "gh.h"
#include "log.h"
#include "buf.h"
#include "shm.h"

#define GH_SHM_WARN_INTERVAL_US 1000000u

gh_shm_t *gh_shm = NULL;

/* Size of the mapping, kept for munmap. */
static size_t gh_shm_size;

/* Counts segments created by this process: a new segment may land at the old address, and its
 * request_seq starts again at 0. */
static unsigned gh_shm_gen;

/* Stand-ins used when no segment exists (unit tests, tools): process-local, but enough to keep
 * ids unique and epochs moving within one process. */
static _Atomic uint64_t gh_local_seq;
static _Atomic uint64_t gh_local_epoch;

/* Monotonic microseconds. CLOCK_MONOTONIC is one clock for the whole machine, so a claim time
 * stored by a worker can be compared with the recorder's own clock. */
static uint64_t gh_shm_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Maps the segment; the kernel hands it over zeroed, so every slot starts GH_SLOT_FREE and every
 * counter at 0. The caller (the master, before fork) owns it until gh_shm_destroy. */
int gh_shm_create(void)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t size;
    void *p;

    if (gh_shm != NULL) {
        gh_log_error("gh_shm_create: a segment already exists");
        return GH_ERR;
    }
    if (page <= 0)
        page = 4096;
    size = (sizeof(gh_shm_t) + (size_t)page - 1) / (size_t)page * (size_t)page;
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        gh_log_error("mmap(%zu bytes, MAP_SHARED|MAP_ANONYMOUS) failed: %s", size, strerror(errno));
        return GH_ERR;
    }
    gh_shm = p;
    gh_shm_size = size;
    gh_shm_gen++;
    gh_shm->magic = GH_SHM_MAGIC;
    gh_shm->nslots = GH_USAGE_SLOTS;
    return GH_OK;
}

/* Unmaps this process's view of the segment; other processes keep theirs. Records still in
 * slots are gone once the last process unmaps, which is why the recorder drains first. */
void gh_shm_destroy(void)
{
    if (gh_shm == NULL)
        return;
    if (munmap(gh_shm, gh_shm_size) != 0)
        gh_log_error("munmap(shm) failed: %s", strerror(errno));
    gh_shm = NULL;
    gh_shm_size = 0;
}

/* Logs a lost record at most once per second per process, so a full segment under load does not
 * also flood the log; the total is in usage_dropped anyway. */
static void gh_shm_warn_dropped(const char *why)
{
    static uint64_t last_us;
    uint64_t now = gh_shm_mono_us();

    if (last_us != 0 && now - last_us < GH_SHM_WARN_INTERVAL_US)
        return;
    last_us = now;
    gh_log_warn("usage record dropped: %s (%llu dropped so far)", why,
                gh_shm != NULL ? (unsigned long long)atomic_load(&gh_shm->usage_dropped) : 0ull);
}

/* Claims a free slot with a compare-exchange (no lock, so a worker killed at any instant cannot
 * block others), fills it and publishes it with a release store the recorder pairs with an
 * acquire load. The caller keeps rec; the slot belongs to the recorder once READY. */
int gh_shm_usage_publish(const gh_usage_rec_t *rec)
{
    uint32_t n, start, i;

    if (rec == NULL)
        return GH_ERR;
    if (gh_shm == NULL) {
        gh_shm_warn_dropped("no shared-memory segment");
        return GH_ERR;
    }
    if (gh_shm->usage_off)
        return GH_OK;
    n = gh_shm->nslots;
    if (n == 0 || n > GH_USAGE_SLOTS)
        n = GH_USAGE_SLOTS;
    /* Each publisher starts at its own place so workers do not all fight over slot 0. */
    start = atomic_fetch_add_explicit(&gh_shm->slot_hint, 1, memory_order_relaxed) % n;
    for (i = 0; i < n; i++) {
        gh_usage_slot_t *s = &gh_shm->slots[(start + i) % n];
        uint32_t expected = GH_SLOT_FREE;

        /* A plain load first keeps the scan from taking cache lines exclusive needlessly. */
        if (atomic_load_explicit(&s->state, memory_order_relaxed) != GH_SLOT_FREE)
            continue;
        if (!atomic_compare_exchange_strong_explicit(&s->state, &expected, GH_SLOT_WRITING,
                                                     memory_order_acquire, memory_order_relaxed))
            continue;
        atomic_store_explicit(&s->pid, (int32_t)gh_getpid(), memory_order_relaxed);
        atomic_store_explicit(&s->claimed_us, gh_shm_mono_us(), memory_order_relaxed);
        memcpy(&s->rec, rec, sizeof(s->rec));
        atomic_store_explicit(&s->state, GH_SLOT_READY, memory_order_release);
        atomic_fetch_add(&gh_shm->usage_published, 1);
        return GH_OK;
    }
    atomic_fetch_add(&gh_shm->usage_dropped, 1);
    gh_shm_warn_dropped("every usage slot is busy (is the recorder running?)");
    return GH_ERR;
}

/* Reads the configuration epoch; acquire so a worker that sees a new epoch also sees the admin
 * write that preceded the bump. */
uint64_t gh_shm_epoch(void)
{
    if (gh_shm == NULL)
        return atomic_load_explicit(&gh_local_epoch, memory_order_acquire);
    return atomic_load_explicit(&gh_shm->config_epoch, memory_order_acquire);
}

/* Bumps the configuration epoch after an admin write has committed. */
void gh_shm_epoch_bump(void)
{
    if (gh_shm == NULL)
        atomic_fetch_add_explicit(&gh_local_epoch, 1, memory_order_acq_rel);
    else
        atomic_fetch_add_explicit(&gh_shm->config_epoch, 1, memory_order_acq_rel);
}

/* Writes "req_gh_" + 24 hex digits: seconds since the epoch (ids sort roughly by time), 32 random
 * bits drawn once per process (two runs on the same database in the same second still differ),
 * and a counter shared by the whole process tree (no two workers ever share a value). The random
 * part is drawn again after fork, so processes without a segment do not repeat each other. */
void gh_shm_request_id(char *out, size_t outsz)
{
    static uint32_t rnd;
    static pid_t rnd_pid;
    static const gh_shm_t *rnd_shm;
    static unsigned rnd_gen;
    pid_t self = (pid_t)gh_getpid();
    uint64_t seq;

    if (out == NULL || outsz == 0)
        return;
    /* A new process or a new counter (another segment, or none) restarts the sequence, so the
     * random part must change with it. */
    if (rnd_pid != self || rnd_shm != gh_shm || rnd_gen != gh_shm_gen) {
        randombytes_buf(&rnd, sizeof(rnd));
        rnd_pid = self;
        rnd_shm = gh_shm;
        rnd_gen = gh_shm_gen;
    }
    if (gh_shm != NULL)
        seq = atomic_fetch_add_explicit(&gh_shm->request_seq, 1, memory_order_relaxed);
    else
        seq = atomic_fetch_add_explicit(&gh_local_seq, 1, memory_order_relaxed);
    {
        /* hand-formatted: one per request */
        char id[7 + 24 + 1];
        size_t n = sizeof(id) - 1;
        memcpy(id, "req_gh_", 7);
        gh_fmt_hex32(id + 7, (uint32_t)time(NULL));
        gh_fmt_hex32(id + 15, rnd);
        gh_fmt_hex32(id + 23, (uint32_t)seq);
        if (n > outsz - 1)
            n = outsz - 1;
        memcpy(out, id, n);
        out[n] = '\0';
    }
}
