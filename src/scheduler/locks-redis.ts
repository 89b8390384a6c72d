// Scheduler locks in Redis (SPEC S-2). Each operation is one Lua script, so it is atomic on the
// server; ioredis's defineCommand loads each once and calls it by SHA (EVALSHA), falling back to
// EVAL only when the server lost its script cache.
//
// Layout per lock (the braces are a hash tag: both keys of a lock live in one cluster slot):
//   {prefix}{<name>}        HASH    owner, token, exp (epoch ms by the caller's clock), PX = lease
//   {prefix}{<name>}:token  STRING  fencing counter, INCRed by every grant, never expires
// The lease is judged by the caller's clock (`now`, as the database lease is, so an injected
// clock drives all backends alike) and is also the key's PX: a holder that vanished leaves a
// key Redis removes by itself. The counter outlives the lock key, so a grant after release or
// expiry still gets a larger token — as long as Redis keeps its data (see docs/scheduler.md).
import { Redis } from 'ioredis';
import { DocketError } from '../core/errors.js';
import type { LockAcquireParams, LockBackend, LockGrant } from './locks.js';

/** Grants the lock if its lease ended by `now`; returns the new token or nil. */
const ACQUIRE = `
local lock, counter = KEYS[1], KEYS[2]
local owner, leaseMs, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local exp = tonumber(redis.call('HGET', lock, 'exp'))
if exp and exp > now then return false end
local token = redis.call('INCR', counter)
redis.call('HSET', lock, 'owner', owner, 'token', token, 'exp', now + leaseMs)
redis.call('PEXPIRE', lock, leaseMs)
return token`;

/** Moves the lease end of the grant (owner, token) if it is still the current one. */
const EXTEND = `
local lock = KEYS[1]
local cur = redis.call('HMGET', lock, 'owner', 'token')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then return 0 end
local leaseMs, now = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('HSET', lock, 'exp', now + leaseMs)
redis.call('PEXPIRE', lock, leaseMs)
return 1`;

/** Deletes the lock if (owner, token) is still the current grant; the counter stays. */
const RELEASE = `
local cur = redis.call('HMGET', KEYS[1], 'owner', 'token')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
return 1`;

const SCRIPTS = {
  docketLockAcquire: { numberOfKeys: 2, lua: ACQUIRE },
  docketLockExtend: { numberOfKeys: 1, lua: EXTEND },
  docketLockRelease: { numberOfKeys: 1, lua: RELEASE },
} as const;
type ScriptCommands = Record<
  keyof typeof SCRIPTS,
  (...a: Array<string | number>) => Promise<unknown>
>;

/** Options of the Redis lock backend. */
export interface RedisLockBackendOptions {
  /** Redis URL. Default `redis://127.0.0.1:6379`. */
  url?: string;
  /** Start of every key. Default `docket:locks:`. */
  prefix?: string;
  /** Longest one command may take before it fails (a hung server), ms. Default 5000. */
  commandTimeoutMs?: number;
}

/** Lease locks in Redis, one Lua script per operation, with a per-lock fencing counter. */
export class RedisLockBackend implements LockBackend {
  private readonly redis: Redis;
  private readonly scripts: ScriptCommands;
  private readonly prefix: string;
  private connecting: Promise<void> | undefined;
  private stopped = false;
  /** The server's URL without credentials (for logs and errors). */
  readonly safeUrl: string;

  constructor(options: RedisLockBackendOptions = {}) {
    const url = options.url ?? 'redis://127.0.0.1:6379';
    this.safeUrl = url.replace(/\/\/([^@/]*)@/, '//***@');
    this.prefix = options.prefix ?? 'docket:locks:';
    // No I/O here: the first operation (or start()) connects. Without an offline queue a
    // command fails at once while Redis is away instead of waiting for it to come back.
    this.redis = new Redis(url, {
      lazyConnect: true,
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      commandTimeout: options.commandTimeoutMs ?? 5000,
    });
    this.redis.on('error', () => undefined); // surfaced by the failing command instead
    for (const [name, s] of Object.entries(SCRIPTS)) this.redis.defineCommand(name, s);
    this.scripts = this.redis as unknown as ScriptCommands;
  }

  /** Connects; LOCKS_UNAVAILABLE naming the URL when Redis does not answer. */
  async start(): Promise<void> {
    await this.ready();
  }

  /** Disconnects. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  private ready(): Promise<void> {
    const status = this.redis.status;
    // Never connected, or given up after a failed connect: connect (again). While ioredis
    // reconnects by itself after a drop, commands fail at once (no offline queue).
    if (!this.stopped && (status === 'wait' || status === 'end')) {
      this.connecting ??= this.redis.connect().then(
        () => {
          this.connecting = undefined;
        },
        (err: unknown) => {
          this.connecting = undefined;
          this.redis.disconnect();
          throw this.unavailable(err, 'is unreachable');
        },
      );
    }
    return this.connecting ?? Promise.resolve();
  }

  private unavailable(err: unknown, what: string): DocketError {
    return new DocketError(
      'LOCKS_UNAVAILABLE',
      `Redis lock backend at ${this.safeUrl} ${what}: ${(err as Error).message}`,
      { url: this.safeUrl },
      { cause: err },
    );
  }

  private keys(name: string): [string, string] {
    const lock = `${this.prefix}{${name}}`;
    return [lock, `${lock}:token`];
  }

  private async call(
    script: keyof ScriptCommands,
    ...args: Array<string | number>
  ): Promise<unknown> {
    await this.ready();
    try {
      return await this.scripts[script](...args);
    } catch (err) {
      throw this.unavailable(err, 'failed');
    }
  }

  async lockAcquire(p: LockAcquireParams): Promise<LockGrant | null> {
    const [lock, counter] = this.keys(p.name);
    const token = await this.call('docketLockAcquire', lock, counter, p.owner, p.leaseMs, p.now);
    if (token === null) return null;
    return { name: p.name, owner: p.owner, token: Number(token), expiresAt: p.now + p.leaseMs };
  }

  async lockExtend(p: { grant: LockGrant; leaseMs: number; now: number }): Promise<boolean> {
    const [lock] = this.keys(p.grant.name);
    const g = p.grant;
    return (await this.call('docketLockExtend', lock, g.owner, g.token, p.leaseMs, p.now)) === 1;
  }

  async lockRelease(p: { grant: LockGrant }): Promise<boolean> {
    const [lock] = this.keys(p.grant.name);
    return (await this.call('docketLockRelease', lock, p.grant.owner, p.grant.token)) === 1;
  }
}
