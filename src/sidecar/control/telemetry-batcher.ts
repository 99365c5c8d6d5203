import type { RequestRecord, TelemetrySink } from '../telemetry.js';

/**
 * The sidecar's telemetry sink towards the manager: records go into a fixed-size ring; a batch
 * leaves every `flushMs` or as soon as `maxBatch` records wait. While the manager is away the
 * ring keeps the newest records and counts the oldest it overwrote; the count travels with the
 * next batch so the manager knows what it missed.
 */
export interface BatcherOptions {
  capacity?: number;
  maxBatch?: number;
  flushMs?: number;
  /** Sends one batch; returns false when it cannot (disconnected): the records stay queued. */
  send(records: unknown[], dropped: number): boolean;
}

export class TelemetryBatcher implements TelemetrySink {
  private readonly ring: Array<unknown>;
  private head = 0;
  private size_ = 0;
  private pendingDrops = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly capacity: number;
  private readonly maxBatch: number;
  readonly stats = { recorded: 0, sent: 0, dropped: 0, batches: 0 };

  constructor(private readonly o: BatcherOptions) {
    this.capacity = o.capacity ?? 10_000;
    this.maxBatch = Math.min(o.maxBatch ?? 500, this.capacity);
    this.ring = new Array(this.capacity);
    this.timer = setInterval(() => this.flush(), o.flushMs ?? 1000);
    this.timer.unref();
  }

  get size(): number {
    return this.size_;
  }

  record(rec: RequestRecord | Record<string, unknown>): void {
    this.stats.recorded++;
    const tail = (this.head + this.size_) % this.capacity;
    this.ring[tail] = rec;
    if (this.size_ === this.capacity) {
      this.head = (this.head + 1) % this.capacity;
      this.pendingDrops++;
      this.stats.dropped++;
    } else {
      this.size_++;
    }
    if (this.size_ >= this.maxBatch) queueMicrotask(() => this.flush());
  }

  /** Send what is queued, batch by batch, until empty or the sender refuses. */
  flush(): void {
    while (this.size_ > 0) {
      const n = Math.min(this.size_, this.maxBatch);
      const batch = new Array(n);
      for (let i = 0; i < n; i++) batch[i] = this.ring[(this.head + i) % this.capacity];
      if (!this.o.send(batch, this.pendingDrops)) return;
      for (let i = 0; i < n; i++) this.ring[(this.head + i) % this.capacity] = undefined;
      this.head = (this.head + n) % this.capacity;
      this.size_ -= n;
      this.pendingDrops = 0;
      this.stats.sent += n;
      this.stats.batches++;
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
