import { createWriteStream, type WriteStream } from 'node:fs';
import { checkRecord } from '../protocol/telemetry.js';
import type { NodeInfo } from '../protocol/messages.js';
import type { Logger } from '../core/logger.js';
import { Counter, type Registry } from '../core/metrics.js';

/** Where accepted telemetry goes: the risk engine (a pass-through until one is attached). */
export interface RiskSink {
  ingest(record: Record<string, unknown>): void;
}

export const nullSink: RiskSink = { ingest() {} };

/**
 * Telemetry intake: validate each record, check that the sidecar reports only about itself, hand
 * accepted records to the sink and, with --record, append them to a JSON-lines trace that
 * `etz replay` reads. A bad record is counted and skipped; it never fails the batch.
 */
export class TelemetryIntake {
  private recorder: WriteStream | undefined;
  private readonly accepted: Counter;
  private readonly rejected: Counter;
  private readonly dropped: Counter;
  sink: RiskSink;

  constructor(opts: { sink?: RiskSink; recordFile?: string; metrics: Registry; logger: Logger }) {
    this.sink = opts.sink ?? nullSink;
    this.accepted = new Counter({ name: 'etz_manager_telemetry_records_total', help: 'Telemetry records accepted', registers: [opts.metrics] });
    this.rejected = new Counter({ name: 'etz_manager_telemetry_rejected_total', help: 'Telemetry records rejected', labelNames: ['reason'], registers: [opts.metrics] });
    this.dropped = new Counter({ name: 'etz_manager_telemetry_sidecar_dropped_total', help: 'Records sidecars report having dropped while the manager was away', registers: [opts.metrics] });
    if (opts.recordFile) {
      this.recorder = createWriteStream(opts.recordFile, { flags: 'a', mode: 0o600 });
      this.recorder.on('error', (err) => opts.logger.error({ err, file: opts.recordFile }, 'telemetry recording failed; recording stopped'));
    }
  }

  /** `node` is the sidecar's verified identity; null for an operator upload (any subject). */
  accept(node: NodeInfo | null, records: unknown[], droppedBySidecar = 0): { accepted: number; rejected: number; errors: string[] } {
    let accepted = 0;
    const errors: string[] = [];
    let lines = '';
    if (droppedBySidecar > 0) this.dropped.inc(droppedBySidecar);
    for (let i = 0; i < records.length; i++) {
      const c = checkRecord(records[i]);
      if (!c.ok) {
        this.rejected.inc({ reason: 'invalid' });
        if (errors.length < 10) errors.push(`record ${i}: ${c.field}: ${c.reason}`);
        continue;
      }
      if (node && !aboutSelf(node, c.record)) {
        this.rejected.inc({ reason: 'foreign' });
        if (errors.length < 10) errors.push(`record ${i}: not about ${node.service}/${node.instance}`);
        continue;
      }
      accepted++;
      this.sink.ingest(c.record);
      if (this.recorder) lines += `${JSON.stringify(c.record)}\n`;
    }
    if (lines && this.recorder?.writable) this.recorder.write(lines);
    this.accepted.inc(accepted);
    return { accepted, rejected: records.length - accepted, errors };
  }

  close(): Promise<void> {
    const r = this.recorder;
    this.recorder = undefined;
    return new Promise((resolve) => (r ? r.end(resolve) : resolve()));
  }
}

// A sidecar sees both ends of the hops it proxies: inbound (it is the destination) and outbound
// (it is the source). Anything else would let one workload poison another's risk score.
function aboutSelf(node: NodeInfo, rec: Record<string, unknown>): boolean {
  const kind = rec.kind ?? 'request';
  if (kind === 'request') {
    const src = rec.source as { service: string; instance?: string };
    const dst = rec.destination as { service: string; instance?: string };
    const mine = (w: { service: string; instance?: string }) => w.service === node.service && (w.instance === undefined || w.instance === node.instance);
    return mine(src) || mine(dst);
  }
  if (kind === 'log') return rec.service === node.service && (rec.instance === undefined || rec.instance === node.instance);
  return false;
}
