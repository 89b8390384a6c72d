// A real SMTP server (the smtp-server package) on 127.0.0.1 and a free port, recording every
// message it was given, for email tests. `reply` decides per message: accept (undefined) or
// answer with an SMTP error code, as a real server that defers (4xx) or rejects (5xx) would.
import { SMTPServer } from 'smtp-server';
import type { AddressInfo } from 'node:net';

/** One DATA transaction the server saw. */
export interface ReceivedMessage {
  /** The raw message (headers and body). */
  raw: string;
  /** Its Message-ID header, if any. */
  messageId: string | null;
  /** Envelope recipients. */
  rcptTo: string[];
  /** Whether the server accepted it (250). */
  accepted: boolean;
}

/** A running test SMTP server. */
export interface TestSmtpServer {
  /** `smtp://127.0.0.1:<port>`. */
  readonly url: string;
  /** Every message in arrival order, accepted or not. */
  readonly received: ReceivedMessage[];
  /** The accepted ones. */
  delivered(): ReceivedMessage[];
  /** Stops the server. */
  close(): Promise<void>;
}

/** What the server answers to the n-th message (from 1): undefined accepts it. */
export type SmtpReply = (n: number, raw: string) => { code: number; message: string } | undefined;

/** Starts a server without TLS or auth that answers as `reply` says (default: accept all). */
export async function startSmtpServer(reply: SmtpReply = () => undefined): Promise<TestSmtpServer> {
  const received: ReceivedMessage[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const verdict = reply(received.length + 1, raw);
        received.push({
          raw,
          messageId: /^message-id:\s*(.+)$/im.exec(raw)?.[1]?.trim() ?? null,
          rcptTo: session.envelope.rcptTo.map((r) => r.address),
          accepted: !verdict,
        });
        if (verdict) {
          callback(Object.assign(new Error(verdict.message), { responseCode: verdict.code }));
        } else {
          callback(null, `queued as test-${received.length}`);
        }
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.on('error', reject);
    const s = server.listen(0, '127.0.0.1', () => resolve((s.address() as AddressInfo).port));
  });
  return {
    url: `smtp://127.0.0.1:${port}`,
    received,
    delivered: () => received.filter((m) => m.accepted),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
