import { v7 as uuidv7 } from 'uuid';

/** Generates time-sortable identifiers (UUIDv7), injectable so tests can control them. */
export interface IdGenerator {
  /** A new unique, time-sortable id. */
  next(): string;
}

/** The default id generator: UUIDv7. */
export const uuidV7Generator: IdGenerator = { next: () => uuidv7() };

/** True when `value` looks like a UUID (any version). */
export function isUuid(value: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value);
}
