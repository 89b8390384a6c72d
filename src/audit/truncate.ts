import { isJsonObject, setMember, toPointer, type JsonObject, type JsonValue } from './diff.js';

/** A JSON value and where it sits in the stored content, so its cuts can be reported by path. */
export interface JsonSlot {
  readonly pointer: string;
  readonly value: JsonValue;
}

/** The slots after shrinking, their sizes, and the pointers of every value cut or replaced. */
export interface ShrunkSlots {
  values: JsonValue[];
  bytes: number[];
  truncated: string[];
}

/** What a subtree given up to fit the size cap is replaced by. */
export const TRUNCATED = '[truncated]';

const TRUNCATED_BYTES = TRUNCATED.length + 2;
const SCALAR = 0;
const STRING = 1;
const ARRAY = 2;
const OBJECT = 3;
const REPLACED = 1;
const TOUCHED = 2;

// Below these sizes cutting further loses more than it saves; the next phase takes over.
const stringFloor = (maxBytes: number): number => Math.max(64, Math.floor(maxBytes / 64));
const arrayFloor = (maxBytes: number): number => Math.max(64, Math.floor(maxBytes / 32));
const subtreeFloor = arrayFloor;

const NEEDS_SCAN = /["\\\u0000-\u001f\ud800-\udfff]/;
const NOT_PLAIN_ASCII = /[^\u0020\u0021\u0023-\u005b\u005d-\u007e]/;

/** Bytes of `JSON.stringify(s)` in UTF-8, without building the escaped copy. */
export function jsonStringBytes(s: string): number {
  if (!NOT_PLAIN_ASCII.test(s)) return s.length + 2;
  if (!NEEDS_SCAN.test(s)) return Buffer.byteLength(s, 'utf8') + 2;
  let bytes = 2;
  for (let i = 0; i < s.length;) {
    const cp = s.codePointAt(i)!;
    bytes += codePointBytes(cp);
    i += cp > 0xffff ? 2 : 1;
  }
  return bytes;
}

// JSON.stringify escapes quotes, backslashes and control characters, and lone surrogates as \uXXXX.
function codePointBytes(cp: number): number {
  if (cp === 0x22 || cp === 0x5c) return 2;
  if (cp < 0x20) return [0x08, 0x09, 0x0a, 0x0c, 0x0d].includes(cp) ? 2 : 6;
  if (cp < 0x80) return 1;
  if (cp < 0x800) return 2;
  if (cp >= 0xd800 && cp <= 0xdfff) return 6;
  return cp < 0x10000 ? 3 : 4;
}

function scalarBytes(value: JsonValue): number {
  if (value === null) return 4;
  if (typeof value === 'boolean') return value ? 4 : 5;
  return Number.isSafeInteger(value) ? integerDigits(value as number) : String(value).length;
}

// Formatting a million numbers just to count their characters is measurably slow.
function integerDigits(value: number): number {
  let digits = value < 0 ? 2 : 1;
  for (let rest = Math.abs(value); rest >= 10; rest = Math.floor(rest / 10)) digits++;
  return digits;
}

/** Bytes of `JSON.stringify(value)` in UTF-8; stops counting once past `limit`. */
export function jsonBytes(value: JsonValue, limit = Infinity): number {
  if (typeof value === 'string') return jsonStringBytes(value);
  if (Array.isArray(value)) {
    let size = Math.max(2, value.length + 1);
    for (let i = 0; i < value.length && size <= limit; i++) {
      size += jsonBytes(value[i]!, limit - size);
    }
    return size;
  }
  if (!isJsonObject(value)) return scalarBytes(value);
  const keys = Object.keys(value);
  let size = Math.max(2, keys.length + 1);
  for (let i = 0; i < keys.length && size <= limit; i++) {
    size += jsonStringBytes(keys[i]!) + 1 + jsonBytes(value[keys[i]!]!, limit - size);
  }
  return size;
}

function grown<T extends Uint8Array | Int32Array | Float64Array>(
  array: T,
  make: (n: number) => T,
): T {
  const next = make(array.length * 2);
  next.set(array);
  return next;
}

function kindOf(value: JsonValue): number {
  if (typeof value === 'string') return STRING;
  if (Array.isArray(value)) return ARRAY;
  return isJsonObject(value) ? OBJECT : SCALAR;
}

const stringMarker = (removedBytes: number): string => `…[truncated ${removedBytes} bytes]`;
const arrayMarker = (dropped: number): string => `[… ${dropped} more items]`;

/** `s` cut on a code point boundary plus a marker, at most `maxJsonBytes` once serialized. */
export function cutString(s: string, maxJsonBytes: number): string {
  const total = Buffer.byteLength(s, 'utf8');
  // The marker of the whole length is the longest one this cut can need.
  let room = maxJsonBytes - jsonStringBytes(stringMarker(total));
  let end = 0;
  while (end < s.length) {
    const cp = s.codePointAt(end)!;
    const bytes = codePointBytes(cp);
    if (bytes > room) break;
    room -= bytes;
    end += cp > 0xffff ? 2 : 1;
  }
  const prefix = s.slice(0, end);
  return prefix + stringMarker(total - Buffer.byteLength(prefix, 'utf8'));
}

// The largest cap (>= floor) that saves `excess` bytes when every longer string is cut to it.
function waterLevel(descending: readonly number[], excess: number, floor: number): number {
  let sum = 0;
  for (let k = 0; k < descending.length; k++) {
    sum += descending[k]!;
    const cap = Math.floor((sum - excess) / (k + 1));
    if (cap >= (descending[k + 1] ?? floor)) return cap;
  }
  return floor;
}

/** Sizes every node once so each cut only updates its ancestors, never re-serializes. */
export class SizedSlots {
  // Nodes in preorder: node i's subtree is [i, ends[i]) and its size is sizes[i].
  private readonly values: JsonValue[] = [];
  // Typed arrays grown by doubling: pushing to plain arrays node by node dominated large inputs.
  private kinds = new Uint8Array(64);
  private sizes = new Float64Array(64);
  private parents = new Int32Array(64);
  private ordinals = new Int32Array(64);
  private ends = new Int32Array(64);
  private readonly flags: Uint8Array;
  private readonly keep: Int32Array;
  private readonly roots: number[] = [];
  private readonly replacements = new Map<number, string>();

  constructor(private readonly slots: readonly JsonSlot[]) {
    for (const slot of slots) {
      this.roots.push(this.values.length);
      this.add(slot.value, -1, 0);
    }
    this.flags = new Uint8Array(this.values.length);
    this.keep = new Int32Array(this.values.length).fill(-1);
  }

  /** Current serialized size of each slot. */
  bytes(): number[] {
    return this.roots.map((r) => this.sizes[r]!);
  }

  /** Saves `excess` bytes if it can (strings, then arrays, then subtrees); returns bytes saved. */
  shrink(excess: number, maxBytes: number): number {
    let saved = this.shortenStrings(excess, stringFloor(maxBytes));
    if (saved < excess) saved += this.trimArrays(excess - saved, arrayFloor(maxBytes));
    if (saved < excess) saved += this.replaceSubtrees(excess - saved, subtreeFloor(maxBytes));
    return saved;
  }

  /** The slots with every cut applied (untouched subtrees are shared, not copied). */
  result(): ShrunkSlots {
    const truncated: string[] = [];
    const values = this.roots.map((r, k) => this.build(r, this.slots[k]!.pointer, [], truncated));
    return { values, bytes: this.bytes(), truncated };
  }

  private add(value: JsonValue, parent: number, ordinal: number): number {
    const i = this.values.length;
    if (i === this.kinds.length) this.grow();
    const kind = kindOf(value);
    this.values.push(value);
    this.kinds[i] = kind;
    this.parents[i] = parent;
    this.ordinals[i] = ordinal;
    let size = 0;
    if (kind === ARRAY) {
      const items = value as JsonValue[];
      size = Math.max(2, items.length + 1); // brackets and commas
      for (let k = 0; k < items.length; k++) size += this.add(items[k]!, i, k);
    } else if (kind === OBJECT) {
      const members = value as JsonObject;
      const keys = Object.keys(members);
      size = Math.max(2, keys.length + 1);
      for (let k = 0; k < keys.length; k++) {
        size += jsonStringBytes(keys[k]!) + 1 + this.add(members[keys[k]!]!, i, k);
      }
    } else size = kind === STRING ? jsonStringBytes(value as string) : scalarBytes(value);
    this.sizes[i] = size;
    this.ends[i] = this.values.length;
    return size;
  }

  private grow(): void {
    this.kinds = grown(this.kinds, (n) => new Uint8Array(n));
    this.sizes = grown(this.sizes, (n) => new Float64Array(n));
    this.parents = grown(this.parents, (n) => new Int32Array(n));
    this.ordinals = grown(this.ordinals, (n) => new Int32Array(n));
    this.ends = grown(this.ends, (n) => new Int32Array(n));
  }

  private shortenStrings(excess: number, floor: number): number {
    const long: number[] = [];
    for (let i = 0; i < this.values.length; i++) {
      if (this.kinds[i] === STRING && this.sizes[i]! > floor) long.push(i);
    }
    long.sort((a, b) => this.sizes[b]! - this.sizes[a]!);
    const cap = waterLevel(
      long.map((i) => this.sizes[i]!),
      excess,
      floor,
    );
    let saved = 0;
    for (const i of long) {
      if (this.sizes[i]! <= cap) break;
      saved += this.replace(i, cutString(this.values[i] as string, cap));
    }
    return saved;
  }

  private trimArrays(excess: number, floor: number): number {
    const long: number[] = [];
    for (let i = 0; i < this.values.length; i++) {
      const manyItems = this.kinds[i] === ARRAY && (this.values[i] as JsonValue[]).length > 1;
      if (manyItems && this.sizes[i]! > floor) long.push(i);
    }
    // Outer arrays are larger, so they are trimmed before the arrays they contain.
    long.sort((a, b) => this.sizes[b]! - this.sizes[a]!);
    let saved = 0;
    for (const i of long) {
      if (saved >= excess) break;
      if (this.isAlive(i)) saved += this.trimArray(i, excess - saved);
    }
    return saved;
  }

  // Keeps the longest prefix (at least one item) that saves `excess`, plus a count marker.
  private trimArray(i: number, excess: number): number {
    const length = (this.values[i] as JsonValue[]).length;
    const target = this.sizes[i]! - excess;
    const first = i + 1;
    let used = 1 + this.sizes[first]! + 1;
    let kept = 1;
    for (let child = this.ends[first]!; kept < length - 1; child = this.ends[child]!) {
      const next = used + this.sizes[child]! + 1;
      if (next + jsonStringBytes(arrayMarker(length - kept - 1)) + 1 > target) break;
      used = next;
      kept++;
    }
    const size = used + jsonStringBytes(arrayMarker(length - kept)) + 1;
    if (size >= this.sizes[i]!) return 0;
    this.keep[i] = kept;
    return this.resize(i, size);
  }

  // Largest slots go first; once one slot alone can absorb the rest, the smallest subtree
  // that does is replaced. Slots below `floor` are left alone: the caller drops whole entries.
  private replaceSubtrees(excess: number, floor: number): number {
    const roots = this.roots.filter((r) => this.kinds[r] !== SCALAR);
    roots.sort((a, b) => this.sizes[b]! - this.sizes[a]!);
    let saved = 0;
    for (const r of roots) {
      const left = excess - saved;
      if (left <= 0) break;
      if (this.sizes[r]! - TRUNCATED_BYTES >= left) {
        return saved + this.replace(this.smallestCovering(left), TRUNCATED);
      }
      if (this.sizes[r]! < floor) break;
      saved += this.replace(r, TRUNCATED);
    }
    return saved;
  }

  private smallestCovering(excess: number): number {
    const alive = this.aliveNodes();
    let best = -1;
    for (let i = 0; i < this.values.length; i++) {
      const size = this.sizes[i]!;
      if (!alive[i] || this.kinds[i] === SCALAR || size - TRUNCATED_BYTES < excess) continue;
      if (best < 0 || size <= this.sizes[best]!) best = i;
    }
    return best;
  }

  private aliveNodes(): Uint8Array {
    const alive = new Uint8Array(this.values.length);
    for (let i = 0; i < alive.length; i++) {
      const p = this.parents[i]!;
      alive[i] = p < 0 || (alive[p] === 1 && this.childKept(p, i)) ? 1 : 0;
    }
    return alive;
  }

  private isAlive(i: number): boolean {
    for (let c = i, p = this.parents[i]!; p >= 0; c = p, p = this.parents[p]!) {
      if (!this.childKept(p, c)) return false;
    }
    return true;
  }

  private childKept(parent: number, child: number): boolean {
    if (this.flags[parent]! & REPLACED) return false;
    const keep = this.keep[parent]!;
    return keep < 0 || this.ordinals[child]! < keep;
  }

  private replace(i: number, value: string): number {
    this.replacements.set(i, value);
    this.flags[i]! |= REPLACED;
    return this.resize(i, jsonStringBytes(value));
  }

  private resize(i: number, size: number): number {
    const saved = this.sizes[i]! - size;
    this.sizes[i] = size;
    this.flags[i]! |= TOUCHED;
    for (let p = this.parents[i]!; p >= 0; p = this.parents[p]!) {
      this.sizes[p]! -= saved;
      this.flags[p]! |= TOUCHED;
    }
    return saved;
  }

  private build(i: number, base: string, path: (string | number)[], cuts: string[]): JsonValue {
    const value = this.values[i]!;
    const flags = this.flags[i]!;
    if (flags & REPLACED) {
      cuts.push(base + toPointer(path));
      return this.replacements.get(i)!;
    }
    if (!(flags & TOUCHED)) return value;
    if (Array.isArray(value)) {
      const keep = this.keep[i]! < 0 ? value.length : this.keep[i]!;
      const items: JsonValue[] = [];
      for (let k = 0, c = i + 1; k < keep; k++, c = this.ends[c]!) {
        items.push(this.child(c, k, base, path, cuts));
      }
      if (keep < value.length) {
        cuts.push(base + toPointer(path));
        items.push(arrayMarker(value.length - keep));
      }
      return items;
    }
    const members: JsonObject = {};
    let c = i + 1;
    for (const key of Object.keys(value as JsonObject)) {
      setMember(members, key, this.child(c, key, base, path, cuts));
      c = this.ends[c]!;
    }
    return members;
  }

  private child(
    i: number,
    key: string | number,
    base: string,
    path: (string | number)[],
    cuts: string[],
  ): JsonValue {
    path.push(key);
    const value = this.build(i, base, path, cuts);
    path.pop();
    return value;
  }
}
