import { spawn } from 'node:child_process';
import fs from 'node:fs'; import os from 'node:os'; import path from 'node:path';
import { startStack, startProxy } from './lib.mjs';
const s = await startStack();
const front = await startProxy(s.url);
const CLAUDE = path.resolve('node_modules/.bin/claude');
const run = (args, env) => new Promise(res => { const c = spawn(CLAUDE, args, { env, cwd: env.HOME }); let o = '', e = ''; c.stdout.on('data', d => o += d); c.stderr.on('data', d => e += d); const t = setTimeout(() => c.kill('SIGKILL'), 40000); c.on('close', (code, sig) => { clearTimeout(t); res({ code, sig, o, e }); }); });
try {
  const k = await s.gw.createKey({ name: 'h', models: ['claude-haiku-*'] });
  for (const [name, extra] of [['403', { ANTHROPIC_API_KEY: k.key, ANTHROPIC_MODEL: 'claude-opus-4-1' }], ['401', { ANTHROPIC_API_KEY: 'gh-vk-not-a-key' }]]) {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'cc-home-'));
    front.records.length = 0;
    const env = { PATH: process.env.PATH, HOME: home, ANTHROPIC_BASE_URL: front.url, DISABLE_TELEMETRY: '1', DISABLE_ERROR_REPORTING: '1', DISABLE_AUTOUPDATER: '1', CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1', ...extra };
    const t0 = Date.now();
    const r = await run(['-p', 'say hello', '--output-format', 'json', '--debug'], env);
    console.log('==', name, 'rc', r.code, r.sig, (Date.now()-t0)+'ms');
    try { const j = JSON.parse(r.o); console.log('result', j.result, j.is_error, j.api_error_status, j.subtype); } catch { console.log('stdout', r.o.slice(0,500)); }
    console.log('stderr', r.e.slice(-800));
    console.log(front.records.map(x => `${x.method} ${x.path} ${x.status} ${JSON.stringify(x.headers).slice(0,0)}`));
    const dbg = fs.readdirSync(path.join(home, '.claude/debug'));
    console.log(fs.readFileSync(path.join(home, '.claude/debug', dbg[0]), 'utf8').split('\n').filter(l => /API|error|retry|401|403/i.test(l)).slice(0, 30).join('\n'));
  }
} finally { await front.stop(); await s.stop(); }
