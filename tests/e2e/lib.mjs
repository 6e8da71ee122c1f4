// lib.mjs: starts the C mock upstream (build/tests/mock/gh-mock) and the real gatehouse on
// loopback for the end-to-end tests, the way tests/integration/harness.py does: ephemeral
// ports, a temporary data dir, ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL / GATEHOUSE_ADMIN_TOKEN in
// the environment, /healthz polled, one virtual key created through POST /admin/keys.
//
//   import { startStack } from './lib.mjs';
//   const stack = await startStack();      // { mock, gw, key, url, ... }
//   ...
//   await stack.stop();
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import nodeHttp from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '..', '..');
export const BUILD = path.resolve(process.env.GH_BUILDDIR || path.join(ROOT, 'build'));
export const GATEHOUSE = path.join(BUILD, 'server', 'gatehouse');
export const MOCK = path.join(BUILD, 'tests', 'mock', 'gh-mock');
export const PROVIDER_KEY = 'sk-ant-e2e-provider-secret-0001';
export const ADMIN_TOKEN = 'e2e-admin-token-3c9d1a7f5b';

/** A port nobody listens on right now (the kernel's pick for an ephemeral bind). */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Polls pred (sync or async) until it returns true; throws after timeoutMs. */
export async function waitFor(pred, { timeoutMs = 15000, what = 'condition', stepMs = 25 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  while (Date.now() < deadline) {
    try {
      if (await pred()) return;
    } catch (e) {
      if (e && e.fatal) throw e;
      lastErr = e;
    }
    await sleep(stepMs);
  }
  throw new Error(`timed out waiting for ${what}${lastErr ? ` (last error: ${lastErr.message})` : ''}`);
}

/** One HTTP request with fetch; returns {status, headers, text, json()}. */
export async function http(url, { method = 'GET', headers = {}, body, timeoutMs = 30000 } = {}) {
  const h = { ...headers };
  let b = body;
  if (b !== undefined && typeof b !== 'string' && !(b instanceof Uint8Array)) {
    b = JSON.stringify(b);
    if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['content-type'] = 'application/json';
  }
  const r = await fetch(url, { method, headers: h, body: b, signal: AbortSignal.timeout(timeoutMs) });
  const text = await r.text();
  return {
    status: r.status,
    headers: r.headers,
    text,
    json() {
      return JSON.parse(text);
    },
  };
}

// Every child started here, so that a test process that dies still takes them down.
const children = new Set();
function killAll() {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    killAll();
    process.exit(130);
  });
}

function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

async function stopChild(child, { signal = 'SIGTERM', timeoutMs = 10000 } = {}) {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill(signal);
  const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await exited;
  clearTimeout(t);
  return code;
}

/** The C mock upstream on an ephemeral port, recording every request. */
export class Mock {
  static async start({ record = true } = {}) {
    const m = new Mock();
    m.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gh-e2e-mock-'));
    const portFile = path.join(m.dir, 'port');
    const args = ['--listen', '127.0.0.1:0', '--port-file', portFile];
    if (!record) args.push('--no-record');
    m.logPath = path.join(m.dir, 'mock.log');
    const log = fs.openSync(m.logPath, 'a');
    m.proc = track(spawn(MOCK, args, { stdio: ['ignore', log, log] }));
    fs.closeSync(log);
    await waitFor(
      () => {
        if (m.proc.exitCode !== null) throw Object.assign(new Error(`gh-mock exited: ${m.logs()}`), { fatal: true });
        return fs.existsSync(portFile);
      },
      { what: 'gh-mock port file' },
    );
    m.port = Number(fs.readFileSync(portFile, 'utf8').trim());
    m.url = `http://127.0.0.1:${m.port}`;
    return m;
  }

  logs() {
    try {
      return fs.readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  /** Every request the mock recorded, oldest first (GET /_mock/requests). */
  async requests() {
    return (await http(`${this.url}/_mock/requests`)).json();
  }

  /** The recorded requests other than health probes. */
  async apiRequests() {
    return (await this.requests()).filter((r) => r.path.startsWith('/v1/'));
  }

  async reset() {
    await http(`${this.url}/_mock/reset`, { method: 'POST' });
  }

  async stop() {
    if (this.proc) await stopChild(this.proc);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The real server/gatehouse with its own data dir and ports, pointed at baseURL. */
export class Gateway {
  static async start({ baseURL, workers = 2, env = {}, extraArgs = [], autoKey = true, keyBody } = {}) {
    const g = new Gateway();
    g.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gh-e2e-data-'));
    g.port = await freePort();
    g.adminPort = await freePort();
    g.url = `http://127.0.0.1:${g.port}`;
    g.adminURL = `http://127.0.0.1:${g.adminPort}`;
    g.dbPath = path.join(g.dataDir, 'gatehouse.db');
    g.logPath = path.join(g.dataDir, 'gatehouse.log');
    const e = { ...process.env };
    for (const k of ['ANTHROPIC_API_KEY', 'ANTHROPIC_BASE_URL', 'ANTHROPIC_AUTH_TOKEN', 'GATEHOUSE_ADMIN_TOKEN', 'GATEHOUSE_MASTER_KEY']) delete e[k];
    e.ANTHROPIC_API_KEY = PROVIDER_KEY;
    if (baseURL) e.ANTHROPIC_BASE_URL = baseURL;
    e.GATEHOUSE_ADMIN_TOKEN = ADMIN_TOKEN;
    Object.assign(e, env);
    g.adminToken = e.GATEHOUSE_ADMIN_TOKEN;
    const args = [
      '--listen', `127.0.0.1:${g.port}`,
      '--admin-listen', `127.0.0.1:${g.adminPort}`,
      '--data-dir', g.dataDir,
      '--workers', String(workers),
      '--drain-timeout', '5',
      ...extraArgs,
    ];
    const log = fs.openSync(g.logPath, 'a');
    g.proc = track(spawn(GATEHOUSE, args, { env: e, stdio: ['ignore', log, log] }));
    fs.closeSync(log);
    await waitFor(
      async () => {
        if (g.proc.exitCode !== null) throw Object.assign(new Error(`gatehouse exited ${g.proc.exitCode}:\n${g.logs()}`), { fatal: true });
        return (await http(`${g.url}/healthz`, { timeoutMs: 2000 })).status === 200;
      },
      { what: 'gatehouse /healthz' },
    );
    if (autoKey) {
      const k = await g.createKey(keyBody || { name: 'e2e' });
      g.key = k.key;
      g.keyId = k.id;
    }
    return g;
  }

  logs() {
    try {
      return fs.readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  /** A call to the admin API with the admin token; returns {status, json(), text}. */
  async admin(method, p, body) {
    return http(`${this.adminURL}${p}`, { method, body, headers: { authorization: `Bearer ${this.adminToken}` } });
  }

  /** Creates a virtual key (POST /admin/keys) and returns the answer ({id, key, ...}). */
  async createKey(body) {
    const r = await this.admin('POST', '/admin/keys', body);
    if (r.status !== 201) throw new Error(`POST /admin/keys ${JSON.stringify(body)} -> ${r.status} ${r.text}`);
    return r.json();
  }

  /** Runs a query on gatehouse.db with the sqlite3 CLI; returns the rows as objects. */
  sql(query) {
    const out = execFileSync('sqlite3', ['-json', '-cmd', '.timeout 5000', this.dbPath, query], { encoding: 'utf8' });
    return out.trim() ? JSON.parse(out) : [];
  }

  /** usage_log rows of keyId (default: this gateway's key), oldest first. */
  usageRows(keyId = this.keyId) {
    return this.sql(`SELECT * FROM usage_log WHERE key_id = '${keyId.replace(/'/g, "''")}' ORDER BY rowid`);
  }

  /** The id of the newest usage_log row (0 when none): pass it as `since` to waitUsage. */
  usageMark() {
    return this.sql('SELECT coalesce(max(id), 0) AS id FROM usage_log')[0].id;
  }

  /**
   * Waits until the recorder has written at least n usage_log rows for keyId that match pred
   * (and whose id is above since), and returns them, oldest first.
   */
  async waitUsage(n, { keyId = this.keyId, pred = () => true, since = 0, timeoutMs = 10000 } = {}) {
    let rows = [];
    await waitFor(
      () => {
        rows = this.usageRows(keyId).filter((r) => r.id > since && pred(r));
        return rows.length >= n;
      },
      { timeoutMs, what: `${n} usage_log rows`, stepMs: 100 },
    );
    return rows;
  }

  async stop() {
    if (this.proc) await stopChild(this.proc, { timeoutMs: 15000 });
    if (!process.env.GH_E2E_KEEP) fs.rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** The mock and a gatehouse in front of it, with one virtual key ({mock, gw, key, url}). */
export async function startStack(opts = {}) {
  const mock = await Mock.start();
  let gw;
  try {
    gw = await Gateway.start({ baseURL: mock.url, ...opts });
  } catch (e) {
    await mock.stop();
    throw e;
  }
  return {
    mock,
    gw,
    key: gw.key,
    url: gw.url,
    async stop() {
      await gw.stop();
      await mock.stop();
    },
  };
}

/** Case-insensitive header lookup on a mock record ({headers: {name: value}}; names are lower case). */
export function hdr(record, name) {
  return record.headers[name.toLowerCase()];
}

/**
 * For a test that a known gatehouse bug makes fail: returns the `todo` option value (the bug's
 * description), so the test still runs and prints its failure without failing the run. With
 * GH_E2E_STRICT=1 it returns false and such tests fail the run like any other.
 */
export function KNOWN_BUG(description) {
  return process.env.GH_E2E_STRICT ? false : `known gatehouse gap: ${description}`;
}

/**
 * A recording HTTP proxy on an ephemeral loopback port in front of target (a base URL). Each
 * request is read whole, shown to onRequest({method, path, headers, body}) which may change
 * headers, then forwarded; the answer is streamed back as it arrives (SSE keeps its pacing).
 * records holds {method, path, headers, body, status} per request, oldest first.
 */
export async function startProxy(target, { onRequest } = {}) {
  const t = new URL(target);
  const records = [];
  const server = nodeHttp.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const rec = { method: req.method, path: req.url, headers: { ...req.headers }, body: body.toString('utf8'), status: null };
      records.push(rec);
      const headers = { ...req.headers, host: t.host };
      if (onRequest) onRequest({ ...rec, headers });
      if (body.length) headers['content-length'] = String(body.length);
      const up = nodeHttp.request(
        { host: t.hostname, port: t.port, method: req.method, path: req.url, headers },
        (ur) => {
          rec.status = ur.statusCode;
          res.writeHead(ur.statusCode, ur.headers);
          ur.pipe(res);
        },
      );
      up.on('error', (e) => {
        rec.status = 599;
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`proxy: ${e.message}`);
      });
      up.end(body);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    records,
    async stop() {
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
