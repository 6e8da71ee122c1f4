/* log.c: leveled stderr logging; one write(2) per line so lines from workers never interleave. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <pthread.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

static const char *gh_log_role = "main";
static gh_log_level_t gh_log_min = GH_LOG_INFO;

static int gh_pid_cache;

/* pthread_atfork child hook: the child has a pid of its own. */
static void gh_pid_forget(void)
{
    gh_pid_cache = 0;
}

/* See log.h. */
int gh_getpid(void)
{
    static int registered;

    if (!registered) {
        pthread_atfork(NULL, NULL, gh_pid_forget);
        registered = 1;
    }
    if (gh_pid_cache == 0)
        gh_pid_cache = (int)getpid();
    return gh_pid_cache;
}

/* Names the process in every following line ("master", "worker"); role must outlive the process. */
void gh_log_set_role(const char *role)
{
    gh_log_role = role;
}

/* Sets the lowest level that is written. GH_LOG_LEVEL=debug in the environment also lowers it. */
void gh_log_set_level(gh_log_level_t level)
{
    gh_log_min = level;
}

/* Formats one line "2026-01-01T00:00:00.000Z [pid role] LEVEL message" and writes it at once.
 * Callers must never pass secrets: there is no redaction here. */
void gh_log(gh_log_level_t level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    char line[2048];
    struct timeval tv;
    va_list ap;
    int n, m;

    if (level < gh_log_min)
        return;
    gettimeofday(&tv, NULL);
    gh_fmt_iso_ms(line, (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000);
    n = snprintf(line + GH_ISO_MS_LEN, sizeof(line) - GH_ISO_MS_LEN, " [%d %s] %s: ", gh_getpid(),
                 gh_log_role, names[level]);
    if (n < 0 || (size_t)n >= sizeof(line) - GH_ISO_MS_LEN)
        return;
    n += GH_ISO_MS_LEN;
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    n += m;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, (size_t)n) < 0) {
        /* Nowhere left to report a failing stderr. */
    }
}
