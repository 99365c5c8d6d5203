/** Loads a NAB corpus folder: data/<category>/<file>.csv plus combined_windows.json. */
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

export interface CorpusFile {
  /** NAB's relative name, e.g. `realTweets/Twitter_volume_AAPL.csv`. */
  name: string;
  path: string;
  timestamps: string[];
  values: number[];
  /** Window limits as row indices [start, end], in order. */
  windows: [number, number][];
}

// NAB labels carry microseconds ('2014-04-10 07:15:00.000000'); data rows carry seconds.
function normalizeTs(s: string): string {
  return s.trim().replace(/\.0+$/, '');
}

export async function loadCorpus(dataDir: string): Promise<CorpusFile[]> {
  const windows = JSON.parse(await readFile(join(dataDir, 'combined_windows.json'), 'utf8')) as Record<string, [string, string][]>;
  const root = join(dataDir, 'data');
  const files: CorpusFile[] = [];
  for (const cat of (await readdir(root)).sort()) {
    if (!(await stat(join(root, cat))).isDirectory()) continue;
    for (const f of (await readdir(join(root, cat))).sort()) {
      if (!f.endsWith('.csv')) continue;
      const name = `${cat}/${f}`;
      const path = join(root, cat, f);
      const lines = (await readFile(path, 'utf8')).split(/\r?\n/).filter((l) => l.trim() !== '');
      const header = lines[0]!.split(',').map((c) => c.trim());
      const ti = header.indexOf('timestamp');
      const vi = header.indexOf('value');
      const timestamps: string[] = [];
      const values: number[] = [];
      for (let i = 1; i < lines.length; i++) {
        const cells = lines[i]!.split(',');
        timestamps.push(normalizeTs(cells[ti]!));
        values.push(Number(cells[vi]));
      }
      const index = new Map(timestamps.map((t, i) => [t, i]));
      const wins: [number, number][] = [];
      for (const [a, b] of windows[name] ?? []) {
        const s = index.get(normalizeTs(a));
        const e = index.get(normalizeTs(b));
        if (s === undefined || e === undefined) throw new Error(`${name}: window ${a}..${b} does not match row timestamps`);
        wins.push([s, e]);
      }
      if (!(name in windows)) throw new Error(`${name}: no entry in combined_windows.json`);
      files.push({ name, path, timestamps, values, windows: wins });
    }
  }
  return files;
}
