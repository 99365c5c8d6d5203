import { createServer, type Server } from 'node:http';
import type { Direction } from '../filter.js';
import type { SidecarConfig } from '../../config/sidecar-schema.js';

/**
 * The server a listener accepts on. Plain HTTP/1.1 here; the mTLS layer swaps in an https
 * (tls.Server-based) server with the same options for the inbound listener. The parser is Node's
 * strict llhttp: `insecureHTTPParser` stays off, which is what refuses request smuggling.
 */
export type ServerFactory = (direction: Direction, config: SidecarConfig) => Server;

export function serverOptions(config: SidecarConfig) {
  return {
    insecureHTTPParser: false,
    maxHeaderSize: config.limits.maxHeaderBytes,
    requireHostHeader: true,
    joinDuplicateHeaders: false,
    noDelay: true,
    keepAlive: true,
    // The whole-request deadline is the router's (bodies may legitimately stream for long);
    // the parser only bounds how long the head may take.
    requestTimeout: 0,
    headersTimeout: config.timeouts.headersMs,
    keepAliveTimeout: config.timeouts.idleMs,
    connectionsCheckingInterval: Math.min(30_000, Math.max(1000, Math.floor(config.timeouts.headersMs / 2))),
  };
}

export const createListenerServer: ServerFactory = (_direction, config) => {
  const server = createServer(serverOptions(config));
  // Node silently drops headers past maxHeadersCount; keep one more so the listener can see the
  // overflow and answer 431 instead.
  server.maxHeadersCount = config.limits.maxHeaders + 1;
  server.maxConnections = config.limits.maxConnections;
  server.timeout = config.timeouts.idleMs;
  return server;
};
