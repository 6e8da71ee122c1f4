/* test_quota.c: unit tests of quota.c: windows, settle, processes, holds, budgets, cooldowns. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gh.h"
#include "quota.h"

#define KEY GH_LIMITS_KIND_KEY
#define PROV GH_LIMITS_KIND_PROVIDER
#define NCHILD 8

/* 2026-11-22T15:30:00.500Z, a Sunday: seconds start at T0_S, so bucket arithmetic is easy. */
#define T0_S 1795361400ll
#define T0 (T0_S * 1000 + 500)

/* Unix ms of a UTC date, computed by libc so the module's own calendar code is checked against
 * something independent. */
static int64_t utc(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    return (int64_t)timegm(&tm) * 1000;
}

/* Maps a fresh segment for every test. */
static int setup(void **state)
{
    (void)state;
    return gh_limits_create() == GH_OK ? 0 : -1;
}

/* Unmaps the test's segment (children forked by a test have exited by then). */
static int teardown(void **state)
{
    (void)state;
    gh_limits_destroy();
    return 0;
}

/* A config with the three limits. */
static gh_limit_cfg_t cfg3(int64_t rpm, int64_t itpm, int64_t otpm)
{
    gh_limit_cfg_t c;

    c.rpm = rpm;
    c.itpm = itpm;
    c.otpm = otpm;
    return c;
}

/* Admits one request with only an rpm limit. */
static int admit_rpm(const char *id, int64_t rpm, int64_t now, gh_limit_result_t *res)
{
    gh_limit_cfg_t c = cfg3(rpm, -1, -1);

    return gh_limits_admit(KEY, id, &c, 0, 0, now, res);
}

/* Forks n children running fn(i, arg) once the parent says go, and returns the sum of what they
 * report through a pipe. Children never touch cmocka: they only compute and _exit. */
static int64_t run_children(int n, int (*fn)(int i, void *arg), void *arg, pid_t *pids)
{
    _Atomic int *go =
        mmap(NULL, sizeof(*go), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int fds[2], i, v, status;
    int64_t sum = 0;

    assert_true(go != MAP_FAILED);
    atomic_store(go, 0);
    assert_int_equal(pipe(fds), 0);
    for (i = 0; i < n; i++) {
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            while (atomic_load(go) == 0)
                sched_yield();
            v = fn(i, arg);
            _exit(write(fds[1], &v, sizeof(v)) == (ssize_t)sizeof(v) ? 0 : 1);
        }
        pids[i] = pid;
    }
    close(fds[1]);
    atomic_store(go, 1);
    for (i = 0; i < n; i++) {
        assert_int_equal(read(fds[0], &v, sizeof(v)), (ssize_t)sizeof(v));
        sum += v;
    }
    close(fds[0]);
    for (i = 0; i < n; i++) {
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    munmap((void *)go, sizeof(*go));
    return sum;
}

/* N admitted with remaining counting down, then N+1 refused with the reset and retry-after of a
 * window that frees at the end of the first second plus 60. */
static void test_rpm_exact(void **state)
{
    gh_limit_result_t r;
    int i;

    (void)state;
    for (i = 0; i < 5; i++) {
        assert_int_equal(admit_rpm("vk_a", 5, T0 + i, &r), GH_OK);
        assert_int_equal(r.limited, GH_LIMITED_NONE);
        assert_int_equal(r.requests.limit, 5);
        assert_int_equal(r.requests.remaining, 4 - i);
        assert_int_equal(r.requests.reset_ms, (T0_S + 60) * 1000);
        assert_int_equal(r.input_tokens.limit, -1);
        assert_int_equal(r.admitted_ms, T0 + i);
    }
    assert_int_equal(admit_rpm("vk_a", 5, T0 + 10, &r), GH_ERR);
    assert_int_equal(r.limited, GH_LIMITED_REQUESTS);
    assert_int_equal(r.requests.remaining, 0);
    assert_int_equal(r.requests.reset_ms, (T0_S + 60) * 1000);
    assert_int_equal(r.retry_after_s, 60); /* 59.49 s, rounded up */
    /* A refusal counted nothing: still refused a bit later, and another key is untouched. */
    assert_int_equal(admit_rpm("vk_a", 5, T0 + 20000, &r), GH_ERR);
    assert_int_equal(r.retry_after_s, 40);
    assert_int_equal(admit_rpm("vk_b", 5, T0 + 20000, &r), GH_OK);
}

/* After 60 s the whole window is free again; at 59.999 s it is not. */
static void test_window_full_release(void **state)
{
    gh_limit_result_t r;
    int i;

    (void)state;
    for (i = 0; i < 3; i++)
        assert_int_equal(admit_rpm("vk_a", 3, T0, &r), GH_OK);
    assert_int_equal(admit_rpm("vk_a", 3, (T0_S + 59) * 1000 + 999, &r), GH_ERR);
    assert_int_equal(r.retry_after_s, 1);
    for (i = 0; i < 3; i++) {
        assert_int_equal(admit_rpm("vk_a", 3, (T0_S + 60) * 1000, &r), GH_OK);
        assert_int_equal(r.requests.remaining, 2 - i);
    }
    assert_int_equal(admit_rpm("vk_a", 3, (T0_S + 60) * 1000, &r), GH_ERR);
}

/* Sliding: the oldest bucket leaves first; retry-after points at the next bucket to leave. */
static void test_window_partial_release(void **state)
{
    gh_limit_result_t r;
    int i;

    (void)state;
    for (i = 0; i < 3; i++)
        assert_int_equal(admit_rpm("vk_a", 6, T0, &r), GH_OK);
    for (i = 0; i < 3; i++)
        assert_int_equal(admit_rpm("vk_a", 6, T0 + 30000, &r), GH_OK);
    assert_int_equal(r.requests.reset_ms, (T0_S + 90) * 1000);
    assert_int_equal(admit_rpm("vk_a", 6, T0 + 30000, &r), GH_ERR);
    assert_int_equal(r.retry_after_s, 30); /* 29.5 s until T0_S + 60 */
    for (i = 0; i < 3; i++)
        assert_int_equal(admit_rpm("vk_a", 6, T0 + 59500, &r), GH_OK);
    assert_int_equal(admit_rpm("vk_a", 6, T0 + 59500, &r), GH_ERR);
    assert_int_equal(r.retry_after_s, 30); /* the T0+30 s bucket leaves at T0_S + 90 */
}

/* Tokens admit on the estimate; a settle above it consumes more, below it frees room. */
static void test_tokens_settle(void **state)
{
    gh_limit_cfg_t c = cfg3(-1, 1000, 500);
    gh_limit_result_t r;
    int64_t at;

    (void)state;
    assert_int_equal(gh_limits_admit(KEY, "vk_t", &c, 400, 100, T0, &r), GH_OK);
    assert_int_equal(r.input_tokens.remaining, 600);
    assert_int_equal(r.output_tokens.remaining, 400);
    assert_int_equal(r.requests.limit, -1);
    at = r.admitted_ms;
    gh_limits_settle(KEY, "vk_t", at, 400, 100, 700, 150, T0 + 2000);
    assert_int_equal(gh_limits_admit(KEY, "vk_t", &c, 400, 0, T0 + 2000, &r), GH_ERR);
    assert_int_equal(r.limited, GH_LIMITED_INPUT_TOKENS);
    assert_int_equal(r.input_tokens.remaining, 300);
    assert_int_equal(r.output_tokens.remaining, 350);
    assert_int_equal(r.retry_after_s, 58); /* 57.5 s: the T0 bucket must leave */
    /* The actual was lower after all: 700 becomes 200, and 400 more fit. */
    gh_limits_settle(KEY, "vk_t", at, 700, 150, 200, 150, T0 + 3000);
    assert_int_equal(gh_limits_admit(KEY, "vk_t", &c, 400, 0, T0 + 3000, &r), GH_OK);
    assert_int_equal(r.input_tokens.remaining, 400);
    /* Output refusal is reported as such. */
    assert_int_equal(gh_limits_admit(KEY, "vk_t", &c, 0, 400, T0 + 3000, &r), GH_ERR);
    assert_int_equal(r.limited, GH_LIMITED_OUTPUT_TOKENS);
}

/* A settle arriving after the admission's bucket left the window (a long stream) counts the
 * tokens beyond the estimate now; a lower actual then changes nothing. */
static void test_settle_after_window(void **state)
{
    gh_limit_cfg_t c = cfg3(-1, 1000, -1);
    gh_limit_result_t r;

    (void)state;
    assert_int_equal(gh_limits_admit(KEY, "vk_t", &c, 100, 0, T0, &r), GH_OK);
    gh_limits_settle(KEY, "vk_t", r.admitted_ms, 100, 0, 600, 0, T0 + 70000);
    assert_int_equal(gh_limits_admit(KEY, "vk_t", &c, 600, 0, T0 + 70000, &r), GH_ERR);
    assert_int_equal(r.input_tokens.remaining, 500);
    assert_int_equal(gh_limits_admit(KEY, "vk_t", &c, 500, 0, T0 + 70000, &r), GH_OK);
    gh_limits_settle(KEY, "vk_p", T0, 100, 0, 0, 0, T0); /* never admitted: nothing happens */
}

/* Cancel gives back the request and the estimates; a cancel of a bucket long gone is a no-op. */
static void test_cancel(void **state)
{
    gh_limit_cfg_t c = cfg3(1, 100, -1);
    gh_limit_result_t r;

    (void)state;
    assert_int_equal(gh_limits_admit(KEY, "vk_c", &c, 80, 0, T0, &r), GH_OK);
    assert_int_equal(gh_limits_admit(KEY, "vk_c", &c, 10, 0, T0, &r), GH_ERR);
    gh_limits_cancel(KEY, "vk_c", r.admitted_ms, 80, 0);
    assert_int_equal(gh_limits_admit(KEY, "vk_c", &c, 90, 0, T0 + 1, &r), GH_OK);
    assert_int_equal(r.requests.remaining, 0);
    assert_int_equal(r.input_tokens.remaining, 10);
    gh_limits_cancel(KEY, "vk_c", T0 - 120000, 90, 0);
    assert_int_equal(gh_limits_admit(KEY, "vk_c", &c, 1, 0, T0 + 2, &r), GH_ERR);
}

/* An estimate larger than the whole limit runs alone on an empty window, never beside others. */
static void test_oversized_request(void **state)
{
    gh_limit_cfg_t c = cfg3(-1, 1000, -1);
    gh_limit_result_t r;

    (void)state;
    assert_int_equal(gh_limits_admit(KEY, "vk_o", &c, 5000, 0, T0, &r), GH_OK);
    assert_int_equal(r.input_tokens.remaining, 0);
    assert_int_equal(gh_limits_admit(KEY, "vk_o", &c, 5000, 0, T0 + 1000, &r), GH_ERR);
    assert_int_equal(r.retry_after_s, 59);
    assert_int_equal(gh_limits_admit(KEY, "vk_o", &c, 1, 0, T0 + 1000, &r), GH_ERR);
    assert_int_equal(gh_limits_admit(KEY, "vk_o", &c, 5000, 0, T0 + 60000, &r), GH_OK);
    /* Not on a window that already holds something. */
    assert_int_equal(gh_limits_admit(KEY, "vk_o2", &c, 10, 0, T0, &r), GH_OK);
    assert_int_equal(gh_limits_admit(KEY, "vk_o2", &c, 5000, 0, T0, &r), GH_ERR);
    assert_int_equal(r.retry_after_s, 60);
}

/* -1 is unlimited (no header values); 0 admits nothing; limits of one kind never touch another. */
static void test_unlimited_zero_kinds(void **state)
{
    gh_limit_cfg_t none = cfg3(-1, -1, -1), zero = cfg3(0, -1, -1), one = cfg3(1, -1, -1);
    gh_limit_result_t r;
    int i;

    (void)state;
    for (i = 0; i < 1000; i++)
        assert_int_equal(gh_limits_admit(KEY, "vk_u", &none, 1000000, 1000000, T0, &r), GH_OK);
    assert_int_equal(r.requests.limit, -1);
    assert_int_equal(r.requests.remaining, -1);
    assert_int_equal(r.output_tokens.reset_ms, 0);
    assert_int_equal(gh_limits_admit(KEY, "vk_u", NULL, 1, 1, T0, &r), GH_OK);
    assert_int_equal(gh_limits_admit(KEY, "vk_z", &zero, 0, 0, T0, &r), GH_ERR);
    assert_int_equal(r.limited, GH_LIMITED_REQUESTS);
    assert_int_equal(r.retry_after_s, 60);
    assert_int_equal(gh_limits_admit(KEY, "same", &one, 0, 0, T0, &r), GH_OK);
    assert_int_equal(gh_limits_admit(PROV, "same", &one, 0, 0, T0, &r), GH_OK);
    assert_int_equal(gh_limits_admit(KEY, "same", &one, 0, 0, T0, &r), GH_ERR);
    assert_int_equal(gh_limits_admit(0, "same", &one, 0, 0, T0, &r), GH_OK); /* bad kind */
    assert_true(gh_limits_fail_opens() >= 1);
}

/* Limits come with every call: raising one admits more at once, lowering it clamps remaining. */
static void test_config_change(void **state)
{
    gh_limit_result_t r;
    int i;

    (void)state;
    for (i = 0; i < 5; i++)
        assert_int_equal(admit_rpm("vk_cfg", 5, T0, &r), GH_OK);
    assert_int_equal(admit_rpm("vk_cfg", 5, T0, &r), GH_ERR);
    for (i = 0; i < 5; i++)
        assert_int_equal(admit_rpm("vk_cfg", 10, T0 + 1, &r), GH_OK);
    assert_int_equal(r.requests.remaining, 0);
    assert_int_equal(admit_rpm("vk_cfg", 3, T0 + 2, &r), GH_ERR);
    assert_int_equal(r.requests.limit, 3);
    assert_int_equal(r.requests.remaining, 0);
    assert_int_equal(r.retry_after_s, 60); /* all ten must go: they share the first second */
}

/* A worker whose clock read is older than the window's newest second is counted in that second,
 * and settles through the admitted_ms it was given; a clock stepped back a whole window restarts
 * the window instead of freezing it. */
static void test_clock_skew(void **state)
{
    gh_limit_cfg_t c = cfg3(-1, 100, -1);
    gh_limit_result_t r;

    (void)state;
    assert_int_equal(gh_limits_admit(KEY, "vk_s", &c, 10, 0, T0 + 1500, &r), GH_OK);
    assert_int_equal(gh_limits_admit(KEY, "vk_s", &c, 50, 0, T0, &r), GH_OK);
    assert_int_equal(r.admitted_ms, (T0_S + 2) * 1000);
    gh_limits_settle(KEY, "vk_s", r.admitted_ms, 50, 0, 0, 0, T0);
    assert_int_equal(gh_limits_admit(KEY, "vk_s", &c, 90, 0, T0, &r), GH_OK);
    assert_int_equal(r.input_tokens.remaining, 0);
    assert_int_equal(gh_limits_admit(KEY, "vk_s", &c, 90, 0, T0 - 3600000, &r), GH_OK);
    assert_int_equal(r.input_tokens.remaining, 10);
}

/* Child body: hammers the same key at the same instant and reports how many got through. */
static int child_admit(int i, void *arg)
{
    gh_limit_cfg_t c = cfg3(500, 50000, -1);
    gh_limit_result_t r;
    int n = 0, k;

    (void)i;
    (void)arg;
    for (k = 0; k < 200; k++)
        if (gh_limits_admit(KEY, "vk_shared", &c, 10, 0, T0, &r) == GH_OK)
            n++;
    return n;
}

/* 8 processes x 200 attempts against rpm 500: exactly 500 in total, whatever the interleaving. */
static void test_multiprocess_exact(void **state)
{
    gh_limit_cfg_t c = cfg3(500, 50000, -1);
    gh_limit_result_t r;
    pid_t pids[NCHILD];

    (void)state;
    assert_int_equal(run_children(NCHILD, child_admit, NULL, pids), 500);
    assert_int_equal(gh_limits_admit(KEY, "vk_shared", &c, 0, 0, T0, &r), GH_ERR);
    assert_int_equal(r.requests.remaining, 0);
    assert_int_equal(r.input_tokens.remaining, 45000);
}

/* Child body: input tokens are the binding limit this time (itpm 4000 / 10 per request). */
static int child_admit_tokens(int i, void *arg)
{
    gh_limit_cfg_t c = cfg3(-1, 4000, -1);
    gh_limit_result_t r;
    int n = 0, k;

    (void)i;
    (void)arg;
    for (k = 0; k < 200; k++)
        if (gh_limits_admit(PROV, "anthropic", &c, 10, 0, T0, &r) == GH_OK)
            n++;
    return n;
}

/* The same exactness for a provider's input-token limit. */
static void test_multiprocess_tokens(void **state)
{
    pid_t pids[NCHILD];

    (void)state;
    assert_int_equal(run_children(NCHILD, child_admit_tokens, NULL, pids), 400);
}

/* enter up to max, refuse past it, leave frees one; leaves without a hold change nothing. */
static void test_concurrency_basic(void **state)
{
    (void)state;
    assert_int_equal(gh_limits_enter(KEY, "vk_p", 2, 100), GH_OK);
    assert_int_equal(gh_limits_enter(KEY, "vk_p", 2, 101), GH_OK);
    assert_int_equal(gh_limits_enter(KEY, "vk_p", 2, 100), GH_ERR);
    gh_limits_leave(KEY, "vk_p", 102); /* pid 102 holds nothing */
    assert_int_equal(gh_limits_enter(KEY, "vk_p", 2, 100), GH_ERR);
    gh_limits_leave(KEY, "vk_p", 101);
    assert_int_equal(gh_limits_enter(KEY, "vk_p", 2, 100), GH_OK);
    assert_int_equal(gh_limits_enter(KEY, "vk_p", 3, 100), GH_OK);  /* max raised */
    assert_int_equal(gh_limits_enter(KEY, "vk_p", 1, 100), GH_ERR); /* and lowered */
    gh_limits_leave(KEY, "vk_p", 100);
    gh_limits_leave(KEY, "vk_p", 100);
    gh_limits_leave(KEY, "vk_p", 100);
    gh_limits_leave(KEY, "vk_p", 100); /* one too many: ignored */
    assert_int_equal(gh_limits_enter(KEY, "vk_p", 1, 100), GH_OK);
    /* Unlimited is untracked; 0 refuses all. */
    assert_int_equal(gh_limits_enter(KEY, "vk_q", -1, 100), GH_OK);
    gh_limits_leave(KEY, "vk_q", 100);
    assert_int_equal(gh_limits_enter(KEY, "vk_q", 0, 100), GH_ERR);
}

/* A child takes 3 holds and exits without leaving: they stay until the master reaps its pid. */
static void test_reap_dead_child(void **state)
{
    int status;
    pid_t pid;

    (void)state;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int ok = 1, i;

        for (i = 0; i < 3; i++)
            ok &= gh_limits_enter(KEY, "vk_r", 3, (int32_t)getpid()) == GH_OK;
        _exit(ok ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(gh_limits_enter(KEY, "vk_r", 3, 1), GH_ERR);
    gh_limits_reap((int32_t)pid);
    assert_int_equal(gh_limits_enter(KEY, "vk_r", 3, 1), GH_OK);
    assert_int_equal(gh_limits_enter(KEY, "vk_r", 3, 1), GH_OK);
    assert_int_equal(gh_limits_enter(KEY, "vk_r", 3, 1), GH_OK);
    assert_int_equal(gh_limits_enter(KEY, "vk_r", 3, 1), GH_ERR);
    gh_limits_reap(1);
    assert_int_equal(gh_limits_enter(KEY, "vk_r", 1, 1), GH_OK);
}

/* Child body: tries 100 holds on one key and on one provider, never leaving. */
static int child_enter(int i, void *arg)
{
    int n = 0, k;

    (void)i;
    (void)arg;
    for (k = 0; k < 100; k++) {
        if (gh_limits_enter(KEY, "vk_cc", 300, (int32_t)getpid()) == GH_OK)
            n++;
        gh_limits_enter(PROV, "anthropic", 5, (int32_t)getpid());
    }
    return n;
}

/* max_parallel holds exactly across processes, and reaping every child frees every hold. */
static void test_concurrency_multiprocess(void **state)
{
    pid_t pids[NCHILD];
    int i;

    (void)state;
    assert_int_equal(run_children(NCHILD, child_enter, NULL, pids), 300);
    assert_int_equal(gh_limits_enter(KEY, "vk_cc", 300, 1), GH_ERR);
    assert_int_equal(gh_limits_enter(PROV, "anthropic", 5, 1), GH_ERR);
    for (i = 0; i < NCHILD; i++)
        gh_limits_reap((int32_t)pids[i]);
    for (i = 0; i < 300; i++)
        assert_int_equal(gh_limits_enter(KEY, "vk_cc", 300, 1), GH_OK);
    assert_int_equal(gh_limits_enter(KEY, "vk_cc", 300, 1), GH_ERR);
    assert_int_equal(gh_limits_enter(PROV, "anthropic", 5, 1), GH_OK);
}

/* Ends the run with a failure status: the alarm only fires if a lock deadlocked. */
static void on_alarm(int sig)
{
    (void)sig;
    _exit(99);
}

/* A child SIGKILLed while holding every lock does not deadlock anyone: the robust mutexes hand
 * the next locker EOWNERDEAD and the module recovers. */
static void test_robust_mutex(void **state)
{
    gh_limit_cfg_t c = cfg3(10, -1, -1);
    gh_limit_result_t r;
    double spent = -1;
    int fds[2], status, t;
    char byte;
    pid_t pid;

    (void)state;
    assert_int_equal(admit_rpm("vk_m", 10, T0, &r), GH_OK);
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        for (t = 0; t < GH_LIMITS_NTABLES; t++)
            if (gh_limits_test_lock(t) != GH_OK)
                _exit(1);
        if (write(fds[1], "x", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], &byte, 1), 1);
    close(fds[0]);
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    signal(SIGALRM, on_alarm);
    alarm(10);
    assert_int_equal(gh_limits_admit(KEY, "vk_m", &c, 0, 0, T0, &r), GH_OK);
    assert_int_equal(r.requests.remaining, 8); /* the window survived */
    assert_int_equal(gh_limits_enter(KEY, "vk_m", 1, 1), GH_OK);
    assert_int_equal(gh_limits_budget_check("vk_m", "1d", 1.0, T0, NULL, NULL, &spent), GH_OK);
    gh_limits_cooldown(7, T0 + 1000);
    assert_int_equal(gh_limits_cooldown_until(7, T0), T0 + 1000);
    /* And the locks work normally afterwards. */
    assert_int_equal(gh_limits_admit(KEY, "vk_m", &c, 0, 0, T0, &r), GH_OK);
    alarm(0);
    signal(SIGALRM, SIG_DFL);
}

/* Checks start and end of one period kind around now. */
static void assert_period(const char *p, int64_t now, int64_t start, int64_t end)
{
    assert_int_equal(gh_limits_period_start_ms(p, now), start);
    assert_int_equal(gh_limits_period_end_ms(p, now), end);
}

/* Calendar-aligned UTC periods on known dates: Sunday to Monday, year end, leap days, pre-1970. */
static void test_periods(void **state)
{
    int64_t now = utc(2026, 11, 22, 15, 30, 0);
    struct tm tm;
    time_t t = (time_t)(now / 1000);

    (void)state;
    gmtime_r(&t, &tm);
    assert_int_equal(tm.tm_wday, 0); /* the premise: 2026-11-22 is a Sunday */
    assert_period("1d", now, utc(2026, 11, 22, 0, 0, 0), utc(2026, 11, 23, 0, 0, 0));
    assert_period("1w", now, utc(2026, 11, 16, 0, 0, 0), utc(2026, 11, 23, 0, 0, 0));
    assert_period("1M", now, utc(2026, 11, 1, 0, 0, 0), utc(2026, 12, 1, 0, 0, 0));
    assert_period("1w", utc(2026, 11, 22, 23, 59, 59) + 999, utc(2026, 11, 16, 0, 0, 0),
                  utc(2026, 11, 23, 0, 0, 0));
    assert_period("1w", utc(2026, 11, 23, 0, 0, 0), utc(2026, 11, 23, 0, 0, 0),
                  utc(2026, 11, 30, 0, 0, 0));
    now = utc(2026, 12, 31, 23, 59, 59) + 999;
    assert_period("1d", now, utc(2026, 12, 31, 0, 0, 0), utc(2027, 1, 1, 0, 0, 0));
    assert_period("1w", now, utc(2026, 12, 28, 0, 0, 0), utc(2027, 1, 4, 0, 0, 0));
    assert_period("1M", now, utc(2026, 12, 1, 0, 0, 0), utc(2027, 1, 1, 0, 0, 0));
    assert_period("1M", now + 1, utc(2027, 1, 1, 0, 0, 0), utc(2027, 2, 1, 0, 0, 0));
    now = utc(2028, 2, 29, 12, 0, 0);
    assert_period("1d", now, utc(2028, 2, 29, 0, 0, 0), utc(2028, 3, 1, 0, 0, 0));
    assert_period("1M", now, utc(2028, 2, 1, 0, 0, 0), utc(2028, 3, 1, 0, 0, 0));
    assert_period("1M", utc(2100, 2, 28, 1, 0, 0), utc(2100, 2, 1, 0, 0, 0),
                  utc(2100, 3, 1, 0, 0, 0));
    assert_period("1M", utc(2000, 2, 29, 1, 0, 0), utc(2000, 2, 1, 0, 0, 0),
                  utc(2000, 3, 1, 0, 0, 0));
    now = utc(1969, 12, 31, 12, 0, 0);
    assert_period("1d", now, utc(1969, 12, 31, 0, 0, 0), 0);
    assert_period("1w", now, utc(1969, 12, 29, 0, 0, 0), utc(1970, 1, 5, 0, 0, 0));
    assert_period("1M", now, utc(1969, 12, 1, 0, 0, 0), 0);
    assert_int_equal(gh_limits_period_start_ms("1y", now), -1);
    assert_int_equal(gh_limits_period_end_ms("1m", now), -1);
    assert_int_equal(gh_limits_period_start_ms(NULL, now), -1);
}

/* What a seed callback saw and answers. */
typedef struct {
    int calls;
    double value;
    int64_t start;
} seed_t;

/* Stands in for the SQLite sum: records the call and returns the configured value. */
static double seed_fn(void *arg, int64_t period_start_ms)
{
    seed_t *s = arg;

    s->calls++;
    s->start = period_start_ms;
    return s->value;
}

/* Seeded once per period; refuses once spent >= budget and not before; adds before the seed are
 * left to the seed. */
static void test_budget(void **state)
{
    seed_t s = {0, 9.5, 0};
    int64_t now = utc(2026, 11, 22, 15, 30, 0);
    double spent = 0;

    (void)state;
    gh_limits_budget_add("vk_b", "1M", 100.0, now); /* not seeded yet: dropped */
    assert_int_equal(gh_limits_budget_check("vk_b", "1M", 10.0, now, seed_fn, &s, &spent), GH_OK);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.start, utc(2026, 11, 1, 0, 0, 0));
    assert_true(spent == 9.5);
    assert_int_equal(gh_limits_budget_check("vk_b", "1M", 10.0, now + 1, seed_fn, &s, &spent),
                     GH_OK);
    assert_int_equal(s.calls, 1);
    gh_limits_budget_add("vk_b", "1M", 0.25, now + 2);
    assert_int_equal(gh_limits_budget_check("vk_b", "1M", 10.0, now + 3, seed_fn, &s, &spent),
                     GH_OK);
    assert_true(spent == 9.75);
    gh_limits_budget_add("vk_b", "1M", 0.25, now + 4);
    assert_int_equal(gh_limits_budget_check("vk_b", "1M", 10.0, now + 5, seed_fn, &s, NULL),
                     GH_ERR);
    assert_int_equal(gh_limits_budget_check("vk_b", "1M", 10.5, now + 5, seed_fn, &s, &spent),
                     GH_OK); /* budget raised */
    assert_true(spent == 10.0);
    assert_int_equal(s.calls, 1);
    /* Unlimited never seeds; 0 refuses at once. */
    assert_int_equal(gh_limits_budget_check("vk_n", "1M", -1, now, seed_fn, &s, &spent), GH_OK);
    assert_int_equal(s.calls, 1);
    s.value = 0.0;
    assert_int_equal(gh_limits_budget_check("vk_n", "1M", 0.0, now, seed_fn, &s, &spent), GH_ERR);
    assert_int_equal(gh_limits_budget_check("vk_x", "1y", 1.0, now, seed_fn, &s, &spent), GH_OK);
}

/* A new period (or a changed period kind) seeds again from its own start. */
static void test_budget_rollover(void **state)
{
    seed_t s = {0, 3.0, 0};
    int64_t day1 = utc(2026, 12, 31, 23, 0, 0), day2 = utc(2027, 1, 1, 0, 0, 1);
    double spent = 0;

    (void)state;
    assert_int_equal(gh_limits_budget_check("vk_d", "1d", 5.0, day1, seed_fn, &s, &spent), GH_OK);
    gh_limits_budget_add("vk_d", "1d", 2.0, day1);
    assert_int_equal(gh_limits_budget_check("vk_d", "1d", 5.0, day1, seed_fn, &s, &spent), GH_ERR);
    s.value = 0.5;
    assert_int_equal(gh_limits_budget_check("vk_d", "1d", 5.0, day2, seed_fn, &s, &spent), GH_OK);
    assert_int_equal(s.calls, 2);
    assert_int_equal(s.start, utc(2027, 1, 1, 0, 0, 0));
    assert_true(spent == 0.5);
    gh_limits_budget_add("vk_d", "1d", 9.0, day1); /* a late add for the old day: dropped */
    assert_int_equal(gh_limits_budget_check("vk_d", "1d", 5.0, day2, seed_fn, &s, &spent), GH_OK);
    assert_true(spent == 0.5);
    s.value = 4.0;
    assert_int_equal(gh_limits_budget_check("vk_d", "1M", 5.0, day2, seed_fn, &s, &spent), GH_OK);
    assert_int_equal(s.calls, 3);
    assert_true(spent == 4.0);
}

/* A seed that, while it runs, lets another caller seed the same key first (7.0), as a second
 * worker would; returns 1.0 so the test can tell whose value was kept. */
static double seed_outer(void *arg, int64_t period_start_ms)
{
    seed_t *s = arg;
    seed_t inner = {0, 7.0, 0};
    double spent = 0;

    s->calls++;
    (void)period_start_ms;
    gh_limits_budget_check("vk_race", "1w", 10.0, T0, seed_fn, &inner, &spent);
    return inner.calls == 1 && spent == 7.0 ? 1.0 : 100.0;
}

/* The seed runs outside the lock (the nested call above would deadlock otherwise); when another
 * caller stores a seed meanwhile, that one wins and no one seeds again. */
static void test_budget_seeded_first(void **state)
{
    seed_t s = {0, 0.0, 0};
    double spent = 0;

    (void)state;
    assert_int_equal(gh_limits_budget_check("vk_race", "1w", 10.0, T0, seed_outer, &s, &spent),
                     GH_OK);
    assert_int_equal(s.calls, 1);
    assert_true(spent == 7.0);
    assert_int_equal(gh_limits_budget_check("vk_race", "1w", 10.0, T0, seed_outer, &s, &spent),
                     GH_OK);
    assert_int_equal(s.calls, 1);
    assert_true(spent == 7.0);
}

/* Cooldowns are set, extended but never shortened, and end at until_ms. */
static void test_cooldown(void **state)
{
    (void)state;
    assert_int_equal(gh_limits_cooldown_until(42, T0), 0);
    gh_limits_cooldown(42, T0 + 30000);
    assert_int_equal(gh_limits_cooldown_until(42, T0), T0 + 30000);
    assert_int_equal(gh_limits_cooldown_until(43, T0), 0);
    gh_limits_cooldown(42, T0 + 1000);
    assert_int_equal(gh_limits_cooldown_until(42, T0 + 29999), T0 + 30000);
    assert_int_equal(gh_limits_cooldown_until(42, T0 + 30000), 0);
    assert_int_equal(gh_limits_cooldown_until(42, T0), 0); /* expired entry was dropped */
    gh_limits_cooldown(42, T0 + 5000);
    assert_int_equal(gh_limits_cooldown_until(42, T0), T0 + 5000);
    gh_limits_sweep(T0 + 5000);
    assert_int_equal(gh_limits_cooldown_until(42, T0), 0);
    gh_limits_cooldown(-1, 0);
    assert_int_equal(gh_limits_cooldown_until(-1, 0), 0);
    /* a key created with a deleted key's id starts without its cooldown; others keep theirs */
    gh_limits_cooldown(44, T0 + 60000);
    gh_limits_cooldown(45, T0 + 60000);
    gh_limits_cooldown_clear(44);
    assert_int_equal(gh_limits_cooldown_until(44, T0), 0);
    assert_int_equal(gh_limits_cooldown_until(45, T0), T0 + 60000);
    gh_limits_cooldown(44, T0 + 2000); /* and it can cool down again */
    assert_int_equal(gh_limits_cooldown_until(44, T0), T0 + 2000);
    gh_limits_cooldown_clear(46); /* no entry: nothing to do */
    assert_int_equal(gh_limits_cooldown_until(46, T0), 0);
}

/* A full table admits (and counts it) instead of failing; a sweep of idle entries makes room. */
static void test_table_full(void **state)
{
    char id[32], longid[GH_LIMITS_ID_MAX + 8];
    gh_limit_result_t r;
    int i;

    (void)state;
    for (i = 0; i < GH_LIMITS_MAX_USED; i++) {
        snprintf(id, sizeof(id), "vk_%05d", i);
        assert_int_equal(admit_rpm(id, 1, T0, &r), GH_OK);
    }
    assert_int_equal(gh_limits_fail_opens(), 0);
    assert_int_equal(admit_rpm("vk_extra", 1, T0, &r), GH_OK);
    assert_int_equal(admit_rpm("vk_extra", 1, T0, &r), GH_OK);
    assert_int_equal(gh_limits_fail_opens(), 2);
    assert_int_equal(admit_rpm("vk_00000", 1, T0, &r), GH_ERR);
    assert_int_equal(admit_rpm("vk_07000", 1, T0, &r), GH_ERR);
    gh_limits_sweep(T0 + 30000); /* nothing idle yet */
    assert_int_equal(admit_rpm("vk_extra", 1, T0 + 30000, &r), GH_OK);
    assert_int_equal(gh_limits_fail_opens(), 3);
    gh_limits_sweep(T0 + 60000);
    assert_int_equal(admit_rpm("vk_extra", 1, T0 + 60000, &r), GH_OK);
    assert_int_equal(admit_rpm("vk_extra", 1, T0 + 60000, &r), GH_ERR);
    assert_int_equal(gh_limits_fail_opens(), 3);
    /* Too long an id cannot be tracked either: admitted. */
    memset(longid, 'y', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    assert_int_equal(admit_rpm(longid, 1, T0, &r), GH_OK);
    assert_int_equal(admit_rpm(longid, 1, T0, &r), GH_OK);
}

/* The concurrency tables fail open the same way. */
static void test_conc_table_full(void **state)
{
    char id[32];
    int i;

    (void)state;
    for (i = 0; i < GH_LIMITS_MAX_USED; i++) {
        snprintf(id, sizeof(id), "vk_%05d", i);
        assert_int_equal(gh_limits_enter(KEY, id, 1, 1), GH_OK);
    }
    assert_int_equal(gh_limits_enter(KEY, "vk_extra", 1, 1), GH_OK);
    assert_int_equal(gh_limits_enter(KEY, "vk_extra", 1, 1), GH_OK);
    gh_limits_leave(KEY, "vk_extra", 1); /* untracked: nothing to give back */
    assert_int_equal(gh_limits_enter(KEY, "vk_00001", 1, 1), GH_ERR);
    gh_limits_reap(1);
    assert_int_equal(gh_limits_enter(KEY, "vk_extra", 1, 1), GH_OK);
    assert_int_equal(gh_limits_enter(KEY, "vk_extra", 1, 1), GH_ERR);
}

/* Refusal counters for /metrics. */
static void test_stats(void **state)
{
    uint64_t out[GH_LIMITS_NREASONS];

    (void)state;
    gh_limits_count_refusal(GH_LIMITS_REFUSED_REQUESTS);
    gh_limits_count_refusal(GH_LIMITS_REFUSED_TOKENS);
    gh_limits_count_refusal(GH_LIMITS_REFUSED_TOKENS);
    gh_limits_count_refusal(GH_LIMITS_REFUSED_BUDGET);
    gh_limits_count_refusal(GH_LIMITS_NREASONS); /* ignored */
    gh_limits_count_refusal(-1);
    gh_limits_stats(out);
    assert_int_equal(out[GH_LIMITS_REFUSED_REQUESTS], 1);
    assert_int_equal(out[GH_LIMITS_REFUSED_TOKENS], 2);
    assert_int_equal(out[GH_LIMITS_REFUSED_CONCURRENCY], 0);
    assert_int_equal(out[GH_LIMITS_REFUSED_BUDGET], 1);
}

/* Without a segment everything admits and nothing crashes; a second create is refused. */
static void test_no_segment(void **state)
{
    gh_limit_cfg_t c = cfg3(0, 0, 0);
    gh_limit_result_t r;
    uint64_t out[GH_LIMITS_NREASONS];
    seed_t s = {0, 100.0, 0};

    (void)state;
    assert_int_equal(gh_limits_create(), GH_ERR);
    gh_limits_destroy();
    assert_null(gh_limits);
    assert_int_equal(gh_limits_admit(KEY, "vk_a", &c, 1, 1, T0, &r), GH_OK);
    assert_int_equal(r.requests.limit, 0);
    gh_limits_settle(KEY, "vk_a", T0, 1, 1, 2, 2, T0);
    gh_limits_cancel(KEY, "vk_a", T0, 1, 1);
    assert_int_equal(gh_limits_enter(KEY, "vk_a", 0, 1), GH_OK);
    gh_limits_leave(KEY, "vk_a", 1);
    gh_limits_reap(1);
    assert_int_equal(gh_limits_budget_check("vk_a", "1d", 1.0, T0, seed_fn, &s, NULL), GH_OK);
    gh_limits_budget_add("vk_a", "1d", 1.0, T0);
    gh_limits_cooldown(1, T0 + 1000);
    assert_int_equal(gh_limits_cooldown_until(1, T0), 0);
    gh_limits_sweep(T0);
    gh_limits_count_refusal(0);
    gh_limits_stats(out);
    assert_int_equal(out[0], 0);
    assert_int_equal(gh_limits_test_lock(0), GH_ERR);
}

/* Runs every test, each on a fresh segment but the calendar one. */
int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rpm_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_full_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_partial_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens_settle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settle_after_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unlimited_zero_kinds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clock_skew, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multiprocess_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multiprocess_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrency_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reap_dead_child, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrency_multiprocess, setup, teardown),
        cmocka_unit_test_setup_teardown(test_robust_mutex, setup, teardown),
        cmocka_unit_test(test_periods),
        cmocka_unit_test_setup_teardown(test_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_rollover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_seeded_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cooldown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conc_table_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_segment, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
