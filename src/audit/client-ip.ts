import { isIP } from 'node:net';
import proxyAddr from '@fastify/proxy-addr';
import { DocketError } from '../core/errors.js';

/** Request headers as Node and Fastify hand them over; repeated headers arrive as arrays. */
export type RequestHeaders = Record<string, string | string[] | undefined>;

/** Decides the client IP of a request from its TCP peer and, behind a trusted proxy, its headers. */
export type ClientIpResolver = (
  peer: string | undefined,
  headers: RequestHeaders,
) => string | undefined;

type TrustCheck = (address: string) => boolean;

/** A hop in a forwarding chain: a normalized IP, or undefined when the hop cannot be used. */
type Hop = string | undefined;

const NAMED_RANGES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** Throws CONFIG_INVALID naming the first entry that is not an IP, a CIDR range or a named range. */
export function validateTrustedProxies(list: readonly string[]): void {
  list.forEach((entry: unknown, index) => {
    if (typeof entry !== 'string' || !isTrustedProxyEntry(entry)) {
      throw new DocketError(
        'CONFIG_INVALID',
        `trusted proxy entry ${JSON.stringify(entry)} is not an IP address, a CIDR range or one of loopback, linklocal, uniquelocal`,
        { entry, index },
      );
    }
  });
}

function isTrustedProxyEntry(entry: string): boolean {
  if (NAMED_RANGES.has(entry)) return true;
  // proxy-addr parses addresses with ipaddr.js, which also accepts legacy forms ("10" is 0.0.0.10,
  // "0x7f.1" is 127.0.0.1); an operator who wrote "10/8" meant something else, so insist on the
  // standard notation Node accepts.
  const slash = entry.lastIndexOf('/');
  if (isIP(slash === -1 ? entry : entry.slice(0, slash)) === 0) return false;
  try {
    proxyAddr.compile(entry);
    return true;
  } catch {
    return false; // proxy-addr rejects bad prefix lengths (e.g. /0, /33) with a TypeError
  }
}

/** Builds a resolver that honours Forwarded, X-Forwarded-For and X-Real-IP only from trusted peers. */
export function createClientIpResolver(trustedProxies: readonly string[]): ClientIpResolver {
  validateTrustedProxies(trustedProxies);
  const matches = proxyAddr.compile([...trustedProxies]);
  const isTrusted: TrustCheck = (address) => matches(address, 0);

  return (peer, headers) => {
    const peerAddress = peer === undefined ? undefined : normalizeAddress(peer);
    // Headers are trivially spoofed; only a peer we trust is allowed to speak for someone else.
    if (peerAddress === undefined || !isTrusted(peerAddress)) return peerAddress;

    // The first header present wins, so a trusted proxy must strip or overwrite the headers it
    // does not set itself: a client-supplied Forwarded would otherwise outrank the proxy's XFF.
    const forwarded = headerValue(headers, 'forwarded');
    if (forwarded !== undefined) {
      // A broken Forwarded header cannot be split into hops we could attribute to proxies, and
      // falling through to X-Forwarded-For would trust a header our proxy may never have set.
      const hops = parseForwardedHops(forwarded);
      return hops === undefined ? peerAddress : walkHops(hops, peerAddress, isTrusted);
    }
    const forwardedFor = headerValue(headers, 'x-forwarded-for');
    if (forwardedFor !== undefined) {
      return walkHops(forwardedFor.split(',').map(normalizeAddress), peerAddress, isTrusted);
    }
    const realIp = headerValue(headers, 'x-real-ip');
    if (realIp !== undefined) return normalizeAddress(realIp) ?? peerAddress;
    return peerAddress;
  };
}

/**
 * Walks a hop chain from the right (the hop the nearest proxy appended) towards the client.
 * Trusted hops are proxies and are skipped; the first untrusted hop is the client. An unusable
 * hop (unknown, obfuscated, garbage) stops the walk at the last trusted hop we verified: what lies
 * to its left was written by someone we cannot vouch for, so the nearest verified address is the
 * most honest answer. If every hop is trusted, the leftmost one is the client.
 */
function walkHops(hops: readonly Hop[], peer: string, isTrusted: TrustCheck): string {
  let verified = peer;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i];
    if (hop === undefined) return verified;
    if (!isTrusted(hop)) return hop;
    verified = hop;
  }
  return verified;
}

/** Joins repeated instances of a header in order; blank or missing means absent. */
function headerValue(headers: RequestHeaders, name: string): string | undefined {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== name) continue;
    const values: unknown[] = Array.isArray(value) ? value : [value];
    for (const v of values) if (typeof v === 'string') parts.push(v);
  }
  const joined = parts.join(', ');
  return joined.trim() === '' ? undefined : joined;
}

const BRACKETED_IPV6 = /^\[([^\]]*)\](?::(?:\d{1,5}|_[\w.-]+))?$/;
const IPV4_WITH_PORT = /^([\d.]+):(?:\d{1,5}|_[\w.-]+)$/;
const IPV4_MAPPED = /^(?:::|(?:0{1,4}:){5})ffff:(\d{1,3}(?:\.\d{1,3}){3})$/;

/**
 * Reduces an address as seen on a socket or in a header to the bare IP we record: brackets and
 * ports (including RFC 7239 obfuscated ports) removed, IPv4-mapped IPv6 shown as IPv4, IPv6
 * lowercased. Returns undefined for anything that is not an IP.
 */
function normalizeAddress(raw: string): string | undefined {
  let address = raw.trim();
  const bracketed = BRACKETED_IPV6.exec(address);
  if (bracketed) {
    address = bracketed[1] ?? '';
    if (isIP(address) !== 6) return undefined;
  } else {
    const withPort = IPV4_WITH_PORT.exec(address);
    if (withPort) address = withPort[1] ?? '';
  }
  const version = isIP(address);
  if (version === 4) return address;
  if (version !== 6) return undefined;
  // Zone ids name interfaces and may be case-sensitive; only the address part is hex.
  const zone = address.indexOf('%');
  const lowered =
    zone === -1
      ? address.toLowerCase()
      : address.slice(0, zone).toLowerCase() + address.slice(zone);
  const mapped = IPV4_MAPPED.exec(lowered);
  return mapped?.[1] !== undefined && isIP(mapped[1]) === 4 ? mapped[1] : lowered;
}

/**
 * Parses an RFC 7239 Forwarded value into one hop per element, left to right: the normalized
 * `for=` address, or undefined when the element has no usable address. Returns undefined when
 * the header is syntactically broken.
 */
function parseForwardedHops(value: string): Hop[] | undefined {
  const elements = parseForwardedElements(value);
  return elements?.map((element) => {
    const node = element.get('for');
    return node === undefined ? undefined : normalizeAddress(node);
  });
}

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;

/** Splits a Forwarded value into elements of lowercase parameter → unquoted value. */
function parseForwardedElements(value: string): Map<string, string>[] | undefined {
  const elements: Map<string, string>[] = [];
  let element = new Map<string, string>();
  let i = 0;
  const skipSpace = (): void => {
    while (value[i] === ' ' || value[i] === '\t') i++;
  };
  const readToken = (): string => {
    const start = i;
    while (i < value.length && TCHAR.test(value[i] ?? '')) i++;
    return value.slice(start, i);
  };

  for (;;) {
    skipSpace();
    const name = readToken().toLowerCase();
    if (name !== '') {
      if (value[i] !== '=') return undefined;
      i++;
      let text: string;
      if (value[i] === '"') {
        const quoted = readQuotedString(value, i);
        if (quoted === undefined) return undefined;
        ({ text, end: i } = quoted);
      } else {
        text = readToken();
        if (text === '') return undefined;
      }
      // RFC 7239 §4: a parameter must not repeat within an element; which one would we believe?
      if (element.has(name)) return undefined;
      element.set(name, text);
      skipSpace();
    }
    const separator = value[i];
    if (separator === ';') {
      i++;
    } else if (separator === ',' || separator === undefined) {
      // HTTP list syntax allows empty elements (", ,"); they carry no hop.
      if (element.size > 0) elements.push(element);
      if (separator === undefined) return elements;
      element = new Map();
      i++;
    } else {
      return undefined;
    }
  }
}

/** Reads a quoted-string starting at the opening quote; undefined when unterminated or invalid. */
function readQuotedString(value: string, start: number): { text: string; end: number } | undefined {
  let text = '';
  for (let i = start + 1; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x22) return { text, end: i + 1 };
    if (c === 0x5c) {
      i++;
      if (i >= value.length) return undefined;
    }
    const ch = value.charCodeAt(i);
    if ((ch < 0x20 && ch !== 0x09) || ch === 0x7f) return undefined;
    text += value[i];
  }
  return undefined;
}
