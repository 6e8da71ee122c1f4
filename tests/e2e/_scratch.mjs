import { spawn } from 'node:child_process';
import http from 'node:http';
import fs from 'node:fs'; import os from 'node:os'; import path from 'node:path';
import { startStack } from './lib.mjs';
const s = await startStack();
const CLAUDE = path.resolve('node_modules/.bin/claude');
// tiny server answering 401 with x-should-retry: false
const srv = http.createServer((q, r) => { q.resume(); q.on('end', () => { r.writeHead(401, { 'content-type': 'application/json', 'x-should-retry': 'false' }); r.end('{"type":"error","error":{"type":"authentication_error","message":"invalid API key"}}'); }); });
await new Promise(r => srv.listen(0, '127.0.0.1', r));
const run = (args, env) => new Promise(res => { const c = spawn(CLAUDE, args, { env, cwd: env.HOME, stdio: ['ignore', 'pipe', 'pipe'] }); let o = '', e = ''; c.stdout.on('data', d => o += d); c.stderr.on('data', d => e += d); const t = setTimeout(() => c.kill('SIGKILL'), 20000); c.on('close', (code, sig) => { clearTimeout(t); res({ code, sig, o, e }); }); });
try {
  for (const [name, base, extra] of [['gatehouse retries=0', s.url, { CLAUDE_CODE_MAX_RETRIES: '0' }], ['x-should-retry false', `http://127.0.0.1:${srv.address().port}`, {}]]) {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'cc-home-'));
    const env = { PATH: process.env.PATH, HOME: home, ANTHROPIC_BASE_URL: base, ANTHROPIC_API_KEY: 'gh-vk-bad', DISABLE_TELEMETRY: '1', DISABLE_ERROR_REPORTING: '1', DISABLE_AUTOUPDATER: '1', CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1', ...extra };
    const t0 = Date.now();
    const r = await run(['-p', 'say hello', '--output-format', 'json'], env);
    let res; try { const j = JSON.parse(r.o); res = [j.result, j.api_error_status, j.subtype]; } catch { res = r.o.slice(0, 200); }
    console.log(name, 'rc', r.code, r.sig, (Date.now()-t0)+'ms', res, r.e.slice(0, 300));
  }
} finally { srv.close(); await s.stop(); }
