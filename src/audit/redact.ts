/** Field names treated as secret for every resource type, on top of each type's own list. */
export const DEFAULT_SECRET_FIELDS: readonly string[] = Object.freeze([
  'password',
  'passwd',
  'secret',
  'token',
  'apiKey',
  'accessToken',
  'refreshToken',
  'privateKey',
  'clientSecret',
  'authorization',
  'cookie',
  'sessionToken',
]);

/** What a metadata value under a secret key is stored as, so readers see the key was set. */
export const REDACTED = '[redacted]';

/** Decides whether an object key names a secret field. */
export type SecretFieldTest = (key: string) => boolean;

// Applications spell one field `api_key`, `API-KEY` or `apiKey`; all must match.
function canonicalFieldName(name: string): string {
  const lower = name.toLowerCase();
  return lower.includes('_') || lower.includes('-') ? lower.replace(/[_-]/g, '') : lower;
}

const DEFAULT_NAMES: ReadonlySet<string> = new Set(DEFAULT_SECRET_FIELDS.map(canonicalFieldName));

/** A matcher for the default secret fields plus `extra`. */
export function createSecretFieldTest(extra: readonly string[] = []): SecretFieldTest {
  const names =
    extra.length === 0
      ? DEFAULT_NAMES
      : new Set([...DEFAULT_NAMES, ...extra.map(canonicalFieldName)]);
  return (key) => names.has(canonicalFieldName(key));
}

/** True when `name` is a default secret field or one of `extra` (case, `_` and `-` ignored). */
export function isSecretField(name: string, extra: readonly string[] = []): boolean {
  return createSecretFieldTest(extra)(name);
}
