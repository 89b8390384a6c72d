import { createHash } from 'node:crypto';

/**
 * JSON with object keys sorted, so equal values serialize (and hash) equally whatever their
 * key order. Same output as `JSON.stringify` with a key-sorting replacer (toJSON honoured,
 * undefined and functions dropped from objects and nulled in arrays), written as one recursive
 * pass because the replacer form allocated a sorted copy of every object and was ~40 % of the
 * cost of hashing an audit event.
 */
export function canonicalJson(value: unknown): string {
  return write(value, '') ?? (undefined as unknown as string);
}

function write(value: unknown, key: string): string | undefined {
  if (value !== null && typeof value === 'object') {
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') value = (toJSON as (k: string) => unknown).call(value, key);
  }
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      return Number.isFinite(value) ? String(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      // As JSON.stringify: BigInt has no JSON form.
      return JSON.stringify(value);
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) {
        const parts: string[] = [];
        // Indices, not map(): holes of sparse arrays serialize as null, as in JSON.stringify.
        for (let i = 0; i < value.length; i++) parts.push(write(value[i], String(i)) ?? 'null');
        return `[${parts.join(',')}]`;
      }
      const obj = value as Record<string, unknown>;
      const parts: string[] = [];
      for (const k of sortedKeys(obj)) {
        const v = write(obj[k], k);
        if (v !== undefined) parts.push(`${JSON.stringify(k)}:${v}`);
      }
      return `{${parts.join(',')}}`;
    }
    default:
      return undefined;
  }
}

const ARRAY_INDEX = /^(?:0|[1-9]\d{0,9})$/;

// Code-unit order, except that array-index keys ("0", "7", "12") come first in numeric order:
// that is the property order of the sorted copy the original replacer form built, and stored
// payload hashes depend on it.
function sortedKeys(obj: object): string[] {
  const keys = Object.keys(obj);
  const indexKeys: string[] = [];
  const named: string[] = [];
  for (const k of keys) {
    if (ARRAY_INDEX.test(k) && Number(k) < 4_294_967_295) indexKeys.push(k);
    else named.push(k);
  }
  if (indexKeys.length === 0) return named.sort();
  return [...indexKeys.sort((a, b) => Number(a) - Number(b)), ...named.sort()];
}

/** SHA-256 of a UTF-8 text, hex. */
export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
