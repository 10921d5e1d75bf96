/**
 * The only door to uWebSockets.js. The package in use silently falls back to a slow pure-JS server when its
 * native binary does not load; a bidder on that fallback would miss every latency target, so start-up refuses
 * it unless explicitly allowed (--allow-uws-fallback / SEGBID_ALLOW_UWS_FALLBACK=1, for development only).
 */
import uWS from 'uWebSockets.js';
import { SegbidError } from '../common/errors.js';

export { uWS };

export function isNativeUws(): boolean {
  return typeof uWS.App === 'function' && Function.prototype.toString.call(uWS.App).includes('[native code]');
}

export function assertNativeUws(allowFallback: boolean): void {
  if (isNativeUws() || allowFallback) return;
  throw new SegbidError(
    'UWS_FALLBACK',
    'uWebSockets.js native binary did not load (the package fell back to its pure-JS server). ' +
      `Node ${process.version} ${process.platform}-${process.arch} ABI ${process.versions.modules}. ` +
      'Refusing to run as a bidder; pass --allow-uws-fallback (or SEGBID_ALLOW_UWS_FALLBACK=1) to run anyway.',
  );
}

export function listen(app: uWS.TemplatedApp, host: string, port: number): Promise<{ socket: uWS.us_listen_socket; port: number }> {
  return new Promise((resolve, reject) => {
    app.listen(host, port, (socket) => {
      if (!socket) reject(new SegbidError('LISTEN_FAILED', `cannot listen on ${host}:${port}`));
      else resolve({ socket, port: uWS.us_socket_local_port(socket) });
    });
  });
}

export function closeListenSocket(socket: uWS.us_listen_socket): void {
  uWS.us_listen_socket_close(socket);
}
