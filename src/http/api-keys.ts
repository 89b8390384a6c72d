import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Docket } from '../docket.js';
import { assertTenantId } from '../core/context.js';
import { DocketError } from '../core/errors.js';

// An API key is `dk_<keyId>_<secret>`: the id finds the row, the secret is checked against its
// SHA-256 (the plaintext is shown once and never stored). Secrets are long random strings, so
// a fast hash is enough; a slow KDF would only slow every request down.
const API_KEY = /^dk_([A-Za-z0-9]{8,64})_([A-Za-z0-9_-]{16,256})$/;

/** The parts of an API key. */
export interface ParsedApiKey {
  /** Key id (stored in `api_keys.id`). */
  id: string;
  /** Secret (only its hash is stored). */
  secret: string;
}

/** The tenant and actor an authenticated request acts as. */
export interface Principal {
  /** Tenant the key belongs to. */
  tenant: string;
  /** The API key id. */
  keyId: string;
  /** Actor recorded in audit rows: `apikey:<keyId>`. */
  actor: string;
}

/** A freshly created API key; `key` is the only time the plaintext exists. */
export interface CreatedApiKey {
  /** Key id. */
  id: string;
  /** Owning tenant. */
  tenant: string;
  /** The plaintext key `dk_<id>_<secret>`; show it once. */
  key: string;
}

/** Splits `dk_<id>_<secret>`; undefined when the string is not an API key. */
export function parseApiKey(key: string): ParsedApiKey | undefined {
  const m = API_KEY.exec(key);
  return m ? { id: m[1] as string, secret: m[2] as string } : undefined;
}

/** SHA-256 hex of a secret, as stored in `api_keys.secret_hash`. */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Generates a new random API key (not stored). */
export function generateApiKey(): string {
  return `dk_${randomBytes(8).toString('hex')}_${randomBytes(24).toString('base64url')}`;
}

/** Constant-time comparison of two strings of any length. */
export function constantTimeEqual(a: string, b: string): boolean {
  // Hashing first gives equal-length inputs, so the length check leaks nothing either.
  const ha = createHash('sha256').update(a, 'utf8').digest();
  const hb = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(ha, hb);
}

/** What key and tenant management needs of a Docket instance. */
export type KeyStore = Pick<Docket, 'internals'>;

const DUMMY_HASH = hashSecret('docket-no-such-key');

/** Resolves a plaintext API key to its principal; UNAUTHORIZED when unknown, wrong or revoked. */
export async function verifyApiKey(docket: KeyStore, key: string | undefined): Promise<Principal> {
  const parsed = key ? parseApiKey(key) : undefined;
  const db = await docket.internals.systemDb();
  const row = parsed
    ? await db
        .selectFrom('api_keys')
        .select(['id', 'tenant_id', 'secret_hash', 'revoked_at'])
        .where('id', '=', parsed.id)
        .executeTakeFirst()
    : undefined;
  // Compare even when there is no row so that unknown and wrong keys take the same time.
  const given = Buffer.from(hashSecret(parsed?.secret ?? ''), 'utf8');
  const stored = Buffer.from(row?.secret_hash ?? DUMMY_HASH, 'utf8');
  const match = given.length === stored.length && timingSafeEqual(given, stored);
  if (!parsed || !row || !match || row.revoked_at !== null) {
    throw new DocketError('UNAUTHORIZED', 'a valid API key is required', {
      hint: 'send Authorization: Bearer dk_<keyId>_<secret>',
    });
  }
  return { tenant: row.tenant_id, keyId: row.id, actor: `apikey:${row.id}` };
}

/** Creates a tenant; an existing tenant is returned unchanged (`created: false`). */
export async function createTenant(
  docket: KeyStore,
  input: { id: string; name?: string },
): Promise<{ id: string; name: string; created: boolean }> {
  assertTenantId(input.id);
  const db = await docket.internals.systemDb();
  const name = input.name ?? input.id;
  const inserted = await db
    .insertInto('tenants')
    .values({ id: input.id, name, created_at: docket.internals.clock.now() })
    .onConflict((oc) => oc.column('id').doNothing())
    .executeTakeFirst();
  if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 1) {
    return { id: input.id, name, created: true };
  }
  const existing = await db
    .selectFrom('tenants')
    .select(['id', 'name'])
    .where('id', '=', input.id)
    .executeTakeFirstOrThrow();
  return { ...existing, created: false };
}

/** Lists tenants (operator use). */
export async function listTenants(
  docket: KeyStore,
): Promise<Array<{ id: string; name: string; createdAt: number }>> {
  const db = await docket.internals.systemDb();
  const rows = await db.selectFrom('tenants').selectAll().orderBy('id').execute();
  return rows.map((r) => ({ id: r.id, name: r.name, createdAt: Number(r.created_at) }));
}

/**
 * Creates an API key for an existing tenant and returns its plaintext once. Pass `key` to
 * register a key chosen elsewhere (DOCKET_BOOTSTRAP_API_KEY); it must have the dk_ format.
 */
export async function createApiKey(
  docket: KeyStore,
  input: { tenant: string; label?: string; key?: string },
): Promise<CreatedApiKey> {
  assertTenantId(input.tenant);
  const key = input.key ?? generateApiKey();
  const parsed = parseApiKey(key);
  if (!parsed) {
    throw new DocketError('VALIDATION_FAILED', 'an API key must look like dk_<keyId>_<secret>', {
      field: 'key',
      format: 'dk_<8-64 letters or digits>_<16-256 of A-Z a-z 0-9 _ ->',
    });
  }
  const db = await docket.internals.systemDb();
  const tenant = await db
    .selectFrom('tenants')
    .select('id')
    .where('id', '=', input.tenant)
    .executeTakeFirst();
  if (!tenant) {
    throw new DocketError('NOT_FOUND', `no tenant ${input.tenant}`, { tenant: input.tenant });
  }
  const inserted = await db
    .insertInto('api_keys')
    .values({
      id: parsed.id,
      tenant_id: input.tenant,
      secret_hash: hashSecret(parsed.secret),
      label: input.label ?? '',
      created_at: docket.internals.clock.now(),
      revoked_at: null,
    })
    .onConflict((oc) => oc.column('id').doNothing())
    .executeTakeFirst();
  if (Number(inserted.numInsertedOrUpdatedRows ?? 0) !== 1) {
    throw new DocketError('VALIDATION_FAILED', 'an API key with this id already exists', {
      field: 'key',
      keyId: parsed.id,
    });
  }
  return { id: parsed.id, tenant: input.tenant, key };
}

/** Revokes an API key; later requests with it get UNAUTHORIZED. */
export async function revokeApiKey(docket: KeyStore, keyId: string): Promise<boolean> {
  const db = await docket.internals.systemDb();
  const r = await db
    .updateTable('api_keys')
    .set({ revoked_at: docket.internals.clock.now() })
    .where('id', '=', keyId)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

/** True when the store holds no tenant yet (first start). */
export async function hasNoTenants(docket: KeyStore): Promise<boolean> {
  const db = await docket.internals.systemDb();
  const row = await db.selectFrom('tenants').select('id').limit(1).executeTakeFirst();
  return row === undefined;
}
