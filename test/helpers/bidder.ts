/**
 * Starts a real bidder (uWebSockets.js ports on 127.0.0.1, random free ports) for HTTP-level tests, and a
 * tiny raw HTTP client that shows exactly what went over the wire (status, headers, raw body bytes).
 */
import { request as httpRequest } from 'node:http';
import { pino } from 'pino';
import { startBidder, type RunningBidder, type StartOptions } from '../../src/server/start.js';
import { DEMO_CONFIG } from '../../src/common/paths.js';
import { ensureDemoStore } from '../../src/fixtures/ensure-demo.js';

export async function startTestBidder(configPath?: string, extra: Partial<StartOptions> = {}): Promise<RunningBidder> {
  if (!configPath) ensureDemoStore();
  return startBidder({
    ...extra,
    configPath: configPath ?? DEMO_CONFIG,
    host: '127.0.0.1',
    port: 0,
    adminPort: 0,
    logger: pino({ level: 'silent' }),
    defaultMetrics: false,
  });
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text: string;
}

export function raw(
  port: number,
  options: { method?: string; path?: string; headers?: Record<string, string>; body?: Buffer | string },
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, method: options.method ?? 'POST', path: options.path ?? '/openrtb2/bid', headers: options.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text: body.toString('utf8') });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (options.body !== undefined) req.write(options.body);
    req.end();
  });
}

export async function metricValue(adminPort: number, name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    if (want.every((w) => line.includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}
