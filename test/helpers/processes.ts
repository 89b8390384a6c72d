import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('./worker-process.ts', import.meta.url));
const relayScript = fileURLToPath(new URL('./relay-process.ts', import.meta.url));
const schedulerScript = fileURLToPath(new URL('./scheduler-process.ts', import.meta.url));
const triggerScript = fileURLToPath(new URL('./trigger-process.ts', import.meta.url));
const root = fileURLToPath(new URL('../..', import.meta.url));

/** A child worker process and a promise of its exit. */
export interface WorkerProcess {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output: () => string;
}

/** Spawns test/helpers/worker-process.ts with `env` and waits until it prints "ready". */
export function spawnWorker(env: Record<string, string>): Promise<WorkerProcess> {
  return spawnReady(script, env);
}

/** Spawns test/helpers/relay-process.ts (an outbox relay) and waits until it prints "ready". */
export function spawnRelay(env: Record<string, string>): Promise<WorkerProcess> {
  return spawnReady(relayScript, env);
}

/** Spawns test/helpers/scheduler-process.ts (a scheduler instance) and waits until it prints "ready". */
export function spawnScheduler(env: Record<string, string>): Promise<WorkerProcess> {
  return spawnReady(schedulerScript, env);
}

/** Spawns test/helpers/trigger-process.ts (schedules and fires triggers) and waits until it prints "ready". */
export function spawnTriggerProcess(env: Record<string, string>): Promise<WorkerProcess> {
  return spawnReady(triggerScript, env);
}

async function spawnReady(file: string, env: Record<string, string>): Promise<WorkerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', file], {
    cwd: root,
    env: { ...process.env, ...env, DOCKET_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const deadline = Date.now() + 30_000;
  while (!out.includes('ready')) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`worker exited early: ${out}`);
    if (Date.now() > deadline) throw new Error(`worker not ready: ${out}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { child, exited, output: () => out };
}
