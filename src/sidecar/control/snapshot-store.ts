import { readFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { RESOURCE_TYPES, type Resources } from '../../protocol/messages.js';
import type { Logger } from '../../core/logger.js';
import { writeFileAtomic } from './credentials.js';

/**
 * The fail-static snapshot: the last config the sidecar applied, so that it enforces what it last
 * knew even when the manager is down at its own start.
 */

export interface SnapshotFile {
  version: number;
  resources: Resources;
  savedAt: number;
}

const SNAPSHOT_FILE = 'snapshot.json';

export function snapshotPath(dataDir: string): string {
  return join(dataDir, SNAPSHOT_FILE);
}

/** The saved snapshot, or undefined when there is none or it cannot be read. */
export async function readSnapshot(dataDir: string): Promise<SnapshotFile | undefined> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  try {
    return JSON.parse(await readFile(snapshotPath(dataDir), 'utf8')) as SnapshotFile;
  } catch {
    return undefined;
  }
}

/**
 * Writes off the push path: at most one write in flight, and a burst of versions writes only the
 * last one. The ACK does not wait for it — the manager holds the config; the file only has to be
 * recent enough to enforce while the manager is away.
 */
export class SnapshotWriter {
  private saving: Promise<void> | undefined;
  private saveAgain = false;

  constructor(
    private readonly dataDir: string,
    private readonly logger: Logger,
    private readonly stopped: () => boolean,
  ) {}

  /** `current` is read at write time, so a coalesced burst saves the newest version. */
  write(current: () => SnapshotFile): void {
    if (this.saving) {
      this.saveAgain = true;
      return;
    }
    this.saving = (async () => {
      do {
        this.saveAgain = false;
        try {
          await writeFileAtomic(snapshotPath(this.dataDir), JSON.stringify(current()));
        } catch (err) {
          this.logger.error({ err }, 'could not persist the config snapshot');
        }
      } while (this.saveAgain && !this.stopped());
      this.saving = undefined;
    })();
  }

  /** Settles when no write is in flight. */
  async idle(): Promise<void> {
    await this.saving;
  }
}

// The sidecar validates each resource key it is given; types with nothing in them are left out
// so that a sidecar without, say, an intel filter accepts a config that carries no intel.
export function nonEmpty(r: Resources): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const t of RESOURCE_TYPES) {
    const v = r[t];
    if (v !== null && v !== undefined && !(Array.isArray(v) && v.length === 0)) out[t] = v;
  }
  return out;
}
