/**
 * The bench's node:http peer: the same decision core as segbid (BidHandler: parse, validate, decide, serialise,
 * sign event URLs, metrics) behind Node's own HTTP server instead of uWebSockets.js, one thread. The gap between
 * this and `segbid --workers 1` under the same load is what the transport is worth; nothing else differs.
 * Bench-only: the product serves on uWebSockets.js (src/server), and this file must not grow into a second server.
 *
 *   node dist/bench/node-http-server.js --config FILE [--port 0] [--host 127.0.0.1]
 *
 * Prints `node-http listening on http://HOST:PORT` once listening; SIGTERM/SIGINT end it. Bodies over the config's
 * maxBodyBytes get a 413; gzip request bodies are not inflated (the bench does not send them).
 */
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { BidHandler } from '../src/bidding/bid-handler.js';
import { loadDecider } from '../src/bidding/load-decider.js';
import { Metrics } from '../src/metrics/metrics.js';

const BID_PATH = '/openrtb2/bid';

const { values } = parseArgs({
  options: { config: { type: 'string' }, port: { type: 'string', default: '0' }, host: { type: 'string', default: '127.0.0.1' } },
});
if (values.config === undefined) {
  process.stderr.write('node-http: --config is required\n');
  process.exit(2);
}
const handler = new BidHandler(loadDecider(values.config), new Metrics({ defaultMetrics: false }));
const maxBody = handler.current.config.settings.maxBodyBytes;

const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  if (req.method !== 'POST' || req.url !== BID_PATH) {
    req.resume();
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}');
    return;
  }
  const version = (req.headers['x-openrtb-version'] as string | undefined) || '2.6';
  const chunks: Buffer[] = [];
  let length = 0;
  let over = false;
  req.on('data', (chunk: Buffer) => {
    length += chunk.length;
    if (length > maxBody) over = true;
    else chunks.push(chunk);
  });
  req.on('end', () => {
    if (over) {
      res.writeHead(413, { 'content-type': 'application/json', connection: 'close' }).end('{"error":"too_large"}');
      return;
    }
    const r = handler.handle((chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, length)).toString('utf8'));
    if (r.status === 204) {
      res.writeHead(204, { 'x-openrtb-version': version }).end();
      return;
    }
    res.writeHead(r.status, { 'content-type': 'application/json', 'x-openrtb-version': version }).end(r.body);
  });
});

server.listen(Number(values.port), values.host, () => {
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  process.stdout.write(`node-http listening on http://${values.host}:${port}\n`);
});
const stop = () => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
