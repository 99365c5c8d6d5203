// The identity module's public surface: the mesh CA, SPIFFE IDs, workload certificates.
export { initCa, saveCa, loadCa, rolloverCa, CA_FILES, type CaMaterial, type InitCaOptions } from './ca.js';
export { signCsr, issueWorkloadCert, generateKeyAndCsr, certExpiry, DEFAULT_CERT_TTL_MS, type IssuedCert, type SignCsrOptions } from './issue.js';
export { parseSpiffeId, formatSpiffeId, isSpiffeId, assertTrustDomain, uriSans, type SpiffeIdentity } from './spiffe.js';
export { peerIdentityFromCert, verifyWorkloadCert, type ChainFailure } from './verify.js';
export { identityMetrics, type IdentityMetrics } from './metrics.js';
export { KEY_TYPES, type KeyType, splitPemCerts } from './keys.js';
export { parseDuration } from './duration.js';
