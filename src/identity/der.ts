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
