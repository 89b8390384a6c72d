// The connection a broker sink keeps: opened by the first publish, shared by every publish
// while it lives, and opened anew by the next publish once it failed to open or was lost.

/** One lazily opened, replaceable connection of a sink. */
export class BrokerConnection<T> {
  private current: Promise<T> | undefined;
  private closed = false;

  /**
   * `open` makes a connection; it receives `lost`, to call when that connection dies, so the
   * next `get()` opens another. `what` names the sink in the error after `close()`.
   */
  constructor(
    private readonly open: (lost: () => void) => Promise<T>,
    private readonly what: string,
  ) {}

  /** The live connection, opening one if there is none. */
  get(): Promise<T> {
    if (this.closed) return Promise.reject(new Error(`the ${this.what} sink is closed`));
    if (this.current) return this.current;
    const attempt: Promise<T> = this.open(() => {
      if (this.current === attempt) this.current = undefined;
    });
    this.current = attempt;
    attempt.catch(() => {
      if (this.current === attempt) this.current = undefined;
    });
    return attempt;
  }

  /** Refuses further publishes and hands the open connection, if any, to `shut`. */
  async close(shut: (connection: T) => Promise<void>): Promise<void> {
    this.closed = true;
    const c = this.current;
    this.current = undefined;
    const connection = await c?.catch(() => undefined);
    if (connection !== undefined) await shut(connection);
  }
}
