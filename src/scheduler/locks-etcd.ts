// Scheduler locks in etcd v3 (SPEC S-2), through the `etcd3` client (gRPC, pure JavaScript).
//
// Layout per lock, both keys on an etcd lease that outlives the grant's (so etcd removes them
// when their holder vanished; a lease granted within the last second is shared by later grants):
//   {prefix}{name}          value = owner
//   {prefix}{name}/expires  value = lease end, epoch ms by the caller's clock, zero-padded
// A grant creates the owner key in a transaction guarded by `create_revision == 0` (the key is
// absent); its fencing token is that create revision. etcd's revision is one counter for the
// whole store that only grows, and an extend rewrites the key without re-creating it, so every
// grant's token is larger than every earlier grant's — also after release, lease expiry and
// takeover, as long as the cluster keeps its data. Extend and release are transactions guarded
// by `create_revision == token` and `value == owner`. The lease is judged by the caller's clock
// (as the database lease is); a lock whose lease ended by it but whose etcd lease still runs is
// deleted by a transaction guarded on what was read, then created anew.
import type { Etcd3, IRequestOp, IResponseOp, ITxnResponse } from 'etcd3';
import { DocketError } from '../core/errors.js';
import type { LockAcquireParams, LockBackend, LockGrant } from './locks.js';

/** Options of the etcd lock backend. */
export interface EtcdLockBackendOptions {
  /** Client URL(s) of the cluster, comma-separated. Default `http://127.0.0.1:2379`. */
  url?: string;
  /** Start of every key. Default `docket/locks/`. */
  prefix?: string;
  /** Longest one call may take before it fails (an unreachable cluster), ms. Default 5000. */
  timeoutMs?: number;
}

const PAD = 16;
/** How long a granted etcd lease is shared by later acquires and extends, ms. */
const REUSE_MS = 1000;
/** Rounds a takeover may retry when other owners move the same lock between read and write. */
const ROUNDS = 4;

/** Lease locks in etcd: a lease plus guarded transactions, the create revision as token. */
export class EtcdLockBackend implements LockBackend {
  private readonly url: string;
  private client: Promise<Etcd3> | undefined;
  private readonly prefix: string;
  private readonly timeoutMs: number;
  private readonly leases = new Map<number, { at: number; id: Promise<string> }>();
  /** The cluster's URL(s) without credentials (for logs and errors). */
  readonly safeUrl: string;

  constructor(options: EtcdLockBackendOptions = {}) {
    const url = options.url ?? 'http://127.0.0.1:2379';
    this.safeUrl = url.replace(/\/\/([^@/]*)@/g, '//***@');
    this.prefix = options.prefix ?? 'docket/locks/';
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.url = url;
  }

  /**
   * The client, made on first use: no I/O in the constructor, and a process that never uses
   * etcd never loads its gRPC client. Its default fault handling retries a call a few times
   * (within our deadline) and fails fast while the cluster is away.
   */
  private etcd(): Promise<Etcd3> {
    this.client ??= import('etcd3').then(
      ({ Etcd3 }) =>
        new Etcd3({
          hosts: this.url.split(',').map((h) => h.trim()),
          dialTimeout: this.timeoutMs,
        }),
    );
    return this.client;
  }

  /** Checks the cluster answers; LOCKS_UNAVAILABLE naming the URL when it does not. */
  async start(): Promise<void> {
    try {
      await (await this.etcd()).maintenance.status(this.callOptions());
    } catch (err) {
      throw this.unavailable(err, 'is unreachable');
    }
  }

  /** Closes the client. */
  async stop(): Promise<void> {
    (await this.client?.catch(() => undefined))?.close();
  }

  private callOptions() {
    return { deadline: Date.now() + this.timeoutMs };
  }

  private unavailable(err: unknown, what: string): DocketError {
    return new DocketError(
      'LOCKS_UNAVAILABLE',
      `etcd lock backend at ${this.safeUrl} ${what}: ${(err as Error).message}`,
      { url: this.safeUrl },
      { cause: err },
    );
  }

  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.unavailable(err, 'failed');
    }
  }

  private keys(name: string): { owner: string; expires: string } {
    return { owner: `${this.prefix}${name}`, expires: `${this.prefix}${name}/expires` };
  }

  /**
   * An etcd lease that outlives `leaseMs` from now. A lease granted less than REUSE_MS ago (with
   * REUSE_MS of headroom in its TTL) is shared: a burst of acquires (a pass over many tasks)
   * then costs one grant, not one each. Shared leases are never revoked; they run out.
   */
  private leaseFor(leaseMs: number): Promise<string> {
    // etcd leases count whole seconds (and raise a short TTL to the cluster's minimum).
    const ttl = Math.ceil((leaseMs + REUSE_MS) / 1000);
    const cached = this.leases.get(ttl);
    if (cached && Date.now() - cached.at < REUSE_MS) return cached.id;
    const at = Date.now();
    const id = this.etcd()
      .then((c) => c.leaseClient.leaseGrant({ TTL: ttl }, this.callOptions()))
      .then((r) => r.ID);
    this.leases.set(ttl, { at, id });
    id.catch(() => this.leases.get(ttl)?.id === id && this.leases.delete(ttl));
    return id;
  }

  private put(key: string, value: string, lease: string): IRequestOp {
    return { request_put: { key: Buffer.from(key), value: Buffer.from(value), lease } };
  }

  private async txn(
    compare: Array<[string, 'Create' | 'Value' | 'Mod', string | number]>,
    then: IRequestOp[],
    otherwise: IRequestOp[] = [],
  ): Promise<ITxnResponse> {
    const [first, ...rest] = compare as [
      [string, 'Create' | 'Value' | 'Mod', string | number],
      ...Array<[string, 'Create' | 'Value' | 'Mod', string | number]>,
    ];
    let b = (await this.etcd()).if(first[0], first[1], '==', first[2]);
    for (const [k, col, v] of rest) b = b.and(k, col, '==', v);
    return b
      .then(...then)
      .else(...otherwise)
      .options(this.callOptions())
      .commit();
  }

  async lockAcquire(p: LockAcquireParams): Promise<LockGrant | null> {
    return this.guard(async () => {
      const k = this.keys(p.name);
      const expiresAt = p.now + p.leaseMs;
      const lease = await this.leaseFor(p.leaseMs);
      for (let round = 0; round < ROUNDS; round++) {
        const r = await this.txn(
          [[k.owner, 'Create', 0]],
          [
            this.put(k.owner, p.owner, lease),
            this.put(k.expires, String(expiresAt).padStart(PAD, '0'), lease),
          ],
          [
            { request_range: { key: Buffer.from(k.owner) } },
            { request_range: { key: Buffer.from(k.expires) } },
          ],
        );
        if (r.succeeded) {
          return { name: p.name, owner: p.owner, token: Number(r.header.revision), expiresAt };
        }
        const held = rangeKv(r.responses[0]);
        const exp = rangeKv(r.responses[1]);
        if (!held) continue; // released between the two steps: try the create again
        if (exp && Number(exp.value.toString()) > p.now) break;
        // Its lease ended by our clock: delete exactly what we read, then create anew.
        const compare: Array<[string, 'Create' | 'Value' | 'Mod', string | number]> = [
          [k.owner, 'Create', held.create_revision],
        ];
        if (exp) compare.push([k.expires, 'Mod', exp.mod_revision]);
        await this.txn(compare, [
          { request_delete_range: { key: Buffer.from(k.owner) } },
          { request_delete_range: { key: Buffer.from(k.expires) } },
        ]);
      }
      return null;
    });
  }

  async lockExtend(p: { grant: LockGrant; leaseMs: number; now: number }): Promise<boolean> {
    return this.guard(async () => {
      const k = this.keys(p.grant.name);
      // A lease that outlives the new end; the old one runs out by itself.
      const lease = await this.leaseFor(p.leaseMs);
      const r = await this.txn(
        [
          [k.owner, 'Create', p.grant.token],
          [k.owner, 'Value', p.grant.owner],
        ],
        [
          this.put(k.owner, p.grant.owner, lease),
          this.put(k.expires, String(p.now + p.leaseMs).padStart(PAD, '0'), lease),
        ],
      );
      return r.succeeded;
    });
  }

  async lockRelease(p: { grant: LockGrant }): Promise<boolean> {
    return this.guard(async () => {
      const k = this.keys(p.grant.name);
      const r = await this.txn(
        [
          [k.owner, 'Create', p.grant.token],
          [k.owner, 'Value', p.grant.owner],
        ],
        [
          { request_delete_range: { key: Buffer.from(k.owner) } },
          { request_delete_range: { key: Buffer.from(k.expires) } },
        ],
      );
      return r.succeeded;
    });
  }
}

/** The key a range response found, if any. */
function rangeKv(op: IResponseOp | undefined) {
  return op?.response_range?.kvs[0];
}
