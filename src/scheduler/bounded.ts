// Bounded concurrency for a scheduler pass: the round trips of many task runs overlap, at most
// `limit` at a time, without letting a later task's run start before an earlier one's.

/**
 * Prepares `items` with at most `limit` preparations in flight and calls `start` for each in
 * the items' order once its preparation is done: preparation overlaps, starting keeps the order.
 * `prepare` must not throw (it reports its own failures).
 */
export async function prepareConcurrentlyStartInOrder<T, R>(
  items: readonly T[],
  limit: number,
  prepare: (item: T) => Promise<R>,
  start: (item: T, prepared: R) => void,
): Promise<void> {
  const window: { item: T; ready: Promise<R> }[] = [];
  let next = 0;
  const fill = () => {
    while (next < items.length && window.length < limit) {
      const item = items[next++] as T;
      window.push({ item, ready: prepare(item) });
    }
  };
  fill();
  for (let head = window.shift(); head; head = window.shift()) {
    const prepared = await head.ready;
    fill();
    start(head.item, prepared);
  }
}

/** Runs `fn` for every item with at most `limit` calls in flight. `fn` must not throw. */
export async function forEachConcurrently<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}
