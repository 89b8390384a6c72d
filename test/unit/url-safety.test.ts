// Webhook URL safety (SPEC O-7), table-driven: schemes, credentials, every spelling of a
// non-public IP literal the URL parser accepts, and names whose DNS answers are non-public.
// DNS answers come from an injected resolver (a fake standing in for DNS servers we cannot
// run here); the real resolver is exercised by the webhook request tests (localhost).
import { describe, expect, it } from 'vitest';
import {
  checkWebhookUrl,
  nonPublicReason,
  resolveWebhookAddresses,
  type ResolveAll,
} from '../../src/outbox/url-safety.js';

const refused = (fn: () => unknown) =>
  expect(fn).toThrowError(expect.objectContaining({ code: 'WEBHOOK_URL_REFUSED' }) as Error);

describe('checkWebhookUrl (no DNS)', () => {
  const bad: Array<[string, string]> = [
    ['ftp://example.com/hook', 'scheme'],
    ['file:///etc/passwd', 'scheme'],
    ['gopher://example.com/', 'scheme'],
    ['javascript:alert(1)', 'scheme'],
    ['//example.com/hook', 'absolute'],
    ['not a url', 'absolute'],
    ['http://user:pass@example.com/', 'credentials'],
    ['http://example.com@127.0.0.1/', 'credentials'], // userinfo trick: the host is 127.0.0.1
    ['http://127.0.0.1/', 'loopback'],
    ['http://127.1/', 'loopback'],
    ['http://2130706433/', 'loopback'], // decimal
    ['http://0x7f000001/', 'loopback'], // hex
    ['http://0x7f.1/', 'loopback'],
    ['http://0177.0.0.1/', 'loopback'], // octal
    ['http://017700000001/', 'loopback'],
    ['http://127.000.000.001/', 'loopback'],
    ['http://0.0.0.0/', 'unspecified'],
    ['http://0/', 'unspecified'],
    ['http://10.0.0.1/', 'private'],
    ['http://172.16.5.4/', 'private'],
    ['http://192.168.1.1:8080/', 'private'],
    ['http://169.254.169.254/latest/meta-data/', 'linkLocal'], // cloud metadata
    ['http://100.100.100.200/', 'carrierGradeNat'], // Alibaba metadata, CGNAT
    ['http://100.64.0.1/', 'carrierGradeNat'],
    ['http://192.0.0.192/', 'reserved'], // Oracle metadata
    ['http://224.0.0.1/', 'multicast'],
    ['http://255.255.255.255/', 'broadcast'],
    ['http://198.18.0.1/', 'reserved'],
    ['http://[::1]/', 'loopback'],
    ['http://[::]/', 'unspecified'],
    ['http://[fe80::1]/', 'linkLocal'],
    ['http://[fc00::1]/', 'uniqueLocal'],
    ['http://[fd00:ec2::254]/', 'uniqueLocal'], // AWS metadata over IPv6
    ['http://[::ffff:127.0.0.1]/', 'IPv4-mapped loopback'],
    ['http://[::ffff:7f00:1]/', 'IPv4-mapped loopback'],
    ['http://[::ffff:169.254.169.254]/', 'IPv4-mapped linkLocal'],
    ['http://[::ffff:10.0.0.1]/', 'IPv4-mapped private'],
    ['http://[2002:7f00:1::1]/', '6to4'],
    ['http://[64:ff9b::7f00:1]/', 'rfc6052'],
    ['http://[2001:db8::1]/', 'reserved'],
    ['http://[ff02::1]/', 'multicast'],
  ];
  it.each(bad)('refuses %s (%s)', (url, reason) => {
    try {
      checkWebhookUrl(url);
      expect.unreachable(`${url} was accepted`);
    } catch (err) {
      expect(err).toMatchObject({ code: 'WEBHOOK_URL_REFUSED' });
      expect(String((err as Error).message)).toContain(reason);
    }
  });

  const good = [
    'https://example.com/hook',
    'http://example.com:8080/a?b=c',
    'https://93.184.216.34/',
    'http://[2606:4700:4700::1111]/',
    'http://[::ffff:8.8.8.8]/',
    'https://EXAMPLE.com./x', // hostnames are checked after DNS
    'http://localhost/', // a hostname: refused after DNS (see below), not here
  ];
  it.each(good)('accepts %s before DNS', (url) => {
    expect(checkWebhookUrl(url)).toBeInstanceOf(URL);
  });

  it('lets the allowlist admit an address, a range, but not a neighbour', () => {
    expect(checkWebhookUrl('http://127.0.0.1:9/', { allow: ['127.0.0.1'] }).port).toBe('9');
    expect(checkWebhookUrl('http://10.1.2.3/', { allow: ['10.0.0.0/8'] })).toBeInstanceOf(URL);
    expect(checkWebhookUrl('http://[::1]/', { allow: ['::1'] })).toBeInstanceOf(URL);
    // IPv4-mapped spellings match the IPv4 entry.
    expect(checkWebhookUrl('http://[::ffff:127.0.0.1]/', { allow: ['127.0.0.1'] })).toBeInstanceOf(
      URL,
    );
    refused(() => checkWebhookUrl('http://127.0.0.2/', { allow: ['127.0.0.1'] }));
    refused(() => checkWebhookUrl('http://192.168.0.1/', { allow: ['10.0.0.0/8'] }));
    // A hostname entry never admits an IP literal.
    refused(() => checkWebhookUrl('http://127.0.0.1/', { allow: ['localhost'] }));
  });

  it('never echoes credentials in the error', () => {
    try {
      checkWebhookUrl('http://admin:hunter2@example.com/');
    } catch (err) {
      expect(JSON.stringify((err as { details: unknown }).details)).not.toContain('hunter2');
    }
  });
});

describe('nonPublicReason', () => {
  it('counts only unicast as public', () => {
    expect(nonPublicReason('8.8.8.8')).toBeUndefined();
    expect(nonPublicReason('2606:4700::1111')).toBeUndefined();
    expect(nonPublicReason('::ffff:8.8.8.8')).toBeUndefined();
    expect(nonPublicReason('127.0.0.1')).toBe('loopback');
    expect(nonPublicReason('nonsense')).toBe('not an IP address');
  });
});

describe('resolveWebhookAddresses (after DNS)', () => {
  const fakeDns =
    (table: Record<string, string[]>): ResolveAll =>
    async (host) => {
      const list = table[host];
      if (!list) throw Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
      return list.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
    };
  const dns = fakeDns({
    'public.test': ['93.184.216.34', '2606:2800:220:1::1'],
    'rebind.test': ['127.0.0.1'],
    'mixed.test': ['93.184.216.34', '10.0.0.7'],
    'metadata.test': ['169.254.169.254'],
    'mapped.test': ['::ffff:192.168.0.1'],
    'ula.test': ['fd12:3456::1'],
    localhost: ['127.0.0.1', '::1'],
  });
  const resolve = (url: string, allow: string[] = []) =>
    resolveWebhookAddresses(new URL(url), { allow }, dns);

  it('returns the addresses of a public name', async () => {
    expect((await resolve('https://public.test/')).map((a) => a.address)).toEqual([
      '93.184.216.34',
      '2606:2800:220:1::1',
    ]);
  });

  it.each([
    ['http://rebind.test/', '127.0.0.1'],
    ['http://mixed.test/', '10.0.0.7'], // one private answer among public ones refuses
    ['http://metadata.test/', '169.254.169.254'],
    ['http://mapped.test/', '::ffff:192.168.0.1'],
    ['http://ula.test/', 'fd12:3456::1'],
    ['http://localhost:8080/', '127.0.0.1'],
  ])('refuses %s (resolves to %s)', async (url, address) => {
    await expect(resolve(url)).rejects.toMatchObject({
      code: 'WEBHOOK_URL_REFUSED',
      details: { address },
    });
  });

  it('refuses a name that does not resolve', async () => {
    await expect(resolve('http://nxdomain.test/')).rejects.toMatchObject({
      code: 'WEBHOOK_URL_REFUSED',
      message: expect.stringContaining('ENOTFOUND'),
    });
  });

  it('admits an allowed hostname or an allowed answer', async () => {
    expect(await resolve('http://localhost/', ['localhost'])).toHaveLength(2);
    expect(await resolve('http://rebind.test/', ['127.0.0.0/8'])).toHaveLength(1);
    await expect(resolve('http://mixed.test/', ['127.0.0.0/8'])).rejects.toMatchObject({
      code: 'WEBHOOK_URL_REFUSED',
    });
  });
});
