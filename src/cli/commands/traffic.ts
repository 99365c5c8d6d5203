import type { Command } from '../run.js';
import { parseCommandArgs } from '../run.js';
import { UsageError } from '../../core/errors.js';
import { CLIENT_OPTIONS, CLIENT_USAGE, clientFromFlags, table } from '../../manager/api-client.js';
import { parseDuration, type TrafficReport } from '../../manager/traffic/analyzer.js';

const USAGE = `Usage: etz traffic [--window 5m]

Traffic analysis of the last window (up to 1h): per service and edge the volume, error patterns,
latency p50/p95/p99, top sources and principals, the anomalies found, and a mesh-wide summary.

${CLIENT_USAGE}`;

export const command: Command = {
  summary: 'Traffic analysis per service and edge, with anomalies',
  async run(argv) {
    const parsed = parseCommandArgs(argv, { ...CLIENT_OPTIONS, window: { type: 'string', short: 'w' } }, USAGE);
    if (parsed === null) return 0;
    const v = parsed.values as Record<string, unknown>;
    const window = (v.window as string | undefined) ?? '5m';
    if (parseDuration(window) === null) throw new UsageError(`--window wants a duration such as 30s, 5m or 1h, got '${window}'`);
    const client = await clientFromFlags(v);
    const r = await client.call<TrafficReport>('GET', `/v1/traffic?window=${encodeURIComponent(window)}`);
    if (v.json) {
      process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      return 0;
    }
    const s = r.summary;
    process.stdout.write(
      `window ${r.window.from} → ${r.window.to}: ${s.requests} requests (${s.requestsPerSecond}/s), error rate ${(s.errorRate * 100).toFixed(2)}%, p95 ${s.latencyP95Ms} ms, ${s.anomalies} anomalies; top sources: ${s.topSources.map((x) => `${x.source} (${x.requests})`).join(', ') || '-'}\n\n`,
    );
    process.stdout.write(
      table(
        ['SERVICE', 'REQS', 'RPS', '4XX', '5XX', 'P50', 'P95', 'P99', 'TOP SOURCES', 'TOP PRINCIPALS'],
        r.services.map((x) => [x.service, x.requests, x.requestsPerSecond, x.errors.clientErrors, x.errors.serverErrors, x.latencyMs.p50, x.latencyMs.p95, x.latencyMs.p99, x.topSources.map((t) => t.source).join(','), x.topPrincipals.map((t) => t.principal).join(',')]),
      ),
    );
    process.stdout.write('\n');
    process.stdout.write(table(['EDGE', 'REQS', 'ERR%', 'P95'], r.edges.map((e) => [`${e.source} → ${e.destination}`, e.requests, (e.errorRate * 100).toFixed(2), e.latencyMs.p95])));
    if (r.anomalies.length) {
      process.stdout.write('\nanomalies:\n');
      for (const a of r.anomalies) process.stdout.write(`  ${a.ts}  ${a.level.padEnd(8)} ${a.score}  ${JSON.stringify(a.subject)}: ${a.reasons[0]?.detail ?? ''}\n`);
    }
    return 0;
  },
};
