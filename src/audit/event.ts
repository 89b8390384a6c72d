import { isIP } from 'node:net';
import { uuidV7At, type V7Sequence } from '../core/ids.js';
import { DocketError } from '../core/errors.js';
import { storableJson, storableText } from './chain.js';
import { buildAuditContent, type AuditContent } from './content.js';
import type { PreparedAuditEvent } from './store.js';
import type { AuditOutcome, AuditPrincipal, AuditRecordOptions, AuditResource } from './types.js';

/** The stored size limit of one event, JSON bytes (SPEC A-2). */
export const AUDIT_EVENT_MAX_BYTES = 64 * 1024;

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$/;
const OUTCOMES: readonly AuditOutcome[] = ['success', 'failure', 'denied'];
const MAX_TEXT = 256;
const MAX_USER_AGENT = 512;
// The hashes, seq and JSON punctuation around the columns, counted against the 64 KiB.
const ENVELOPE_BYTES = 512;

/** Everything needed to build one event; tenant, trace and time already resolved. */
export interface AuditEventInput extends Omit<AuditRecordOptions, 'tenant' | 'traceId'> {
  tenant: string;
  traceId: string;
  createdAt: number;
  action: string;
  resource: AuditResource;
  /** Secret field names of the resource type (the built-in list always applies). */
  secretFields?: readonly string[];
}

/**
 * A UUIDv7 stamped with the event's own time (not the wall clock), so that id order is
 * created_at order and time ranges are id ranges on the (tenant_id, id) primary key.
 */
export function auditEventId(createdAt: number): string {
  return uuidV7At(createdAt, auditIdSequence);
}

// Events of one millisecond get increasing ids, so id order is also record order within it.
const auditIdSequence: V7Sequence = { msecs: -1, seq: 0 };

/** The smallest event id of time `ms`: `id >= idAtTime(from)` is `created_at >= from`. */
export function idAtTime(ms: number): string {
  const hex = Math.max(0, Math.min(ms, 2 ** 48 - 1))
    .toString(16)
    .padStart(12, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-7000-8000-000000000000`;
}

/** The time (ms) an event id carries: its first 48 bits, the inverse of idAtTime. */
export function timeOfId(id: string): number {
  return parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
}

/** The principal recorded when none is given. */
export const LIBRARY_PRINCIPAL: AuditPrincipal = { type: 'system', id: 'library' };

/** Maps Docket's actor strings (`apikey:<id>`, `operator`, free text) to a principal. */
export function principalFromActor(actor: string | undefined): AuditPrincipal {
  if (!actor) return LIBRARY_PRINCIPAL;
  if (actor === 'operator') return { type: 'operator', id: 'operator' };
  const m = /^([A-Za-z][A-Za-z0-9_]{0,30}):(.+)$/.exec(actor);
  if (!m) return { type: 'system', id: actor };
  const [, type = 'system', id = actor] = m;
  return { type: type === 'apikey' ? 'api_key' : type, id };
}

function invalid(field: string, message: string, value?: unknown): DocketError {
  return new DocketError('VALIDATION_FAILED', message, { field, value });
}

function text(field: string, v: unknown, max: number, optional: true): string | null;
function text(field: string, v: unknown, max: number, optional?: false): string;
function text(field: string, v: unknown, max: number, optional = false): string | null {
  if (v === undefined || v === null) {
    if (optional) return null;
    throw invalid(field, `${field} is required`);
  }
  if (typeof v !== 'string' || v.length === 0 || v.length > max) {
    throw invalid(field, `${field} must be a string of 1–${max} characters`, v);
  }
  return storableText(v);
}

function name(field: string, v: unknown): string {
  if (typeof v !== 'string' || !NAME.test(v)) {
    throw invalid(field, `${field} must be 1–100 letters, digits, '_', '.', ':' or '-'`, v);
  }
  return v;
}

// Upper bound of the columns' JSON size without serializing them: every column is short text
// (≤ 512 chars, 4 UTF-8 bytes each at most, 6 when JSON-escaped) or a number.
function columnsBytes(event: PreparedAuditEvent): number {
  let n = 0;
  for (const v of Object.values(event)) {
    if (typeof v !== 'string') n += 24;
    else n += ESCAPED.test(v) ? JSON.stringify(v).length * 3 : Buffer.byteLength(v, 'utf8') + 2;
  }
  return n;
}
const ESCAPED = /[\u0000-\u001f"\\\u007f-\uffff]/;

// JSON text of the content, with NUL and lone surrogates made storable. JSON.stringify writes
// both as \u escapes, so a quick look at the text tells whether the slow path is needed.
function storableContentJson(content: AuditContent): string {
  const json = JSON.stringify(content);
  return /\\u(?:0000|d[89a-f])/i.test(json) ? JSON.stringify(storableJson(content)) : json;
}

/**
 * Validates one event and builds its stored form: before/after diff, redaction of secret
 * fields and the 64 KiB cap (content.ts), with storable text everywhere. Throws
 * VALIDATION_FAILED (and changes nothing) on a malformed field; oversized or circular
 * values are truncated and listed, never refused.
 */
export function prepareAuditEvent(input: AuditEventInput): PreparedAuditEvent {
  const outcome = input.outcome ?? 'success';
  if (!OUTCOMES.includes(outcome)) throw invalid('outcome', 'outcome is not valid', outcome);
  const actor = input.actor ?? LIBRARY_PRINCIPAL;
  if (!actor || typeof actor !== 'object') throw invalid('actor', 'actor must be an object');
  const resource = input.resource as AuditResource | undefined;
  if (!resource || typeof resource !== 'object')
    throw invalid('resource', 'resource must be { type, id }');
  if (input.clientIp !== undefined && isIP(input.clientIp) === 0) {
    throw invalid('clientIp', 'clientIp must be an IP address', input.clientIp);
  }
  const truncated: string[] = [];
  let userAgent: string | null = null;
  if (input.userAgent !== undefined) {
    if (typeof input.userAgent !== 'string') throw invalid('userAgent', 'userAgent must be text');
    userAgent = storableText(input.userAgent.slice(0, MAX_USER_AGENT));
    if (input.userAgent.length > MAX_USER_AGENT) truncated.push('/userAgent');
  }
  // The stored event itself, `data` filled in last: one object per event (the buffer holds
  // tens of thousands of them until a flush, so each extra copy is garbage the GC must move).
  const event: PreparedAuditEvent = {
    id: auditEventId(input.createdAt),
    tenant_id: input.tenant,
    action: name('action', input.action),
    outcome,
    resource_type: name('resource.type', resource.type),
    resource_id: text('resource.id', resource.id, MAX_TEXT),
    resource_name: text('resource.name', resource.name, MAX_TEXT, true),
    actor_type: name('actor.type', actor.type),
    actor_id: text('actor.id', actor.id, MAX_TEXT),
    actor_display: text('actor.display', actor.display, MAX_TEXT, true),
    trace_id: input.traceId,
    client_ip: input.clientIp ?? null,
    user_agent: userAgent,
    created_at: input.createdAt,
    data: '',
  };
  const content = buildAuditContent(
    {
      before: input.before,
      after: input.after,
      metadata: input.metadata,
      secretFields: input.secretFields,
    },
    { maxBytes: AUDIT_EVENT_MAX_BYTES - columnsBytes(event) - ENVELOPE_BYTES },
  );
  if (truncated.length) content.truncated = [...truncated, ...(content.truncated ?? [])];
  event.data = storableContentJson(content);
  return event;
}
