// portkey.mjs: runs Portkey's AI gateway (npm @portkey-ai/gateway) for scripts/bench.
// usage: node portkey.mjs PATH/TO/start-server.js PORT [PROCESSES]
// - binds 127.0.0.1 only (start-server.js itself listens on every interface), with the listen
//   backlog the other targets get;
// - PROCESSES > 1 runs a node cluster of that many (Portkey has no worker setting of its own);
// - works around Portkey issues #1389/#1550: it appends x-portkey-* headers to the Response
//   that fetch() returned, whose headers are immutable under Node's undici, so every streamed
//   answer fails with "TypeError: immutable". fetch() answers are re-wrapped in a new Response.
import cluster from 'node:cluster';
import net from 'node:net';
import { pathToFileURL } from 'node:url';

const [entry, port, procs = '1'] = process.argv.slice(2);
const n = Math.max(1, parseInt(procs, 10) || 1);
const BACKLOG = 4096; // as gatehouse's and scripts/bench's nginx (node's default is 511)

if (n > 1 && cluster.isPrimary) {
  let stopping = false;
  for (let i = 0; i < n; i++) cluster.fork();
  const stop = () => {
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    setTimeout(() => process.exit(0), 200);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  cluster.on('exit', (w, code, sig) => {
    if (!stopping) console.error(`portkey.mjs: worker ${w.process.pid} died (${code ?? sig})`);
  });
} else {
  const listen = net.Server.prototype.listen;
  net.Server.prototype.listen = function (...a) {
    const cb = a.find((x) => typeof x === 'function');
    if (typeof a[0] === 'number' || (typeof a[0] === 'string' && /^\d+$/.test(a[0]))) {
      a = [a[0], '127.0.0.1', BACKLOG];
      if (cb) a.push(cb);
    } else if (a[0] && typeof a[0] === 'object' && 'port' in a[0]) {
      a[0] = { ...a[0], host: '127.0.0.1', backlog: BACKLOG };
    }
    return listen.apply(this, a);
  };
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (...args) => {
    const r = await realFetch(...args);
    return new Response(r.body, { status: r.status, statusText: r.statusText, headers: new Headers(r.headers) });
  };
  process.argv = [process.argv[0], entry, `--port=${port}`, '--headless'];
  await import(pathToFileURL(entry).href);
}
