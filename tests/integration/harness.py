"""harness.py: starts the mock upstream and the real gatehouse on loopback for integration tests.

Every test file imports this, defines test_* functions and calls run(globals()) at the end.
Stdlib only, so it runs on a fresh Debian machine with nothing but python3.
"""
import http.client
import json
import os
import shutil
import signal as _signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

BUILD = os.environ.get("GH_BUILDDIR") or os.path.join(os.path.dirname(__file__), "..", "..", "build")
BUILD = os.path.abspath(BUILD)
GATEHOUSE = os.path.join(BUILD, "server", "gatehouse")
MOCK = os.path.join(BUILD, "tests", "mock", "gh-mock")
PROVIDER_KEY = "sk-ant-test-provider-secret-0001"
ADMIN_TOKEN = "itest-admin-token-5f2b9c0e7d"


def free_port():
    """A port nobody listens on right now (the kernel's choice for an ephemeral bind)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if pred():
                return
        except Exception:
            pass
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lowercase name -> value
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "Response(%d, %r)" % (self.status, self.body[:300])


def request(port, method, path, body=None, headers=None, timeout=30):
    """One HTTP request on a fresh connection; returns a Response."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        hdrs = {"content-type": "application/json"} if body is not None else {}
        hdrs.update(headers or {})
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


class Mock:
    """The C mock upstream (tests/mock/gh-mock) on an ephemeral port."""

    def __init__(self, record=True):
        self.dir = tempfile.mkdtemp(prefix="gh-mock-")
        portfile = os.path.join(self.dir, "port")
        args = [MOCK, "--listen", "127.0.0.1:0", "--port-file", portfile]
        if not record:
            args.append("--no-record")
        self.log = open(os.path.join(self.dir, "mock.log"), "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: os.path.exists(portfile), what="mock port file")
        self.port = int(open(portfile).read().strip())
        self.url = "http://127.0.0.1:%d" % self.port

    def requests(self):
        return request(self.port, "GET", "/_mock/requests").json()

    def last(self):
        reqs = self.requests()
        assert reqs, "mock received no request"
        return reqs[-1]

    def reset(self):
        request(self.port, "POST", "/_mock/reset")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


LIVE_GATEWAYS = []


class Gateway:
    """The real server/gatehouse, with its own data dir and ports, pointed at base_url."""

    def __init__(self, base_url, workers=2, drain_timeout=10, extra_args=(), env=None,
                 data_dir=None, provider_key=PROVIDER_KEY, auto_key=True):
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="gh-data-")
        self.port = free_port()
        self.admin_port = free_port()
        self.log_path = os.path.join(self.data_dir, "gatehouse.log")
        e = dict(os.environ)
        for k in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GATEHOUSE_ADMIN_TOKEN",
                  "GATEHOUSE_MASTER_KEY"):
            e.pop(k, None)
        if provider_key:
            e["ANTHROPIC_API_KEY"] = provider_key
        if base_url:
            e["ANTHROPIC_BASE_URL"] = base_url
        e["GATEHOUSE_ADMIN_TOKEN"] = ADMIN_TOKEN
        e.update(env or {})
        self.env = e
        self.admin_token = e["GATEHOUSE_ADMIN_TOKEN"]
        self.key = None
        self.args = [GATEHOUSE, "--listen", "127.0.0.1:%d" % self.port,
                     "--admin-listen", "127.0.0.1:%d" % self.admin_port,
                     "--data-dir", self.data_dir, "--workers", str(workers),
                     "--drain-timeout", str(drain_timeout)] + list(extra_args)
        self.start()
        LIVE_GATEWAYS.append(self)
        if auto_key:
            r = self.admin("POST", "/admin/keys", {"name": "itest"})
            assert r.status == 201, r
            self.key = r.json()["key"]

    def admin(self, method, path, body=None):
        """A call to the admin API with the admin token."""
        return request(self.admin_port, method, path, body,
                       {"authorization": "Bearer " + self.admin_token})

    def start(self):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        wait_for(self.healthy, timeout=15, what="gatehouse /healthz")

    def healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError("gatehouse exited with %s:\n%s" % (self.proc.returncode, self.logs()))
        return request(self.port, "GET", "/healthz", timeout=2).status == 200

    def logs(self):
        try:
            return open(self.log_path, errors="replace").read()
        except OSError:
            return ""

    def children(self, comm):
        """PIDs of the master's live children named comm (gh-worker, gh-recorder)."""
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                stat = open("/proc/%s/stat" % pid).read()
                name = open("/proc/%s/comm" % pid).read().strip()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            state = stat.rsplit(")", 1)[1].split()[0]
            if ppid == self.proc.pid and name == comm and state != "Z":
                out.append(int(pid))
        return sorted(out)

    def workers(self):
        return self.children("gh-worker")

    def recorder(self):
        r = self.children("gh-recorder")
        return r[0] if r else None

    def req(self, method, path, body=None, headers=None, timeout=30):
        """A client API call; the gateway's own virtual key is added unless headers carry one."""
        hdrs = dict(headers or {})
        lower = {k.lower() for k in hdrs}
        if self.key and "x-api-key" not in lower and "authorization" not in lower:
            hdrs["x-api-key"] = self.key
        return request(self.port, method, path, body, hdrs, timeout)

    def post(self, path, body, headers=None, timeout=30):
        return self.req("POST", path, body, headers, timeout)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=_signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        return self.proc.returncode

    def cleanup(self):
        if self in LIVE_GATEWAYS:
            LIVE_GATEWAYS.remove(self)
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def raw_stream(port, path, body, headers=None, method="POST"):
    """Sends a request on a raw socket and yields (elapsed_seconds, bytes) as they arrive, so a
    test can see when each piece reached the client."""
    payload = json.dumps(body).encode() if not isinstance(body, bytes) else body
    hdrs = {"Host": "127.0.0.1", "Connection": "close"}
    if method != "GET":
        hdrs.update({"Content-Type": "application/json", "Content-Length": str(len(payload))})
    hdrs.update(headers or {})
    head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join("%s: %s\r\n" % kv for kv in hdrs.items()) + "\r\n"
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    t0 = time.time()
    s.sendall(head.encode() + payload)
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            yield time.time() - t0, b
    finally:
        s.close()


def dechunk(data):
    """Decodes an HTTP/1.1 chunked body."""
    out = b""
    while True:
        line, _, data = data.partition(b"\r\n")
        n = int(line.split(b";")[0], 16)
        if n == 0:
            return out
        out += data[:n]
        data = data[n + 2:]


def sse_events(text):
    """Splits an SSE body into (event, data) pairs."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        ev, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                ev = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        events.append((ev, "\n".join(data)))
    return events


def run(ns):
    """Runs every test_* function in ns in order; prints a line each; exits 1 on any failure."""
    tests = [(k, v) for k, v in ns.items() if k.startswith("test_") and callable(v)]
    only = os.environ.get("GH_TEST_ONLY")
    tests = [(k, v) for k, v in tests if not only or only in k]
    failed = 0
    for name, fn in tests:
        t0 = time.time()
        try:
            fn()
            print("ok   %s (%.2fs)" % (name, time.time() - t0), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s (%.2fs)" % (name, time.time() - t0), flush=True)
            traceback.print_exc()
            for g in LIVE_GATEWAYS:
                lines = g.logs().splitlines()
                idx = [i for i, l in enumerate(lines) if "ERROR: AddressSanitizer" in l or "runtime error" in l]
                tail = lines[idx[0]:idx[0] + 30] if idx else lines[-25:]
                print("---- last lines of the gateway log (%s):\n%s" % (g.data_dir, "\n".join(tail)))
    print("%d passed, %d failed" % (len(tests) - failed, failed))
    sys.exit(1 if failed else 0)
