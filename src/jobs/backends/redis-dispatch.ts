import { Redis } from 'ioredis';
import { DocketError } from '../../core/errors.js';
import {
  ACK,
  ACK_MANY,
  BURY,
  CLAIM,
  EXPIRE,
  EXTEND,
  NACK,
  PUBLISH,
  RESCUE,
} from './redis-scripts.js';

/** A dispatch message: what a worker needs to find and claim its job in the store (SPEC Q-3). */
export interface DispatchMessage {
  /** Id of this delivery (a new one at every claim). */
  message_id: string;
  /** Id of the publication that made this message (a new one on every republish). */
  event_id: string;
  /** The job in the store (the truth); at most one message per job. */
  job_id: string;
  /** Tenant of the job. */
  tenant_id: string;
  /** Trace id of the job (T-5). */
  trace_id: string;
  /** Job type. */
  job_type: string;
  /** Deliveries so far (counted at each claim). */
  attempt: number;
  /** Queue of the job. */
  queue: string;
  /** Priority (smaller first). */
  priority: number;
  /** When the job may run, epoch ms. */
  available_at: number;
}

/** The job facts a message is made from. */
export interface DispatchJob extends DispatchRef {
  traceId: string;
  priority: number;
  availableAt: number;
  /** Deliveries already made (0 for a new job). */
  attempts: number;
}

/** A job's message by its job (a Job satisfies it). */
export interface DispatchRef {
  id: string;
  tenantId: string;
  queue: string;
  type: string;
}

/** Options of the Redis dispatch lane. */
export interface RedisDispatchOptions {
  /** Redis URL, e.g. `redis://127.0.0.1:6379`. */
  url: string;
  /** First segment of every key (T-3). Default `docket`. */
  prefix?: string;
  /** Second segment of every key: the deployment environment. Default `default`. */
  env?: string;
  /** Makes message and publication ids (injectable for tests). */
  newId: () => string;
}

/** Filters and limits of a claim. */
export interface DispatchClaimParams {
  now: number;
  limit: number;
  /** Visibility timeout: the message is redelivered if not acked or extended by then, ms. */
  visibilityMs: number;
  tenants?: readonly string[];
  queues?: readonly string[];
  types?: readonly string[];
  excludeTypes?: readonly string[];
}

type ScriptFn = (...args: Array<string | number>) => Promise<unknown>;
const SCRIPTS = {
  docketPublish: { numberOfKeys: 2, lua: PUBLISH },
  docketClaim: { numberOfKeys: 3, lua: CLAIM },
  docketAck: { numberOfKeys: 1, lua: ACK },
  docketAckMany: { numberOfKeys: 1, lua: ACK_MANY },
  docketNack: { numberOfKeys: 2, lua: NACK },
  docketBury: { numberOfKeys: 1, lua: BURY },
  docketExtend: { numberOfKeys: 1, lua: EXTEND },
  docketExpire: { numberOfKeys: 2, lua: EXPIRE },
  docketRescue: { numberOfKeys: 2, lua: RESCUE },
} as const;
type ScriptCommands = Record<keyof typeof SCRIPTS, ScriptFn>;

const SEGMENT = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * The Redis side of the queue: ready, delayed, in-flight and dead structures per tenant and
 * queue, every transition one Lua script. It holds no truth: the store decides every state
 * change; these messages only say which job to try next, so losing them loses nothing that
 * reconciliation from the store cannot rebuild.
 */
export class RedisDispatch {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly scripts: ScriptCommands;
  /** This dispatch's id, sent as its wake-ups' payload so it can skip its own. */
  readonly senderId: string;

  constructor(private readonly options: RedisDispatchOptions) {
    const prefix = options.prefix ?? 'docket';
    const env = options.env ?? 'default';
    for (const [name, v] of [
      ['prefix', prefix],
      ['env', env],
    ] as const) {
      if (!SEGMENT.test(v)) {
        throw new DocketError('CONFIG_INVALID', `redis ${name} must be 1–64 of A-Z a-z 0-9 _ . -`, {
          name,
          value: v,
        });
      }
    }
    this.prefix = `${prefix}:${env}`;
    this.senderId = options.newId();
    // No I/O in the constructor: connect in start().
    this.redis = new Redis(options.url, {
      lazyConnect: true,
      maxRetriesPerRequest: 2,
      enableOfflineQueue: false,
      // Commands issued in the same tick share one write: an enqueue's publish and the woken
      // local worker's claim reach Redis together, a round trip and a syscall fewer.
      enableAutoPipelining: true,
    });
    this.redis.on('error', () => undefined); // surfaced by the failing command instead
    for (const [name, s] of Object.entries(SCRIPTS)) this.redis.defineCommand(name, s);
    this.scripts = this.redis as unknown as ScriptCommands;
  }

  /** Connects; STORE_UNAVAILABLE naming the URL (without credentials) when Redis is unreachable. */
  async start(): Promise<void> {
    try {
      await this.redis.connect();
      await this.redis.ping();
    } catch (err) {
      this.redis.disconnect();
      throw new DocketError(
        'STORE_UNAVAILABLE',
        `Redis at ${redactUrl(this.options.url)} is unreachable: ${(err as Error).message}`,
        { url: redactUrl(this.options.url) },
        { cause: err },
      );
    }
  }

  /** Throws STORE_UNAVAILABLE naming the server when Redis does not answer. */
  async ping(): Promise<void> {
    try {
      await this.redis.ping();
    } catch (err) {
      throw new DocketError(
        'STORE_UNAVAILABLE',
        `Redis at ${redactUrl(this.options.url)} does not answer: ${(err as Error).message}`,
        { url: redactUrl(this.options.url) },
        { cause: err },
      );
    }
  }

  /** Disconnects. */
  async stop(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  /**
   * Calls `lost` once when the connection drops and `back` once when it is ready again (ioredis
   * reconnects by itself, with backoff); returns the unsubscribe function.
   */
  onConnectionChange(listeners: { lost: (err?: Error) => void; back: () => void }): () => void {
    let down = false;
    let lastError: Error | undefined;
    const onError = (err: Error) => (lastError = err);
    const onClose = () => {
      if (down) return;
      down = true;
      listeners.lost(lastError);
    };
    const onReady = () => {
      if (!down) return;
      down = false;
      lastError = undefined;
      listeners.back();
    };
    this.redis.on('error', onError);
    this.redis.on('close', onClose);
    this.redis.on('ready', onReady);
    return () => {
      this.redis.off('error', onError);
      this.redis.off('close', onClose);
      this.redis.off('ready', onReady);
    };
  }

  /** The server's URL without credentials (for logs and errors). */
  get safeUrl(): string {
    return redactUrl(this.options.url);
  }

  /** `{prefix}:{env}:{tenant}:{queue}`, the base of a tenant's queue keys (T-3). */
  baseKey(tenant: string, queue: string): string {
    return `${this.prefix}:${tenant}:${queue}`;
  }

  private engineKey(name: 'lanes' | 'rr' | 'bases'): string {
    return `${this.prefix}:_:${name}`;
  }

  /** A pipeline with the scripts as commands (one round trip for many calls). */
  private pipeline(): Record<keyof typeof SCRIPTS, (...a: Array<string | number>) => void> & {
    publish(channel: string, message: string): void;
    exec(): Promise<Array<[Error | null, unknown]> | null>;
  } {
    return this.redis.pipeline() as unknown as ReturnType<RedisDispatch['pipeline']>;
  }

  private base(r: DispatchRef): string {
    return this.baseKey(r.tenantId, r.queue);
  }

  /**
   * Publishes jobs' messages (those without one) and a wake-up for blocked consumers, in one
   * round trip; returns how many were published.
   */
  async publishMany(jobs: readonly DispatchJob[], now: number): Promise<number> {
    if (jobs.length === 0) return 0;
    if (jobs.length === 1) {
      // One job (the common enqueue): one script call that also sends the wake-up.
      const j = jobs[0] as DispatchJob;
      const r = await this.scripts.docketPublish(
        ...this.messageArgs(j, now),
        this.wakeChannel,
        this.senderId,
      );
      return r === 1 ? 1 : 0;
    }
    const pipe = this.pipeline();
    for (const j of jobs) {
      pipe.docketPublish(...this.messageArgs(j, now));
    }
    pipe.publish(this.wakeChannel, this.senderId);
    const replies = (await pipe.exec()) ?? [];
    let published = 0;
    // The last reply is PUBLISH's subscriber count, not a message published.
    for (const [i, [err, v]] of replies.entries()) {
      if (err) throw err;
      if (i < jobs.length && v === 1) published++;
    }
    return published;
  }

  /** The keys and arguments of PUBLISH and RESCUE for a job: base, lanes, message, now. */
  private messageArgs(job: DispatchJob, now: number): [string, string, string, number] {
    return [this.base(job), this.engineKey('lanes'), JSON.stringify(this.messageOf(job)), now];
  }

  private messageOf(job: DispatchJob): DispatchMessage {
    return {
      message_id: this.options.newId(),
      event_id: this.options.newId(),
      job_id: job.id,
      tenant_id: job.tenantId,
      trace_id: job.traceId,
      job_type: job.type,
      attempt: job.attempts,
      queue: job.queue,
      priority: job.priority,
      available_at: job.availableAt,
    };
  }

  /** Publishes a job's message unless it has one; false if it had. */
  async publish(job: DispatchJob, now: number): Promise<boolean> {
    return (await this.scripts.docketPublish(...this.messageArgs(job, now))) === 1;
  }

  /** Claims up to `limit` messages, round-robin across tenants, into the in-flight set. */
  async claim(p: DispatchClaimParams): Promise<DispatchMessage[]> {
    const out = (await this.scripts.docketClaim(
      this.engineKey('lanes'),
      this.engineKey('rr'),
      this.engineKey('bases'),
      this.prefix,
      p.now,
      p.limit,
      p.now + p.visibilityMs,
      JSON.stringify(p.tenants ?? []),
      JSON.stringify(p.queues ?? []),
      JSON.stringify(p.types ?? []),
      JSON.stringify(p.excludeTypes ?? []),
    )) as string[];
    return out.map((json) => JSON.parse(json) as DispatchMessage);
  }

  /** Removes a job's message wherever it is (its outcome is recorded in the store). */
  async ack(r: DispatchRef): Promise<boolean> {
    return (await this.scripts.docketAck(this.base(r), r.id, r.type)) === 1;
  }

  /** Removes many jobs' messages in one round trip (a completed batch). */
  async ackMany(refs: readonly DispatchRef[]): Promise<void> {
    if (refs.length === 0) return;
    // One script call per base and type (a completed batch is usually one or a few).
    const groups = new Map<string, { base: string; type: string; ids: string[] }>();
    for (const r of refs) {
      const base = this.base(r);
      const key = `${base}\t${r.type}`;
      const g = groups.get(key);
      if (g) g.ids.push(r.id);
      else groups.set(key, { base, type: r.type, ids: [r.id] });
    }
    if (groups.size === 1) {
      const [g] = groups.values() as unknown as [{ base: string; type: string; ids: string[] }];
      await this.scripts.docketAckMany(g.base, g.type, ...g.ids);
      return;
    }
    const pipe = this.pipeline();
    for (const g of groups.values()) pipe.docketAckMany(g.base, g.type, ...g.ids);
    for (const [err] of (await pipe.exec()) ?? []) if (err) throw err;
  }

  /** Publishes that work is available, for consumers blocked in other processes. */
  async wake(): Promise<void> {
    await this.redis.publish(this.wakeChannel, this.senderId);
  }

  /** True for a wake-up this dispatch sent itself (its process has already woken its workers). */
  isOwnWake(message: string): boolean {
    return message === this.senderId;
  }

  /** The pub/sub channel of wake-ups. */
  get wakeChannel(): string {
    return `${this.prefix}:_:wake`;
  }

  /**
   * Schedules the next delivery of a job's message at `at` (retry with backoff, release, or a
   * job the store says is not claimable yet); `availableAt` updates its claim order.
   */
  async nack(r: DispatchRef, at: number, now: number, availableAt?: number): Promise<boolean> {
    const n = await this.scripts.docketNack(
      this.base(r),
      this.engineKey('lanes'),
      r.id,
      at,
      now,
      availableAt === undefined ? '' : String(availableAt),
    );
    return n === 1;
  }

  /** Moves a job's message to the dead set (the job is in the dead-letter queue). */
  async bury(r: DispatchRef, now: number): Promise<boolean> {
    return (await this.scripts.docketBury(this.base(r), r.id, now, r.type)) === 1;
  }

  /** Extends the visibility of in-flight messages; returns how many were still in flight. */
  async extend(refs: readonly DispatchRef[], deadline: number): Promise<number> {
    const byBase = new Map<string, string[]>();
    for (const r of refs) {
      const base = this.base(r);
      const ids = byBase.get(base) ?? [];
      ids.push(r.id);
      byBase.set(base, ids);
    }
    let n = 0;
    for (const [base, ids] of byBase) {
      n += Number(await this.scripts.docketExtend(base, deadline, ...ids));
    }
    return n;
  }

  /** Redelivers messages past their visibility deadline (the store decides what runs). */
  async expire(now: number, limit: number): Promise<DispatchMessage[]> {
    const out = (await this.scripts.docketExpire(
      this.engineKey('bases'),
      this.engineKey('lanes'),
      this.prefix,
      now,
      limit,
    )) as string[];
    return out.map((json) => JSON.parse(json) as DispatchMessage);
  }

  /**
   * Makes pending jobs claimable again whatever happened to their messages (RESCUE), in one
   * round trip; returns how many needed it.
   */
  async rescue(jobs: readonly DispatchJob[], now: number): Promise<number> {
    if (jobs.length === 0) return 0;
    const pipe = this.pipeline();
    for (const j of jobs) {
      pipe.docketRescue(...this.messageArgs(j, now));
    }
    let changed = 0;
    for (const [err, v] of (await pipe.exec()) ?? []) {
      if (err) throw err;
      if (v === 1) changed++;
    }
    return changed;
  }

  /** Which of these jobs have a message (one round trip). */
  async has(refs: readonly DispatchRef[]): Promise<boolean[]> {
    if (refs.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const r of refs) pipe.hexists(`${this.base(r)}:msg`, r.id);
    const res = (await pipe.exec()) ?? [];
    return res.map(([err, v]) => {
      if (err) throw err;
      return v === 1;
    });
  }

  /** Every message of a tenant's queue, for reconciliation and tests. */
  async messages(tenant: string, queue: string): Promise<DispatchMessage[]> {
    const all = await this.redis.hvals(`${this.baseKey(tenant, queue)}:msg`);
    return all.map((json) => JSON.parse(json) as DispatchMessage);
  }

  /** The connection (for tests and the reconciler's scans). */
  get client(): Redis {
    return this.redis;
  }
}

function redactUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//***@');
}

/** The job a message is about, as a DispatchRef. */
export function refOf(m: DispatchMessage): DispatchRef {
  return { id: m.job_id, tenantId: m.tenant_id, queue: m.queue, type: m.job_type };
}
