// The built-in `email` job type (SPEC O-9) against a real SMTP server: a worker sends one
// message with the deterministic Message-ID and the ledger records it; a deferral (451) is
// retried with the same Message-ID; a rejection (550) fails the job into the DLQ with the SMTP
// error recorded, after one attempt; the file transport writes a parseable `.eml`; bad
// payloads are refused at enqueue.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { simpleParser } from 'mailparser';
import { afterEach, describe, expect, it } from 'vitest';
import { classifySmtpError } from '../../src/effects/index.js';
import { EffectUnknownError, PermanentJobError } from '../../src/index.js';
import { QUEUE_BACKENDS, useDocketSuite, waitFor } from '../helpers/backends.js';
import { startSmtpServer, type TestSmtpServer } from '../helpers/smtp-server.js';

let seq = 0;
const unique = (p: string) => `${p}${++seq}${Math.random().toString(36).slice(2, 6)}`;
const message = {
  to: ['Ada <ada@example.com>'],
  subject: 'Your invoice',
  text: 'Thanks for your order.',
  html: '<p>Thanks for your order.</p>',
  headers: { 'X-Order': 'o-42' },
};

describe.each(QUEUE_BACKENDS)('email on %s', (backend) => {
  const suite = useDocketSuite(backend, { pruneIntervalMs: 0 });
  let smtp: TestSmtpServer | undefined;
  afterEach(async () => {
    await smtp?.close();
    smtp = undefined;
  });
  const smtpDocket = async (reply?: Parameters<typeof startSmtpServer>[0]) => {
    smtp = await startSmtpServer(reply);
    return suite.make({
      email: { url: smtp.url, from: 'Shop <noreply@shop.example>', leaseMs: 5000, timeoutMs: 3000 },
    });
  };

  it('a worker sends the message over SMTP once, with a deterministic Message-ID, and the ledger records it', async () => {
    const d = await smtpDocket();
    const tenant = unique('t');
    const { job } = await d.enqueue('email', message, { tenant });
    const worker = d.createWorker({ pollIntervalMs: 20 });
    await worker.start();
    const done = await waitFor(async () => {
      const j = await d.jobs.get(job.id, { tenant });
      return j.status === 'succeeded' ? j : undefined;
    });
    await worker.stop();
    expect(smtp?.delivered()).toHaveLength(1);
    const got = smtp!.delivered()[0]!;
    expect(got.rcptTo).toEqual(['ada@example.com']);
    expect(got.messageId).toMatch(/^<[0-9a-f]{40}@shop\.example>$/);
    const parsed = await simpleParser(got.raw);
    expect(parsed.subject).toBe('Your invoice');
    expect(parsed.headers.get('x-order')).toBe('o-42');
    const effect = await d.effects.get(`email:${job.id}`, { tenant });
    expect(effect).toMatchObject({
      state: 'sent',
      type: 'email',
      attempts: 1,
      providerMessageId: got.messageId,
    });
    expect(done.result).toMatchObject({
      effectKey: `email:${job.id}`,
      messageId: got.messageId,
      replayed: false,
      result: { accepted: ['ada@example.com'] },
    });
    // The job run again (a retry, a DLQ replay) replays the ledger: no second message.
    const again = await d.effects.run(
      null,
      { key: `email:${job.id}`, payload: message, type: 'email', tenant },
      async () => {
        throw new Error('must not be called');
      },
    );
    expect(again.replayed).toBe(true);
    // A caller-supplied effect key makes two jobs one message.
    const a = await d.enqueue('email', { ...message, effectKey: 'welcome:u1' }, { tenant });
    const b = await d.enqueue('email', { ...message, effectKey: 'welcome:u1' }, { tenant });
    await d.processBatch({ tenant, max: 10, budgetMs: 10_000 });
    expect((await d.jobs.get(a.job.id, { tenant })).status).toBe('succeeded');
    expect((await d.jobs.get(b.job.id, { tenant })).result).toMatchObject({ replayed: true });
    expect(smtp?.delivered()).toHaveLength(2);
  });

  it('a 451 deferral is retried with backoff under the same Message-ID, and delivered once', async () => {
    const d = await smtpDocket((n) =>
      n === 1 ? { code: 451, message: 'try again later' } : undefined,
    );
    const tenant = unique('t');
    const { job } = await d.enqueue('email', message, { tenant });
    await d.processBatch({ tenant, max: 1, budgetMs: 10_000 });
    const failed = await d.jobs.get(job.id, { tenant });
    expect(failed).toMatchObject({ status: 'pending', attempts: 1 });
    expect(failed.lastError?.message).toContain('451');
    expect(await d.effects.get(`email:${job.id}`, { tenant })).toMatchObject({
      state: 'failed',
      lastError: { retryable: true, details: { responseCode: 451 } },
    });
    // Due after its backoff; run it as a worker would then.
    await waitFor(async () => {
      await d.processBatch({ tenant, max: 1, budgetMs: 10_000 });
      return (await d.jobs.get(job.id, { tenant })).status === 'succeeded';
    });
    expect(smtp?.received).toHaveLength(2);
    expect(smtp?.delivered()).toHaveLength(1);
    expect(smtp?.received[0]?.messageId).toBe(smtp?.received[1]?.messageId);
    expect(await d.effects.get(`email:${job.id}`, { tenant })).toMatchObject({
      state: 'sent',
      attempts: 2,
    });
  });

  it('a 550 rejection fails the job permanently into the DLQ after one attempt, the SMTP error recorded', async () => {
    const d = await smtpDocket(() => ({ code: 550, message: 'no such user here' }));
    const tenant = unique('t');
    const { job } = await d.enqueue('email', message, { tenant });
    await d.processBatch({ tenant, max: 5, budgetMs: 10_000 });
    const dead = await d.jobs.get(job.id, { tenant });
    expect(dead).toMatchObject({ status: 'failed', attempts: 1 });
    expect(dead.lastError).toMatchObject({ permanent: true });
    expect((await d.dlq.list({ tenant })).items.map((i) => i.jobId)).toEqual([job.id]);
    expect(await d.effects.get(`email:${job.id}`, { tenant })).toMatchObject({
      state: 'failed',
      lastError: {
        retryable: false,
        details: { responseCode: 550, response: expect.stringContaining('no such user') },
      },
    });
    expect(smtp?.received).toHaveLength(1);
  });

  it('the file transport (the embedded default) writes one parseable .eml per message, named by Message-ID', async () => {
    const dir = join(suite.ts.dataDir, unique('mail'));
    const d = suite.make({ email: { dir, from: 'noreply@shop.example' } });
    expect(d.config.email).toMatchObject({ transport: 'file', dir });
    expect(suite.make().config.email).toMatchObject({
      transport: 'file',
      dir: join(suite.ts.dataDir, 'mail'),
    });
    const tenant = unique('t');
    const { job } = await d.enqueue('email', message, { tenant });
    await d.processBatch({ tenant, max: 1, budgetMs: 10_000 });
    const files = readdirSync(dir);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^[0-9a-f]{40}@shop\.example\.eml$/);
    const parsed = await simpleParser(readFileSync(join(dir, files[0]!)));
    expect(parsed.subject).toBe('Your invoice');
    expect(parsed.text?.trim()).toBe('Thanks for your order.');
    expect(parsed.to).toMatchObject({ value: [{ address: 'ada@example.com', name: 'Ada' }] });
    expect(parsed.messageId).toBe(`<${files[0]!.replace(/\.eml$/, '')}>`);
    const effect = await d.effects.get(`email:${job.id}`, { tenant });
    expect(effect).toMatchObject({ state: 'sent', idempotentProvider: true });
    expect(effect.result).toEqual({ file: join(dir, files[0]!) });
  });

  it('refuses bad payloads at enqueue with VALIDATION_FAILED and the field, enqueuing nothing', async () => {
    const d = suite.make({ email: { from: 'noreply@shop.example' } });
    const tenant = unique('t');
    const bad = async (payload: unknown, field: string) =>
      expect(d.enqueue('email', payload as never, { tenant })).rejects.toMatchObject({
        code: 'VALIDATION_FAILED',
        details: { field: `payload.${field}` },
      });
    await bad({ subject: 's', text: 't' }, 'to');
    await bad({ ...message, to: 'not an address' }, 'to');
    await bad({ ...message, to: [] }, 'to');
    await bad({ ...message, cc: ['ok@example.com', 'nope'] }, 'cc');
    await bad({ ...message, subject: 'two\nlines' }, 'subject');
    await bad({ ...message, subject: '' }, 'subject');
    await bad({ to: 'a@example.com', subject: 's' }, 'text');
    await bad({ ...message, headers: { 'Message-ID': '<x@y>' } }, 'headers.Message-ID');
    await bad({ ...message, headers: { 'X-Evil': 'a\r\nBcc: all@example.com' } }, 'headers.X-Evil');
    await bad({ ...message, attachments: [{ path: '/etc/passwd' }] }, 'attachments');
    await bad({ ...message, effectKey: '' }, 'effectKey');
    const noFrom = suite.make();
    await expect(noFrom.enqueue('email', message as never, { tenant })).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
      details: { field: 'payload.from' },
    });
    expect(await d.jobs.counts({ tenant })).toEqual({});
    expect(() => suite.make({ email: { from: 'nobody' } })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }) as Error,
    );
    expect(() => suite.make({ email: { url: 'http://x' } })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }) as Error,
    );
  });
});

describe('SMTP failures by what a retry may do', () => {
  it('classifies reply codes and dropped connections', () => {
    expect(classifySmtpError({ message: 'x', responseCode: 550 })).toBeInstanceOf(
      PermanentJobError,
    );
    const deferred = classifySmtpError({ message: 'x', responseCode: 421 });
    expect(deferred).not.toBeInstanceOf(PermanentJobError);
    expect(deferred).not.toBeInstanceOf(EffectUnknownError);
    // Refused before a connection existed: nothing was sent, a retry is safe.
    const refused = classifySmtpError({ code: 'ESOCKET', originalCode: 'ECONNREFUSED' });
    expect(refused).not.toBeInstanceOf(EffectUnknownError);
    expect(refused).not.toBeInstanceOf(PermanentJobError);
    // Dropped once connected, or cut off mid-send: the message may have been accepted.
    for (const e of [
      { code: 'ECONNECTION' },
      { code: 'ESOCKET', originalCode: 'ECONNRESET' },
      { code: 'ETIMEDOUT', timeoutType: 'SOCKET_TIMEOUT' },
      { code: 'EABORT' },
    ]) {
      expect(classifySmtpError(e)).toBeInstanceOf(EffectUnknownError);
    }
  });
});
