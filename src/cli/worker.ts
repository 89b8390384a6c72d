import { Command } from 'commander';
import { cliLogger, intFromEnv, openDocket, say, untilStopped } from './runtime.js';

/** `docket worker`: workers only, no HTTP API. */
export function workerCommand(): Command {
  return new Command('worker')
    .description('run workers only (DOCKET_CONCURRENCY, DOCKET_HANDLERS)')
    .option('--queues <names>', 'comma-separated queues to work (default all)')
    .action(async (opts: { queues?: string }) => {
      const env = process.env;
      const logger = cliLogger(env);
      const concurrency = intFromEnv(env, 'DOCKET_CONCURRENCY', 10, 1);
      const shutdownMs = intFromEnv(env, 'DOCKET_SHUTDOWN_TIMEOUT_MS', 30_000, 1);
      const docket = await openDocket(logger);
      await docket.start();
      const worker = docket.createWorker({
        concurrency,
        queues: opts.queues ? opts.queues.split(',').filter(Boolean) : undefined,
      });
      await worker.start();
      logger.info({ worker: worker.id, concurrency }, 'worker started');
      say(`Docket worker ${worker.id} running (concurrency ${concurrency})`);
      await untilStopped(logger, shutdownMs + 5_000, async () => {
        await worker.stop({ deadlineMs: shutdownMs });
        await docket.close();
      });
    });
}
