/**
 * Just enough DER to split a signed structure (CSR or certificate) into the exact bytes that were
 * signed and the signature, so that Node's crypto.verify checks it directly; the ASN.1 object
 * model of @peculiar/x509 costs several times more per request on the enrollment path.
 */

interface Tlv {
  tag: number;
  start: number;
  valueStart: number;
  end: number;
}

function readTlv(buf: Uint8Array, at: number): Tlv {
  if (at + 2 > buf.length) throw new Error('truncated DER');
  const tag = buf[at]!;
  let len = buf[at + 1]!;
  let p = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || p + n > buf.length) throw new Error('bad DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p++]!;
  }
  if (p + len > buf.length) throw new Error('truncated DER');
  return { tag, start: at, valueStart: p, end: p + len };
}

/** SEQUENCE { tbs, algorithm, BIT STRING signature } → tbs bytes and signature bytes. */
export function splitSigned(der: Uint8Array): { tbs: Uint8Array; signature: Uint8Array } {
  const outer = readTlv(der, 0);
  if (outer.tag !== 0x30 || outer.end !== der.length) throw new Error('not a DER SEQUENCE');
  const tbs = readTlv(der, outer.valueStart);
  const alg = readTlv(der, tbs.end);
  const sig = readTlv(der, alg.end);
  if (tbs.tag !== 0x30 || alg.tag !== 0x30 || sig.tag !== 0x03 || sig.end !== outer.end) throw new Error('unexpected DER structure');
  if (der[sig.valueStart] !== 0) throw new Error('signature BIT STRING has unused bits');
  return { tbs: der.subarray(tbs.start, tbs.end), signature: der.subarray(sig.valueStart + 1, sig.end) };
}

/** The subjectPublicKey BIT STRING contents of a SubjectPublicKeyInfo (SEQUENCE { alg, BIT STRING }). */
export function spkiKeyBits(spki: Uint8Array): Uint8Array {
  const outer = readTlv(spki, 0);
  const alg = readTlv(spki, outer.valueStart);
  const bits = readTlv(spki, alg.end);
  if (outer.tag !== 0x30 || alg.tag !== 0x30 || bits.tag !== 0x03) throw new Error('not a SubjectPublicKeyInfo');
  return spki.subarray(bits.valueStart + 1, bits.end);
}

/** DER bytes of the first PEM block with `label` (or the input itself when it is not PEM). */
export function pemToDer(input: string | Uint8Array, label: string): Uint8Array {
  if (typeof input !== 'string') return input;
  const begin = `-----BEGIN ${label}-----`;
  const i = input.indexOf(begin);
  if (i === -1) throw new Error(`no '${begin}' block`);
  const j = input.indexOf(`-----END ${label}-----`, i);
  if (j === -1) throw new Error(`unterminated ${label} block`);
  const b64 = input.slice(i + begin.length, j).replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw new Error(`${label} block is not base64`);
  return Buffer.from(b64, 'base64');
}

function children(buf: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let p = parent.valueStart; p < parent.end; ) {
    const t = readTlv(buf, p);
    if (t.end > parent.end) throw new Error('DER child overruns its parent');
    out.push(t);
    p = t.end;
  }
  return out;
}

const hex = (buf: Uint8Array, t: Tlv): string => Buffer.from(buf.subarray(t.start, t.end)).toString('hex');

// Full TLV encodings (tag, length, value) of the OIDs a CSR check needs.
const OID_EXTENSION_REQUEST = '06092a864886f70d01090e';
const OID_SAN = '0603551d11';
export const SIG_ALG_HASH: Record<string, { hash: string; key: 'ec' | 'rsa' }> = {
  '06082a8648ce3d040302': { hash: 'sha256', key: 'ec' },
  '06082a8648ce3d040303': { hash: 'sha384', key: 'ec' },
  '06082a8648ce3d040304': { hash: 'sha512', key: 'ec' },
  '06092a864886f70d01010b': { hash: 'sha256', key: 'rsa' },
  '06092a864886f70d01010c': { hash: 'sha384', key: 'rsa' },
  '06092a864886f70d01010d': { hash: 'sha512', key: 'rsa' },
};

export interface ParsedCsr {
  tbs: Uint8Array;
  signature: Uint8Array;
  /** TLV hex of the signature algorithm OID (a key of SIG_ALG_HASH when supported). */
  sigAlg: string;
  spki: Uint8Array;
  /** URI entries of the requested subjectAltName. */
  uris: string[];
}

/**
 * A PKCS#10 request read straight from DER: the signed bytes, the signature, its algorithm, the
 * public key and the requested URI SANs. Anything malformed throws.
 */
export function parseCsrDer(der: Uint8Array): ParsedCsr {
  const { tbs, signature } = splitSigned(der);
  const outer = readTlv(der, 0);
  const [infoTlv, algTlv] = children(der, outer);
  const algOid = children(der, algTlv!)[0];
  if (!algOid || algOid.tag !== 0x06) throw new Error('bad signature algorithm');
  const info = children(der, infoTlv!);
  if (info.length < 3 || info[0]!.tag !== 0x02 || info[1]!.tag !== 0x30 || info[2]!.tag !== 0x30) throw new Error('bad CertificationRequestInfo');
  const spkiTlv = info[2]!;
  const uris: string[] = [];
  const attrs = info[3];
  if (attrs !== undefined) {
    if (attrs.tag !== 0xa0) throw new Error('bad attributes');
    for (const attr of children(der, attrs)) {
      const [oid, set] = children(der, attr);
      if (!oid || !set || hex(der, oid) !== OID_EXTENSION_REQUEST) continue;
      for (const exts of children(der, set)) {
        for (const ext of children(der, exts)) {
          const parts = children(der, ext);
          if (hex(der, parts[0]!) !== OID_SAN) continue;
          const octets = parts[parts.length - 1]!;
          if (octets.tag !== 0x04) throw new Error('bad SAN extension');
          const names = readTlv(der, octets.valueStart);
          if (names.tag !== 0x30 || names.end !== octets.end) throw new Error('bad GeneralNames');
          for (const n of children(der, names)) {
            if (n.tag === 0x86) uris.push(Buffer.from(der.subarray(n.valueStart, n.end)).toString('latin1'));
          }
        }
      }
    }
  }
  return { tbs, signature, sigAlg: hex(der, algOid), spki: der.subarray(spkiTlv.start, spkiTlv.end), uris };
}
