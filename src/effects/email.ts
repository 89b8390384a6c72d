// The built-in `email` job type (SPEC O-9): every send goes through the effect ledger, so a
// message is handed to the transport at most once per effect key however often its job runs,
// and every attempt carries the same deterministic Message-ID.
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import type { JsonValue } from '../audit/content.js';
import type { EmailConfig } from '../config/index.js';
import { DocketError, isDocketError } from '../core/errors.js';
import { PermanentJobError, RetryJobError, type JobContext } from '../jobs/index.js';
import type { EffectsService } from './service.js';
import { EffectUnknownError, type EffectAnswer } from './types.js';

/** Payload of the built-in `email` job type. */
export interface EmailJobPayload {
  /** Recipient(s): `a@x.example` or `Name <a@x.example>`. */
  to: string | string[];
  /** Carbon-copy recipients. */
  cc?: string | string[];
  /** Blind carbon-copy recipients. */
  bcc?: string | string[];
  /** Sender. Default `email.from`. */
  from?: string;
  /** Reply-To address. */
  replyTo?: string;
  /** Subject line (1–998 characters, one line). */
  subject: string;
  /** Plain-text body (this or `html`, or both). */
  text?: string;
  /** HTML body. */
  html?: string;
  /** Extra headers (not the addressing, subject, Message-ID or MIME ones). */
  headers?: Record<string, string>;
  /** The effect key of this message. Default `email:<job id>` (one message per job). */
  effectKey?: string;
}

/** What an `email` job returns. */
export interface EmailJobResult {
  /** The ledger key. */
  effectKey: string;
  /** The message's Message-ID. */
  messageId: string | null;
  /** True when the message had been sent by an earlier attempt (nothing was sent now). */
  replayed: boolean;
  /** The transport's answer (SMTP response and recipients, or the `.eml` file). */
  result: JsonValue | null;
}

/** A message ready for a transport. */
export type EmailMessage = Omit<EmailJobPayload, 'effectKey' | 'from'> & {
  from: string;
  messageId: string;
};

/** Hands messages to SMTP or to `.eml` files. */
export interface EmailTransport {
  /** Whether a repeated send with the same Message-ID does no harm (true for files, not SMTP). */
  readonly idempotent: boolean;
  /** Sends; throws PermanentJobError (5xx), EffectUnknownError (may have been sent) or Error. */
  send(message: EmailMessage, signal: AbortSignal): Promise<EffectAnswer>;
  /** Checks the transport can be used (SMTP: connect, EHLO, login; file: the folder is writable). */
  verify(): Promise<string>;
  /** Releases connections. */
  close(): void;
}

const ADDRESS = /^(?:[^<>\r\n]*<)?[^\s<>@]+@[^\s<>@]+>?$/;
const HEADER_NAME = /^[!-9;-~]{1,76}$/;
const RESERVED_HEADERS = new Set([
  'from',
  'to',
  'cc',
  'bcc',
  'reply-to',
  'subject',
  'message-id',
  'date',
  'mime-version',
  'content-type',
  'content-transfer-encoding',
]);
const MAX_RECIPIENTS = 100;

/** Checks an `email` payload at enqueue time (VALIDATION_FAILED with the field). */
export function validateEmailPayload(payload: unknown, config: EmailConfig): void {
  const bad = (field: string, message: string) =>
    new DocketError('VALIDATION_FAILED', message, { field: `payload.${field}` });
  if (!payload || typeof payload !== 'object' || Array.isArray(payload)) {
    throw bad('', 'email jobs need a payload { to, subject, text | html }');
  }
  const p = payload as Record<string, unknown>;
  const known = [
    'to',
    'cc',
    'bcc',
    'from',
    'replyTo',
    'subject',
    'text',
    'html',
    'headers',
    'effectKey',
  ];
  for (const k of Object.keys(p)) {
    if (!known.includes(k)) throw bad(k, `unknown field ${k} (known: ${known.join(', ')})`);
  }
  let recipients = 0;
  for (const field of ['to', 'cc', 'bcc'] as const) {
    const v = p[field];
    if (v === undefined && field !== 'to') continue;
    const list = Array.isArray(v) ? v : [v];
    if (list.length === 0 || !list.every(isAddress)) {
      throw bad(field, `${field} must be an address or a non-empty list of addresses`);
    }
    recipients += list.length;
  }
  if (recipients > MAX_RECIPIENTS) {
    throw bad('to', `at most ${MAX_RECIPIENTS} recipients (to, cc and bcc together)`);
  }
  for (const field of ['from', 'replyTo'] as const) {
    if (p[field] !== undefined && !isAddress(p[field]))
      throw bad(field, `${field} must be an address`);
  }
  if (p.from === undefined && config.from === null) {
    throw bad('from', 'no from: give payload.from or configure email.from (DOCKET_EMAIL_FROM)');
  }
  if (
    typeof p.subject !== 'string' ||
    p.subject.length < 1 ||
    p.subject.length > 998 ||
    /[\r\n]/.test(p.subject)
  ) {
    throw bad('subject', 'subject must be one line of 1–998 characters');
  }
  for (const field of ['text', 'html'] as const) {
    if (p[field] !== undefined && typeof p[field] !== 'string')
      throw bad(field, `${field} must be a string`);
  }
  if (p.text === undefined && p.html === undefined) throw bad('text', 'give text, html or both');
  if (p.headers !== undefined) {
    const h = p.headers;
    if (!h || typeof h !== 'object' || Array.isArray(h))
      throw bad('headers', 'headers must be an object');
    for (const [name, value] of Object.entries(h)) {
      if (!HEADER_NAME.test(name) || RESERVED_HEADERS.has(name.toLowerCase())) {
        throw bad(
          `headers.${name}`,
          `header ${name} is not allowed (a token, not an addressing or MIME header)`,
        );
      }
      if (typeof value !== 'string' || /[\r\n]/.test(value) || value.length > 998) {
        throw bad(`headers.${name}`, 'header values are one line of at most 998 characters');
      }
    }
  }
  if (
    p.effectKey !== undefined &&
    (typeof p.effectKey !== 'string' || p.effectKey.length < 1 || p.effectKey.length > 255)
  ) {
    throw bad('effectKey', 'effectKey must be a string of 1–255 characters');
  }
}

function isAddress(v: unknown): boolean {
  return typeof v === 'string' && v.length <= 998 && ADDRESS.test(v.trim());
}

/** The deterministic Message-ID of an effect (same on every attempt). */
export function emailMessageId(idempotencyKey: string, domain: string): string {
  return `<${idempotencyKey}@${domain}>`;
}

/** Makes the `email` job handler: one ledger effect per message (key `email:<job id>` by default). */
export function createEmailJobHandler(deps: {
  config: EmailConfig;
  effects: () => Promise<EffectsService>;
  transport: () => EmailTransport;
}): (ctx: JobContext<EmailJobPayload>) => Promise<EmailJobResult> {
  return async (ctx) => {
    const { effectKey, ...message } = ctx.payload;
    const key = effectKey ?? `email:${ctx.job.id}`;
    const effects = await deps.effects();
    const transport = deps.transport();
    try {
      const out = await effects.run(
        {
          key,
          payload: message as unknown as JsonValue,
          type: 'email',
          idempotentProvider: transport.idempotent,
          leaseMs: deps.config.leaseMs,
          tenant: ctx.tenant,
          signal: ctx.signal,
        },
        (call) =>
          transport.send(
            {
              ...message,
              from: message.from ?? deps.config.from ?? '',
              messageId: emailMessageId(call.idempotencyKey, deps.config.messageIdDomain),
            },
            call.signal,
          ),
      );
      return {
        effectKey: key,
        messageId: out.providerMessageId,
        replayed: out.replayed,
        result: out.result,
      };
    } catch (err) {
      if (isDocketError(err, 'EFFECT_IN_PROGRESS')) {
        const after = Number(err.details.retryAfterMs ?? 1000);
        throw new RetryJobError(err.message, Date.now() + Math.max(100, after));
      }
      // Held for an operator, or a key reused for another message: retrying cannot help.
      if (isDocketError(err, 'EFFECT_UNKNOWN') || isDocketError(err, 'EFFECT_CONFLICT')) {
        throw new PermanentJobError(`${err.code}: ${err.message}`, { cause: err });
      }
      throw err;
    }
  };
}

/** The transport `config` names (not connected until the first send). */
export function createEmailTransport(config: EmailConfig): EmailTransport {
  return config.transport === 'file' ? fileTransport(config.dir) : smtpTransport(config);
}

function toMail(m: EmailMessage, signal: AbortSignal) {
  return {
    from: m.from,
    to: m.to,
    cc: m.cc,
    bcc: m.bcc,
    replyTo: m.replyTo,
    subject: m.subject,
    text: m.text,
    html: m.html,
    headers: m.headers,
    messageId: m.messageId,
    // Bodies are the caller's text; files and URLs must never be read from a payload.
    disableFileAccess: true,
    disableUrlAccess: true,
    signal,
  };
}

/** `.eml` files named by Message-ID, written atomically: writing one twice is harmless. */
function fileTransport(dir: string): EmailTransport {
  const mailer = nodemailer.createTransport({
    streamTransport: true,
    buffer: true,
    newline: 'unix',
  });
  return {
    idempotent: true,
    async send(m, signal) {
      const info = await mailer.sendMail(toMail(m, signal));
      await mkdir(dir, { recursive: true });
      const file = join(
        dir,
        `${m.messageId.replace(/^<|>$/g, '').replace(/[^A-Za-z0-9.@_-]/g, '_')}.eml`,
      );
      const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
      try {
        await writeFile(tmp, info.message as Buffer);
        await rename(tmp, file);
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
      return { providerMessageId: info.messageId, result: { file } };
    },
    async verify() {
      await mkdir(dir, { recursive: true });
      const probe = join(dir, `.docket-doctor-${randomBytes(6).toString('hex')}`);
      await writeFile(probe, '');
      await rm(probe, { force: true });
      return `.eml files in ${dir}`;
    },
    close() {
      mailer.close();
    },
  };
}

function smtpTransport(config: Extract<EmailConfig, { transport: 'smtp' }>): EmailTransport {
  const timeouts = {
    connectionTimeout: config.timeoutMs,
    greetingTimeout: config.timeoutMs,
    socketTimeout: config.timeoutMs,
  };
  const mailer = nodemailer.createTransport(
    config.url
      ? { url: config.url, ...timeouts }
      : {
          host: config.host,
          port: config.port,
          secure: config.secure,
          auth: config.auth ?? undefined,
          ...timeouts,
        },
  );
  return {
    idempotent: false,
    async send(m, signal) {
      try {
        const info = await mailer.sendMail(toMail(m, signal));
        return {
          providerMessageId: info.messageId,
          result: { response: info.response, accepted: info.accepted, rejected: info.rejected },
        };
      } catch (err) {
        throw classifySmtpError(err);
      }
    },
    async verify() {
      await mailer.verify();
      const where = config.url ? new URL(config.url).host : `${config.host}:${config.port}`;
      return `SMTP server ${where} answers`;
    },
    close() {
      mailer.close();
    },
  };
}

/** Origins of a failed connection that prove nothing was sent. */
const NEVER_CONNECTED = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

/**
 * SMTP failures by what they mean for a retry. A reply code is a verdict: 5xx is permanent
 * (PermanentJobError: the job goes to the DLQ), 4xx transient (retried with backoff). No reply
 * at all after the connection was up (dropped, socket timeout, aborted) may have come after
 * the message was accepted: that is EffectUnknownError, held as `unknown`, never resent blindly.
 */
export function classifySmtpError(err: unknown): Error {
  const e = err as {
    message?: string;
    responseCode?: number;
    response?: string;
    code?: string;
    command?: string;
    originalCode?: string;
    timeoutType?: string;
  };
  const details: Record<string, JsonValue> = {};
  if (typeof e.responseCode === 'number') details.responseCode = e.responseCode;
  if (typeof e.response === 'string') details.response = e.response.slice(0, 500);
  if (typeof e.code === 'string') details.code = e.code;
  if (typeof e.command === 'string') details.command = e.command;
  const message = `SMTP: ${e.message ?? String(err)}`;
  const withDetails = <T extends Error>(x: T): T => Object.assign(x, { details });
  if (typeof e.responseCode === 'number') {
    return withDetails(
      e.responseCode >= 500
        ? new PermanentJobError(message, { cause: err })
        : new Error(message, { cause: err }),
    );
  }
  const dropped =
    e.code === 'EABORT' ||
    e.code === 'ESOCKET' ||
    (e.code === 'ETIMEDOUT' && e.timeoutType === 'SOCKET_TIMEOUT') ||
    (e.code === 'ECONNECTION' && !NEVER_CONNECTED.has(e.originalCode ?? ''));
  if (dropped && !NEVER_CONNECTED.has(e.originalCode ?? '')) {
    return withDetails(new EffectUnknownError(message, { cause: err }));
  }
  if (e.code === 'EENVELOPE' || e.code === 'EMESSAGE') {
    return withDetails(new PermanentJobError(message, { cause: err }));
  }
  return withDetails(new Error(message, { cause: err }));
}
