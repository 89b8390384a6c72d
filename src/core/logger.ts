import { pino, type Logger } from 'pino';

export type { Logger };

/** Creates Docket's structured JSON logger. */
export function createLogger(level: string = process.env.DOCKET_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name: 'docket', level });
}

/** A logger that discards everything (for tests and quiet library use). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
