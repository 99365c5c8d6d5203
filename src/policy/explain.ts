import type { Explanation } from './engine.js';
import type { AuthzDecision, PolicyRequest } from './types.js';

/**
 * Explanations for humans (`etz policy check`) and for audit records. The headline names the
 * deciding policy and rule; the trace lists every policy that could select the destination and,
 * for each rule that did not match, the first field that failed.
 */

export function describeRequest(r: PolicyRequest): string {
  const who = r.sourcePrincipal ?? (r.sourceIp ? `ip ${r.sourceIp}` : 'unauthenticated');
  const user = r.requestPrincipal ? ` (user ${r.requestPrincipal})` : '';
  const ver = r.destVersion ? `/${r.destVersion}` : '';
  return `${who}${user} → ${r.destService}${ver} ${r.method ?? '*'} ${r.path ?? '*'}${r.port ? ` port ${r.port}` : ''}`;
}

export function headline(d: AuthzDecision): string {
  return `${d.allowed ? 'ALLOW' : 'DENY'}: ${d.reason}`;
}

export function formatExplanation(r: PolicyRequest, e: Explanation): string {
  const lines = [headline(e.decision), `request: ${describeRequest(r)}`];
  if (e.decision.by) lines.push(`decided by: policy ${e.decision.by.policy} rule ${e.decision.by.rule}`);
  else lines.push(`decided by: ${e.decision.basis === 'default' ? `default action ${e.defaultAction}` : 'no matching rule in the selecting ALLOW policies'}`);
  if (e.decision.audits.length) lines.push(`audited by: ${e.decision.audits.map((a) => `${a.policy} rule ${a.rule}`).join(', ')}`);
  lines.push(`policies considered (${e.policies.length}, set ${e.digest}):`);
  const w = Math.max(8, ...e.policies.map((p) => p.policy.length));
  for (const p of e.policies) {
    const head = `  ${p.policy.padEnd(w)}  ${p.action.padEnd(5)}`;
    if (!p.selected) {
      lines.push(`${head}  not selected (${p.selectorMismatch} differs)`);
      continue;
    }
    if (p.rules.length === 0) lines.push(`${head}  selected, no rules (${p.action === 'ALLOW' ? 'allows nothing' : 'matches nothing'})`);
    for (const rule of p.rules) {
      lines.push(`${head}  rule ${rule.rule}: ${rule.matched ? 'MATCHED' : `no match (${rule.failed!.join('; ')})`}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** The JSON form (`--json`): the decision plus the trace. */
export function explanationJson(r: PolicyRequest, e: Explanation): Record<string, unknown> {
  return {
    allowed: e.decision.allowed,
    decision: e.decision.allowed ? 'ALLOW' : 'DENY',
    basis: e.decision.basis,
    reason: e.decision.reason,
    ...(e.decision.by ? { policy: e.decision.by.policy, rule: e.decision.by.rule } : {}),
    audits: e.decision.audits,
    request: r,
    digest: e.digest,
    policies: e.policies,
  };
}

/**
 * The trace in a few short lines, for audit records: why each rule that could have decided did
 * not (`reviews-viewer rule 0: rules[0].from[0].principals`). Capped so a huge set cannot bloat
 * a log line.
 */
export function traceSummary(e: Explanation, max = 10): string[] {
  const out: string[] = [];
  for (const p of e.policies) {
    if (!p.selected) continue;
    for (const r of p.rules) {
      if (out.length >= max) return [...out, '…'];
      out.push(`${p.policy} rule ${r.rule}: ${r.matched ? 'matched' : `no match (${r.failed!.join('; ')})`}`);
    }
  }
  return out;
}
