// Webhook URL safety (SPEC O-7): a webhook target must be http/https and reach only public
// addresses. The check runs on the addresses DNS returned, inside the connection's own lookup,
// so the socket connects to exactly the address that was checked: there is no second
// resolution an attacker's DNS could answer differently (DNS rebinding).
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';
import { DocketError } from '../core/errors.js';

/** Options of the webhook URL check. */
export interface UrlSafetyOptions {
  /**
   * Explicit exceptions for development and tests: a hostname (`localhost`, matched exactly,
   * case-insensitively) or an address or CIDR range (`127.0.0.1`, `10.0.0.0/8`, `::1`). Empty
   * by default: only public addresses.
   */
  allow?: readonly string[];
}

/** A DNS lookup of every address of a host (node:dns `lookup` with `all: true` by default). */
export type ResolveAll = (hostname: string) => Promise<LookupAddress[]>;

const defaultResolveAll: ResolveAll = (hostname) =>
  new Promise((resolve, reject) =>
    dnsLookup(hostname, { all: true, verbatim: true }, (err, addresses) =>
      err ? reject(err) : resolve(addresses),
    ),
  );

type Parsed = ipaddr.IPv4 | ipaddr.IPv6;

/**
 * Why an address is not public, or undefined when it is. Only the `unicast` range counts as
 * public: loopback, private (RFC 1918), link-local (which holds the 169.254.169.254 metadata
 * service), CGNAT (100.64/10, Alibaba's metadata 100.100.100.200), multicast, broadcast,
 * unspecified, reserved and documentation ranges, IPv6 unique-local (fd00:ec2::254 is AWS's
 * metadata service over IPv6) and link-local, and the IPv6 forms that embed an IPv4 address
 * (IPv4-mapped, 6to4, Teredo, NAT64) are refused; an IPv4-mapped address is judged by the IPv4
 * address inside it.
 */
export function nonPublicReason(address: string): string | undefined {
  let ip: Parsed;
  try {
    ip = ipaddr.parse(address);
  } catch {
    return 'not an IP address';
  }
  if (ip.kind() === 'ipv6') {
    const v6 = ip as ipaddr.IPv6;
    if (v6.isIPv4MappedAddress()) {
      const inner = nonPublicReason(v6.toIPv4Address().toString());
      return inner && `IPv4-mapped ${inner}`;
    }
  }
  const range = ip.range();
  return range === 'unicast' ? undefined : range;
}

function allowedAddress(address: string, allow: readonly string[]): boolean {
  let ip: Parsed;
  try {
    ip = ipaddr.process(address);
  } catch {
    return false;
  }
  for (const entry of allow) {
    if (entry.includes('/')) {
      try {
        const [net, bits] = ipaddr.parseCIDR(entry);
        if (net.kind() === ip.kind() && ip.match([net, bits] as never)) return true;
      } catch {
        continue;
      }
    } else if (ipaddr.isValid(entry)) {
      if (ipaddr.process(entry).toString() === ip.toString()) return true;
    }
  }
  return false;
}

function allowedHost(hostname: string, allow: readonly string[]): boolean {
  const h = hostname.toLowerCase();
  return allow.some((e) => !e.includes('/') && !ipaddr.isValid(e) && e.toLowerCase() === h);
}

function refuse(url: string, reason: string, details: Record<string, unknown> = {}): DocketError {
  return new DocketError('WEBHOOK_URL_REFUSED', `webhook URL refused: ${reason}`, {
    url: redactUserinfo(url),
    reason,
    ...details,
  });
}

function redactUserinfo(raw: string): string {
  return raw.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i, '$1***@');
}

/** The hostname of a URL without IPv6 brackets. */
function bareHost(url: URL): string {
  return url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
}

/**
 * Checks what can be checked without DNS: an absolute http or https URL, no credentials in it,
 * a host, and — when the host is an IP literal in any spelling the URL parser accepts
 * (decimal `2130706433`, octal `0177.0.0.1`, hex `0x7f.1`, `[::ffff:127.0.0.1]`) — a public
 * address. Throws WEBHOOK_URL_REFUSED; returns the parsed URL.
 */
export function checkWebhookUrl(raw: string, options: UrlSafetyOptions = {}): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw refuse(raw, 'not an absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw refuse(raw, `scheme ${url.protocol.replace(/:$/, '')} is not http or https`);
  }
  if (url.username || url.password) {
    throw refuse(raw, 'credentials in the URL are not allowed (use a signing secret)');
  }
  const host = bareHost(url);
  if (!host) throw refuse(raw, 'no host');
  const allow = options.allow ?? [];
  if (isIP(host)) {
    const reason = nonPublicReason(host);
    if (reason && !allowedAddress(host, allow)) {
      throw refuse(raw, `${host} is a ${reason} address`, { address: host });
    }
  }
  return url;
}

/**
 * Resolves a checked URL's host and returns the addresses a connection may use: every address
 * DNS returned must be public (one private address among public ones refuses the URL, since a
 * client may connect to any of them), unless the host or the address is on the allowlist.
 */
export async function resolveWebhookAddresses(
  url: URL,
  options: UrlSafetyOptions = {},
  resolveAll: ResolveAll = defaultResolveAll,
): Promise<LookupAddress[]> {
  const host = bareHost(url);
  const allow = options.allow ?? [];
  if (isIP(host)) {
    checkWebhookUrl(url.href, options);
    return [{ address: host, family: isIP(host) }];
  }
  let addresses: LookupAddress[];
  try {
    addresses = await resolveAll(host);
  } catch (err) {
    throw refuse(
      url.href,
      `${host} does not resolve (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  if (addresses.length === 0) throw refuse(url.href, `${host} does not resolve`);
  if (allowedHost(host, allow)) return addresses;
  for (const a of addresses) {
    const reason = nonPublicReason(a.address);
    if (reason && !allowedAddress(a.address, allow)) {
      throw refuse(url.href, `${host} resolves to ${a.address}, a ${reason} address`, {
        address: a.address,
      });
    }
  }
  return addresses;
}

/**
 * A `lookup` for node:http / node:https requests that resolves once, checks every address and
 * hands the socket only checked addresses, so the connection goes to the address that was
 * checked (O-7: no DNS-rebinding window). Node calls it only for hostnames; IP literals are
 * checked by checkWebhookUrl before the request.
 */
export function safeLookup(
  options: UrlSafetyOptions = {},
  resolveAll: ResolveAll = defaultResolveAll,
): LookupFunction {
  return (hostname, lookupOptions, callback) => {
    const url = new URL(`http://${hostname.includes(':') ? `[${hostname}]` : hostname}/`);
    resolveWebhookAddresses(url, options, resolveAll).then(
      (addresses) => {
        const family = lookupOptions.family;
        const usable = family ? addresses.filter((a) => a.family === family) : addresses;
        if (usable.length === 0) {
          callback(
            Object.assign(new Error(`no IPv${family} address for ${hostname}`), {
              code: 'ENOTFOUND',
            }),
            '',
            0,
          );
        } else if (lookupOptions.all) {
          callback(null, usable);
        } else {
          const first = usable[0] as LookupAddress;
          callback(null, first.address, first.family);
        }
      },
      (err: unknown) => callback(err as NodeJS.ErrnoException, '', 0),
    );
  };
}
