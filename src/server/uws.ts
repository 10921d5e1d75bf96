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

type ListenWithOptions = (host: string, port: number, options: number, cb: (socket: uWS.us_listen_socket | false) => void) => void;
/** uSockets' listen options (ListenOptions in the typings; the module exports only the second at run time). */
const LISTEN_DEFAULT = 0;
const LISTEN_EXCLUSIVE_PORT = 1;

/**
 * Listens on host:port. `exclusive` (the default): the port must be free. uWebSockets.js listens with
 * SO_REUSEPORT otherwise, and a second bidder started on a port already served (an old process left after a
 * deploy) would silently share its traffic, old and new config mixed. Only the workers of one cluster share a
 * port, on purpose (after the main thread checked it free: portIsFree).
 */
export function listen(app: uWS.TemplatedApp, host: string, port: number, exclusive = true): Promise<{ socket: uWS.us_listen_socket; port: number }> {
  return new Promise((resolve, reject) => {
    // The typings lack the (host, port, options, cb) form the native module takes.
    (app.listen as unknown as ListenWithOptions).call(app, host, port, exclusive ? LISTEN_EXCLUSIVE_PORT : LISTEN_DEFAULT, (socket) => {
      if (!socket) reject(new SegbidError('LISTEN_FAILED', `cannot listen on ${host}:${port}${port !== 0 ? ' (is another process on it?)' : ''}`));
      else resolve({ socket, port: uWS.us_socket_local_port(socket) });
    });
  });
}

/** Whether nothing listens on host:port now (an exclusive listen succeeds; it is closed at once). */
export async function portIsFree(host: string, port: number): Promise<boolean> {
  try {
    const { socket } = await listen(uWS.App(), host, port, true);
    uWS.us_listen_socket_close(socket);
    return true;
  } catch {
    return false;
  }
}

export function closeListenSocket(socket: uWS.us_listen_socket): void {
  uWS.us_listen_socket_close(socket);
}
