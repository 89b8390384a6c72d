// Concurrent applies of one proposal from separate processes (SPEC S-7), on every store: each
// process opens its own connections and applies with its own idempotency key at the same
// moment; exactly one applies (one business row, the proposal names its key) and every other
// gets PROPOSAL_NOT_OPEN. Real child processes, no mocks.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocket, type Docket } from '../../src/index.js';
import {
  BACKENDS,
  createBusinessTable,
  createTestStore,
  waitFor,
  type TestStore,
} from '../helpers/backends.js';

interface AppDB {
  proc_applied: { id: string; tenant_id: string };
}

const script = fileURLToPath(new URL('../helpers/proposal-process.ts', import.meta.url));
const root = fileURLToPath(new URL('../..', import.meta.url));
const PROCESSES = 4;

function spawnApplier(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    cwd: root,
    env: { ...process.env, ...env, DOCKET_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { output: () => out, exited };
}

describe.each(BACKENDS)(`proposal applies from ${PROCESSES} processes on %s`, (backend) => {
  let ts: TestStore;
  let docket: Docket;

  beforeAll(async () => {
    ts = await createTestStore(backend);
    docket = createDocket({ store: ts.store, dataDir: ts.dataDir, reapIntervalMs: 0 });
    docket.proposals.register('proc.apply', { currentVersion: () => 1, apply: () => null });
    await docket.migrate();
    await createBusinessTable(ts, docket, 'proc_applied');
  });
  afterAll(async () => {
    await docket?.close();
    await ts?.dispose();
  });

  it('exactly one process applies; the others get PROPOSAL_NOT_OPEN', async () => {
    const p = await docket.proposals.create(
      { kind: 'proc.apply', target: 'shared', changes: {}, expiresAt: Date.now() + 600_000 },
      { tenant: 'acme' },
    );
    const go = join(ts.dataDir, 'go');
    const children = Array.from({ length: PROCESSES }, (_, i) =>
      spawnApplier({
        ...ts.env,
        TEST_PROPOSAL_ID: p.id,
        TEST_KEY: `process-${i}`,
        TEST_GO: go,
      }),
    );
    await waitFor(() => children.every((c) => c.output().includes('ready')), {
      timeoutMs: 60_000,
      what: 'every applier to be ready',
    });
    writeFileSync(go, 'go');
    const codes = await Promise.all(children.map((c) => c.exited));
    const results = children.map((c) => {
      const line = /result (.*)/.exec(c.output())?.[1];
      if (!line) throw new Error(`no result from an applier: ${c.output()}`);
      return JSON.parse(line) as { ok?: true; code?: string };
    });
    expect(codes).toEqual(Array(PROCESSES).fill(0));
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    expect(results.filter((r) => !r.ok).map((r) => r.code)).toEqual(
      Array(PROCESSES - 1).fill('PROPOSAL_NOT_OPEN'),
    );
    const winner = `process-${results.findIndex((r) => r.ok)}`;
    const db = (await docket.internals.systemDb()) as unknown as Kysely<AppDB>;
    expect(await db.selectFrom('proc_applied').selectAll().execute()).toEqual([
      { id: winner, tenant_id: 'acme' },
    ]);
    expect(await docket.proposals.get(p.id, { tenant: 'acme' })).toMatchObject({
      state: 'applied',
      appliedKey: winner,
    });
  }, 120_000);
});
