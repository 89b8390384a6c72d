/** The lifecycle every background loop (reaper, pruner, worker) implements. */
export interface Service {
  /** Starts the loop; does I/O. */
  start(): Promise<void>;
  /** Stops the loop and waits for the current pass to finish. */
  stop(): Promise<void>;
  /** Runs one pass now; tests call this directly. */
  runOnce(): Promise<unknown>;
}

/** Runs `pass` every `intervalMs` until stopped; a failed pass is reported and the loop goes on. */
export class IntervalService implements Service {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = true;

  constructor(
    private readonly intervalMs: number,
    private readonly pass: () => Promise<unknown>,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Starts ticking; the first pass runs immediately. */
  async start(): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule(0);
  }

  private schedule(delay: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.runOnce()
        .catch(this.onError)
        .finally(() => {
          this.running = undefined;
          this.schedule(this.intervalMs);
        });
    }, delay);
    this.timer.unref();
  }

  /** Stops ticking and waits for an in-progress pass. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** Runs the pass once. */
  runOnce(): Promise<unknown> {
    return this.pass();
  }
}
