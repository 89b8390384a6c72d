import { sha256Hex } from '../core/canonical-json.js';

export { canonicalJson } from '../core/canonical-json.js';

/** SHA-256 (hex) of a canonical JSON text (from canonicalJson). */
export function hashCanonicalJson(json: string): string {
  return sha256Hex(json);
}
