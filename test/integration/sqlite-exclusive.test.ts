// The SQLite store's exclusive(): synchronous work on the raw connection runs at once when no
// transaction is open, and waits for an open one (an application's withTransaction awaiting
// between statements) instead of running inside it. Real SQLite file per run, removed after.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/logger.js';
import { openSqliteStore } from '../../src/store/sqlite.js';

const dir = mkdtempSync(join(tmpdir(), 'docket-sqlite-exclusive-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('SQLite exclusive()', () => {
  it('runs at once outside a transaction and after an open transaction, never inside it', async () => {
    const store = await openSqliteStore(
      { dialect: 'sqlite', path: join(dir, 'x.sqlite') },
      silentLogger(),
    );
    try {
      store.raw.exec('create table t (v text)');
      // No transaction open: the work has run before exclusive() returns its promise.
      let ran = false;
      const p = store.exclusive((raw) => {
        ran = true;
        return raw.prepare('select count(*) as n from t').get() as { n: number };
      });
      expect(ran).toBe(true);
      expect((await p).n).toBe(0);

      let release: () => void = () => undefined;
      const held = new Promise<void>((r) => (release = r));
      const order: string[] = [];
      const tx = store.withSystemTransaction(async (trx) => {
        await sql`insert into t (v) values ('tx')`.execute(trx);
        order.push('tx wrote');
        await held;
        throw new Error('roll back');
      });
      await expect.poll(() => order.length).toBe(1);
      const outside = store.exclusive((raw) => {
        order.push(`outside saw ${store.raw.inTransaction ? 'a transaction' : 'none'}`);
        raw.prepare("insert into t (v) values ('outside')").run();
      });
      await new Promise((r) => setTimeout(r, 20));
      expect(order).toEqual(['tx wrote']);
      release();
      await expect(tx).rejects.toThrow('roll back');
      await outside;
      expect(order).toEqual(['tx wrote', 'outside saw none']);
      // The rolled-back transaction took only its own row with it.
      expect(store.raw.prepare('select v from t').all()).toEqual([{ v: 'outside' }]);
      // Errors still reject (and a lock error would be STORE_UNAVAILABLE).
      await expect(
        store.exclusive((raw) => raw.prepare('select nope from t').get()),
      ).rejects.toThrow('no such column');
    } finally {
      await store.close();
    }
  });
});
