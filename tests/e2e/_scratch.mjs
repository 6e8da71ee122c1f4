import { spawn } from 'node:child_process';
import fs from 'node:fs'; import os from 'node:os'; import path from 'node:path';
import { Mock } from './lib.mjs';
const m = await Mock.start();
const CLAUDE = path.resolve('node_modules/.bin/claude');
const run = (args, env) => new Promise(res => { const c = spawn(CLAUDE, args, { env, cwd: env.HOME, stdio: ['ignore', 'pipe', 'pipe'] }); let o = '', e = ''; c.stdout.on('data', d => o += d); c.stderr.on('data', d => e += d); const t = setTimeout(() => c.kill('SIGKILL'), 15000); c.on('close', (code, sig) => { clearTimeout(t); res({ code, sig, o, e }); }); });
try {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'cc-home-'));
  const env = { PATH: process.env.PATH, HOME: home, ANTHROPIC_BASE_URL: m.url, ANTHROPIC_API_KEY: 'bad-key', DISABLE_TELEMETRY: '1', DISABLE_ERROR_REPORTING: '1', DISABLE_AUTOUPDATER: '1', CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1' };
  const t0 = Date.now();
  const r = await run(['-p', 'say hello', '--output-format', 'json'], env);
  console.log('rc', r.code, r.sig, (Date.now()-t0)+'ms', r.o.slice(0, 300));
  console.log((await m.apiRequests()).map(x => x.method + ' ' + x.path));
} finally { await m.stop(); }
