// @peculiar/x509 resolves its algorithm providers through tsyringe, which needs the Reflect
// metadata API; it must load before the library.
import 'reflect-metadata';
import { createPrivateKey, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { EtzError } from '../core/errors.js';

// @peculiar/x509 works on WebCrypto; Node's implementation is the one provider etz uses.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };
// The project compiles without the DOM lib, so WebCrypto types come from node:crypto.
export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;
type Algorithm = webcrypto.Algorithm;
type EcdsaParams = webcrypto.EcdsaParams;
type EcKeyGenParams = webcrypto.EcKeyGenParams;
type RsaHashedKeyGenParams = webcrypto.RsaHashedKeyGenParams;
type EcKeyImportParams = webcrypto.EcKeyImportParams;
export const subtle = webcrypto.subtle;

export type KeyType = 'ec-p256' | 'rsa-3072';
export const KEY_TYPES: readonly KeyType[] = ['ec-p256', 'rsa-3072'];

export function keyAlgorithm(keyType: KeyType): RsaHashedKeyGenParams | EcKeyGenParams {
  return keyType === 'ec-p256'
    ? { name: 'ECDSA', namedCurve: 'P-256' }
    : { name: 'RSASSA-PKCS1-v1_5', modulusLength: 3072, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' };
}

export function signingAlgorithm(keyType: KeyType): Algorithm | EcdsaParams {
  return keyType === 'ec-p256' ? { name: 'ECDSA', hash: 'SHA-256' } : { name: 'RSASSA-PKCS1-v1_5' };
}

export async function generateKeyPair(keyType: KeyType = 'ec-p256'): Promise<CryptoKeyPair> {
  if (!KEY_TYPES.includes(keyType)) throw new EtzError('ETZ_ERR_USAGE', `unknown key type '${keyType}' (use ${KEY_TYPES.join(' or ')})`);
  return (await subtle.generateKey(keyAlgorithm(keyType) as EcKeyGenParams, true, ['sign', 'verify'])) as CryptoKeyPair;
}

export async function privateKeyToPem(key: CryptoKey): Promise<string> {
  const der = await subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

/** Which etz key type a PEM private key is (any PKCS#1/SEC1/PKCS#8 encoding Node reads). */
export function keyTypeOfPem(pem: string): KeyType {
  const k = createPrivateKey(pem);
  if (k.asymmetricKeyType === 'ec' && k.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ec-p256';
  if (k.asymmetricKeyType === 'rsa') return 'rsa-3072';
  throw new EtzError('ETZ_ERR_CA_INVALID', `unsupported key: ${k.asymmetricKeyType} ${k.asymmetricKeyDetails?.namedCurve ?? ''}`.trim());
}

/** Imports a PEM private key for signing (normalised through Node to PKCS#8 first). */
export async function importSigningKey(pem: string): Promise<{ key: CryptoKey; keyType: KeyType }> {
  const keyType = keyTypeOfPem(pem);
  const der = createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' });
  const key = await subtle.importKey('pkcs8', der, keyAlgorithm(keyType) as EcKeyImportParams, false, ['sign']);
  return { key, keyType };
}

/** A positive 128-bit serial (RFC 5280 allows up to 20 octets; the top bit stays clear). */
export function randomSerial(): string {
  const b = new Uint8Array(16);
  webcrypto.getRandomValues(b);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return Buffer.from(b).toString('hex');
}

/** Splits a PEM bundle into its certificate blocks (normalised PEM strings). */
export function splitPemCerts(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((s) => `${s}\n`) ?? [];
}
