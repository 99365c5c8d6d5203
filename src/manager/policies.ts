import { ConfigError, EtzError } from '../core/errors.js';
import { flattenDocuments, policyId, validatePolicyDocuments } from '../policy/load.js';
import { checkConflicts } from '../policy/lint.js';
import type { PolicyDocument } from '../policy/types.js';
import type { ConfigHub } from './pubsub/hub.js';
import { COLL, type Store } from './store/store.js';

/**
 * Policies as the operator applies them: linted with the same validator the sidecar uses (so a
 * policy the manager accepts is one the sidecar can load), stored durably, and published as the
 * mesh-wide `policies` resource — each sidecar's policy engine picks what applies to it by
 * selector.
 */
export class PolicyService {
  constructor(private readonly store: Store, private readonly hub: ConfigHub) {}

  list(): PolicyDocument[] {
    return this.store.list<PolicyDocument>(COLL.policies).map(([, d]) => d);
  }

  get(id: string): PolicyDocument | undefined {
    return this.store.get<PolicyDocument>(COLL.policies, id);
  }

  /** Lint without storing: returns the documents, typed and defaulted, or throws ETZ_ERR_INVALID_INPUT. */
  lint(raw: unknown): PolicyDocument[] {
    const docs = flattenDocuments(Array.isArray(raw) ? raw : [raw]);
    if (docs.length === 0) throw new EtzError('ETZ_ERR_INVALID_INPUT', 'no policy documents');
    let typed: PolicyDocument[];
    try {
      typed = validatePolicyDocuments('request', docs);
    } catch (err) {
      if (err instanceof ConfigError) throw new EtzError('ETZ_ERR_INVALID_INPUT', `${err.field}: ${err.reason}`);
      throw err;
    }
    // One PolicyDefaults across the stored set, not only within this request.
    if (typed.some((d) => d.kind === 'PolicyDefaults')) {
      const ids = new Set(typed.map(policyId));
      const other = this.list().find((d) => d.kind === 'PolicyDefaults' && !ids.has(policyId(d)));
      if (other) throw new EtzError('ETZ_ERR_INVALID_INPUT', `/kind: PolicyDefaults '${policyId(other)}' already exists; only one is allowed`);
    }
    return typed;
  }

  /**
   * Apply one document (PUT …/{id}: id must match) or several (POST). Conflicts with the stored
   * set are refused here too (ETZ_ERR_POLICY_CONFLICT, 409) unless forced: the API is the one
   * way in, so a client that skips the CLI's own check cannot slip a clashing set past it.
   */
  async apply(id: string | undefined, raw: unknown, opts: { dryRun?: boolean; force?: boolean } = {}): Promise<{ applied: string[]; warnings: string[]; conflicts: number; dryRun: boolean }> {
    const docs = this.lint(raw);
    if (id !== undefined && (docs.length !== 1 || policyId(docs[0]!) !== id)) {
      throw new EtzError('ETZ_ERR_INVALID_INPUT', `/metadata/name: the document is '${docs.map(policyId).join(', ')}' but the path names '${id}'`);
    }
    const warnings: string[] = [];
    for (const d of docs) {
      if (d.kind === 'AuthorizationPolicy' && (d.spec.action ?? 'ALLOW') === 'ALLOW' && !(d.spec.rules?.length)) {
        warnings.push(`${policyId(d)}: an ALLOW policy without rules allows nothing`);
      }
    }
    const applied = docs.map(policyId);
    const replacing = new Set(applied);
    const findings = checkConflicts([...this.list().filter((d) => !replacing.has(policyId(d))), ...docs], { force: !!opts.force, involving: replacing });
    for (const f of findings) warnings.push(`applied despite conflict [${f.kind}] ${f.message}`);
    if (!opts.dryRun) {
      await this.store.batch(docs.map((d) => ({ op: 'put' as const, coll: COLL.policies, key: policyId(d), value: d })));
      this.publish(`policy ${applied.join(', ')} applied`);
    }
    return { applied, warnings, conflicts: findings.length, dryRun: !!opts.dryRun };
  }

  async remove(id: string): Promise<boolean> {
    const ok = await this.store.delete(COLL.policies, id);
    if (ok) this.publish(`policy ${id} deleted`);
    return ok;
  }

  publish(reason = 'policies'): void {
    this.hub.set('mesh', 'policies', this.list(), reason);
  }
}
