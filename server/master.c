/* master.c: the master process (after nginx): owns the listening sockets, forks and respawns
 * workers, and turns signals into flags acted on by one supervision loop. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "gh.h"
#include "http.h"
#include "quota.h"
#include "store.h"
#include "log.h"
#include "master.h"
#include "recorder.h"
#include "shm.h"
#include "worker.h"

#define GH_MAX_PROCS 4096
#define GH_TICK_MS 100
#define GH_FAST_DEATH_US 2000000u /* a worker dying sooner than this after start is failing */
#define GH_BACKOFF_MAX_US 10000000u

/* One row of the process table. */
typedef struct {
    pid_t pid; /* 0: free row */
    int slot;  /* 0..workers-1 within its generation */
    int generation;
    int retiring; /* sent SIGTERM: drains, never respawned */
    uint64_t started_us;
} gh_proc_t;

/* Respawn state of one worker slot of the current generation. */
typedef struct {
    int fails;
    uint64_t respawn_at_us; /* 0: nothing scheduled */
} gh_slot_t;

static volatile sig_atomic_t sig_child, sig_term, sig_quit, sig_hup, sig_tick;

static struct {
    const gh_config_t *cfg;
    const gh_keys_t *keys;
    int client_fd;
    int admin_fd;
    gh_proc_t procs[GH_MAX_PROCS];
    gh_slot_t *slots;
    int generation;
    int stopping;
    uint64_t stop_deadline_us;
    pid_t recorder; /* the usage recorder, 0 when not running */
    uint64_t recorder_started_us;
    gh_slot_t recorder_slot; /* its respawn back-off */
    int recorder_told;       /* SIGUSR1 (final drain) sent */
    char db_path[1200];
    unsigned ticks;
} m;

/* Signal handlers only record what happened; the loop acts. */
static void on_signal(int sig)
{
    switch (sig) {
    case SIGCHLD:
        sig_child = 1;
        break;
    case SIGTERM:
    case SIGINT:
        sig_term = 1;
        break;
    case SIGQUIT:
        sig_quit = 1;
        break;
    case SIGHUP:
        sig_hup = 1;
        break;
    case SIGALRM:
        sig_tick = 1;
        break;
    default:
        break;
    }
}

/* Opens, binds and listens; SO_REUSEADDR lets a restart rebind while old sockets linger. */
int gh_listen_socket(const gh_hostport_t *hp)
{
    struct addrinfo hints, *res = NULL, *ai;
    int fd = -1, one = 1, rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(hp->host, hp->port, &hints, &res);
    if (rc != 0) {
        gh_log_error("getaddrinfo(%s:%s) failed: %s", hp->host, hp->port, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 4096) == 0)
            break;
        gh_log_error("bind/listen on %s:%s failed: %s", hp->host, hp->port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* Resets what a child inherits from the master's signal set-up. */
static void child_signals(void)
{
    static const int sigs[] = {SIGCHLD, SIGALRM, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1};
    struct sigaction sa;
    sigset_t none;
    size_t i;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (i = 0; i < GH_ARRAY_LEN(sigs); i++)
        sigaction(sigs[i], &sa, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Forks the recorder, the one process that writes usage records from shared memory to SQLite. */
static int spawn_recorder(void)
{
    pid_t pid = fork();

    if (pid < 0) {
        gh_log_error("fork (recorder) failed: %s", strerror(errno));
        return GH_ERR;
    }
    if (pid == 0) {
        /* no child_signals(): the recorder inherits the blocked mask (SIGUSR1 included) and
         * takes its signals with sigtimedwait, so an early SIGUSR1 cannot kill it */
        close(m.client_fd);
        close(m.admin_fd);
        prctl(PR_SET_NAME, "gh-recorder");
        _exit(gh_recorder_run(m.db_path));
    }
    m.recorder = pid;
    m.recorder_started_us = gh_now_us();
    m.recorder_told = 0;
    return GH_OK;
}

/* Schedules the next try after a child died; doubling back-off while it keeps dying young. */
static void schedule_respawn(gh_slot_t *s, uint64_t started_us, const char *what)
{
    uint64_t now = gh_now_us();

    if (now - started_us < GH_FAST_DEATH_US) {
        uint64_t delay = 100000u << (s->fails < 7 ? s->fails : 7);
        if (delay > GH_BACKOFF_MAX_US)
            delay = GH_BACKOFF_MAX_US;
        s->fails++;
        s->respawn_at_us = now + delay;
        if (s->fails > 1)
            gh_log_warn("%s keeps dying; next try in %llu ms", what,
                        (unsigned long long)(delay / 1000));
    } else {
        s->fails = 0;
        s->respawn_at_us = now;
    }
}

/* Forks one worker for slot in the current generation. */
static int spawn(int slot)
{
    gh_worker_args_t args;
    pid_t pid;
    int i, row = -1;

    for (i = 0; i < GH_MAX_PROCS; i++)
        if (m.procs[i].pid == 0) {
            row = i;
            break;
        }
    if (row < 0) {
        gh_log_error("process table full; not spawning worker %d", slot);
        return GH_ERR;
    }
    pid = fork();
    if (pid < 0) {
        gh_log_error("fork failed: %s", strerror(errno));
        return GH_ERR;
    }
    if (pid == 0) {
        child_signals();
        memset(&args, 0, sizeof(args));
        args.cfg = m.cfg;
        args.keys = m.keys;
        args.client_fd = m.client_fd;
        args.admin_fd = m.admin_fd;
        args.slot = slot;
        args.generation = m.generation;
        _exit(gh_worker_run(&args));
    }
    m.procs[row].pid = pid;
    m.procs[row].slot = slot;
    m.procs[row].generation = m.generation;
    m.procs[row].retiring = 0;
    m.procs[row].started_us = gh_now_us();
    gh_log_debug("spawned worker %d pid %d generation %d", slot, (int)pid, m.generation);
    return GH_OK;
}

/* Number of live children. */
static int live_children(void)
{
    int i, n = 0;
    for (i = 0; i < GH_MAX_PROCS; i++)
        if (m.procs[i].pid != 0)
            n++;
    return n;
}

/* Sends sig to every child (or only to those of an older generation when old_only). */
static void signal_children(int sig, int old_only)
{
    int i;
    for (i = 0; i < GH_MAX_PROCS; i++) {
        gh_proc_t *p = &m.procs[i];
        if (p->pid == 0 || (old_only && p->generation == m.generation))
            continue;
        if (sig == SIGTERM)
            p->retiring = 1;
        kill(p->pid, sig);
    }
}

/* Collects dead children; a current-generation worker that died unasked is respawned, at once
 * the first time and with doubling back-off while it keeps dying young. */
static void reap(void)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        int i;
        if (pid == m.recorder) {
            m.recorder = 0;
            if (!m.stopping || !m.recorder_told) {
                gh_log_warn("recorder pid %d died (status %d); respawning: records wait in "
                            "shared memory",
                            (int)pid, status);
                schedule_respawn(&m.recorder_slot, m.recorder_started_us, "recorder");
            }
            continue;
        }
        for (i = 0; i < GH_MAX_PROCS; i++) {
            gh_proc_t *p = &m.procs[i];

            if (p->pid != pid)
                continue;
            p->pid = 0;
            /* concurrency slots the dead worker held are free again */
            gh_limits_reap((int32_t)pid);
            if (p->retiring || m.stopping || p->generation != m.generation) {
                gh_log_debug("worker pid %d (generation %d) exited", (int)pid, p->generation);
                break;
            }
            if (WIFSIGNALED(status))
                gh_log_warn("worker %d pid %d killed by signal %d; respawning", p->slot, (int)pid,
                            WTERMSIG(status));
            else
                gh_log_warn("worker %d pid %d exited with status %d; respawning", p->slot, (int)pid,
                            WEXITSTATUS(status));
            schedule_respawn(&m.slots[p->slot], p->started_us, "worker");
            break;
        }
    }
}

/* Spawns the workers whose back-off has run out. */
static void respawn_due(void)
{
    uint64_t now = gh_now_us();
    int i;

    if (m.recorder == 0 && m.recorder_slot.respawn_at_us != 0 &&
        m.recorder_slot.respawn_at_us <= now) {
        m.recorder_slot.respawn_at_us = 0;
        if (spawn_recorder() != GH_OK)
            m.recorder_slot.respawn_at_us = now + GH_BACKOFF_MAX_US;
    }
    for (i = 0; i < m.cfg->workers; i++) {
        gh_slot_t *s = &m.slots[i];
        if (s->respawn_at_us != 0 && s->respawn_at_us <= now) {
            s->respawn_at_us = 0;
            if (spawn(i) != GH_OK)
                s->respawn_at_us = now + GH_BACKOFF_MAX_US;
        }
    }
}

/* SIGHUP: a new generation takes over the sockets, then the old one drains and leaves. */
static void reload(void)
{
    int i;

    m.generation++;
    gh_log_info("reload: starting generation %d", m.generation);
    for (i = 0; i < m.cfg->workers; i++) {
        m.slots[i].fails = 0;
        m.slots[i].respawn_at_us = 0;
        if (spawn(i) != GH_OK)
            m.slots[i].respawn_at_us = gh_now_us() + GH_BACKOFF_MAX_US;
    }
    signal_children(SIGTERM, 1);
}

/* Installs the flag-setting handlers and a periodic tick for back-off and drain deadlines. */
static int install_signals(void)
{
    static const int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGALRM};
    struct sigaction sa;
    struct itimerval it;
    sigset_t block;
    size_t i;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigemptyset(&block);
    for (i = 0; i < GH_ARRAY_LEN(sigs); i++) {
        if (sigaction(sigs[i], &sa, NULL) != 0) {
            gh_log_error("sigaction(%d) failed: %s", sigs[i], strerror(errno));
            return GH_ERR;
        }
        sigaddset(&block, sigs[i]);
    }
    signal(SIGPIPE, SIG_IGN);
    sigaddset(&block, SIGUSR1); /* only the recorder uses it; see spawn_recorder */
    /* blocked outside sigsuspend, so no signal is missed between checking flags and sleeping */
    sigprocmask(SIG_BLOCK, &block, NULL);
    memset(&it, 0, sizeof(it));
    it.it_interval.tv_usec = GH_TICK_MS * 1000;
    it.it_value.tv_usec = GH_TICK_MS * 1000;
    setitimer(ITIMER_REAL, &it, NULL);
    return GH_OK;
}

/* gh_limits_budget_check's seed when the spend is already known: *arg. */
static double known_spend(void *arg, int64_t period_start_ms)
{
    GH_UNUSED(period_start_ms);
    return *(const double *)arg;
}

/* Seeds the shared budget table, before any worker runs, with what every budgeted key has spent
 * in its current period. A worker would otherwise sum a key's rows on the key's first request,
 * and after a restart mid-month that sum over a busy key's rows would stall every connection of
 * that worker; here it delays only the start. A failure is logged and leaves the seeding to the
 * workers, as before. */
static void preseed_budgets(void)
{
    static const char sql[] = "SELECT id, budget_usd, coalesce(budget_period, '1M') FROM "
                              "virtual_keys WHERE budget_usd IS NOT NULL AND revoked_at IS NULL";
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    uint64_t t0 = gh_now_us();
    int64_t now = gh_wall_ms();
    int n = 0, rc;

    if (gh_store_open(m.db_path, &db) != GH_OK)
        goto done;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        gh_log_error("sqlite3_prepare_v2(budgeted keys) failed: %s", sqlite3_errmsg(db));
        goto done;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        const char *period = (const char *)sqlite3_column_text(st, 2);
        double budget = sqlite3_column_double(st, 1), spent = 0;
        int64_t start;

        if (id == NULL || period == NULL || (start = gh_limits_period_start_ms(period, now)) < 0)
            continue;
        if (gh_store_key_spend(db, id, start, &spent) != GH_OK)
            continue;
        gh_limits_budget_check(id, period, budget, now, known_spend, &spent, NULL);
        n++;
    }
    if (rc != SQLITE_DONE)
        gh_log_error("sqlite3_step(budgeted keys) failed: %s", sqlite3_errmsg(db));
    gh_log_info("budgets: seeded the current spend of %d key%s in %llu ms", n, n == 1 ? "" : "s",
                (unsigned long long)((gh_now_us() - t0) / 1000));
done:
    sqlite3_finalize(st);
    gh_store_close(db);
}

/* The supervision loop (see master.h). */
int gh_master_run(const gh_config_t *cfg, const gh_keys_t *keys)
{
    sigset_t empty;
    int i, rc = 1;

    memset(&m, 0, sizeof(m));
    m.cfg = cfg;
    m.keys = keys;
    m.client_fd = m.admin_fd = -1;
    gh_log_set_role("master");
    m.slots = calloc((size_t)cfg->workers, sizeof(*m.slots));
    if (m.slots == NULL) {
        gh_log_error("calloc(slots) failed");
        goto done;
    }
    m.client_fd = gh_listen_socket(&cfg->listen);
    if (m.client_fd < 0)
        goto done;
    m.admin_fd = gh_listen_socket(&cfg->admin_listen);
    if (m.admin_fd < 0)
        goto done;
    if (gh_shm_create() != GH_OK || gh_limits_create() != GH_OK)
        goto done;
    if (getenv("GATEHOUSE_USAGE_LOG") != NULL &&
        strcmp(getenv("GATEHOUSE_USAGE_LOG"), "off") == 0) {
        gh_shm->usage_off = 1;
        gh_log_warn("GATEHOUSE_USAGE_LOG=off: no usage is recorded (budgets cannot be enforced)");
    }
    snprintf(m.db_path, sizeof(m.db_path), "%s/gatehouse.db", cfg->data_dir);
    if (install_signals() != GH_OK)
        goto done;
    if (spawn_recorder() != GH_OK)
        goto done;
    gh_log_info("gatehouse %s: client API on http://%s:%s, admin API on http://%s:%s, %d workers",
                PACKAGE_VERSION, cfg->listen.host, cfg->listen.port, cfg->admin_listen.host,
                cfg->admin_listen.port, cfg->workers);
    preseed_budgets();
    for (i = 0; i < cfg->workers; i++)
        if (spawn(i) != GH_OK)
            m.slots[i].respawn_at_us = gh_now_us() + GH_BACKOFF_MAX_US;

    sigemptyset(&empty);
    sigaddset(&empty, SIGUSR1);
    for (;;) {
        if (!sig_child && !sig_term && !sig_quit && !sig_hup && !sig_tick)
            sigsuspend(&empty);
        if (sig_child) {
            sig_child = 0;
            reap();
        }
        if (sig_quit) {
            sig_quit = 0;
            gh_log_info("fast stop");
            m.stopping = 1;
            signal_children(SIGQUIT, 0);
            m.stop_deadline_us = gh_now_us() + 2000000u;
        }
        if (sig_term) {
            sig_term = 0;
            if (!m.stopping) {
                gh_log_info("graceful stop: draining for up to %d s", cfg->drain_timeout);
                m.stopping = 1;
                signal_children(SIGTERM, 0);
                m.stop_deadline_us =
                    gh_now_us() + (uint64_t)cfg->drain_timeout * 1000000u + 2000000u;
            }
        }
        if (sig_hup) {
            sig_hup = 0;
            if (!m.stopping)
                reload();
        }
        /* forget idle limit entries so a long-lived gateway never fills the tables */
        if (sig_tick && ++m.ticks % (10000 / GH_TICK_MS) == 0)
            gh_limits_sweep(gh_wall_ms());
        sig_tick = 0;
        if (m.stopping) {
            if (live_children() == 0) {
                /* workers are gone: the recorder writes what is left, then exits */
                if (m.recorder != 0 && !m.recorder_told) {
                    kill(m.recorder, SIGUSR1);
                    m.recorder_told = 1;
                } else if (m.recorder == 0 && m.recorder_slot.respawn_at_us != 0) {
                    m.recorder_slot.respawn_at_us = 0;
                    if (spawn_recorder() == GH_OK) {
                        kill(m.recorder, SIGUSR1);
                        m.recorder_told = 1;
                    }
                }
                if (m.recorder == 0)
                    break;
            }
            if (gh_now_us() > m.stop_deadline_us) {
                gh_log_warn("workers did not stop in time; killing them");
                signal_children(SIGKILL, 0);
                if (m.recorder != 0 && live_children() == 0)
                    kill(m.recorder, SIGKILL);
                m.stop_deadline_us = gh_now_us() + 10000000u;
            }
        } else {
            respawn_due();
        }
    }
    gh_log_info("stopped");
    rc = 0;
done:
    if (m.client_fd >= 0)
        close(m.client_fd);
    if (m.admin_fd >= 0)
        close(m.admin_fd);
    m.client_fd = m.admin_fd = -1;
    free(m.slots);
    m.slots = NULL;
    gh_shm_destroy();
    gh_limits_destroy();
    return rc;
}
