import { Command } from 'commander';
import { buildHttpApp } from '../http/index.js';
import { bootstrapFirstTenant } from './bootstrap.js';
import {
  cliLogger,
  intFromEnv,
  loadHandlersModule,
  openDocket,
  say,
  untilStopped,
} from './runtime.js';

/** Time a graceful shutdown may take before the process exits anyway, ms. */
const DEFAULT_SHUTDOWN_MS = 30_000;

/** `docket start`: HTTP API and workers in one process. */
export function startCommand(): Command {
  return new Command('start')
    .description(
      'run the service: HTTP API, a worker, the scheduler and, with outbox routes, a relay (DOCKET_HOST, DOCKET_PORT, DOCKET_CONCURRENCY, DOCKET_HANDLERS, DOCKET_RELAY)',
    )
    .action(async () => {
      const env = process.env;
      const logger = cliLogger(env);
      const host = env.DOCKET_HOST || '127.0.0.1';
      const port = intFromEnv(env, 'DOCKET_PORT', 8080);
      const concurrency = intFromEnv(env, 'DOCKET_CONCURRENCY', 10, 1);
      const shutdownMs = intFromEnv(env, 'DOCKET_SHUTDOWN_TIMEOUT_MS', DEFAULT_SHUTDOWN_MS, 1);

      const docket = await openDocket(logger);
      await docket.start();
      await bootstrapFirstTenant(docket, logger, env.DOCKET_BOOTSTRAP_API_KEY);
      const worker = docket.createWorker({ concurrency });
      await worker.start();
      // The DOCKET_HANDLERS module's outbox routes get a relay here (DOCKET_RELAY=0: none, for
      // a deployment that runs its relays elsewhere). The import is cached: same module.
      const mod = await loadHandlersModule(env.DOCKET_HANDLERS);
      const routes = mod?.outbox?.routes ?? [];
      const relay =
        routes.length > 0 && env.DOCKET_RELAY !== '0'
          ? await docket.outbox.createRelay()
          : undefined;
      await relay?.start();
      const app = buildHttpApp({
        docket,
        logger,
        operatorSecret: env.DOCKET_OPERATOR_SECRET || undefined,
        trustedProxies: (env.DOCKET_TRUSTED_PROXIES ?? '')
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean),
      });
      const address = await app.listen({ host, port });
      logger.info(
        { address, worker: worker.id, concurrency, relay: relay !== undefined },
        'docket started',
      );
      say(`Docket is listening on ${address} (worker ${worker.id}, concurrency ${concurrency})`);
      if (relay) say(`Outbox relay running for ${routes.length} route(s)`);
      // docket.start() started the scheduler for the module's tasks.
      if (mod?.tasks?.length) say(`Scheduler running ${mod.tasks.length} task(s)`);
      say(`OpenAPI document: ${address}/v1/openapi.json`);

      await untilStopped(logger, shutdownMs + 5_000, async () => {
        // Stop taking requests and claiming jobs together; running jobs get the deadline.
        await Promise.all([app.close(), worker.stop({ deadlineMs: shutdownMs }), relay?.stop()]);
        await docket.close();
      });
    });
}
