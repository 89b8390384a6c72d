import { v7 as uuidv7 } from 'uuid';
import { randomPooled } from './random.js';

/** Generates time-sortable identifiers (UUIDv7), injectable so tests can control them. */
export interface IdGenerator {
  /** A new unique, time-sortable id. */
  next(): string;
}

/** Millisecond and counter of the last UUIDv7 made from one sequence. */
export interface V7Sequence {
  msecs: number;
  seq: number;
}

/**
 * A UUIDv7 for time `msecs` that sorts after every earlier id of the same sequence made in
 * the same millisecond: the 31-bit counter starts at a random value each millisecond and
 * counts up within it (the layout of uuid's own v7). Random bits come from the pooled source.
 */
export function uuidV7At(msecs: number, state: V7Sequence): string {
  const random = randomPooled(16);
  if (msecs === state.msecs && state.seq < 0x7fffffff) {
    state.seq += 1;
  } else {
    state.msecs = msecs;
    state.seq = (((random[6] as number) & 0x3f) << 24) | ((random[7] as number) << 16);
  }
  return uuidv7({ random, msecs, seq: state.seq });
}

const defaultSequence: V7Sequence = { msecs: -1, seq: 0 };

/** The default id generator: UUIDv7, monotonic within this process even if the clock steps back. */
export const uuidV7Generator: IdGenerator = {
  next: () => uuidV7At(Math.max(Date.now(), defaultSequence.msecs), defaultSequence),
};

/** True when `value` looks like a UUID (any version). */
export function isUuid(value: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value);
}
