import { RiskEngine, resolveEngineConfig, parseRecord, type EngineEvent } from '../../src/manager/risk/index.js';
import type { Rec } from './trace.js';

/** Feed sorted records to an engine the way `etz replay` does, collecting events. */
export function runTrace(records: Rec[], config: Record<string, unknown> = {}): { events: EngineEvent[]; engine: RiskEngine } {
  const engine = new RiskEngine(resolveEngineConfig(config));
  const events: EngineEvent[] = [];
  engine.on((e) => events.push(e));
  let max = -Infinity;
  for (const r of records) {
    const rec = parseRecord(r);
    if (rec.ts > max) max = rec.ts;
    engine.ingest(rec);
    engine.advance(max);
  }
  engine.advance(max + engine.config.risk.allowedLatenessMs);
  return { events, engine };
}

export function ofKind<K extends EngineEvent['event']>(events: EngineEvent[], kind: K): Array<Extract<EngineEvent, { event: K }>> {
  return events.filter((e): e is Extract<EngineEvent, { event: K }> => e.event === kind);
}
