import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { x509, generateKeyPair, importSigningKey, privateKeyToPem, signingAlgorithm } from '../../src/identity/keys.js';
import { issueWorkloadCert, type CaMaterial } from '../../src/identity/index.js';
import { tlsMaterialFromPem } from '../../src/sidecar/tls/material.js';
import type { TlsMaterial } from '../../src/sidecar/tls/options.js';

/** A certificate signed by `ca` with any shape, for refusal tests (expired, several SANs...). */
export async function craftCert(ca: CaMaterial, o: { uris: string[]; notBefore: Date; notAfter: Date }): Promise<{ certPem: string; keyPem: string }> {
  const keys = await generateKeyPair('ec-p256');
  const { key } = await importSigningKey(ca.signingKeyPem);
  const cert = await x509.X509CertificateGenerator.create({
    subject: 'O=test', issuer: new x509.X509Certificate(ca.signingCertPem).subject, publicKey: keys.publicKey, signingKey: key,
    signingAlgorithm: signingAlgorithm('ec-p256'), notBefore: o.notBefore, notAfter: o.notAfter,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(o.uris.map((value) => ({ type: 'url' as const, value }))),
    ],
  });
  return { certPem: cert.toString('pem') + '\n' + ca.chainPem, keyPem: await privateKeyToPem(keys.privateKey) };
}

export async function materialFor(ca: CaMaterial, spiffeId: string, ttlMs?: number): Promise<TlsMaterial> {
  const c = await issueWorkloadCert(ca, spiffeId, ttlMs ? { ttlMs } : {});
  return tlsMaterialFromPem(c.certChainPem, c.keyPem, c.trustBundlePem);
}

/** A logger whose lines are kept in memory. */
export function memoryLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

export async function listen(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

export function echoServer(handler?: (req: IncomingMessage, res: ServerResponse) => void): Server {
  return createServer({ keepAlive: true }, handler ?? ((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ url: req.url, headers: req.headers }));
  }));
}

/** One HTTP/1.1 GET over a fresh TLS connection; resolves with status and body or rejects. */
export function tlsGet(port: number, opts: ConnectionOptions, path = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const sock = tlsConnect({ host: '127.0.0.1', port, ...opts }, () => {
      sock.write(`GET ${path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n`);
    });
    let data = '';
    sock.setEncoding('utf8');
    sock.on('data', (d) => (data += d));
    sock.on('error', reject);
    sock.on('close', () => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
      if (!m) reject(new Error(`connection closed without a response (${data.length} bytes)`));
      else resolve({ status: Number(m[1]), body: data.slice(data.indexOf('\r\n\r\n') + 4) });
    });
  });
}

export async function waitFor(cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
