/* streams.c: gh-streams, case 4 of scripts/bench: opens many concurrent SSE streams and timestamps
 * every event, at a per-event cost small enough that the client is not what saturates.
 *
 * gh-streams --port P [--streams N] [--events E] [--interval-ms I] [--header 'Name: v']...
 *            [--body FILE] [--path /v1/messages] [--rss-pid PID]... [--timeout S]
 *            [--connect-concurrency N]
 *
 * Each stream is one connection and one POST; the mock paces E text deltas (plus 6 framing
 * events) I ms apart. The per-event delay is how much later than I ms after its predecessor an
 * event arrived (gap - I): a hop that holds events back shows up there, constant transit time
 * does not. While streams run, VmRSS of the given PIDs is sampled with the number of open
 * streams. Prints one JSON object on stdout (bench.py reads it). It replaced a Python asyncio
 * client that used a whole core at 2,000 streams and so measured itself. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#define CARRY 16                   /* bytes kept across reads to match patterns split by a read */
#define RBUF (64 * 1024)           /* one recv */
#define HEAD_MAX 65536             /* longest response header accepted */
#define TERMINATOR "\r\n0\r\n\r\n" /* end of a chunked body */

enum { P_WAIT, P_CONNECT, P_WRITE, P_HEAD, P_BODY, P_DONE };

struct stream {
    struct bench *b;
    struct event *io, *tmo; /* tmo: connect or stream timeout, or the 2 s after message_stop */
    int fd, phase, grace, saw_stop, clean, counted_open, ok, count; /* count: all events seen */
    size_t woff, hlen, clen;
    char *head; /* response header so far, CARRY bytes of slack in front */
    char carry[CARRY];
    double t_sent, deadline, *times; /* times: the first expect event times */
};

struct sample {
    double t;
    int open;
};

struct errent {
    char key[121];
    int n;
};

/* All state of a run: options, request, counters, streams, samples and errors. */
struct bench {
    int port, nstreams, events, interval_ms, cc, expect, npids, nhdrs;
    long *pids;
    const char *path, *body_file, **hdrs;
    double timeout;
    char *req, *rbuf; /* rbuf: CARRY bytes of slack, then RBUF for recv */
    size_t reqlen;
    struct event_base *base;
    struct stream *s;
    int next, connecting, starting, finished, open, max_open, done, failed;
    struct errent *errs; /* in first-seen order */
    int nerrs, ns, scap;
    struct sample *smp;
    long *srss; /* ns x npids VmRSS figures */
};

/* CLOCK_MONOTONIC in seconds. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* VmRSS of pid in kB, 0 if unreadable. */
static long rss_kb(long pid)
{
    char fn[64], buf[8192], *p;
    snprintf(fn, sizeof fn, "/proc/%ld/status", pid);
    int fd = open(fn, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    p = strstr(buf, "VmRSS:");
    return p ? strtol(p + 6, NULL, 10) : 0;
}

/* Memory or death. */
static void *xrealloc(void *p, size_t n)
{
    if (!(p = realloc(p, n ? n : 1)))
        abort();
    return p;
}

/* Counts one more occurrence of an error string, cut to 120 chars. */
static void add_error(struct bench *b, const char *e)
{
    int i = 0;
    while (i < b->nerrs && strncmp(b->errs[i].key, e, 120) != 0)
        i++;
    if (i == b->nerrs) {
        b->errs = xrealloc(b->errs, (b->nerrs + 1) * sizeof *b->errs);
        snprintf(b->errs[b->nerrs].key, sizeof b->errs->key, "%s", e);
        b->errs[b->nerrs++].n = 0;
    }
    b->errs[i].n++;
}

static void start_more(struct bench *b);

/* Ends a stream once (err NULL: clean end or EOF) and books it as completed or failed. */
static void finish(struct stream *s, const char *err)
{
    struct bench *b = s->b;
    char msg[64];
    if (s->phase == P_DONE)
        return;
    int was_connecting = s->phase == P_CONNECT || s->phase == P_WRITE;
    s->phase = P_DONE;
    b->open -= s->counted_open;
    if (s->io)
        event_free(s->io);
    if (s->tmo)
        event_free(s->tmo);
    if (s->fd >= 0)
        close(s->fd);
    free(s->head);
    s->head = NULL;
    if (!err && !s->saw_stop)
        err = "stream ended before message_stop";
    if (!err && s->count != b->expect) {
        snprintf(msg, sizeof msg, "%d of %d events", s->count, b->expect);
        err = msg;
    }
    if (err) {
        b->failed++;
        add_error(b, err);
    } else {
        b->done++;
        s->ok = 1;
    }
    if (++b->finished == b->nstreams)
        event_base_loopbreak(b->base);
    if (was_connecting) {
        b->connecting--;
        start_more(b);
    }
}

/* Fails a stream on a socket error, worded like asyncio's exceptions. */
static void fail_errno(struct stream *s, int e)
{
    char msg[200];
    if (s->phase == P_CONNECT)
        snprintf(msg, sizeof msg, "%s [Errno %d] Connect call failed ('127.0.0.1', %d)",
                 e == ECONNREFUSED ? "ConnectionRefusedError"
                 : e == ECONNRESET ? "ConnectionResetError"
                 : e == ETIMEDOUT  ? "TimeoutError"
                                   : "OSError",
                 e, s->b->port);
    else
        snprintf(msg, sizeof msg, "connection lost: [Errno %d] %s", e, strerror(e));
    finish(s, msg);
}

/* Arms the stream's timer sec seconds from now. */
static void arm(struct stream *s, double sec)
{
    struct timeval tv = {(time_t)sec, (suseconds_t)((sec - (time_t)sec) * 1e6)};
    s->deadline = now_s() + sec;
    event_add(s->tmo, &tv);
}

/* Timer: the 2 s grace after message_stop ran out, or the connect or stream timeout. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct stream *s = arg;
    (void)fd, (void)what;
    finish(s, s->grace ? NULL : "TimeoutError ");
}

/* Body bytes at p (CARRY spare bytes before it): counts events, spots message_stop and the end. */
static void on_body(struct stream *s, char *p, size_t n, double now)
{
    char *buf = p - s->clen, *q;
    size_t len = s->clen + n;
    memcpy(buf, s->carry, s->clen);
    /* a "\ndata:" whose last byte lies in the new data is a new event */
    for (q = buf + (s->clen > 5 ? s->clen - 5 : 0); (q = memmem(q, buf + len - q, "\ndata:", 6));
         q += 6) {
        if (s->count < s->b->expect)
            s->times[s->count] = now;
        s->count++;
    }
    if (!s->saw_stop && memmem(buf, len, "message_stop", 12)) {
        s->saw_stop = 1;
        /* an answer not chunk-encoded has no terminator: give it 2 s to close */
        if (s->deadline - now > 2.0) {
            s->grace = 1;
            arm(s, 2.0);
        }
    }
    if (s->saw_stop && memmem(buf, len, TERMINATOR, sizeof TERMINATOR - 1)) {
        s->clean = 1;
        finish(s, NULL);
        return;
    }
    s->clen = len < CARRY ? len : CARRY;
    memcpy(s->carry, buf + len - s->clen, s->clen);
}

/* Header bytes: once the header is complete, checks for 200 and hands the rest to on_body. */
static void on_head(struct stream *s, const char *p, size_t n, double now)
{
    struct bench *b = s->b;
    size_t from = s->hlen > 3 ? s->hlen - 3 : 0;
    char *h, *e, tok[16], msg[32];
    int status = 0;
    s->head = xrealloc(s->head, CARRY + s->hlen + n + 1);
    h = s->head + CARRY;
    memcpy(h + s->hlen, p, n);
    s->hlen += n;
    if (!(e = memmem(h + from, s->hlen - from, "\r\n\r\n", 4))) {
        if (s->hlen > HEAD_MAX)
            finish(s, "response headers too long");
        return;
    }
    /* status: the second word of the first line if it is all digits, else 0 */
    *(char *)memmem(h, s->hlen, "\r\n", 2) = 0;
    if (sscanf(h, "%*s %15s", tok) == 1 && strlen(tok) < 10 && !tok[strspn(tok, "0123456789")])
        status = atoi(tok);
    if (status != 200) {
        snprintf(msg, sizeof msg, "HTTP %d", status);
        finish(s, msg);
        return;
    }
    if (++b->open > b->max_open)
        b->max_open = b->open;
    s->counted_open = 1;
    s->phase = P_BODY;
    memcpy(s->carry, "\r\n", 2); /* lets TERMINATOR match a body that is only the last chunk */
    s->clen = 2;
    on_body(s, e + 4, s->hlen - (size_t)(e + 4 - h), now);
    free(s->head);
    s->head = NULL;
}

static void on_io(evutil_socket_t fd, short what, void *arg);

/* Sends the rest of the request; once all is out the stream reads and another may connect. */
static void write_req(struct stream *s)
{
    struct bench *b = s->b;
    while (s->woff < b->reqlen) {
        ssize_t w = send(s->fd, b->req + s->woff, b->reqlen - s->woff, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN && errno != EINTR)
                fail_errno(s, errno);
            return;
        }
        s->woff += (size_t)w;
    }
    event_del(s->io);
    event_assign(s->io, b->base, s->fd, EV_READ | EV_PERSIST, on_io, s);
    event_add(s->io, NULL);
    s->phase = P_HEAD;
    b->connecting--;
    start_more(b);
}

/* Socket ready: connect done (note the time, arm the stream timeout), request to send, or a read.
 */
static void on_io(evutil_socket_t fd, short what, void *arg)
{
    struct stream *s = arg;
    int e = 0;
    socklen_t el = sizeof e;
    (void)what;
    if (s->phase == P_CONNECT) {
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
            e = errno;
        if (e) {
            fail_errno(s, e);
            return;
        }
        s->t_sent = now_s();
        arm(s, s->b->timeout);
        s->phase = P_WRITE;
    }
    if (s->phase == P_WRITE) {
        write_req(s);
        return;
    }
    char *p = s->b->rbuf + CARRY;
    ssize_t n = recv(fd, p, RBUF, 0);
    double now = now_s();
    if (n < 0 && errno != EAGAIN && errno != EINTR)
        fail_errno(s, errno);
    else if (n == 0)
        finish(s, NULL);
    else if (n > 0 && s->phase == P_HEAD)
        on_head(s, p, (size_t)n, now);
    else if (n > 0)
        on_body(s, p, (size_t)n, now);
}

/* Opens one non-blocking connection to 127.0.0.1:port. */
static void start_stream(struct stream *s)
{
    struct bench *b = s->b;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons(b->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char msg[160];
    int one = 1;
    b->connecting++;
    s->phase = P_CONNECT;
    s->tmo = evtimer_new(b->base, on_timer, s);
    arm(s, b->timeout);
    if ((s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
        snprintf(msg, sizeof msg, "OSError [Errno %d] %s", errno, strerror(errno));
        finish(s, msg);
        return;
    }
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* as asyncio does */
    s->io = event_new(b->base, s->fd, EV_WRITE | EV_PERSIST, on_io, s);
    event_add(s->io, NULL);
    if (connect(s->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)
        fail_errno(s, errno);
}

/* Starts waiting streams while fewer than --connect-concurrency are connecting. */
static void start_more(struct bench *b)
{
    if (b->starting)
        return;
    b->starting = 1;
    while (b->connecting < b->cc && b->next < b->nstreams)
        start_stream(&b->s[b->next++]);
    b->starting = 0;
}

/* Sampler (run every 50 ms): time, open streams, VmRSS of each --rss-pid. */
static void on_sample(evutil_socket_t fd, short what, void *arg)
{
    struct bench *b = arg;
    (void)fd, (void)what;
    if (b->ns == b->scap) {
        b->scap = b->scap ? 2 * b->scap : 1024;
        b->smp = xrealloc(b->smp, b->scap * sizeof *b->smp);
        b->srss = xrealloc(b->srss, (size_t)b->scap * b->npids * sizeof *b->srss);
    }
    b->smp[b->ns] = (struct sample){now_s(), b->open};
    for (int i = 0; i < b->npids; i++)
        b->srss[(size_t)b->ns * b->npids + i] = rss_kb(b->pids[i]);
    b->ns++;
}

/* qsort order for doubles. */
static int cmp_d(const void *x, const void *y)
{
    double a = *(const double *)x, c = *(const double *)y;
    return (a > c) - (a < c);
}

/* Prints v rounded to 3 decimals the way Python's json prints round(v, 3); null when !have. */
static void put_r3(double v, int have)
{
    char t[64];
    size_t l;
    if (!have) {
        fputs("null", stdout);
        return;
    }
    l = (size_t)snprintf(t, sizeof t, "%.3f", v);
    while (t[l - 1] == '0' && t[l - 2] != '.')
        t[--l] = 0;
    fputs(t, stdout);
}

/* The p-th percentile of sorted v (index round-half-even(p/100*(n-1))), printed in ms. */
static void put_pct(const double *v, int n, double p, const char *after)
{
    double k = n ? nearbyint(p / 100.0 * (n - 1)) : 0;
    put_r3(n ? 1000.0 * v[k < 0 ? 0 : k > n - 1 ? n - 1 : (int)k] : 0, n > 0);
    fputs(after, stdout);
}

/* Prints a JSON list of longs and a suffix. */
static void put_list(const long *v, int n, const char *after)
{
    putchar('[');
    for (int i = 0; i < n; i++)
        printf("%s%ld", i ? ", " : "", v[i]);
    printf("]%s", after);
}

/* Computes event delays, first-event times and RSS figures; prints the JSON object. */
static void report(struct bench *b, double elapsed, const long *idle)
{
    int nd = 0, nf = 0, unclean = 0, pk = -1, np = b->npids;
    double iv = b->interval_ms / 1000.0;
    double *d = xrealloc(NULL, (size_t)b->done * b->expect * sizeof *d),
           *f = xrealloc(NULL, b->done * sizeof *f);
    long *rmax = calloc(np + 1, sizeof *rmax), pksum = 0;
    for (int i = 0; i < b->nstreams; i++) {
        struct stream *s = &b->s[i];
        if (!s->ok)
            continue;
        unclean += !s->clean;
        f[nf++] = s->times[0] - s->t_sent;
        for (int j = 1; j < s->count; j++)
            d[nd++] = s->times[j] - s->times[j - 1] - iv;
    }
    qsort(d, nd, sizeof *d, cmp_d);
    qsort(f, nf, sizeof *f, cmp_d);
    /* peak: the first sample with the largest (open, sum of rss) */
    for (int i = 0; i < b->ns; i++) {
        long sum = 0, *r = b->srss + (size_t)i * np;
        for (int j = 0; j < np; j++) {
            sum += r[j];
            rmax[j] = r[j] > rmax[j] ? r[j] : rmax[j];
        }
        if (pk < 0 || b->smp[i].open > b->smp[pk].open ||
            (b->smp[i].open == b->smp[pk].open && sum > pksum))
            pk = i, pksum = sum;
    }
    printf("{\"streams\": %d, \"events_per_stream\": %d, \"completed\": %d, \"failed\": %d, "
           "\"unclean_end\": %d, \"errors\": {",
           b->nstreams, b->expect, b->done, b->failed, unclean);
    for (int i = 0; i < b->nerrs; i++) /* keys are built here: ASCII, no quotes or backslashes */
        printf("%s\"%s\": %d", i ? ", " : "", b->errs[i].key, b->errs[i].n);
    printf("}, \"max_open\": %d, \"elapsed_s\": ", b->max_open);
    put_r3(elapsed, 1);
    fputs(", \"delay_ms\": {\"p50\": ", stdout);
    put_pct(d, nd, 50, ", \"p99\": ");
    put_pct(d, nd, 99, ", \"max\": ");
    put_r3(nd ? 1000.0 * d[nd - 1] : 0, nd > 0);
    printf(", \"n\": %d}, \"first_event_ms\": {\"p50\": ", nd);
    put_pct(f, nf, 50, ", \"p99\": ");
    put_pct(f, nf, 99, "}, \"rss_kb\": {\"pids\": ");
    put_list(b->pids, np, ", \"idle\": ");
    put_list(idle, np, ", \"at_peak_open\": ");
    put_list(pk < 0 ? NULL : b->srss + (size_t)pk * np, pk < 0 ? 0 : np, "");
    printf(", \"open_at_peak\": %d, \"max\": ", pk < 0 ? 0 : b->smp[pk].open);
    put_list(rmax, np, "}}\n");
    free(d), free(f), free(rmax);
}

/* Prints usage with an error and exits 2. */
static void usage(const char *msg, const char *arg)
{
    fprintf(stderr,
            "usage: gh-streams --port P [--path /v1/messages] [--streams N] [--events E] "
            "[--interval-ms I] [--header 'Name: value']... [--body FILE] [--rss-pid PID]... "
            "[--timeout S] [--connect-concurrency N]\ngh-streams: error: %s%s\n",
            msg, arg ? arg : "");
    exit(2);
}

/* Parses an int option argument or exits 2. */
static int int_arg(const char *s)
{
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (e == s || *e || errno || v < -2147483647L || v > 2147483647L)
        usage("invalid int value: ", s);
    return (int)v;
}

/* Builds the request bytes (headers, then the body); exits 1 if --body is unreadable. */
static void build_request(struct bench *b)
{
    static const char def[] =
        "{\"model\": \"claude-sonnet-4-5-20250929\", \"max_tokens\": 1024, "
        "\"stream\": true, \"messages\": [{\"role\": \"user\", \"content\": \"Count slowly.\"}]}";
    char *body = NULL;
    size_t blen = sizeof def - 1, got = 0;
    FILE *m, *fp = b->body_file ? fopen(b->body_file, "rb") : NULL;
    if (b->body_file) {
        for (size_t n = 1; fp && n > 0; got += n) {
            body = xrealloc(body, got + 65536);
            n = fread(body + got, 1, 65536, fp);
        }
        if (!fp || ferror(fp)) {
            perror(b->body_file);
            exit(1);
        }
        fclose(fp);
        blen = got;
    }
    if (!(m = open_memstream(&b->req, &b->reqlen)))
        abort();
    fprintf(m,
            "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
            "Accept: text/event-stream\r\nContent-Length: %zu\r\nx-mock-events: %d\r\n"
            "x-mock-interval-ms: %d\r\n",
            b->path, b->port, blen, b->events, b->interval_ms);
    for (int i = 0; i < b->nhdrs; i++)
        fprintf(m, "%s\r\n", b->hdrs[i]);
    fputs("\r\n", m);
    fwrite(body ? body : def, 1, blen, m);
    fclose(m);
    free(body);
}

/* Parses options, runs every stream on one event loop, prints the JSON summary. */
int main(int argc, char **argv)
{
    /* the int options come first and are all 'i': longindex k picks the field */
    static const struct option opts[] = {{"port", 1, 0, 'i'},
                                         {"streams", 1, 0, 'i'},
                                         {"events", 1, 0, 'i'},
                                         {"interval-ms", 1, 0, 'i'},
                                         {"connect-concurrency", 1, 0, 'i'},
                                         {"path", 1, 0, 'P'},
                                         {"header", 1, 0, 'H'},
                                         {"body", 1, 0, 'b'},
                                         {"rss-pid", 1, 0, 'r'},
                                         {"timeout", 1, 0, 't'},
                                         {0, 0, 0, 0}};
    struct bench b = {.port = -1, .path = "/v1/messages", .timeout = 60.0};
    int *ints[] = {&b.port, &b.nstreams, &b.events, &b.interval_ms, &b.cc}, c, k;
    struct rlimit rl;
    char *e;
    b.nstreams = 2000, b.events = 100, b.interval_ms = 10, b.cc = 256;
    while ((c = getopt_long(argc, argv, "", opts, &k)) != -1) {
        if (c == 'i') {
            *ints[k] = int_arg(optarg);
        } else if (c == 'P') {
            b.path = optarg;
        } else if (c == 'b') {
            b.body_file = optarg;
        } else if (c == 'H') {
            b.hdrs = xrealloc(b.hdrs, (b.nhdrs + 1) * sizeof *b.hdrs);
            b.hdrs[b.nhdrs++] = optarg;
        } else if (c == 'r') {
            b.pids = xrealloc(b.pids, (b.npids + 1) * sizeof *b.pids);
            b.pids[b.npids++] = int_arg(optarg);
        } else if (c == 't') {
            b.timeout = strtod(optarg, &e);
            if (e == optarg || *e || !(b.timeout >= 0 && b.timeout < 1e9))
                usage("invalid float value: ", optarg);
        } else {
            usage("bad option", NULL);
        }
    }
    if (optind < argc)
        usage("unrecognized arguments: ", argv[optind]);
    if (b.port < 0)
        usage("the following arguments are required: --port", NULL);
    b.nstreams = b.nstreams < 0 ? 0 : b.nstreams;
    b.cc = b.cc < 1 ? 1 : b.cc;
    /* the mock's text plan: message_start, content_block_start, ping, E deltas,
     * content_block_stop, message_delta, message_stop */
    b.expect = b.events + 6 > 1 ? b.events + 6 : 1;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t want = (rlim_t)b.nstreams + 256;
        if (rl.rlim_max != RLIM_INFINITY)
            want = want < rl.rlim_cur ? rl.rlim_cur : want > rl.rlim_max ? rl.rlim_max : want;
        if (want > rl.rlim_cur) {
            rl.rlim_cur = want;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    build_request(&b);
    b.base = event_base_new();
    b.s = xrealloc(NULL, b.nstreams * sizeof *b.s);
    b.rbuf = xrealloc(NULL, CARRY + RBUF);
    double *times = xrealloc(NULL, (size_t)b.nstreams * b.expect * sizeof *times);
    long *idle = xrealloc(NULL, b.npids * sizeof *idle);
    if (!b.base)
        abort();
    for (int i = 0; i < b.nstreams; i++)
        b.s[i] = (struct stream){.b = &b, .fd = -1, .times = times + (size_t)i * b.expect};
    for (int i = 0; i < b.npids; i++)
        idle[i] = rss_kb(b.pids[i]);
    struct event *samp = event_new(b.base, -1, EV_PERSIST, on_sample, &b);
    struct timeval fifty = {0, 50000};
    event_add(samp, &fifty);
    if (b.nstreams > 0)
        on_sample(-1, 0, &b);
    double t0 = now_s();
    start_more(&b);
    if (b.finished < b.nstreams)
        event_base_dispatch(b.base);
    double elapsed = now_s() - t0;
    event_free(samp);
    report(&b, elapsed, idle);
    fflush(stdout);
    event_base_free(b.base);
    free(b.s), free(b.rbuf), free(times), free(idle), free(b.req), free(b.errs), free(b.smp);
    free(b.srss), free(b.hdrs), free(b.pids);
    return 0;
}
