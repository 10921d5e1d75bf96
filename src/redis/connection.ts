/**
 * The one way the bidder opens a Redis connection for live state (budget leases, frequency caps, learning
 * stats): ioredis, never queueing while disconnected and reconnecting by itself.
 *
 * Contract:
 *   - A command issued while Redis is down or reconnecting rejects at once (enableOfflineQueue false) instead
 *     of waiting: callers on a deadline keep answering from what they hold.
 *   - A command stuck on a frozen server rejects after `commandTimeoutMs`; ioredis then keeps the socket.
 *   - The connection reconnects forever, backing off up to 2 s; `onState` sees every transition (metrics,
 *     readiness). Connection errors are expected while Redis is down and are not thrown or logged per retry.
 *   - `redactRedisUrl` hides a password before a URL reaches a log.
 */
import { Redis, type RedisOptions } from 'ioredis';

export interface RedisConnectionOptions {
  /** Name shown in CLIENT LIST (which bidder holds which connection). */
  name?: string;
  connectTimeoutMs?: number;
  commandTimeoutMs?: number;
  /** Called with 'ready' | 'close' | 'reconnecting' | 'end' | 'error'. */
  onState?: (state: string) => void;
  /** Extra ioredis options (tests). */
  redis?: Partial<RedisOptions>;
}

export function createRedisConnection(url: string, options: RedisConnectionOptions = {}): Redis {
  const client = new Redis(url, {
    connectionName: options.name,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: options.connectTimeoutMs ?? 500,
    commandTimeout: options.commandTimeoutMs ?? 500,
    retryStrategy: (times) => Math.min(50 * times, 2000),
    ...options.redis,
  });
  const onState = options.onState;
  client.on('error', () => {
    // Expected while Redis is down: the callers count their failed commands.
    onState?.('error');
  });
  if (onState) for (const s of ['ready', 'close', 'reconnecting', 'end']) client.on(s, () => onState(s));
  return client;
}

export function redactRedisUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}
