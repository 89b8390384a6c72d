import { sha256Hex } from '../core/canonical-json.js';
import type { AuditEventsTable } from '../store/schema.js';
import type { PreparedAuditEvent } from './store.js';

/** Every column of audit_events, in table order (COPY rows and verification read them so). */
export const AUDIT_EVENT_COLUMNS = [
  'id',
  'tenant_id',
  'seq',
  'action',
  'outcome',
  'resource_type',
  'resource_id',
  'resource_name',
  'actor_type',
  'actor_id',
  'actor_display',
  'trace_id',
  'client_ip',
  'user_agent',
  'data',
  'created_at',
  'prev_hash',
  'hash',
] as const satisfies ReadonlyArray<keyof AuditEventsTable>;

/** prev_hash of a tenant's first event. */
export const GENESIS_HASH = '0'.repeat(64);

/** The stored fields an event's hash covers: every column except the hashes, `data` as stored text. */
export type HashedFields = Omit<AuditEventsTable, 'prev_hash' | 'hash'>;

/**
 * hash = sha256(prev_hash + "\n" + JSON array of the event's columns in a fixed order). `data`
 * enters as the exact JSON text stored (PostgreSQL `json` and SQLite `text` keep it byte for
 * byte), so neither writing nor verifying has to canonicalize it.
 */
export function chainHash(prevHash: string, f: HashedFields): string {
  return chainHashAt(prevHash, Number(f.seq), f);
}

/** chainHash of an event not yet given its seq (the batch paths hash before building rows). */
export function chainHashAt(prevHash: string, seq: number, f: PreparedAuditEvent): string {
  const content = JSON.stringify([
    f.id,
    f.tenant_id,
    seq,
    f.action,
    f.outcome,
    f.resource_type,
    f.resource_id,
    f.resource_name,
    f.actor_type,
    f.actor_id,
    f.actor_display,
    f.trace_id,
    f.client_ip,
    f.user_agent,
    Number(f.created_at),
    f.data,
  ]);
  return sha256Hex(`${prevHash}\n${content}`);
}

/** A tenant's chain head: the last event's seq and hash. */
export interface AuditChainHead {
  /** Seq of the tenant's last event (0 before the first). */
  seq: number;
  /** Hash of the tenant's last event (GENESIS_HASH before the first). */
  hash: string;
}

/** The events of each tenant, tenants in sorted order (the chain lock order). */
export function auditEventsByTenant(
  events: readonly PreparedAuditEvent[],
): Array<[string, PreparedAuditEvent[]]> {
  const byTenant = new Map<string, PreparedAuditEvent[]>();
  for (const e of events) {
    const list = byTenant.get(e.tenant_id);
    if (list) list.push(e);
    else byTenant.set(e.tenant_id, [e]);
  }
  return [...byTenant].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Chains one tenant's events after `head`: gives each its seq, the previous hash and its own
 * hash, in order, to `visit` (which stores it in whatever form its store writes); returns the new
 * head. Every append path chains through here.
 */
export function chainEach(
  events: readonly PreparedAuditEvent[],
  head: AuditChainHead,
  visit: (event: PreparedAuditEvent, seq: number, prevHash: string, hash: string) => void,
): AuditChainHead {
  let seq = head.seq;
  let prev = head.hash;
  for (const e of events) {
    seq += 1;
    const hash = chainHashAt(prev, seq, e);
    visit(e, seq, prev, hash);
    prev = hash;
  }
  return { seq, hash: prev };
}

/** Chains one tenant's events after `head`, pushing the stored rows onto `rows`; returns the new head. */
export function chainAuditEvents(
  events: readonly PreparedAuditEvent[],
  head: AuditChainHead,
  rows: AuditEventsTable[],
): AuditChainHead {
  return chainEach(events, head, (e, seq, prev_hash, hash) =>
    rows.push({ ...e, seq, prev_hash, hash }),
  );
}

// NUL characters and lone UTF-16 surrogates cannot be stored in PostgreSQL text/jsonb (and
// would not round-trip to the same hash), so they are replaced before anything is hashed.
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

const SUSPECT = /[\u0000\uD800-\uDFFF]/;

/** Replaces characters no store can keep (NUL, lone surrogates) with U+FFFD. */
export function storableText(s: string): string {
  return SUSPECT.test(s) ? s.replace(UNSTORABLE, '\uFFFD') : s;
}

function storable(value: unknown): boolean {
  if (typeof value === 'string') return !SUSPECT.test(value) || storableText(value) === value;
  if (Array.isArray(value)) return value.every(storable);
  if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) if (!storable(k) || !storable(v)) return false;
  }
  return true;
}

/** A JSON value with every string made storable (the value itself when nothing needs it). */
export function storableJson<T>(value: T): T {
  if (storable(value)) return value;
  if (typeof value === 'string') return storableText(value) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => storableJson(v)) as T;
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[storableText(k)] = storableJson(v);
    return out as T;
  }
  return value;
}
