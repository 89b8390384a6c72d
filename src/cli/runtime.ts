import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { InvalidArgumentError } from 'commander';
import { pino, type Logger } from 'pino';
import { createDocketFromEnv, type CreateDocketOptions, type Docket } from '../docket.js';
import { DocketError } from '../core/errors.js';
import type { JobHandler, JobTypeOptions } from '../jobs/index.js';
import type { AuditDefinition } from '../audit/index.js';
import type { OutboxOptions } from '../outbox/service.js';
import type { TaskDefinition, TriggerHandler } from '../scheduler/index.js';

/** What the module named by DOCKET_HANDLERS provides. */
export interface HandlersModule {
  /** Handlers keyed by job type. */
  handlers: Record<string, JobHandler<never>>;
  /** Per-type options. Default none. */
  jobTypes?: Record<string, JobTypeOptions>;
  /** The application's audit vocabulary (`defineAudit`). Default none (any action). */
  auditDefinition?: AuditDefinition;
  /** Outbox routes and sinks (SPEC O); with routes, `docket start` also runs a relay. */
  outbox?: OutboxOptions;
  /** Scheduler tasks (SPEC S-1); `docket start` runs them. Default none. */
  tasks?: TaskDefinition[];
  /** Due trigger handlers by trigger type (SPEC S-6). Default none. */
  triggers?: Record<string, TriggerHandler<never>>;
}

/** Structured JSON logs go to stderr so stdout stays for the human-readable output. */
export function cliLogger(env: NodeJS.ProcessEnv = process.env): Logger {
  return pino({ name: 'docket', level: env.DOCKET_LOG_LEVEL ?? 'info' }, pino.destination(2));
}

/** Prints a line for the human (stdout). */
export function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** Loads the handlers module: its `handlers` export (or default export) and optional `jobTypes`. */
export async function loadHandlersModule(
  path: string | undefined,
): Promise<HandlersModule | undefined> {
  if (!path) return undefined;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(resolve(path)).href)) as Record<string, unknown>;
  } catch (err) {
    throw new DocketError(
      'CONFIG_INVALID',
      `cannot load DOCKET_HANDLERS module ${path}: ${(err as Error).message}`,
      { path },
      { cause: err },
    );
  }
  const handlers = mod.handlers ?? mod.default;
  if (!isRecord(handlers) || !Object.values(handlers).every((h) => typeof h === 'function')) {
    throw new DocketError(
      'CONFIG_INVALID',
      `DOCKET_HANDLERS module ${path} must export \`handlers\` (or a default export): an object of functions`,
      { path },
    );
  }
  const jobTypes = mod.jobTypes;
  if (jobTypes !== undefined && !isRecord(jobTypes)) {
    throw new DocketError('CONFIG_INVALID', `\`jobTypes\` of ${path} must be an object`, { path });
  }
  const auditDefinition = mod.auditDefinition;
  if (
    auditDefinition !== undefined &&
    !(
      isRecord(auditDefinition) &&
      Array.isArray(auditDefinition.actions) &&
      isRecord(auditDefinition.resources)
    )
  ) {
    throw new DocketError(
      'CONFIG_INVALID',
      `\`auditDefinition\` of ${path} must be defineAudit({ actions, resources })`,
      { path },
    );
  }
  const outbox = mod.outbox;
  if (outbox !== undefined && !isRecord(outbox)) {
    throw new DocketError(
      'CONFIG_INVALID',
      `\`outbox\` of ${path} must be an object ({ routes, sinks })`,
      { path },
    );
  }
  const tasks = mod.tasks;
  if (tasks !== undefined && !Array.isArray(tasks)) {
    throw new DocketError('CONFIG_INVALID', `\`tasks\` of ${path} must be an array of tasks`, {
      path,
    });
  }
  const triggers = mod.triggers;
  if (
    triggers !== undefined &&
    !(isRecord(triggers) && Object.values(triggers).every((h) => typeof h === 'function'))
  ) {
    throw new DocketError(
      'CONFIG_INVALID',
      `\`triggers\` of ${path} must be an object of trigger handlers by type`,
      { path },
    );
  }
  return {
    tasks: tasks as TaskDefinition[] | undefined,
    triggers: triggers as HandlersModule['triggers'],
    outbox: outbox as OutboxOptions | undefined,
    handlers: handlers as HandlersModule['handlers'],
    jobTypes: jobTypes as HandlersModule['jobTypes'],
    auditDefinition: auditDefinition as AuditDefinition | undefined,
  };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Opens a Docket from the environment, with the DOCKET_HANDLERS module when set. */
export async function openDocket(
  logger: Logger,
  extra: Omit<
    CreateDocketOptions<Record<string, unknown>>,
    'handlers' | 'jobTypes' | 'logger' | 'auditDefinition' | 'outbox' | 'scheduler' | 'triggers'
  > = {},
  env: NodeJS.ProcessEnv = process.env,
): Promise<Docket> {
  const mod = await loadHandlersModule(env.DOCKET_HANDLERS);
  return createDocketFromEnv({
    // The CLI and the service accept only job types something can run: built-ins plus the
    // DOCKET_HANDLERS module's (a job of an unknown type would wait forever).
    strictTypes: true,
    ...extra,
    logger,
    handlers: mod?.handlers as CreateDocketOptions<Record<string, unknown>>['handlers'],
    jobTypes: mod?.jobTypes,
    auditDefinition: mod?.auditDefinition,
    outbox: mod?.outbox,
    scheduler: mod?.tasks ? { tasks: mod.tasks } : undefined,
    triggers: mod?.triggers ? { handlers: mod.triggers } : undefined,
  });
}

/** Runs `fn` with a Docket from the environment and closes it afterwards. */
export async function withDocket<T>(
  fn: (docket: Docket, logger: Logger) => Promise<T>,
  extra: Parameters<typeof openDocket>[1] = {},
): Promise<T> {
  const logger = cliLogger();
  const docket = await openDocket(logger, { reapIntervalMs: 0, pruneIntervalMs: 0, ...extra });
  try {
    return await fn(docket, logger);
  } finally {
    await docket.close();
  }
}

/** Commander parser for integer options. */
export function intOption(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be an integer ${min}–${max}`);
    }
    return n;
  };
}

/** Reads an integer environment variable with a default; CONFIG_INVALID when malformed. */
export function intFromEnv(
  env: NodeJS.ProcessEnv,
  name: string,
  fallback: number,
  min = 0,
): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    throw new DocketError('CONFIG_INVALID', `${name} must be an integer >= ${min}`, {
      name,
      value: raw,
    });
  }
  return n;
}

/**
 * Resolves once `stop` has run after the first SIGINT or SIGTERM. The process exits 1 if
 * stopping outlives `deadlineMs`, and at once on a second signal.
 */
export function untilStopped(
  logger: Logger,
  deadlineMs: number,
  stop: () => Promise<void>,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let stoppingSince = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stoppingSince) {
        // One Ctrl-C often arrives twice (from the terminal and relayed by npm/tsx): only a
        // signal well after the first one means "exit now".
        if (Date.now() - stoppingSince < 2000) return;
        logger.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      stoppingSince = Date.now();
      say(`${signal} received: shutting down (deadline ${deadlineMs} ms)`);
      const timer = setTimeout(() => {
        logger.error({ deadlineMs }, 'shutdown deadline passed: exiting with jobs still running');
        process.exit(1);
      }, deadlineMs);
      timer.unref();
      stop().then(() => {
        clearTimeout(timer);
        say('stopped');
        resolve();
      }, reject);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
