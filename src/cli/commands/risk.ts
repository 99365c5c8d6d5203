import type { Command } from '../run.js';
import { parseCommandArgs } from '../run.js';
import { UsageError } from '../../core/errors.js';
import { CLIENT_OPTIONS, CLIENT_USAGE, clientFromFlags, table } from '../../manager/api-client.js';

const USAGE = `Usage: etz risk ls [--kind service|instance|edge|principal] [--level low|medium|high|critical] [--limit N]
       etz risk explain SUBJECT

Risk scores (0–100) and levels per subject, with the reasons behind them. SUBJECT is a key such as
service:reviews, instance:reviews/reviews-v2-0, edge:productpage->reviews or principal:jason
(a bare name means a service).

${CLIENT_USAGE}`;

interface Reason {
  detector: string;
  feature?: string;
  detail: string;
  points?: number;
}

export const command: Command = {
  summary: 'Show risk scores and explain them',
  async run(argv) {
    const parsed = parseCommandArgs(argv, { ...CLIENT_OPTIONS, kind: { type: 'string' }, level: { type: 'string' }, limit: { type: 'string' } }, USAGE, true);
    if (parsed === null) return 0;
    const v = parsed.values as Record<string, unknown>;
    const [sub, ...rest] = parsed.positionals;
    const out = (x: unknown) => process.stdout.write(`${JSON.stringify(x, null, 2)}\n`);
    if (sub === undefined || sub === 'ls' || sub === 'list') {
      if (rest.length) throw new UsageError(`unexpected argument '${rest[0]}'`);
      const q = new URLSearchParams();
      for (const k of ['kind', 'level', 'limit']) if (typeof v[k] === 'string') q.set(k, v[k] as string);
      const client = await clientFromFlags(v);
      const res = await client.call<{ items: Array<{ key: string; score: number; level: string; warmingUp: boolean; reasons: Reason[] }> }>('GET', `/v1/risk${q.size ? `?${q}` : ''}`);
      if (v.json) out(res);
      else process.stdout.write(table(['SUBJECT', 'SCORE', 'LEVEL', 'TOP REASON'], res.items.map((s) => [s.key, s.score, s.level + (s.warmingUp ? ' (warming up)' : ''), s.reasons[0]?.detail ?? '-'])));
      return 0;
    }
    if (sub === 'explain') {
      const subject = rest[0];
      if (!subject || rest.length > 1) throw new UsageError('explain needs exactly one SUBJECT');
      const client = await clientFromFlags(v);
      const e = await client.call<{ key: string; score: number; level: string; at: string; warmingUp: boolean; reasons: Reason[]; zones: string[]; features: Record<string, number> | null }>('GET', `/v1/risk/${encodeURIComponent(subject)}`);
      if (v.json) {
        out(e);
        return 0;
      }
      const lines = [`${e.key}: ${e.score} (${e.level}) at ${e.at}${e.warmingUp ? ', baseline still warming up' : ''}`];
      if (e.zones.length) lines.push(`zones: ${e.zones.join(', ')}`);
      lines.push(e.reasons.length ? 'reasons:' : 'reasons: none');
      for (const r of e.reasons) lines.push(`  ${String(r.points ?? '').padStart(5)}  ${r.detector}${r.feature ? ` [${r.feature}]` : ''}: ${r.detail}`);
      if (e.features) lines.push(`last window: ${Object.entries(e.features).filter(([, x]) => x !== 0).map(([k, x]) => `${k}=${x}`).join(' ')}`);
      process.stdout.write(`${lines.join('\n')}\n`);
      return 0;
    }
    throw new UsageError(`unknown subcommand '${sub}' (ls, explain)`);
  },
};
