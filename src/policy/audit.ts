import { createHash } from 'node:crypto';
import type { Logger } from '../core/logger.js';
import { canonical } from './compile.js';
import { policyId } from './load.js';
import type { PolicyDocument } from './types.js';

/**
 * Audit records of policy changes: which version, the digest of the set, and what changed by
 * name (added, removed, changed). The previous set is remembered per owner (a sidecar instance)
 * so that two sidecars in one process never diff against each other, and a version that leaves
 * the set unchanged (a push of some other resource) records nothing.
 */

interface Snapshot {
  digest: string;
  byId: Map<string, string>;
}

const last = new WeakMap<object, Map<string, Snapshot>>();
const MAX_NAMES = 50;

function snapshot(docs: readonly PolicyDocument[]): Snapshot {
  const byId = new Map<string, string>();
  for (const d of docs) byId.set(`${d.kind}/${policyId(d)}`, createHash('sha256').update(canonical(d)).digest('hex').slice(0, 16));
  const digest = createHash('sha256')
    .update([...byId].map(([k, v]) => `${k}=${v}`).sort().join('\n'))
    .digest('hex')
    .slice(0, 16);
  return { digest, byId };
}

export interface PolicyChange {
  digest: string;
  previousDigest: string | null;
  added: string[];
  removed: string[];
  changed: string[];
}

/** Compare with the owner's previous set of this kind; null when nothing changed. */
export function diffPolicies(owner: object, kind: string, docs: readonly PolicyDocument[]): PolicyChange | null {
  let m = last.get(owner);
  if (!m) last.set(owner, (m = new Map()));
  const prev = m.get(kind);
  const cur = snapshot(docs);
  if (prev && prev.digest === cur.digest) return null;
  m.set(kind, cur);
  const added: string[] = [];
  const changed: string[] = [];
  const removed: string[] = [];
  for (const [id, h] of cur.byId) {
    const old = prev?.byId.get(id);
    if (old === undefined) added.push(id);
    else if (old !== h) changed.push(id);
  }
  if (prev) for (const id of prev.byId.keys()) if (!cur.byId.has(id)) removed.push(id);
  return { digest: cur.digest, previousDigest: prev?.digest ?? null, added, removed, changed };
}

/** Log one policy change as an audit record (lists capped; counts always exact). */
export function recordPolicyChange(logger: Logger, owner: object, kind: 'authorization' | 'network', version: number, docs: readonly PolicyDocument[]): PolicyChange | null {
  const change = diffPolicies(owner, kind, docs);
  if (change === null) return null;
  const cap = (xs: string[]) => (xs.length > MAX_NAMES ? [...xs.slice(0, MAX_NAMES), `… ${xs.length - MAX_NAMES} more`] : xs);
  logger.info(
    {
      audit: 'policy.change',
      kind,
      version,
      digest: change.digest,
      previousDigest: change.previousDigest,
      policies: docs.length,
      counts: { added: change.added.length, removed: change.removed.length, changed: change.changed.length },
      added: cap(change.added),
      removed: cap(change.removed),
      changed: cap(change.changed),
    },
    `${kind} policies now ${change.digest} (version ${version})`,
  );
  return change;
}
