import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { UsageError } from '../../core/errors.js';
import { engineConfigOf, loadManagerConfig } from '../../manager/config.js';
import { RiskEngine } from '../../manager/risk/index.js';
import { RecordError, parseRecordLine } from '../../manager/risk/records.js';
import type { EngineEvent } from '../../manager/risk/types.js';
import { parseCommandArgs, type Command } from '../run.js';

const USAGE = `Usage: etz replay [--config FILE] [TRACE.jsonl | -]  > events.jsonl

Runs the risk engine and zone manager over a telemetry trace, driven by the records' own clock.
Writes one JSON event per line to stdout and a one-line JSON summary to stderr. Records that are
malformed or more than 5 s out of order are reported with their line number and skipped.

Options:
  --config FILE   zone manager config (risk, zones, detectors, alerts); default: built-in defaults
  -h, --help      show this help
`;

/** Out-of-order tolerance of the replay contract. */
export const MAX_DISORDER_MS = 5000;

export interface ReplaySummary {
  read: number;
  skipped: number;
  malformed: number;
  outOfOrder: number;
  late: number;
  events: Record<string, number>;
}

/**
 * The replay loop, separated from argv handling so that tests and the bench can drive it with any
 * streams. Deterministic: no clock but the records' `ts`.
 */
export async function replay(engine: RiskEngine, input: Readable, out: Writable, err: Writable): Promise<ReplaySummary> {
  const summary: ReplaySummary = { read: 0, skipped: 0, malformed: 0, outOfOrder: 0, late: 0, events: {} };
  let buf = '';
  const flush = async () => {
    if (!buf) return;
    const chunk = buf;
    buf = '';
    if (!out.write(chunk)) await new Promise<void>((resolve) => out.once('drain', resolve));
  };
  engine.on((e: EngineEvent) => {
    summary.events[e.event] = (summary.events[e.event] ?? 0) + 1;
    buf += `${JSON.stringify(e)}\n`;
  });
  const rl = createInterface({ input, crlfDelay: Infinity });
  let lineNo = 0;
  let maxTs = -Infinity;
  const W = engine.config.risk.windowMs;
  let nextAdvance = -Infinity;
  for await (const line of rl) {
    lineNo++;
    if (line.trim() === '') continue;
    summary.read++;
    let rec;
    try {
      rec = parseRecordLine(line);
    } catch (e) {
      if (!(e instanceof RecordError)) throw e;
      summary.skipped++;
      summary.malformed++;
      err.write(`etz replay: line ${lineNo}: ${e.message}; skipped\n`);
      continue;
    }
    if (rec.ts < maxTs - MAX_DISORDER_MS) {
      summary.skipped++;
      summary.outOfOrder++;
      err.write(`etz replay: line ${lineNo}: ts ${new Date(rec.ts).toISOString()} is ${rec.ts - maxTs < -1e12 ? 'far' : `${maxTs - rec.ts} ms`} behind the trace (more than ${MAX_DISORDER_MS / 1000} s out of order); skipped\n`);
      continue;
    }
    if (rec.ts > maxTs) maxTs = rec.ts;
    const r = engine.ingest(rec);
    if (!r.ok) {
      summary.skipped++;
      summary.late++;
      err.write(`etz replay: line ${lineNo}: its window was already scored (late record); skipped\n`);
      continue;
    }
    // The clock only needs to move when a window may have closed.
    if (maxTs >= nextAdvance) {
      engine.advance(maxTs);
      nextAdvance = maxTs + Math.min(W, 1000);
    }
    if (buf.length > 65536) await flush();
  }
  // Close every window that ended within the trace; the trailing partial window is not scored.
  if (Number.isFinite(maxTs)) engine.advance(maxTs + engine.config.risk.allowedLatenessMs);
  await flush();
  return summary;
}

export const command: Command = {
  summary: 'Replay a telemetry trace through the risk engine and zone manager (deterministic)',
  async run(argv) {
    const parsed = parseCommandArgs(argv, { config: { type: 'string' } }, USAGE, true);
    if (!parsed) return 0;
    const positionals = parsed.positionals;
    if (positionals.length > 1) throw new UsageError('at most one trace file may be given');
    const file = positionals[0] ?? '-';
    const configFile = parsed.values.config as string | undefined;
    // The manager's own loader: the same schema, defaults and ETZ_MANAGER_* overrides as `etz manager`.
    const cfg = engineConfigOf(await loadManagerConfig(configFile), configFile ?? '(environment)');
    let input: Readable;
    if (file === '-') input = process.stdin;
    else {
      input = createReadStream(file);
      try {
        await new Promise<void>((resolve, reject) => {
          input.once('open', () => resolve());
          input.once('error', reject);
        });
      } catch (e) {
        throw new UsageError(`cannot read trace ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
    }
    const engine = new RiskEngine(cfg);
    const summary = await replay(engine, input, process.stdout, process.stderr);
    process.stderr.write(`${JSON.stringify(summary)}\n`);
    return 0;
  },
};
