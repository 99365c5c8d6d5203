import { ConfigHub, type Subscriber } from '../../src/manager/pubsub/hub.js';

/**
 * The hub alone, in process, with no sockets: what the manager's own logic costs per sidecar to
 * publish a change and to take its ACK, once the rollout history is full (as in a manager that has
 * been running for a while). The end-to-end rounds cannot show this: they are dominated by TLS
 * and socket syscalls, and their history holds only as many changes as rounds were run.
 */

export interface HubCost {
  n: number;
  history: number;
  publishUsPerSidecar: number;
  ackUsPerAck: number;
}

export function measureHub(n: number, rounds = 300, history = 200): HubCost {
  const hub = new ConfigHub({ debounceMs: 60_000, rolloutHistory: history });
  const sent = new Map<string, Buffer>();
  const subs: Subscriber[] = [];
  for (let i = 0; i < n; i++) {
    const service = `svc-${i % 20}`;
    const instance = `${service}-${i}`;
    subs.push({ id: instance, node: { service, instance }, send: (m) => void sent.set(instance, m as Buffer), bufferedAmount: () => 0 });
  }
  // Version and nonce are at the head of every push the hub encodes.
  const head = (id: string) => {
    const t = sent.get(id)!.toString('latin1', 0, 160);
    return { version: Number(/"version":(\d+)/.exec(t)![1]), nonce: /"nonce":"([^"]+)"/.exec(t)![1]! };
  };
  const ackAll = () => {
    const { version, nonce } = head(subs[0]!.id);
    for (const s of subs) hub.ack(s.id, version, nonce);
  };
  for (const s of subs) hub.subscribe(s, 0);
  for (const s of subs) hub.ack(s.id, head(s.id).version, head(s.id).nonce);
  const zones = Array.from({ length: 20 }, (_, i) => ({ id: `con-${i}`, type: 'containment', members: [{ service: `svc-${i}` }], enforce: true, outbound: { mode: 'block', allow: ['etz-manager', 'dns'], ratePerMinute: 60 }, audit: true }));
  let publishNs = 0;
  let ackNs = 0;
  for (let r = 0; r < history + rounds; r++) {
    hub.set('mesh', 'zones', { zones: zones.slice(0, (r % zones.length) + 1) });
    hub.set('mesh', 'principals', []);
    const t0 = process.hrtime.bigint();
    hub.publish();
    const t1 = process.hrtime.bigint();
    ackAll();
    const t2 = process.hrtime.bigint();
    if (r >= history) {
      publishNs += Number(t1 - t0);
      ackNs += Number(t2 - t1);
    }
  }
  hub.close();
  return { n, history, publishUsPerSidecar: publishNs / rounds / n / 1000, ackUsPerAck: ackNs / rounds / n / 1000 };
}
