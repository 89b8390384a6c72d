// Crash safety of email through the effect ledger (SPEC O-8, O-9, N-6), with real worker
// processes SIGKILLed at the two points that matter and a real SMTP server counting messages:
//   (a) after the ledger recorded `sent`, before the job completed: the job runs again after
//       its lease, finds the effect sent and completes; the server received one message;
//   (b) after the SMTP server accepted the message, before the ledger recorded it: the effect
//       becomes `unknown` after its lease, the job goes to the DLQ instead of resending; the
//       server received one message. An operator resolves it and the replayed job completes
//       without sending.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDocket, type Docket } from '../../src/index.js';
import { QUEUE_BACKENDS, createTestStore, waitFor, type TestStore } from '../helpers/backends.js';
import { spawnWorker, type WorkerProcess } from '../helpers/processes.js';
import { startSmtpServer, type TestSmtpServer } from '../helpers/smtp-server.js';

const FROM = 'Shop <noreply@shop.example>';
const LEASE_MS = 1000;
const message = { to: 'ada@example.com', subject: 'Receipt', text: 'Paid.' };

describe.each(QUEUE_BACKENDS)('email crash safety on %s', (backend) => {
  let ts: TestStore;
  let smtp: TestSmtpServer;
  let docket: Docket;
  const children: WorkerProcess[] = [];

  beforeAll(async () => {
    ts = await createTestStore(backend);
    smtp = await startSmtpServer();
    docket = createDocket({
      store: ts.store,
      dataDir: ts.dataDir,
      reapIntervalMs: 0,
      pruneIntervalMs: 0,
      email: { url: smtp.url, from: FROM, leaseMs: LEASE_MS, timeoutMs: LEASE_MS },
    });
    await docket.migrate();
  });
  afterEach(() => {
    for (const c of children.splice(0)) if (c.child.exitCode === null) c.child.kill('SIGKILL');
  });
  afterAll(async () => {
    await docket?.close();
    await smtp?.close();
    await ts?.dispose();
  });

  /** A worker process that SIGKILLs itself at the ledger failpoint `failpoint`. */
  const crashingWorker = async (failpoint: string) => {
    const w = await spawnWorker({
      ...ts.env,
      DOCKET_SMTP_URL: smtp.url,
      DOCKET_EMAIL_FROM: FROM,
      DOCKET_EMAIL_LEASE_MS: String(LEASE_MS),
      DOCKET_SMTP_TIMEOUT_MS: String(LEASE_MS),
      TEST_FAILPOINT: failpoint,
      TEST_LEASE_MS: String(LEASE_MS),
    });
    children.push(w);
    return w;
  };

  /** Reaps until the job's expired lease returned it to pending. */
  const reapUntilPending = async (tenant: string, id: string) =>
    waitFor(async () => {
      await docket.reapOnce();
      return (await docket.jobs.get(id, { tenant })).status === 'pending';
    });

  it('(a) killed after the ledger recorded sent: the job re-runs after its lease and sends nothing more', async () => {
    const tenant = 'crash-a';
    const before = smtp.delivered().length;
    const { job } = await docket.enqueue('email', message, { tenant });
    const w = await crashingWorker('effect.recorded');
    expect((await w.exited).signal).toBe('SIGKILL');
    expect(smtp.delivered().length).toBe(before + 1);
    const key = `email:${job.id}`;
    expect((await docket.effects.get(key, { tenant })).state).toBe('sent');
    expect((await docket.jobs.get(job.id, { tenant })).status).toBe('processing');
    await reapUntilPending(tenant, job.id);
    await docket.processBatch({ tenant, max: 1, budgetMs: 10_000 });
    const done = await docket.jobs.get(job.id, { tenant });
    expect(done).toMatchObject({ status: 'succeeded', attempts: 2 });
    expect(done.result).toMatchObject({ effectKey: key, replayed: true });
    expect(smtp.delivered().length).toBe(before + 1);
    expect(await docket.effects.get(key, { tenant })).toMatchObject({ state: 'sent', attempts: 1 });
  }, 120_000);

  it('(b) killed between the SMTP acceptance and the ledger write: the effect becomes unknown, nothing is resent', async () => {
    const tenant = 'crash-b';
    const before = smtp.delivered().length;
    const { job } = await docket.enqueue('email', message, { tenant });
    const w = await crashingWorker('effect.providerAnswered');
    expect((await w.exited).signal).toBe('SIGKILL');
    expect(smtp.delivered().length).toBe(before + 1);
    const firstId = smtp.delivered().at(-1)?.messageId;
    const key = `email:${job.id}`;
    expect((await docket.effects.get(key, { tenant })).state).toBe('sending');
    await reapUntilPending(tenant, job.id);
    // The job runs again (maybe while the effect's lease still runs: it waits for it) until the
    // ledger holds the lost send as unknown and the job fails permanently into the DLQ.
    await waitFor(async () => {
      await docket.processBatch({ tenant, max: 1, budgetMs: 10_000 });
      return (await docket.jobs.get(job.id, { tenant })).status === 'failed';
    });
    const dead = await docket.jobs.get(job.id, { tenant });
    expect(dead.lastError?.message).toContain('EFFECT_UNKNOWN');
    expect((await docket.dlq.list({ tenant })).items.map((i) => i.jobId)).toContain(job.id);
    const held = await docket.effects.get(key, { tenant });
    expect(held).toMatchObject({ state: 'unknown', attempts: 1 });
    expect(smtp.delivered().length).toBe(before + 1);
    // The operator finds the message at the provider (its Message-ID is deterministic) and
    // resolves the effect; the replayed job then completes without sending again.
    await docket.effects.resolve(
      key,
      { outcome: 'sent', providerMessageId: firstId ?? undefined, note: 'in the SMTP log' },
      { tenant, actor: 'operator' },
    );
    await docket.dlq.replay(job.id, { tenant });
    await docket.processBatch({ tenant, max: 1, budgetMs: 10_000 });
    const done = await docket.jobs.get(job.id, { tenant });
    expect(done).toMatchObject({ status: 'succeeded' });
    expect(done.result).toMatchObject({ replayed: true, messageId: firstId });
    expect(smtp.delivered().length).toBe(before + 1);
  }, 120_000);

  it('resolving a lost send as failed sends it again, with the same Message-ID', async () => {
    const tenant = 'crash-c';
    const before = smtp.delivered().length;
    const { job } = await docket.enqueue('email', message, { tenant });
    const w = await crashingWorker('effect.providerAnswered');
    await w.exited;
    const firstId = smtp.delivered().at(-1)?.messageId;
    const key = `email:${job.id}`;
    await waitFor(async () => {
      await docket.effects.sweepOnce();
      return (await docket.effects.get(key, { tenant })).state === 'unknown';
    });
    await docket.effects.resolve(
      key,
      { outcome: 'failed', note: 'not in the SMTP log' },
      { tenant },
    );
    await reapUntilPending(tenant, job.id);
    await docket.processBatch({ tenant, max: 1, budgetMs: 10_000 });
    expect((await docket.jobs.get(job.id, { tenant })).status).toBe('succeeded');
    expect(smtp.delivered().length).toBe(before + 2);
    expect(smtp.delivered().at(-1)?.messageId).toBe(firstId);
    expect(await docket.effects.get(key, { tenant })).toMatchObject({ state: 'sent', attempts: 2 });
  }, 120_000);
});
