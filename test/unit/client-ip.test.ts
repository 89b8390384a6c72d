import { isIP } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  createClientIpResolver,
  validateTrustedProxies,
  type RequestHeaders,
} from '../../src/audit/client-ip.js';
import { DocketError } from '../../src/core/errors.js';

const TRUSTED = ['loopback', '10.0.0.0/8', 'fd00::/8'];
const resolveClientIp = createClientIpResolver(TRUSTED);

interface ResolveCase {
  name: string;
  peer: string | undefined;
  headers: RequestHeaders;
  expected: string | undefined;
}

const cases: ResolveCase[] = [
  // An untrusted peer speaks only for itself.
  {
    name: 'spoofed Forwarded, X-Forwarded-For and X-Real-IP from an untrusted peer are ignored',
    peer: '203.0.113.5',
    headers: {
      forwarded: 'for=6.6.6.6',
      'x-forwarded-for': '6.6.6.6',
      'x-real-ip': '6.6.6.6',
    },
    expected: '203.0.113.5',
  },
  {
    name: 'an untrusted peer without headers is the client',
    peer: '203.0.113.5',
    headers: {},
    expected: '203.0.113.5',
  },
  {
    name: 'a fc00::/7 peer outside the trusted fd00::/8 range is not trusted',
    peer: 'fc00::1',
    headers: { 'x-forwarded-for': '6.6.6.6' },
    expected: 'fc00::1',
  },
  {
    name: 'a missing peer yields no client IP even when headers are present',
    peer: undefined,
    headers: { 'x-forwarded-for': '198.51.100.7' },
    expected: undefined,
  },
  {
    name: 'a peer that is not an IP yields no client IP',
    peer: 'localhost',
    headers: {},
    expected: undefined,
  },

  // Peer normalization.
  {
    name: 'an IPv4-mapped IPv6 peer is recorded as IPv4',
    peer: '::ffff:203.0.113.5',
    headers: {},
    expected: '203.0.113.5',
  },
  {
    name: 'an IPv4-mapped loopback peer is trusted as loopback',
    peer: '::ffff:127.0.0.1',
    headers: { 'x-forwarded-for': '198.51.100.7' },
    expected: '198.51.100.7',
  },
  {
    name: 'a bracketed IPv6 peer with a port is recorded bare and lowercase',
    peer: '[2001:DB8::1]:443',
    headers: {},
    expected: '2001:db8::1',
  },
  {
    name: 'an IPv4 peer with a port is recorded without the port',
    peer: '203.0.113.9:1234',
    headers: {},
    expected: '203.0.113.9',
  },

  // X-Forwarded-For chains.
  {
    name: 'behind loopback, the spoofed leftmost XFF value and a trusted internal proxy are skipped',
    peer: '127.0.0.1',
    headers: { 'x-forwarded-for': '6.6.6.6, 198.51.100.7, 10.1.2.3' },
    expected: '198.51.100.7',
  },
  {
    name: 'a peer in the trusted 10.0.0.0/8 range may forward',
    peer: '10.20.30.40',
    headers: { 'x-forwarded-for': '198.51.100.7' },
    expected: '198.51.100.7',
  },
  {
    name: 'a peer in the trusted fd00::/8 range may forward',
    peer: 'fd12:3456::1',
    headers: { 'x-forwarded-for': '2001:DB8::7' },
    expected: '2001:db8::7',
  },
  {
    name: 'when every XFF hop is trusted the leftmost hop is the client',
    peer: '127.0.0.1',
    headers: { 'x-forwarded-for': '10.0.0.5, 10.0.0.6' },
    expected: '10.0.0.5',
  },
  {
    name: 'multiple X-Forwarded-For instances are concatenated in order',
    peer: '127.0.0.1',
    headers: { 'x-forwarded-for': ['6.6.6.6', '198.51.100.7, 10.0.0.2'] },
    expected: '198.51.100.7',
  },
  {
    name: 'a garbage XFF hop stops the walk at the last verified proxy',
    peer: '127.0.0.1',
    headers: { 'x-forwarded-for': '198.51.100.7, not-an-ip, 10.0.0.3' },
    expected: '10.0.0.3',
  },
  {
    name: 'an XFF hop with a port is recorded without the port',
    peer: '127.0.0.1',
    headers: { 'x-forwarded-for': '203.0.113.9:1234' },
    expected: '203.0.113.9',
  },
  {
    name: 'header names are matched case-insensitively',
    peer: '127.0.0.1',
    headers: { 'X-Forwarded-For': '198.51.100.7' },
    expected: '198.51.100.7',
  },

  // Forwarded (RFC 7239).
  {
    name: 'Forwarded with a quoted bracketed IPv6 and port yields the bare lowercase IPv6',
    peer: '127.0.0.1',
    headers: { forwarded: 'for="[2001:DB8:cafe::17]:4711"' },
    expected: '2001:db8:cafe::17',
  },
  {
    name: 'Forwarded with a quoted IPv4 and port yields the IPv4',
    peer: '127.0.0.1',
    headers: { forwarded: 'for="198.51.100.7:8080"' },
    expected: '198.51.100.7',
  },
  {
    name: 'Forwarded with an obfuscated port yields the IPv4',
    peer: '127.0.0.1',
    headers: { forwarded: 'for="198.51.100.7:_port1"' },
    expected: '198.51.100.7',
  },
  {
    name: 'Forwarded parameter names are case-insensitive',
    peer: '127.0.0.1',
    headers: { forwarded: 'Proto=https;For=198.51.100.7;BY=10.0.0.1' },
    expected: '198.51.100.7',
  },
  {
    name: 'Forwarded quoted-string escapes are unescaped',
    peer: '127.0.0.1',
    headers: { forwarded: 'for="198.51.100.\\7"' },
    expected: '198.51.100.7',
  },
  {
    name: 'Forwarded elements are walked from the right, skipping trusted proxies',
    peer: '127.0.0.1',
    headers: { forwarded: 'for=6.6.6.6, for=198.51.100.7;proto=https, for=10.0.0.9' },
    expected: '198.51.100.7',
  },
  {
    name: 'multiple Forwarded instances are concatenated in order',
    peer: '127.0.0.1',
    headers: { forwarded: ['for=6.6.6.6', 'for=198.51.100.7;proto=https', 'for=10.0.0.9'] },
    expected: '198.51.100.7',
  },
  {
    name: 'when every Forwarded hop is trusted the leftmost hop is the client',
    peer: '127.0.0.1',
    headers: { forwarded: 'for=10.0.0.1, for="[fd00::2]"' },
    expected: '10.0.0.1',
  },
  {
    name: 'an unknown Forwarded hop stops the walk at the last verified proxy',
    peer: '127.0.0.1',
    headers: { forwarded: 'for=6.6.6.6, for=unknown, for=10.0.0.9' },
    expected: '10.0.0.9',
  },
  {
    name: 'an obfuscated _hidden Forwarded hop next to the peer leaves the peer as the client',
    peer: '127.0.0.1',
    headers: { forwarded: 'for=6.6.6.6, for="_hidden"' },
    expected: '127.0.0.1',
  },
  {
    name: 'a Forwarded element without for= is an unusable hop',
    peer: '127.0.0.1',
    headers: { forwarded: 'for=6.6.6.6, proto=https' },
    expected: '127.0.0.1',
  },
  {
    name: 'an empty quoted for= value is an unusable hop',
    peer: '127.0.0.1',
    headers: { forwarded: 'for=""' },
    expected: '127.0.0.1',
  },
  {
    name: 'empty Forwarded list elements are ignored',
    peer: '127.0.0.1',
    headers: { forwarded: ', for=198.51.100.7 ,, ' },
    expected: '198.51.100.7',
  },
  {
    name: 'an unterminated quote breaks Forwarded and falls back to the peer, not to XFF',
    peer: '127.0.0.1',
    headers: { forwarded: 'for="198.51.100.7', 'x-forwarded-for': '6.6.6.6' },
    expected: '127.0.0.1',
  },
  {
    name: 'an unquoted bracketed IPv6 breaks Forwarded and falls back to the peer',
    peer: '127.0.0.1',
    headers: { forwarded: 'for=[2001:db8::1]' },
    expected: '127.0.0.1',
  },
  {
    name: 'a repeated parameter within one element breaks Forwarded',
    peer: '127.0.0.1',
    headers: { forwarded: 'for=6.6.6.6;for=198.51.100.7' },
    expected: '127.0.0.1',
  },
  {
    name: 'a garbage Forwarded header falls back to the peer',
    peer: '127.0.0.1',
    headers: { forwarded: '<script>alert(1)</script>' },
    expected: '127.0.0.1',
  },

  // X-Real-IP and precedence.
  {
    name: 'X-Real-IP from a trusted peer is the client',
    peer: '127.0.0.1',
    headers: { 'x-real-ip': '198.51.100.7' },
    expected: '198.51.100.7',
  },
  {
    name: 'X-Real-IP with brackets and a port is recorded bare',
    peer: '127.0.0.1',
    headers: { 'x-real-ip': '[2001:db8::9]:8443' },
    expected: '2001:db8::9',
  },
  {
    name: 'an invalid X-Real-IP falls back to the peer',
    peer: '127.0.0.1',
    headers: { 'x-real-ip': 'example.com' },
    expected: '127.0.0.1',
  },
  {
    name: 'repeated X-Real-IP instances are not a single address and fall back to the peer',
    peer: '127.0.0.1',
    headers: { 'x-real-ip': ['198.51.100.7', '198.51.100.8'] },
    expected: '127.0.0.1',
  },
  {
    name: 'Forwarded takes precedence over X-Forwarded-For and X-Real-IP',
    peer: '127.0.0.1',
    headers: {
      forwarded: 'for=198.51.100.1',
      'x-forwarded-for': '198.51.100.2',
      'x-real-ip': '198.51.100.3',
    },
    expected: '198.51.100.1',
  },
  {
    name: 'X-Forwarded-For takes precedence over X-Real-IP',
    peer: '127.0.0.1',
    headers: { 'x-forwarded-for': '198.51.100.2', 'x-real-ip': '198.51.100.3' },
    expected: '198.51.100.2',
  },
  {
    name: 'a blank Forwarded header counts as absent',
    peer: '127.0.0.1',
    headers: { forwarded: '  ', 'x-forwarded-for': '198.51.100.2' },
    expected: '198.51.100.2',
  },
];

describe('createClientIpResolver', () => {
  for (const c of cases) {
    it(c.name, () => {
      expect(resolveClientIp(c.peer, c.headers)).toBe(c.expected);
    });
  }

  it('an empty trusted proxy list ignores headers from every peer', () => {
    const resolve = createClientIpResolver([]);
    expect(resolve('127.0.0.1', { 'x-forwarded-for': '198.51.100.7' })).toBe('127.0.0.1');
  });

  it('rejects an invalid trusted proxy list at construction', () => {
    expect(() => createClientIpResolver(['10/8'])).toThrow(DocketError);
  });
});

describe('validateTrustedProxies', () => {
  it('accepts IPs, CIDRs, netmasks and the named ranges', () => {
    expect(() =>
      validateTrustedProxies([
        'loopback',
        'linklocal',
        'uniquelocal',
        '192.0.2.1',
        '10.0.0.0/8',
        '10.0.0.0/255.0.0.0',
        '2001:db8::1',
        'fd00::/8',
      ]),
    ).not.toThrow();
  });

  const invalid = [
    'not-an-ip',
    '10/8',
    '0x7f.1',
    '10.0.0.0/33',
    '10.0.0.0/0',
    '::1/129',
    'LOOPBACK',
    '',
  ];
  for (const entry of invalid) {
    it(`rejects ${JSON.stringify(entry)} with CONFIG_INVALID naming the entry`, () => {
      let caught: unknown;
      try {
        validateTrustedProxies(['loopback', entry]);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(DocketError);
      const error = caught as DocketError;
      expect(error.code).toBe('CONFIG_INVALID');
      expect(error.message).toContain(JSON.stringify(entry));
      expect(error.details).toEqual({ entry, index: 1 });
    });
  }
});

describe('client IP properties', () => {
  // Fragments of real header syntax so generated values reach deep into the parsers.
  const fragment = fc.constantFrom(
    'for=',
    'For=',
    'proto=https',
    '"',
    '\\',
    '[',
    ']',
    ':',
    ';',
    ',',
    ' ',
    '=',
    '_hidden',
    'unknown',
    '10.0.0.1',
    '127.0.0.1',
    '198.51.100.7',
    '2001:DB8::1',
    'fd00::1',
    '::ffff:',
    '4711',
    'garbage',
  );
  const headerText = fc.oneof(
    fc.string({ unit: 'binary' }),
    fc.array(fragment, { maxLength: 12 }).map((parts) => parts.join('')),
  );
  const headerField = fc.option(fc.oneof(headerText, fc.array(headerText, { maxLength: 3 })), {
    nil: undefined,
  });
  const headers = fc.record({
    forwarded: headerField,
    'x-forwarded-for': headerField,
    'x-real-ip': headerField,
  });

  it('never throws and returns either the peer or a valid IP', () => {
    const peer = fc.constantFrom('127.0.0.1', '10.1.2.3', 'fd00::5', '203.0.113.5', '2001:db8::2');
    fc.assert(
      fc.property(peer, headers, (p, h) => {
        const result = resolveClientIp(p, h);
        expect(result === p || (result !== undefined && isIP(result) !== 0)).toBe(true);
      }),
    );
  });

  it('an untrusted peer is always the client whatever the headers say', () => {
    const peer = fc.constantFrom('203.0.113.5', '2001:db8::2', '192.168.1.1');
    fc.assert(
      fc.property(peer, headers, (p, h) => {
        expect(resolveClientIp(p, h)).toBe(p);
      }),
    );
  });
});
