import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/core/errors.js';

const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');

describe('docs/errors.md', () => {
  for (const [code, status] of Object.entries(ERROR_CODES)) {
    it(`documents ${code} with HTTP status ${status}`, () => {
      expect(doc).toMatch(new RegExp(`^\\|\\s*\`${code}\`\\s*\\|\\s*${status}\\s*\\|`, 'm'));
    });
  }

  it('documents no code that does not exist', () => {
    const documented = [...doc.matchAll(/^\|\s*`([A-Z_]+)`\s*\|/gm)].map((m) => m[1]);
    expect(documented.filter((c) => !(c! in ERROR_CODES))).toEqual([]);
  });
});
