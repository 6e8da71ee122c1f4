#!/usr/bin/env python3
"""bench.py: the body of scripts/bench (which installs what is needed, then runs this).

Starts on 127.0.0.1 the C mock upstream, nginx as the bare hop, Portkey as the peer gateway and
gatehouse with governance on; drives each with wrk (cases 1, 2, 3, 5, 6) and gh-streams (streams.c, case 4);
prints one table, the ratios, the targets of issue 7 with PASS/FAIL, and writes --json FILE.
Every process it starts gets its own process group, is listed in $BENCH_PIDFILE (for the shell
wrapper's EXIT trap) and is stopped on the way out, however the run ends.
"""
import argparse
import http.client
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
ORDER = ["direct", "nginx", "portkey", "gatehouse"]
LABEL = {"direct": "direct", "nginx": "nginx", "portkey": "Portkey", "gatehouse": "gatehouse",
         "gatehouse-nolog": "gatehouse (log off)"}
CASE_TITLE = {
    "1": "small /v1/messages, 64 conns",
    "2": "small /v1/messages, 1 conn",
    "3": "300 KB Claude-Code body, 16 conns",
    "4": "streams",
    "5": "/v1/chat/completions, 64 conns",
    "6": "case 1, usage logging off",
}


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def request(port, method, path, body=None, headers=None, timeout=10):
    """One HTTP request on a fresh connection: (status, body bytes); (0, error text) on failure."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        hdrs = {"content-type": "application/json"} if body is not None else {}
        hdrs.update(headers or {})
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        return r.status, r.read()
    except (OSError, http.client.HTTPException) as e:
        return 0, str(e).encode()
    finally:
        conn.close()


def hdr_dict(lines):
    out = {}
    for line in lines:
        k, v = line.split(":", 1)
        out[k.strip()] = v.strip()
    return out


class Procs:
    """Children started in their own process groups, listed in a pid file for the EXIT trap."""

    def __init__(self, pidfile):
        self.pidfile = pidfile
        self.live = []

    def _write(self):
        if not self.pidfile:
            return
        tmp = self.pidfile + ".tmp"
        with open(tmp, "w") as f:
            for p, _ in self.live:
                f.write("%d\n" % p.pid)
        os.replace(tmp, self.pidfile)

    def start(self, name, argv, logpath, env=None, cwd=None):
        logf = open(logpath, "ab")
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env, cwd=cwd, start_new_session=True)
        logf.close()
        p.bench_name = name
        p.bench_log = logpath
        self.live.append((p, name))
        self._write()
        return p

    def stop(self, p, timeout=10.0):
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                log("%s did not stop in %.0f s; killing it" % (p.bench_name, timeout))
        try:  # whatever is left of its group (workers of a master that died first)
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if p.poll() is None:
            p.wait(5)
        self.live = [(q, n) for q, n in self.live if q is not p]
        self._write()

    def stop_all(self):
        for p, _ in reversed(list(self.live)):
            try:
                self.stop(p, 8.0)
            except Exception as e:  # keep stopping the others
                log("stopping %s: %s" % (p.bench_name, e))


def wait_until(pred, timeout, what, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with %s; log %s:\n%s" % (
                what, proc.returncode, proc.bench_log, tail(proc.bench_log)))
        try:
            if pred():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for %s" % what)


def tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def children(ppid, comm):
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                rest = f.read().rsplit(")", 1)[1].split()
            with open("/proc/%s/comm" % pid) as f:
                name = f.read().strip()
        except (OSError, IndexError):
            continue
        if int(rest[1]) == ppid and name == comm and rest[0] != "Z":
            out.append(int(pid))
    return sorted(out)


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_parts(pid):
    """VmRSS and its parts (RssAnon, RssFile, RssShmem) in KB."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k = line.split(":", 1)[0]
                if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                    out[k] = int(line.split()[1])
    except OSError:
        pass
    return out


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "mem_mb": mem,
            "kernel": platform.release(), "load_at_start": os.getloadavg()[0]}


def tool_version(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except Exception:
        return "?"


class Bench:
    def __init__(self, args):
        self.a = args
        self.tmp = os.environ.get("BENCH_TMP") or tempfile.mkdtemp(prefix="gh-bench-")
        self.procs = Procs(os.environ.get("BENCH_PIDFILE"))
        self.ports = {}
        self.headers = {}
        self.notes = []
        self.skip = {}
        self.results = {c: {} for c in "12356"}
        self.streams = {}
        self.rss = {}
        self.usage = {}
        self.gh = None
        self.gh_off = None
        self.answered = {}  # 2xx answers each target gave us: the floor for usage_log rows

    # ---- starting things ----------------------------------------------------------------
    def start_mock(self):
        portfile = os.path.join(self.tmp, "mock.port")
        p = self.procs.start("gh-mock", [self.a.mock, "--listen", "127.0.0.1:0", "--port-file",
                                         portfile, "--no-record"], os.path.join(self.tmp, "mock.log"))
        wait_until(lambda: os.path.exists(portfile), 10, "gh-mock", p)
        self.mock_port = int(open(portfile).read().strip())
        self.ports["direct"] = self.mock_port
        self.headers["direct"] = ["x-api-key: sk-bench", "anthropic-version: 2023-06-01"]

    def start_nginx(self):
        if "nginx" in self.skip:
            return
        if not self.a.nginx:
            self.skip["nginx"] = "nginx not found (scripts/deps --bench installs nginx-light)"
            return
        prefix = os.path.join(self.tmp, "nginx")
        os.makedirs(prefix)
        port = free_port()
        nofile = 65536
        try:
            import resource
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            if hard != resource.RLIM_INFINITY:
                nofile = min(nofile, hard)
        except Exception:
            pass
        conf = open(os.path.join(HERE, "nginx.conf.in")).read()
        for k, v in {"WORKERS": self.a.workers, "NOFILE": nofile,
                     "CONNECTIONS": max(1024, nofile // 2 - 64), "PREFIX": prefix,
                     "MOCK_PORT": self.mock_port, "PORT": port,
                     "USER": "user root root;" if os.geteuid() == 0 else ""}.items():
            conf = conf.replace("@%s@" % k, str(v))
        path = os.path.join(prefix, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        p = self.procs.start("nginx", [self.a.nginx, "-p", prefix, "-c", path, "-e",
                                       os.path.join(prefix, "error.log")],
                             os.path.join(prefix, "stderr.log"))
        wait_until(lambda: request(port, "GET", "/healthz", timeout=2)[0] == 200, 15, "nginx", p)
        self.ports["nginx"] = port
        self.headers["nginx"] = list(self.headers["direct"])

    def start_portkey(self):
        if "portkey" in self.skip:
            return
        if not self.a.portkey_entry:
            self.skip["portkey"] = self.a.portkey_skip or "Portkey not installed"
            return
        port = free_port()
        env = dict(os.environ, NODE_ENV="production")
        try:
            p = self.procs.start("portkey", [self.a.node, os.path.join(HERE, "portkey.mjs"),
                                             self.a.portkey_entry, str(port),
                                             str(self.a.portkey_procs)],
                                 os.path.join(self.tmp, "portkey.log"), env=env)
            wait_until(lambda: request(port, "GET", "/", timeout=2)[0] == 200, 30, "Portkey", p)
        except RuntimeError as e:
            self.skip["portkey"] = "did not start: %s" % str(e).splitlines()[0]
            log("Portkey %s" % self.skip["portkey"])
            return
        self.ports["portkey"] = port
        self.headers["portkey"] = [
            "x-portkey-provider: anthropic",
            "x-portkey-custom-host: http://127.0.0.1:%d/v1" % self.mock_port,
            "x-portkey-forward-headers: x-mock-events,x-mock-interval-ms",
            "x-api-key: sk-bench", "Authorization: Bearer sk-bench",
            "anthropic-version: 2023-06-01"]

    def start_gatehouse(self, name, extra_env):
        port, admin = free_port(), free_port()
        data = os.path.join(self.tmp, name + "-data")
        os.makedirs(data)
        token = "bench-" + secrets.token_hex(12)
        env = dict(os.environ)
        for k in ("GATEHOUSE_MASTER_KEY", "GATEHOUSE_USAGE_LOG"):
            env.pop(k, None)
        env.update({"ANTHROPIC_API_KEY": "sk-bench",
                    "ANTHROPIC_BASE_URL": "http://127.0.0.1:%d" % self.mock_port,
                    "GATEHOUSE_ADMIN_TOKEN": token})
        env.update(extra_env)
        p = self.procs.start(name, [self.a.gatehouse, "--listen", "127.0.0.1:%d" % port,
                                    "--admin-listen", "127.0.0.1:%d" % admin, "--data-dir", data,
                                    "--workers", str(self.a.workers), "--drain-timeout", "3"],
                             os.path.join(self.tmp, name + ".log"), env=env)
        wait_until(lambda: request(port, "GET", "/healthz", timeout=2)[0] == 200, 20, name, p)
        st, body = request(admin, "POST", "/admin/keys", {
            "name": "bench", "models": ["claude-*"], "rpm_limit": 100000000,
            "itpm_limit": 2147483647, "otpm_limit": 2147483647},
            {"authorization": "Bearer " + token})
        if st != 201:
            raise RuntimeError("%s: POST /admin/keys answered %d: %s" % (name, st, body[:300]))
        key = json.loads(body)["key"]
        gh = {"proc": p, "port": port, "admin": admin, "data": data, "key": key, "token": token,
              "db": os.path.join(data, "gatehouse.db")}
        self.ports[name] = port
        self.headers[name] = ["x-api-key: " + key, "anthropic-version: 2023-06-01"]
        # the key reaches the workers asynchronously: wait until a request is accepted
        hdr = hdr_dict(self.headers[name])
        wait_until(lambda: request(port, "POST", "/v1/messages", self.small, hdr)[0] == 200, 10,
                   name + " accepting the new key", p)
        self.count(name, 1)
        return gh

    def count(self, target, n):
        self.answered[target] = self.answered.get(target, 0) + n

    def workers_of(self, gh):
        return children(gh["proc"].pid, "gh-worker")

    def usage_rows(self, gh):
        try:
            c = sqlite3.connect("file:%s?mode=ro" % gh["db"], uri=True, timeout=5)
            try:
                return c.execute("SELECT count(*) FROM usage_log").fetchone()[0]
            finally:
                c.close()
        except sqlite3.Error as e:
            return "error: %s" % e

    def check_usage_switch(self):
        """Case 6 needs GATEHOUSE_USAGE_LOG=off to be honoured: rows must appear with logging on
        and none with it off, after the same requests."""
        n = 20
        before_on = self.usage_rows(self.gh)
        before_off = self.usage_rows(self.gh_off)
        for name in ("gatehouse", "gatehouse-nolog"):
            hdr = hdr_dict(self.headers[name])
            for _ in range(n):
                if 200 <= request(self.ports[name], "POST", "/v1/messages", self.small, hdr)[0] < 300:
                    self.count(name, 1)
        deadline = time.time() + 4
        on = off = None
        while time.time() < deadline:
            on, off = self.usage_rows(self.gh), self.usage_rows(self.gh_off)
            if isinstance(on, int) and isinstance(before_on, int) and on - before_on >= n:
                break
            time.sleep(0.1)
        time.sleep(0.3)
        off = self.usage_rows(self.gh_off)
        self.usage["switch_check"] = {"requests": n, "rows_on": on, "rows_off": off,
                                      "rows_on_before": before_on, "rows_off_before": before_off}
        if not isinstance(on, int) or not isinstance(off, int):
            return "usage_log unreadable (%s / %s)" % (on, off)
        if on - before_on <= 0:
            return "could not verify: no usage_log rows with logging on either"
        if off > 0:
            return "GATEHOUSE_USAGE_LOG=off is not honoured (%d usage_log rows after %d requests)" % (off, n + 1)
        return None

    # ---- measuring ----------------------------------------------------------------------
    def wrk(self, target, case, path, body_file, conns, extra_headers=()):
        port = self.ports[target]
        hdrs = self.headers[target] + list(extra_headers)
        body = open(body_file, "rb").read()
        st, answer = request(port, "POST", path, body, hdr_dict(hdrs), timeout=30)
        if st == 404 and case == "5" and target.startswith("gatehouse"):
            return {"na": "404: no %s in gatehouse yet" % path}
        if 200 <= st < 300:
            self.count(target, 1)
        if not 200 <= st < 300:
            return {"na": "probe answered %s: %s" % (st or "no answer",
                                                     answer[:160].decode("utf-8", "replace").replace("\n", " "))}
        threads = max(1, min(conns, self.a.wrk_threads))
        res = None
        # Portkey always gets a warm-up: node's JIT needs it
        warm = max(self.a.warmup, 1 if target == "portkey" else 0)
        for dur, keep in ((warm, False), (self.a.duration, True)):
            if dur <= 0:
                continue
            argv = [self.a.wrk, "-t%d" % threads, "-c%d" % conns, "-d%ds" % dur, "--timeout", "10s",
                    "-s", os.path.join(HERE, "post.lua"), "http://127.0.0.1:%d%s" % (port, path),
                    "--", body_file] + hdrs
            try:
                out = subprocess.run(argv, capture_output=True, text=True, timeout=dur + 60)
            except subprocess.TimeoutExpired:
                return {"na": "wrk did not finish"}
            line = [l for l in out.stdout.splitlines() if l.startswith("BENCH_RESULT ")]
            if not line:
                why = (out.stderr.strip() or out.stdout.strip() or "no output").splitlines()[0]
                return {"na": "wrk failed (exit %d): %s" % (out.returncode, why[:150])}
            r = json.loads(line[0][len("BENCH_RESULT "):])
            self.count(target, r["requests"] - r["errors"]["status"])
            if keep:
                res = r
        sec = res["duration_us"] / 1e6
        e = res["errors"]
        ok = res["requests"] - e["status"]
        return {"rps": ok / sec if sec > 0 else 0.0, "requests": res["requests"],
                "p50_ms": res["latency_us"]["p50"] / 1000.0, "p90_ms": res["latency_us"]["p90"] / 1000.0,
                "p99_ms": res["latency_us"]["p99"] / 1000.0, "mean_ms": res["latency_us"]["mean"] / 1000.0,
                "non2xx": e["status"], "socket_errors": e["connect"] + e["read"] + e["write"],
                "timeouts": e["timeout"], "conns": conns, "seconds": round(sec, 2)}

    def run_case(self, case, targets, path, body_file, conns, extra=None):
        log("case %s: %s" % (case, CASE_TITLE[case]))
        for t in targets:
            if t in self.skip:
                self.results[case][t] = {"na": self.skip[t]}
                continue
            if t not in self.ports:
                continue
            r = self.wrk(t, case, path, body_file, conns, (extra or {}).get(t, ()))
            self.results[case][t] = r
            if "na" in r:
                log("  %-16s n/a: %s" % (t, r["na"]))
            else:
                log("  %-16s %9.0f req/s  p50 %.3f ms  p99 %.3f ms%s" % (
                    t, r["rps"], r["p50_ms"], r["p99_ms"],
                    "  (%d non-2xx, %d socket errors, %d timeouts)" % (
                        r["non2xx"], r["socket_errors"], r["timeouts"])
                    if r["non2xx"] or r["socket_errors"] or r["timeouts"] else ""))

    def run_streams(self):
        log("case 4: %d streams x %d events, %d ms apart" % (
            self.a.streams, self.a.events, self.a.interval_ms))
        for t in ORDER:
            if t in self.skip:
                self.streams[t] = {"na": self.skip[t]}
                continue
            argv = [self.a.streams_client, "--port", str(self.ports[t]),
                    "--streams", str(self.a.streams), "--events", str(self.a.events),
                    "--interval-ms", str(self.a.interval_ms), "--timeout", str(self.a.stream_timeout),
                    "--body", os.path.join(self.tmp, "bodies", "stream.json")]
            for h in self.headers[t]:
                argv += ["--header", h]
            pids = []
            if t == "gatehouse":
                pids = self.workers_of(self.gh)
                for p in pids:
                    argv += ["--rss-pid", str(p)]
            try:
                out = subprocess.run(argv, capture_output=True, text=True,
                                     timeout=self.a.stream_timeout + 60)
                r = json.loads(out.stdout.strip().splitlines()[-1])
            except Exception as e:
                r = {"na": "stream client failed: %s %s" % (e, locals().get("out") and out.stderr[-300:])}
            self.streams[t] = r
            if "na" not in r:
                self.count(t, r["completed"])
                log("  %-16s %d/%d complete, max open %d, delay p50 %s ms p99 %s ms, %.1f s%s" % (
                    t, r["completed"], r["streams"], r["max_open"], r["delay_ms"]["p50"],
                    r["delay_ms"]["p99"], r["elapsed_s"],
                    ("  errors: %s" % r["errors"]) if r["errors"] else ""))
            else:
                log("  %-16s n/a: %s" % (t, r["na"]))
            time.sleep(0.5 if self.a.quick else 1.0)  # let the sockets close before the next target

    # ---- the run ------------------------------------------------------------------------
    def run(self):
        a = self.a
        bodies = os.path.join(self.tmp, "bodies")
        subprocess.run([sys.executable, os.path.join(HERE, "bodies.py"), bodies, str(a.large_kb)],
                       check=True)
        self.small = open(os.path.join(bodies, "small.json"), "rb").read()
        f = lambda n: os.path.join(bodies, n)
        cases = set(a.cases.split(","))
        for t in ORDER:
            if t not in a.targets.split(","):
                self.skip[t] = "not selected (--targets)"

        log("starting gh-mock, nginx, Portkey and gatehouse (%d workers) in %s" % (a.workers, self.tmp))
        self.start_mock()
        self.start_nginx()
        self.start_portkey()
        self.gh = self.start_gatehouse("gatehouse", {})
        time.sleep(0.3)
        self.rss["fresh_kb"] = [rss_kb(p) for p in self.workers_of(self.gh)]
        self.rss["fresh_parts"] = [rss_parts(p) for p in self.workers_of(self.gh)]
        if "6" in cases:
            try:
                self.gh_off = self.start_gatehouse("gatehouse-nolog", {"GATEHOUSE_USAGE_LOG": "off"})
                why = self.check_usage_switch()
            except RuntimeError as e:
                why = "second gatehouse did not start: %s" % str(e).splitlines()[0]
            if why:
                self.skip["gatehouse-nolog"] = why
                log("case 6: n/a: " + why)
                if self.gh_off:
                    self.procs.stop(self.gh_off["proc"])
                    self.gh_off = None
        chat_hdr = {"gatehouse": ["Authorization: Bearer " + self.gh["key"]]}

        if "1" in cases or "6" in cases:
            tg = ORDER[:3] if "1" in cases else []
            if "6" in cases:  # logging off first, so no recorder of the logging-on run still writes
                tg.append("gatehouse-nolog")
            self.run_case("1", tg + ["gatehouse"], "/v1/messages", f("small.json"), 64)
            if "gatehouse-nolog" in self.results["1"]:
                self.results["6"]["gatehouse-nolog"] = self.results["1"].pop("gatehouse-nolog")
                self.results["6"]["gatehouse"] = self.results["1"].get("gatehouse")
        if "6" in cases and "gatehouse-nolog" in self.skip:
            self.results["6"]["gatehouse-nolog"] = {"na": self.skip["gatehouse-nolog"]}
        if self.gh_off:
            self.procs.stop(self.gh_off["proc"])
            self.gh_off = None
        if "2" in cases:
            self.run_case("2", ORDER, "/v1/messages", f("small.json"), 1)
        if "3" in cases:
            self.run_case("3", ORDER, "/v1/messages", f("large.json"), 16)
        if "5" in cases:
            log("case 5: the mock has no /v1/chat/completions: direct and nginx are n/a")
            self.results["5"]["direct"] = {"na": "the mock speaks only the Anthropic API"}
            self.results["5"]["nginx"] = {"na": "the mock speaks only the Anthropic API"}
            self.run_case("5", ["portkey", "gatehouse"], "/v1/chat/completions", f("chat.json"), 64,
                          chat_hdr)
        if "4" in cases:
            time.sleep(0.5)
            self.rss["idle_kb"] = [rss_kb(p) for p in self.workers_of(self.gh)]
            self.rss["idle_parts"] = [rss_parts(p) for p in self.workers_of(self.gh)]
            self.run_streams()
            time.sleep(0.5)
            self.rss["after_kb"] = [rss_kb(p) for p in self.workers_of(self.gh)]
            self.rss["after_parts"] = [rss_parts(p) for p in self.workers_of(self.gh)]
        # every answered request should become a usage_log row (the recorder batches them)
        time.sleep(1.0)
        self.usage["answered_2xx"] = self.answered.get("gatehouse", 0)
        deadline = time.time() + 5
        while True:
            self.usage["rows"] = self.usage_rows(self.gh)
            if not isinstance(self.usage["rows"], int) or self.usage["rows"] >= self.usage["answered_2xx"] \
                    or time.time() > deadline:
                break
            time.sleep(0.2)
        st, body = request(self.gh["admin"], "GET", "/admin/metrics", None,
                           {"authorization": "Bearer " + self.gh["token"]})
        self.usage["metrics_status"] = st
        # anything gatehouse logged at warn or above is worth a look
        self.gh_log_problems = [l.strip() for l in open(self.gh["proc"].bench_log, errors="replace")
                                if any(w in l.lower() for w in ("warn", "error", "crit", "fatal"))][:15]

    def cleanup(self):
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        self.procs.stop_all()
        if self.a.keep_tmp:
            log("kept %s" % self.tmp)
        else:
            for n in os.listdir(self.tmp):  # the pid file is the shell wrapper's to remove
                if n not in ("pids", "pids.tmp"):
                    path = os.path.join(self.tmp, n)
                    shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.unlink(path)
            if not os.environ.get("BENCH_TMP"):
                shutil.rmtree(self.tmp, ignore_errors=True)


# ---- report ---------------------------------------------------------------------------------
def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def fmt(v, spec="%.2f", na="n/a"):
    return na if v is None else spec % v


def evaluate(b):
    """The ratios per case and the targets of issue 7: a list of (label, value, target, ok)."""
    R = b.results
    g = lambda c, t, k: (R[c].get(t) or {}).get(k)
    ratios = {}
    for c in "135":
        ratios[c] = {
            "gatehouse/nginx": ratio(g(c, "gatehouse", "rps"), g(c, "nginx", "rps")),
            "gatehouse/portkey": ratio(g(c, "gatehouse", "rps"), g(c, "portkey", "rps")),
        }
        for t in ("nginx", "portkey", "gatehouse"):
            ratios[c][t + "/direct"] = ratio(g(c, t, "rps"), g(c, "direct", "rps"))
    added = {}
    d50 = g("2", "direct", "p50_ms")
    for t in ("nginx", "portkey", "gatehouse"):
        p = g("2", t, "p50_ms")
        added[t] = None if p is None or d50 is None else (p - d50) * 1000.0  # µs
    ratios["2"] = {"added_p50_us": added,
                   "gatehouse/nginx (added p50)": ratio(added["gatehouse"], added["nginx"]) if (added["nginx"] or 0) > 0 else None,
                   "gatehouse/portkey (added p50)": ratio(added["gatehouse"], added["portkey"]) if (added["portkey"] or 0) > 0 else None}
    for t in ("nginx", "portkey", "gatehouse"):
        ratios["2"][t + "/direct"] = ratio(g("2", t, "rps"), g("2", "direct", "rps"))
    s = b.streams
    sd = (s.get("direct") or {}).get("delay_ms", {}).get("p99")
    extra = {}
    for t in ("nginx", "portkey", "gatehouse"):
        p = (s.get(t) or {}).get("delay_ms", {}).get("p99")
        extra[t] = None if p is None or sd is None else p - sd
    ratios["4"] = {"extra_delay_p99_ms": extra}
    ratios["5"]["gatehouse chat/gatehouse case 1"] = ratio(g("5", "gatehouse", "rps"), g("1", "gatehouse", "rps"))
    on, off = g("6", "gatehouse", "rps"), g("6", "gatehouse-nolog", "rps")
    ratios["6"] = {"logging cost": None if on is None or not off else 1.0 - on / off}

    T = []

    def tgt(label, v, op, lim, shown="%.2f"):
        ok = None if v is None else (v >= lim if op == ">=" else v <= lim)
        T.append({"target": label, "value": v, "op": op, "limit": lim, "pass": ok,
                  "shown": fmt(v, shown)})

    tgt("case 1: gatehouse req/s >= 0.8 x nginx", ratios["1"]["gatehouse/nginx"], ">=", 0.8)
    tgt("case 1: gatehouse req/s >= 20 x Portkey", ratios["1"]["gatehouse/portkey"], ">=", 20.0, "%.1f")
    tgt("case 2: gatehouse added p50 <= 1.5 x nginx's", ratios["2"]["gatehouse/nginx (added p50)"], "<=", 1.5)
    tgt("case 3: gatehouse req/s >= 0.8 x nginx", ratios["3"]["gatehouse/nginx"], ">=", 0.8)
    gs = s.get("gatehouse") or {}
    done = None if "completed" not in gs else gs["completed"] / float(gs["streams"])
    T.append({"target": "case 4: all streams complete through gatehouse", "value": done, "op": ">=",
              "limit": 1.0, "pass": None if done is None else done >= 1.0,
              "shown": "n/a" if done is None else "%d/%d" % (gs["completed"], gs["streams"])})
    tgt("case 4: extra per-event delay p99 <= 2 ms", extra["gatehouse"], "<=", 2.0, "%.2f ms")
    fresh = b.rss.get("fresh_kb")
    tgt("case 4: worker RSS idle at start <= 16 MB (largest)", max(fresh) / 1024.0 if fresh else None,
        "<=", 16.0, "%.1f MB")
    idle = b.rss.get("idle_kb")
    tgt("case 4: worker RSS idle before streams <= 16 MB", max(idle) / 1024.0 if idle else None,
        "<=", 16.0, "%.1f MB")
    grow = None
    r = gs.get("rss_kb") or {}
    if r.get("at_peak_open") and r.get("idle") and r.get("open_at_peak"):
        grow = (sum(r["at_peak_open"]) - sum(r["idle"])) / float(r["open_at_peak"])
    b.rss["growth_kb_per_stream"] = grow
    tgt("case 4: worker RSS growth <= 64 KB per open stream", grow, "<=", 64.0, "%.1f KB")
    tgt("case 5: chat req/s >= 0.7 x case 1 gatehouse", ratios["5"]["gatehouse chat/gatehouse case 1"], ">=", 0.7)
    lc = ratios["6"]["logging cost"]
    tgt("case 6: usage logging costs <= 10 % of req/s", None if lc is None else lc * 100.0, "<=", 10.0, "%.1f %%")
    return ratios, T


def report(b, ratios, T, m):
    a = b.a
    out = []
    p = out.append
    p("")
    p("gatehouse benchmark (%s: %d s per wrk run after %d s warm-up; %d streams x %d events)" % (
        "quick" if a.quick else "full", a.duration, a.warmup, a.streams, a.events))
    p("machine: %d CPUs, %s, %d MB RAM, Linux %s, load %.2f at start" % (
        m["nproc"], m["cpu"], m["mem_mb"], m["kernel"], m["load_at_start"]))
    p("workers: nginx %d, gatehouse %d, Portkey %d process%s%s" % (
        a.workers, a.workers, a.portkey_procs, "" if a.portkey_procs == 1 else "es",
        " (it has no worker setting)" if a.portkey_procs == 1 else " (node cluster)"))
    p("")
    hdr = "%-36s %-20s %10s %9s %9s %9s %9s %8s" % ("case", "target", "req/s", "p50 ms", "p99 ms",
                                                   "+p50 µs", "/direct", "errors")
    if any(b.results[c] for c in "12356"):
        p(hdr)
        p("-" * len(hdr))
    for c in "1235" + "6":
        rows = b.results[c]
        if not rows:
            continue
        targets = ORDER if c != "6" else ["gatehouse-nolog", "gatehouse"]
        d = rows.get("direct") or {}
        first = True
        for t in targets:
            r = rows.get(t)
            if r is None:
                continue
            title = ("%s %s" % (c, CASE_TITLE[c])) if first else ""
            first = False
            if "na" in r:
                p("%-36s %-20s %10s   (%s)" % (title, LABEL[t], "n/a", " ".join(r["na"].split())[:90]))
                continue
            errs = r["non2xx"] + r["socket_errors"] + r["timeouts"]
            plus = (r["p50_ms"] - d["p50_ms"]) * 1000.0 if "p50_ms" in d and t != "direct" else None
            p("%-36s %-20s %10.0f %9.3f %9.3f %9s %9s %8d" % (
                title, LABEL[t], r["rps"], r["p50_ms"], r["p99_ms"], fmt(plus, "%.0f", "-"),
                fmt(ratio(r["rps"], d.get("rps")) if t != "direct" else None, "%.2f", "-"), errs))
        rt = ratios.get(c, {})
        if c in "135":
            p("%-36s gatehouse/nginx %s   gatehouse/Portkey %s" % (
                "", fmt(rt.get("gatehouse/nginx")), fmt(rt.get("gatehouse/portkey"), "%.1f")))
        elif c == "2":
            ad = rt["added_p50_us"]
            p("%-36s added p50: nginx %s µs, Portkey %s µs, gatehouse %s µs; gatehouse/nginx %s" % (
                "", fmt(ad["nginx"], "%.0f"), fmt(ad["portkey"], "%.0f"), fmt(ad["gatehouse"], "%.0f"),
                fmt(rt["gatehouse/nginx (added p50)"])))
        elif c == "6":
            lc = rt.get("logging cost")
            p("%-36s usage logging costs %s of req/s" % ("", fmt(None if lc is None else lc * 100, "%.1f %%")))
    if b.streams:
        p("")
        h4 = "%-36s %-20s %11s %8s %10s %10s %10s %10s %8s" % (
            "4 streams (%d x %d events, %d ms)" % (a.streams, a.events + 6, a.interval_ms), "target",
            "completed", "max open", "delay p50", "delay p99", "extra p99", "1st ev p50", "seconds")
        p(h4)
        p("-" * len(h4))
        ex = ratios["4"]["extra_delay_p99_ms"]
        for t in ORDER:
            r = b.streams.get(t)
            if r is None:
                continue
            if "na" in r:
                p("%-36s %-20s %11s   (%s)" % ("", LABEL[t], "n/a", " ".join(r["na"].split())[:90]))
                continue
            p("%-36s %-20s %11s %8d %10s %10s %10s %10s %8.1f" % (
                "", LABEL[t], "%d/%d" % (r["completed"], r["streams"]), r["max_open"],
                fmt(r["delay_ms"]["p50"], "%.2f"), fmt(r["delay_ms"]["p99"], "%.2f"),
                fmt(ex.get(t), "%+.2f", "-"), fmt(r["first_event_ms"]["p50"], "%.1f"), r["elapsed_s"]))
            if r["errors"]:
                p("%-36s %-20s errors: %s" % ("", "", "; ".join("%s x%d" % kv for kv in r["errors"].items())[:200]))
        rr = (b.streams.get("gatehouse") or {}).get("rss_kb") or {}
        if rr.get("idle"):
            p("gatehouse worker RSS (KB, per worker): at start %s, idle before streams %s, with %d streams open %s, "
              "peak %s; growth %s KB per open stream" % (
                  b.rss.get("fresh_kb"), rr["idle"], rr["open_at_peak"], rr["at_peak_open"], rr["max"],
                  fmt(b.rss.get("growth_kb_per_stream"), "%.1f")))
        parts = lambda ps: ", ".join("%d+%d+%d" % (x.get("RssAnon", 0), x.get("RssFile", 0), x.get("RssShmem", 0))
                                     for x in ps or [])
        if b.rss.get("idle_parts"):
            p("  as anon+file+shmem KB: at start %s; idle before streams %s; after streams %s" % (
                parts(b.rss.get("fresh_parts")), parts(b.rss.get("idle_parts")), parts(b.rss.get("after_parts"))))
        p("delay = arrival gap between consecutive events minus the mock's %d ms pacing; "
          "extra p99 = target's p99 - direct's p99" % a.interval_ms)
    p("")
    p("%-56s %12s %14s  %s" % ("targets (issue 7)", "measured", "target", "result"))
    for t in T:
        p("%-56s %12s %14s  %s" % (t["target"], t["shown"], "%s %g" % (t["op"], t["limit"]),
                                    "n/a" if t["pass"] is None else "PASS" if t["pass"] else "FAIL"))
    u = b.usage
    if u:
        p("")
        rows, ans = u.get("rows"), u.get("answered_2xx", 0)
        verdict = ("one row per answer, as it should" if isinstance(rows, int) and rows >= ans
                   else "%s rows missing" % (ans - rows) if isinstance(rows, int) else "unreadable")
        p("gatehouse usage_log: %s rows for at least %d 2xx answers (wrk does not count answers in flight "
          "when it stops): %s" % (rows, ans, verdict))
    if getattr(b, "gh_log_problems", None):
        p("gatehouse log lines at warn/error level (first %d):" % len(b.gh_log_problems))
        for l in b.gh_log_problems:
            p("  " + l[:200])
    for n in b.notes:
        p("note: " + n)
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(prog="scripts/bench")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--portkey-procs", type=int, default=1)
    ap.add_argument("--cases", default="1,2,3,4,5,6")
    ap.add_argument("--targets", default=",".join(ORDER),
                    help="which of %s to measure (the mock and gatehouse always start)" % ",".join(ORDER))
    ap.add_argument("--duration", type=int, help="seconds per measured wrk run (wrk takes whole seconds)")
    ap.add_argument("--warmup", type=int, help="seconds of wrk warm-up before each run")
    ap.add_argument("--streams", type=int)
    ap.add_argument("--events", type=int)
    ap.add_argument("--interval-ms", type=int, default=10)
    ap.add_argument("--large-kb", type=int, default=300)
    ap.add_argument("--keep-tmp", action="store_true")
    ap.add_argument("--strict", action="store_true")
    ap.add_argument("--gatehouse", required=True)
    ap.add_argument("--mock", required=True)
    ap.add_argument("--streams-client", required=True,
                    help="the C SSE stream client of case 4 (scripts/bench.d/streams.c)")
    ap.add_argument("--wrk", default=shutil.which("wrk"))
    ap.add_argument("--nginx", default=shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None))
    ap.add_argument("--node", default=shutil.which("node"))
    ap.add_argument("--portkey-entry", default="")
    ap.add_argument("--portkey-skip", default="")
    a = ap.parse_args()
    if a.duration is None:
        a.duration = 2 if a.quick else 8
    if a.warmup is None:
        a.warmup = 0 if a.quick else 2
    a.duration = max(1, a.duration)
    if a.streams is None:
        a.streams = 400 if a.quick else 2000
    if a.events is None:
        a.events = 40 if a.quick else 100
    a.wrk_threads = max(1, min(4, os.cpu_count() or 1))
    a.stream_timeout = 30.0 if a.quick else 90.0
    if not a.wrk:
        log("wrk not found (scripts/deps --bench installs it)")
        return 2
    if a.portkey_entry and not a.node:
        a.portkey_skip, a.portkey_entry = "node not found", ""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass

    m = machine()
    m["wrk"] = tool_version([a.wrk, "--version"])
    m["nginx"] = tool_version([a.nginx, "-v"]) if a.nginx else None
    b = Bench(a)

    def on_signal(sig, frame):
        raise KeyboardInterrupt("signal %d" % sig)

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    t0 = time.time()
    rc = 0
    try:
        b.run()
    except KeyboardInterrupt as e:
        log("interrupted (%s); stopping everything" % (e or "SIGINT"))
        return 130
    except Exception as e:
        log("failed: %s" % e)
        rc = 1
    finally:
        b.cleanup()
    if rc:
        return rc
    ratios, T = evaluate(b)
    text = report(b, ratios, T, m)
    text += "run took %.0f s\n" % (time.time() - t0)
    sys.stdout.write(text)
    if a.json:
        doc = {"machine": m, "mode": "quick" if a.quick else "full",
               "config": {"workers": a.workers, "portkey_processes": a.portkey_procs,
                          "duration_s": a.duration, "warmup_s": a.warmup, "streams": a.streams,
                          "events_per_stream": a.events + 6, "interval_ms": a.interval_ms,
                          "large_body_kb": a.large_kb, "cases": a.cases},
               "cases": {c: b.results[c] for c in "12356" if b.results[c]},
               "streams": b.streams, "gatehouse_rss_kb": b.rss, "ratios": ratios, "targets": T,
               "usage_log": b.usage, "gatehouse_log_problems": getattr(b, "gh_log_problems", []),
               "seconds": round(time.time() - t0, 1)}
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=2, ensure_ascii=False)
            f.write("\n")
        log("wrote %s" % a.json)
    if a.strict and any(t["pass"] is False for t in T):
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
