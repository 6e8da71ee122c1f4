/* log.h: leveled logging to stderr, one line per message, prefixed with time, pid and role. */
#ifndef GH_LOG_H
#define GH_LOG_H

typedef enum {
    GH_LOG_DEBUG = 0,
    GH_LOG_INFO = 1,
    GH_LOG_WARN = 2,
    GH_LOG_ERROR = 3,
} gh_log_level_t;

void gh_log_set_role(const char *role);

/* getpid() cached per process (glibc no longer caches it, and the request path asks often);
 * reset in the child of every fork. */
int gh_getpid(void);
void gh_log_set_level(gh_log_level_t level);
void gh_log(gh_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define gh_log_debug(...) gh_log(GH_LOG_DEBUG, __VA_ARGS__)
#define gh_log_info(...) gh_log(GH_LOG_INFO, __VA_ARGS__)
#define gh_log_warn(...) gh_log(GH_LOG_WARN, __VA_ARGS__)
#define gh_log_error(...) gh_log(GH_LOG_ERROR, __VA_ARGS__)

#endif
