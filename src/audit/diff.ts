import type { SecretFieldTest } from './redact.js';

/** A value that survives JSON.stringify/JSON.parse unchanged: what audit content is made of. */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;

/** A JSON object; kept apart from arrays so code can narrow between the two. */
export type JsonObject = { [key: string]: JsonValue };

/** One change between `before` and `after`; secret fields carry no values, only the operation. */
export interface AuditDiffEntry {
  /** JSON Pointer (RFC 6901) of the changed value; `""` is the whole object. */
  path: string;
  /** Whether the value appeared, disappeared or was replaced. */
  op: 'added' | 'removed' | 'changed';
  /** The old value (removed, changed). */
  before?: JsonValue;
  /** The new value (added, changed). */
  after?: JsonValue;
  /** Set when the path goes through a secret field; then before/after are never present. */
  secret?: true;
}

/** How diffJson treats secret keys and how many entries it keeps. */
export interface DiffOptions {
  /** Keys whose values must never appear in an entry. */
  isSecret: SecretFieldTest;
  /** Entries beyond this are only counted: they could never fit in the stored event. */
  limit: number;
}

/** The kept entries and how many there were in all. */
export interface DiffResult {
  /** The first `limit` entries, in order. */
  entries: AuditDiffEntry[];
  /** Every entry counted, kept or not. */
  total: number;
}

type Op = AuditDiffEntry['op'];
type Segment = string | number;

/** True for JSON objects (not arrays, not null). */
export function isJsonObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// Deep equality of two JSON values; object key order does not matter.
function jsonEqual(a: JsonValue, b: JsonValue): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i]!, b[i]!)) return false;
    return true;
  }
  if (!isJsonObject(a) || !isJsonObject(b)) return false;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const key of keys) if (!Object.hasOwn(b, key) || !jsonEqual(a[key]!, b[key]!)) return false;
  return true;
}

/** RFC 6901 pointer of a path; `~` and `/` in keys are escaped so any key round-trips. */
export function toPointer(segments: readonly Segment[]): string {
  let pointer = '';
  for (const s of segments) {
    const key = String(s);
    pointer += '/' + (/[~/]/.test(key) ? key.replace(/~/g, '~0').replace(/\//g, '~1') : key);
  }
  return pointer;
}

/** The unescaped keys of an RFC 6901 pointer. */
export function fromPointer(pointer: string): string[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** Diffs normalized values, depth-first with keys sorted; an absent side lists all leaves. */
export function diffJson(
  before: JsonValue | undefined,
  after: JsonValue | undefined,
  options: DiffOptions,
): DiffResult {
  const differ = new Differ(options);
  if (before === undefined) {
    if (after !== undefined) differ.leaves(after, 'added');
  } else if (after === undefined) differ.leaves(before, 'removed');
  else differ.values(before, after);
  return { entries: differ.entries, total: differ.total };
}

// Walks both sides with one path stack, so pointers are only built for entries that are kept.
class Differ {
  readonly entries: AuditDiffEntry[] = [];
  total = 0;
  private readonly path: Segment[] = [];

  constructor(private readonly options: DiffOptions) {}

  values(before: JsonValue, after: JsonValue): void {
    // Most objects of a large record are unchanged; comparing first avoids sorting their keys.
    if (isJsonObject(before) && isJsonObject(after)) {
      if (!jsonEqual(before, after)) this.objects(before, after);
    } else if (Array.isArray(before) && Array.isArray(after)) this.arrays(before, after);
    else if (!jsonEqual(before, after)) this.replaced(before, after);
  }

  leaves(value: JsonValue, op: Op): void {
    if (!this.eachChild(value, op, (child) => this.leaves(child, op))) this.emit(op, value);
  }

  private objects(before: JsonObject, after: JsonObject): void {
    for (const key of unionOfKeys(before, after)) {
      this.path.push(key);
      const b = Object.hasOwn(before, key) ? before[key] : undefined;
      const a = Object.hasOwn(after, key) ? after[key] : undefined;
      if (this.options.isSecret(key)) this.secretChange(b, a);
      else if (a === undefined) this.whole('removed', b!);
      else if (b === undefined) this.whole('added', a);
      else this.values(b, a);
      this.path.pop();
    }
  }

  private arrays(before: JsonValue[], after: JsonValue[]): void {
    for (let i = 0; i < Math.max(before.length, after.length); i++) {
      this.path.push(i);
      if (i >= after.length) this.whole('removed', before[i]!);
      else if (i >= before.length) this.whole('added', after[i]!);
      else this.values(before[i]!, after[i]!);
      this.path.pop();
    }
  }

  private secretChange(before: JsonValue | undefined, after: JsonValue | undefined): void {
    if (before === undefined) this.emitSecret('added');
    else if (after === undefined) this.emitSecret('removed');
    else if (!jsonEqual(before, after)) this.emitSecret('changed');
  }

  // A value carried whole keeps no secret field: each one is cut out and gets its own entry.
  private whole(op: Op, value: JsonValue): void {
    const carried = withoutSecrets(value, this.options.isSecret);
    this.emit(op, carried);
    if (carried !== value) this.secretsWithin(value, op);
  }

  private replaced(before: JsonValue, after: JsonValue): void {
    const b = withoutSecrets(before, this.options.isSecret);
    const a = withoutSecrets(after, this.options.isSecret);
    this.total++;
    if (this.entries.length < this.options.limit) {
      this.entries.push({ path: toPointer(this.path), op: 'changed', before: b, after: a });
    }
    if (b !== before) this.secretsWithin(before, 'removed');
    if (a !== after) this.secretsWithin(after, 'added');
  }

  private secretsWithin(value: JsonValue, op: Op): void {
    this.eachChild(value, op, (child) => this.secretsWithin(child, op));
  }

  // Visits children in entry order (indexes, sorted keys); a secret key is reported, not entered.
  private eachChild(value: JsonValue, op: Op, visit: (child: JsonValue) => void): boolean {
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        this.path.push(i);
        visit(value[i]!);
        this.path.pop();
      }
      return value.length > 0;
    }
    if (!isJsonObject(value)) return false;
    const keys = Object.keys(value).sort();
    for (const key of keys) {
      this.path.push(key);
      if (this.options.isSecret(key)) this.emitSecret(op);
      else visit(value[key]!);
      this.path.pop();
    }
    return keys.length > 0;
  }

  private emit(op: Op, value: JsonValue): void {
    this.total++;
    if (this.entries.length >= this.options.limit) return;
    const path = toPointer(this.path);
    this.entries.push(op === 'added' ? { path, op, after: value } : { path, op, before: value });
  }

  private emitSecret(op: Op): void {
    this.total++;
    if (this.entries.length < this.options.limit) {
      this.entries.push({ path: toPointer(this.path), op, secret: true });
    }
  }
}

function unionOfKeys(a: JsonObject, b: JsonObject): string[] {
  const keys = Object.keys(a);
  for (const key of Object.keys(b)) if (!Object.hasOwn(a, key)) keys.push(key);
  return keys.sort();
}

// Returns `value` itself when it holds no secret key, so unchanged subtrees are not copied.
function withoutSecrets(value: JsonValue, isSecret: SecretFieldTest): JsonValue {
  if (Array.isArray(value)) {
    let copy: JsonValue[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const kept = withoutSecrets(value[i]!, isSecret);
      if (kept !== value[i] && copy === undefined) copy = value.slice(0, i);
      copy?.push(kept);
    }
    return copy ?? value;
  }
  if (!isJsonObject(value)) return value;
  let copy: JsonObject | undefined;
  for (const key of Object.keys(value)) {
    const child = value[key]!;
    const kept = isSecret(key) ? undefined : withoutSecrets(child, isSecret);
    if (kept !== child && copy === undefined) copy = copyUntil(value, key);
    if (copy !== undefined && kept !== undefined) setMember(copy, key, kept);
  }
  return copy ?? value;
}

function copyUntil(value: JsonObject, stopKey: string): JsonObject {
  const copy: JsonObject = {};
  for (const key of Object.keys(value)) {
    if (key === stopKey) break;
    setMember(copy, key, value[key]!);
  }
  return copy;
}

/** Sets an own member; `__proto__` included, which plain assignment would turn into a prototype. */
export function setMember(target: JsonObject, key: string, value: JsonValue): void {
  if (key === '__proto__') {
    Object.defineProperty(target, key, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  } else target[key] = value;
}
