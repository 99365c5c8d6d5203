import { Counter, Gauge, type Registry } from '../../core/metrics.js';

/**
 * State that must outlive one config version: token buckets, the per-principal detector, outlier
 * ejections. A new version is compiled often (every zone change), and resetting these on each one
 * would hand an attacker a fresh burst or clear a flag. Each sidecar instance owns its metrics
 * registry, so the registry is the key that separates two sidecars in one process; the WeakMap
 * lets the state go with the instance.
 */
const states = new WeakMap<object, Map<string, unknown>>();

export function instanceState<T>(owner: object, slot: string, create: () => T): T {
  let m = states.get(owner);
  if (!m) {
    m = new Map();
    states.set(owner, m);
  }
  let v = m.get(slot) as T | undefined;
  if (v === undefined) {
    v = create();
    m.set(slot, v);
  }
  return v;
}

/** The slot's value if some version created it, without creating it. */
export function peekState<T>(owner: object, slot: string): T | undefined {
  return states.get(owner)?.get(slot) as T | undefined;
}

/** Metrics survive versions too: registering a name twice in one registry would throw. */
export function counter<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  collect?: (this: Counter<L>) => void,
): Counter<L> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter<L>;
  return new Counter({ name, help, labelNames: [...labelNames], registers: [registry], ...(collect ? { collect } : {}) });
}

export function gauge<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  collect?: (this: Gauge<L>) => void,
): Gauge<L> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Gauge<L>;
  return new Gauge({ name, help, labelNames: [...labelNames], registers: [registry], ...(collect ? { collect } : {}) });
}

const closers = new WeakMap<object, (() => Promise<void> | void)[]>();

/** Run `fn` when the instance owning `owner` closes (worker pools, timers that outlive versions). */
export function onInstanceClose(owner: object, fn: () => Promise<void> | void): void {
  const list = closers.get(owner);
  if (list) list.push(fn);
  else closers.set(owner, [fn]);
}

/** Called by the sidecar engine once, on close: releases what onInstanceClose registered. */
export async function closeInstance(owner: object): Promise<void> {
  const list = closers.get(owner);
  if (!list) return;
  closers.delete(owner);
  await Promise.allSettled(list.map((fn) => fn()));
}
