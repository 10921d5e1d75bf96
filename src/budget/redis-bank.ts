/**
 * The Redis authority of the budget bank (`segbid serve --redis URL`): many bidder processes on many machines
 * lease budget slices of the same campaigns. The rules are BankBook's (bank.ts), run atomically in Lua:
 *
 *   segbid:bank:{<campaign>}                 hash epoch, base, granted, spent, flight, daily, hold: campaign totals
 *   segbid:bank:{<campaign>}:day:<n>         hash base, granted, spent, cap: the day's totals (expire after 4 days)
 *   segbid:bank:{<campaign>}:lease:<client>  hash granted, spent: one process's lease, PEXPIRE ttl (heartbeats
 *                                            renew it); when it expires its grant stays counted in the totals
 * The braces keep a campaign's keys in one Redis Cluster slot, so one script may touch them all.
 *
 * Contract: a call resolves with the authority's answer or rejects (Redis down, slow past commandTimeoutMs,
 * script error); it never hangs and never queues while disconnected (src/redis/connection.ts). Scripts are sent
 * by EVALSHA and re-sent whole after a restart emptied the script cache (ioredis defineCommand). Money is written
 * with %.0f: Lua numbers are doubles, exact for integer micros below 2^53, and never in exponent form.
 */
import type { Redis } from 'ioredis';
import { hostname } from 'node:os';
import { randomInt } from 'node:crypto';
import { createRedisConnection, type RedisConnectionOptions } from '../redis/connection.js';
import { LeaseBank, RESEED_HOLD_MS, genBaseFor, randomEpoch, type BankTransport, type LeaseReply, type LeaseRequest, type ReturnRequest } from './bank.js';

const LEASE_LUA = `
local function n(x) return string.format('%.0f', x) end
local function num(x) return tonumber(x or '0') or 0 end
local camp, dayk, lease = KEYS[1], KEYS[2], KEYS[3]
local flight, daily, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local spent, acked = tonumber(ARGV[4]), tonumber(ARGV[5])
local epoch, seen, seenDay = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local newEpoch, ttl, daysLeft = ARGV[9], tonumber(ARGV[10]), tonumber(ARGV[11])
local t = redis.call('TIME')
local nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', camp) == 0 then
  local hold = 0
  if epoch ~= '' then hold = nowMs + tonumber(ARGV[12]) end
  redis.call('HSET', camp, 'epoch', newEpoch, 'base', n(seen), 'granted', '0', 'spent', '0', 'hold', n(hold))
elseif epoch ~= '' and redis.call('HGET', camp, 'epoch') ~= epoch then
  if seen > num(redis.call('HGET', camp, 'base')) then redis.call('HSET', camp, 'base', n(seen)) end
end
local cur = redis.call('HGET', camp, 'epoch')
local foreign = epoch ~= cur
redis.call('HSET', camp, 'flight', n(flight), 'daily', n(daily))
local base, granted = num(redis.call('HGET', camp, 'base')), num(redis.call('HGET', camp, 'granted'))
if redis.call('EXISTS', dayk) == 0 then
  local cap = daily
  if daily < 0 then
    cap = math.ceil(math.max(0, flight - base - granted) / math.max(1, daysLeft))
  end
  local dbase = 0
  if foreign then dbase = seenDay end
  redis.call('HSET', dayk, 'base', n(dbase), 'granted', '0', 'spent', '0', 'cap', n(cap))
  redis.call('EXPIRE', dayk, 345600)
elseif foreign and seenDay > num(redis.call('HGET', dayk, 'base')) then
  redis.call('HSET', dayk, 'base', n(seenDay))
end
if daily >= 0 then redis.call('HSET', dayk, 'cap', n(daily)) end
local fresh = 0
if redis.call('EXISTS', lease) == 0 then
  fresh = 1
  redis.call('HSET', lease, 'granted', '0', 'spent', n(acked))
end
local prev = num(redis.call('HGET', lease, 'spent'))
local delta = 0
if spent > prev then delta = spent - prev end
redis.call('HSET', lease, 'spent', n(prev + delta))
local cspent = num(redis.call('HGET', camp, 'spent')) + delta
redis.call('HSET', camp, 'spent', n(cspent))
redis.call('HSET', dayk, 'spent', n(num(redis.call('HGET', dayk, 'spent')) + delta))
local total = base + granted
local dayTotal = num(redis.call('HGET', dayk, 'base')) + num(redis.call('HGET', dayk, 'granted'))
local cap = num(redis.call('HGET', dayk, 'cap'))
local g = want
if nowMs < num(redis.call('HGET', camp, 'hold')) then g = 0 end
if g > flight - total then g = flight - total end
if g > cap - dayTotal then g = cap - dayTotal end
if g < 0 then g = 0 end
g = math.floor(g)
local lg = num(redis.call('HGET', lease, 'granted'))
if g > 0 then
  lg = lg + g
  redis.call('HSET', camp, 'granted', n(granted + g))
  redis.call('HSET', dayk, 'granted', n(num(redis.call('HGET', dayk, 'granted')) + g))
  redis.call('HSET', lease, 'granted', n(lg))
end
redis.call('PEXPIRE', lease, ttl)
return {n(g), n(total + g), n(dayTotal + g), n(cspent), cur, n(lg), fresh}
`;

const RETURN_LUA = `
local function n(x) return string.format('%.0f', x) end
local function num(x) return tonumber(x or '0') or 0 end
local camp, dayk, lease = KEYS[1], KEYS[2], KEYS[3]
local amount, spent, epoch = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
if redis.call('EXISTS', camp) == 0 or redis.call('HGET', camp, 'epoch') ~= epoch then return '0' end
if redis.call('EXISTS', lease) == 0 then return '0' end
local prev = num(redis.call('HGET', lease, 'spent'))
local delta = 0
if spent > prev then delta = spent - prev end
redis.call('HSET', camp, 'spent', n(num(redis.call('HGET', camp, 'spent')) + delta))
local lg, cg = num(redis.call('HGET', lease, 'granted')), num(redis.call('HGET', camp, 'granted'))
local amt = math.floor(math.max(0, math.min(amount, lg, cg)))
redis.call('HSET', camp, 'granted', n(cg - amt))
if redis.call('EXISTS', dayk) == 1 then
  local dg = num(redis.call('HGET', dayk, 'granted'))
  redis.call('HSET', dayk, 'granted', n(dg - math.min(amt, dg)), 'spent', n(num(redis.call('HGET', dayk, 'spent')) + delta))
end
redis.call('DEL', lease)
return n(amt)
`;

type LeaseFn = (camp: string, day: string, lease: string, ...args: string[]) => Promise<string[]>;
type ReturnFn = (camp: string, day: string, lease: string, ...args: string[]) => Promise<string>;

export function campaignKey(campaign: string): string {
  return `segbid:bank:{${campaign}}`;
}
export function dayKey(campaign: string, day: number): string {
  return `segbid:bank:{${campaign}}:day:${day}`;
}
export function leaseKey(campaign: string, client: string): string {
  return `segbid:bank:{${campaign}}:lease:${client}`;
}

export class RedisBankTransport implements BankTransport {
  readonly kind = 'redis' as const;
  readonly redis: Redis;
  private readonly leaseFn: LeaseFn;
  private readonly returnFn: ReturnFn;

  constructor(url: string, options: RedisConnectionOptions = {}) {
    this.redis = createRedisConnection(url, { name: 'segbid-budget-bank', ...options });
    this.redis.defineCommand('segbidBankLease', { numberOfKeys: 3, lua: LEASE_LUA });
    this.redis.defineCommand('segbidBankReturn', { numberOfKeys: 3, lua: RETURN_LUA });
    const r = this.redis as unknown as { segbidBankLease: LeaseFn; segbidBankReturn: ReturnFn };
    this.leaseFn = r.segbidBankLease.bind(this.redis);
    this.returnFn = r.segbidBankReturn.bind(this.redis);
  }

  get connected(): boolean {
    return this.redis.status === 'ready';
  }

  get callable(): boolean {
    return this.redis.status === 'ready';
  }

  async lease(client: string, req: LeaseRequest): Promise<LeaseReply> {
    const reply = await this.leaseFn(
      campaignKey(req.campaign),
      dayKey(req.campaign, req.day),
      leaseKey(req.campaign, client),
      String(req.flightMicros),
      String(req.dailyMicros),
      String(req.want),
      String(req.spent),
      String(req.ackedSpent),
      req.epoch,
      String(req.seen),
      String(req.seenDay),
      randomEpoch(),
      String(req.ttlMs),
      String(req.daysLeft),
      String(RESEED_HOLD_MS),
    );
    return {
      granted: Number(reply[0]),
      total: Number(reply[1]),
      dayTotal: Number(reply[2]),
      spent: Number(reply[3]),
      epoch: String(reply[4]),
      leaseGranted: Number(reply[5]),
      leaseFresh: Number(reply[6]) === 1,
    };
  }

  async giveBack(client: string, req: ReturnRequest): Promise<number> {
    const back = await this.returnFn(
      campaignKey(req.campaign),
      dayKey(req.campaign, req.day),
      leaseKey(req.campaign, client),
      String(req.amount),
      String(req.spent),
      req.epoch,
    );
    return Number(back);
  }

  async close(): Promise<void> {
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }
}

/**
 * The LeaseBank of one bidder process on Redis. Its client id is unique per incarnation (host, pid, random): a
 * restarted process takes a new lease and the old one expires with its grant counted. Its handles start at a
 * random one of the 2048 generation ranges (two processes collide with probability 1/2048; see bank.ts).
 */
export function createRedisBank(url: string, options: { client?: string; genBase?: number; onError?: (e: Error) => void; redis?: RedisConnectionOptions } = {}): LeaseBank {
  const client = options.client ?? `${hostname()}:${process.pid}:${randomInt(1 << 30).toString(36)}`;
  const genBase = options.genBase ?? genBaseFor(randomInt(2048));
  return new LeaseBank(new RedisBankTransport(url, options.redis), { client, genBase, onError: options.onError });
}
