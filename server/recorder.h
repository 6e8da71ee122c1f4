/* recorder.h: the recorder process, which moves usage records from shared memory into
 * usage_log in batches so that no worker ever waits on SQLite. */
#ifndef GH_RECORDER_H
#define GH_RECORDER_H

#include <sqlite3.h>
#include <stdint.h>

/* Writes every READY slot of gh_shm to usage_log in one transaction (a conflict on request_id is
 * ignored, so a record written before a crash is never duplicated), then frees those slots and
 * adds them to usage_written. Also frees slots stuck in WRITING whose pid no longer exists
 * (kill(pid,0) == ESRCH) for over 2 s. Returns the number of rows inserted, or -1 on a database
 * error (slots stay READY and are retried). Logs database errors at most once per 5 s. */
int gh_recorder_drain(sqlite3 *db);

/* Process main of the recorder child, forked by the master after gh_shm_create. Logs as role
 * "recorder", asks for SIGTERM when the master dies (PR_SET_PDEATHSIG), opens db_path and
 * drains about every 20 ms (sleeping in sigtimedwait, never spinning). Signals:
 *   SIGUSR1            the workers are gone: final drain, exit.
 *   SIGTERM/INT/QUIT   stop soon: keep draining (workers may still finish requests) until
 *                      SIGUSR1, or until 10 s after the signal, then a final drain and exit.
 *                      When the signal did not come from the master while the master is still
 *                      alive (a terminal's Ctrl-C, systemd signalling the whole cgroup), the
 *                      master is coordinating the stop, so the 10 s only start once the master
 *                      signals or dies.
 *   SIGHUP             ignored (reloads are the master's business).
 * Database errors (disk full, locked) are logged, rate-limited, and retried with back-off; the
 * records wait in their slots meanwhile. Returns the exit status: 0, or 1 when the database
 * could not be opened or records were left unwritten at exit. */
int gh_recorder_run(const char *db_path);

/* Test hook: how long a dead writer's WRITING slot is left alone before it is freed
 * (0 restores the default, 2 s). */
void gh_recorder_set_stale_us(uint64_t us);

#endif
