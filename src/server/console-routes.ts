/**
 * The trader console's static files on the operations port: GET /console (the page), /console/console.js,
 * /console/console.css, and uPlot (/console/uplot.js, /console/uplot.css) read once from node_modules/uplot at
 * registration. Nothing here is authenticated: the page holds no data; it asks for an admin token and calls
 * the authenticated /admin API from the browser. Every answer forbids framing and sniffing and restricts the
 * page to its own origin (CSP).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { uWS } from './uws.js';
import { CONSOLE_CSS, CONSOLE_HTML } from '../admin/console/console-page.js';
import { CONSOLE_JS } from '../admin/console/console-script.js';

interface Asset {
  type: string;
  body: Buffer;
}

const SECURITY_HEADERS: Record<string, string> = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
  'content-security-policy': "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
};

function loadAssets(): Record<string, Asset> {
  const require = createRequire(import.meta.url);
  const read = (spec: string) => readFileSync(require.resolve(spec));
  return {
    '/console': { type: 'text/html; charset=utf-8', body: Buffer.from(CONSOLE_HTML) },
    '/console/': { type: 'text/html; charset=utf-8', body: Buffer.from(CONSOLE_HTML) },
    '/console/console.js': { type: 'text/javascript; charset=utf-8', body: Buffer.from(CONSOLE_JS) },
    '/console/console.css': { type: 'text/css; charset=utf-8', body: Buffer.from(CONSOLE_CSS) },
    '/console/uplot.js': { type: 'text/javascript; charset=utf-8', body: read('uplot/dist/uPlot.iife.min.js') },
    '/console/uplot.css': { type: 'text/css; charset=utf-8', body: read('uplot/dist/uPlot.min.css') },
  };
}

let assets: Record<string, Asset> | null = null;

/** Adds the console routes to the operations app (call before its catch-all route). */
export function registerConsole(app: uWS.TemplatedApp): void {
  assets ??= loadAssets();
  for (const [path, asset] of Object.entries(assets)) {
    app.get(path, (res) => {
      res.cork(() => {
        res.writeStatus('200 OK').writeHeader('content-type', asset.type);
        for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.writeHeader(k, v);
        res.end(asset.body);
      });
    });
  }
}
