/** Source of the current time in epoch milliseconds; injected so tests control time. */
export interface Clock {
  /** Current time in epoch milliseconds. */
  now(): number;
}

/** Wall-clock time. */
export const systemClock: Clock = { now: () => Date.now() };

/** A clock tests move by hand. */
export class ManualClock implements Clock {
  constructor(private current: number = Date.now()) {}
  /** Current manual time. */
  now(): number {
    return this.current;
  }
  /** Moves time forward by `ms`. */
  advance(ms: number): void {
    this.current += ms;
  }
  /** Sets the time to `ms`. */
  set(ms: number): void {
    this.current = ms;
  }
}
