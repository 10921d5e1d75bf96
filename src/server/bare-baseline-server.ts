/**
 * The bench's baseline, and nothing else: no product code imports this file. A bare uWebSockets.js server
 * with the same transport discipline as the bid port (onAborted attached before reading, body chunks copied,
 * every write corked) that does the least a bidder can honestly do: read the whole body, JSON.parse it, and
 * answer a fixed bid response built from the request id and the first imp id. The gap between this and segbid
 * under the same load (bench/bid-path.ts) is the cost of validation, decision, serialisation and metrics.
 *
 *   node dist/src/server/bare-baseline-server.js [--port 0] [--host 127.0.0.1] [--work-us 0]
 *
 * `--work-us N` (calibration, bench/bid-path.ts --calibrate): after the parse, the server spins N microseconds of
 * CPU per request, a stand-in for what a bidder adds to a bare parse-and-answer. Running it at a few values shows
 * what ratio to the baseline a given per-request cost can reach on this machine and load generator.
 *
 * Prints `bare-baseline listening on http://HOST:PORT` once listening; SIGTERM/SIGINT end it.
 */
import { uWS, isNativeUws } from './uws.js';

function argValue(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i !== -1 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const host = argValue('--host', '127.0.0.1');
const port = Number(argValue('--port', '0'));
const workMs = Number(argValue('--work-us', '0')) / 1000;
if (!(workMs >= 0)) {
  process.stderr.write('bare-baseline: --work-us must be a number >= 0\n');
  process.exit(2);
}

/** Spins until `ms` have passed (calibration only: 0 by default, and then not even a clock read). */
function spin(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

// The comparison is meaningless against the package's pure-JS fallback: refuse it as the bidder does.
if (!isNativeUws()) {
  process.stderr.write('bare-baseline: uWebSockets.js native binary did not load; refusing to run\n');
  process.exit(2);
}

/* A bid of the size of segbid's banner answers (~600 bytes), so both servers write comparable bodies. */
const ADM = JSON.stringify(
  '<a href="https://shop.segbid.example/?c=baseline"><img src="https://cdn.segbid.example/baseline.png" width="300" height="250"></a>' +
    '<img src="https://ev.segbid.example/px?p=${AUCTION_PRICE}" width="1" height="1">',
);

function bidResponse(id: string, impId: string): string {
  return (
    `{"id":${JSON.stringify(id)},"cur":"USD","seatbid":[{"seat":"baseline","bid":[{"id":"b-1","impid":${JSON.stringify(impId)},` +
    `"price":0.5,"adid":"cr-baseline","crid":"cr-baseline","adomain":["shop.segbid.example"],"w":300,"h":250,"adm":${ADM}}]}]}`
  );
}

const app = uWS.App();

app.post('/openrtb2/bid', (res) => {
  let aborted = false;
  const chunks: Buffer[] = [];
  let length = 0;
  res.onAborted(() => {
    aborted = true;
  });
  res.onData((chunk, isLast) => {
    // uWS neuters the chunk when this callback returns: copy it.
    const copy = Buffer.copyBytesFrom(new Uint8Array(chunk));
    chunks.push(copy);
    length += copy.length;
    if (!isLast || aborted) return;
    const body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, length);
    let status = '200 OK';
    let out: string;
    try {
      const req = JSON.parse(body.toString('utf8')) as { id?: unknown; imp?: { id?: unknown }[] };
      if (workMs > 0) spin(workMs);
      out = bidResponse(String(req.id), String(req.imp?.[0]?.id ?? '1'));
    } catch {
      status = '400 Bad Request';
      out = '{"error":"invalid_json"}';
    }
    res.cork(() => {
      res.writeStatus(status).writeHeader('content-type', 'application/json').writeHeader('x-openrtb-version', '2.6').end(out);
    });
  });
});

app.any('/*', (res) => {
  res.cork(() => res.writeStatus('404 Not Found').end('{"error":"not_found"}'));
});

app.listen(host, port, (socket) => {
  if (!socket) {
    process.stderr.write(`bare-baseline: cannot listen on ${host}:${port}\n`);
    process.exit(2);
  }
  process.stdout.write(`bare-baseline listening on http://${host}:${uWS.us_socket_local_port(socket)}\n`);
  const stop = () => {
    uWS.us_listen_socket_close(socket);
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
});
