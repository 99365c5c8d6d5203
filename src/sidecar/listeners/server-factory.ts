import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { ConfigError } from '../../core/errors.js';
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

function gatewayHttpsServer(config: SidecarConfig, tls: { certFile: string; keyFile: string }): Server {
  const read = (file: string, field: string) => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new ConfigError('(sidecar config)', `/gateway/tls/${field}`, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const cert = read(tls.certFile, 'certFile');
  const key = read(tls.keyFile, 'keyFile');
  try {
    return createHttpsServer({ ...serverOptions(config), cert, key, minVersion: 'TLSv1.2' }) as unknown as Server;
  } catch (err) {
    throw new ConfigError('(sidecar config)', '/gateway/tls', `certificate or key unusable: ${(err as Error).message}`);
  }
}

export const createListenerServer: ServerFactory = (direction, config) => {
  const gwTls = direction === 'gateway' ? config.gateway.tls : undefined;
  // The gateway terminates external HTTPS with the configured certificate (read once, at start).
  const server = gwTls ? gatewayHttpsServer(config, gwTls) : createServer(serverOptions(config));
  // Node silently drops headers past maxHeadersCount; keep one more so the listener can see the
  // overflow and answer 431 instead.
  server.maxHeadersCount = config.limits.maxHeaders + 1;
  server.maxConnections = config.limits.maxConnections;
  server.timeout = config.timeouts.idleMs;
  return server;
};
