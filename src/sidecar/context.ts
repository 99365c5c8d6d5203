import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Decision, Direction, PeerIdentity, RequestContext } from './filter.js';
import type { ErrorCode } from '../core/errors.js';
import type { Endpoint } from './clusters.js';
import type { CompiledChain } from './chain.js';

/**
 * The per-request state. A class with every field set in the constructor, so that all contexts
 * share one hidden class; `attrs` is created only when a filter uses it. The request head is read
 * from rawHeaders directly: touching `req.headers` would make Node build a second copy of every
 * header per request.
 */
export class Ctx implements RequestContext {
  id: string;
  readonly direction: Direction;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly startedAt: number;
  readonly method: string;
  readonly path: string;
  readonly query: string;
  /** The request target in origin-form (path and query), as sent upstream. */
  readonly url: string;
  readonly host: string;
  readonly remoteAddress: string;
  peer?: PeerIdentity = undefined;
  principal?: string = undefined;
  destination?: { service: string; version?: string; instance?: string } = undefined;
  decision: Decision = 'allow';
  replyCode?: ErrorCode = undefined;
  subset?: Record<string, string> = undefined;
  avoidEndpoints?: ReadonlySet<string> = undefined;
  upstreamHeaders?: string[] = undefined;
  endpoint?: Endpoint = undefined;
  mtls = false;
  bytesIn = 0;
  bytesOut = 0;
  /** The chain this request runs on; a config swap never changes it mid-request. */
  readonly chain: CompiledChain;
  /** Declared request body: its Content-Length, -1 when chunked, 0 when none. */
  readonly bodyLength: number;
  /** True for a request that asked to switch protocols (websocket). */
  readonly upgrade: boolean;
  /** Aborts the upstream exchange (set by the router once dispatched). */
  abortUpstream: ((err: Error) => void) | null = null;
  timer: NodeJS.Timeout | null = null;
  done = false;
  /** Bytes the client sent after an upgrade request's head (first frames). */
  upgradeHead: Buffer | null = null;
  /** Status of a switched-protocols exchange, which has no ServerResponse to read it from. */
  upgradedStatus = 0;
  #attrs: Map<string, unknown> | undefined = undefined;

  constructor(direction: Direction, req: IncomingMessage, res: ServerResponse, chain: CompiledChain, upgrade: boolean) {
    this.startedAt = performance.now();
    this.direction = direction;
    this.req = req;
    this.res = res;
    this.chain = chain;
    this.upgrade = upgrade;
    this.method = req.method ?? 'GET';
    let url = req.url ?? '/';
    let authority = '';
    if (url.charCodeAt(0) !== 47 /* / */) {
      // absolute-form (`GET http://reviews:9080/x`, what HTTP_PROXY clients send): its authority
      // wins over the Host header (RFC 9112 §3.2.2) and the upstream gets origin-form.
      const m = /^https?:\/\/([^/?#]*)([^#]*)/i.exec(url);
      if (m !== null) {
        authority = m[1]!;
        url = m[2] === '' ? '/' : m[2]!.charCodeAt(0) === 63 /* ? */ ? `/${m[2]}` : m[2]!;
      }
    }
    this.url = url;
    const q = url.indexOf('?');
    this.path = q === -1 ? url : url.slice(0, q);
    this.query = q === -1 ? '' : url.slice(q + 1);
    this.remoteAddress = req.socket.remoteAddress ?? '';
    let host = '';
    let id = '';
    let length = 0;
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      switch (name.length) {
        case 4:
          if (host === '' && name.toLowerCase() === 'host') host = raw[i + 1]!;
          break;
        case 12:
          if (id === '' && name.toLowerCase() === 'x-request-id') id = raw[i + 1]!;
          break;
        case 14:
          // The parser has already refused duplicates and non-digits.
          if (length === 0 && name.toLowerCase() === 'content-length') length = Number(raw[i + 1]);
          break;
        case 17:
          if (name.toLowerCase() === 'transfer-encoding') length = -1;
          break;
      }
    }
    this.bodyLength = length;
    this.host = normalizeHost(authority !== '' ? authority : host);
    this.id = validRequestId(id) ? id : '';
  }

  get attrs(): Map<string, unknown> {
    return (this.#attrs ??= new Map());
  }
}

/** `Reviews.Default.svc:9080` → `reviews.default.svc`; `[::1]:80` → `::1`. */
export function normalizeHost(h: string): string {
  if (h === '') return '';
  let host = h;
  if (host.charCodeAt(0) === 91 /* [ */) {
    const end = host.indexOf(']');
    host = end === -1 ? host : host.slice(1, end);
  } else {
    const colon = host.lastIndexOf(':');
    if (colon !== -1) host = host.slice(0, colon);
  }
  if (host.endsWith('.')) host = host.slice(0, -1);
  return host.toLowerCase();
}

/** Client-supplied ids are propagated only when they are short printable tokens. */
export function validRequestId(id: string): boolean {
  return id.length > 0 && id.length <= 128 && /^[\x21-\x7e]+$/.test(id);
}
