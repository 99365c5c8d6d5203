/**
 * NAB benchmark: scores every built-in detector, run through the same CSV runner as `etz detect`
 * (or the real CLI with --cli), on the NAB subset with the ported NAB scoring, and checks the port
 * against NAB's published per-file results first.
 *
 *   npm run bench -- nab [--data DIR] [--detector NAME[,NAME]] [--cli]
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_SERIES_DETECTOR, getSeriesDetector, seriesDetectors } from '../../src/scoring/index.js';
import { detectCsv } from '../../src/scoring/series-csv.js';
import { loadCorpus, type CorpusFile } from './corpus.js';
import { WINDOWED_GAUSSIAN_STANDARD, WINDOWED_GAUSSIAN_THRESHOLD } from './published.js';
import { PROFILES, calcScoreByThreshold, calcSweepScore, evaluate, scoreAtThreshold, type DataFile, type ProfileResult } from './scorer.js';

const HERE = dirname(fileURLToPath(import.meta.url));
// dist/bench/nab → project root.
const ROOT = resolve(HERE, '../../..');
const CLI = join(ROOT, 'dist/src/cli/main.js');

function toCsv(f: CorpusFile): string {
  let s = 'timestamp,value\n';
  for (let i = 0; i < f.values.length; i++) s += `${f.timestamps[i]},${f.values[i]}\n`;
  return s;
}

function parseScores(out: string, expected: number, name: string): Float64Array {
  const lines = out.trimEnd().split('\n');
  if (lines[0] !== 'timestamp,value,anomaly_score' || lines.length - 1 !== expected) {
    throw new Error(`${name}: detector output has ${lines.length - 1} rows, expected ${expected}`);
  }
  const s = new Float64Array(expected);
  for (let i = 1; i < lines.length; i++) s[i - 1] = Number(lines[i]!.slice(lines[i]!.lastIndexOf(',') + 1));
  return s;
}

async function scoreInProcess(f: CorpusFile, detector: string): Promise<Float64Array> {
  const sink = new PassThrough();
  const chunks: Buffer[] = [];
  sink.on('data', (c: Buffer) => chunks.push(c));
  await detectCsv({ input: Readable.from([toCsv(f)]), output: sink, detector: getSeriesDetector(detector), inputName: f.name });
  sink.end();
  return parseScores(Buffer.concat(chunks).toString('utf8'), f.values.length, f.name);
}

function scoreWithCli(f: CorpusFile, detector: string): Promise<Float64Array> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [CLI, 'detect', '--detector', detector, '--input', f.path], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => (err += c));
    child.on('error', rej);
    child.on('close', (code) => {
      if (code !== 0) return rej(new Error(`etz detect ${f.name}: exit ${code}: ${err}`));
      try {
        res(parseScores(Buffer.concat(out).toString('utf8'), f.values.length, f.name));
      } catch (e) {
        rej(e);
      }
    });
  });
}

/** Checks the scoring port against NAB's published windowed-Gaussian per-file results. */
async function reproduce(corpus: CorpusFile[]) {
  let matched = 0;
  let compared = 0;
  let maxDiff = 0;
  const mismatches: string[] = [];
  for (const f of corpus) {
    const pub = WINDOWED_GAUSSIAN_STANDARD[f.name];
    if (!pub) continue;
    const scores = await scoreInProcess(f, 'windowed-gaussian');
    const rows = calcScoreByThreshold(calcSweepScore(scores, f.windows, f.name, PROFILES.standard!), PROFILES.standard!);
    const r = scoreAtThreshold(rows, WINDOWED_GAUSSIAN_THRESHOLD);
    compared++;
    const d = Math.abs(r.score - pub[0]);
    maxDiff = Math.max(maxDiff, d);
    if (d < 1e-9 && r.tp === pub[1] && r.fp === pub[2] && r.fn === pub[3]) matched++;
    else mismatches.push(`${f.name}: ours ${r.score.toFixed(4)} (tp ${r.tp} fp ${r.fp} fn ${r.fn}) vs NAB ${pub[0].toFixed(4)} (tp ${pub[1]} fp ${pub[2]} fn ${pub[3]})`);
  }
  return { compared, matched, maxScoreDiff: maxDiff, mismatches };
}

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { data: { type: 'string' }, detector: { type: 'string' }, cli: { type: 'boolean' }, quiet: { type: 'boolean' } },
    strict: true,
  });
  const dataDir = resolve(values.data ?? join(ROOT, '../shared/data/nab'));
  if (!existsSync(join(dataDir, 'combined_windows.json'))) throw new Error(`no NAB corpus at ${dataDir} (use --data DIR)`);
  const corpus = await loadCorpus(dataDir);
  const rowsTotal = corpus.reduce((a, f) => a + f.values.length, 0);
  const windowsTotal = corpus.reduce((a, f) => a + f.windows.length, 0);
  console.log(`NAB corpus: ${corpus.length} files, ${rowsTotal} rows, ${windowsTotal} anomaly windows (${dataDir})`);

  const repro = await reproduce(corpus);
  console.log(
    `Scoring port check vs NAB's published windowed-Gaussian results (standard, threshold 1.0): ` +
      `${repro.matched}/${repro.compared} files identical (max score difference ${repro.maxScoreDiff.toExponential(2)})`,
  );
  for (const m of repro.mismatches) console.log(`  differs: ${m}`);

  const names = values.detector ? values.detector.split(',') : Object.keys(seriesDetectors);
  const results: Record<string, { profiles: Record<string, ProfileResult>; seconds: number; rowsPerSecond: number; updatesPerSecond: number; slowestFile: { name: string; rows: number; ms: number } }> = {};
  for (const name of names) {
    const t0 = process.hrtime.bigint();
    const files: DataFile[] = [];
    let slowest = { name: '', rows: 0, ms: 0 };
    for (const f of corpus) {
      const s0 = process.hrtime.bigint();
      const scores = values.cli ? await scoreWithCli(f, name) : await scoreInProcess(f, name);
      const ms = Number(process.hrtime.bigint() - s0) / 1e6;
      if (ms > slowest.ms) slowest = { name: f.name, rows: f.values.length, ms };
      files.push({ name: f.name, scores, windows: f.windows });
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    // Raw detector cost, without CSV parsing: updates per second over the whole corpus.
    const u0 = process.hrtime.bigint();
    for (const f of corpus) {
      const d = getSeriesDetector(name);
      for (let i = 0; i < f.values.length; i++) d.update(f.values[i]!, i * 300_000);
    }
    const updatesPerSecond = rowsTotal / (Number(process.hrtime.bigint() - u0) / 1e9);
    const profiles: Record<string, ProfileResult> = {};
    for (const p of Object.keys(PROFILES)) profiles[p] = evaluate(files, p);
    results[name] = { profiles, seconds, rowsPerSecond: rowsTotal / seconds, updatesPerSecond, slowestFile: slowest };
  }

  const header = ['detector', 'standard', 'low_FP', 'low_FN', 'thr(std)', 'TP/FP(std)', 'csv rows/s', 'updates/s', 'slowest file'];
  const table = names.map((n) => {
    const r = results[n]!;
    const p = r.profiles;
    return [
      n + (n === DEFAULT_SERIES_DETECTOR ? ' *' : ''),
      p.standard!.normalized.toFixed(1),
      p.reward_low_FP_rate!.normalized.toFixed(1),
      p.reward_low_FN_rate!.normalized.toFixed(1),
      p.standard!.threshold.toFixed(4),
      `${p.standard!.tp}/${p.standard!.fp}`,
      Math.round(r.rowsPerSecond).toString(),
      Math.round(r.updatesPerSecond).toString(),
      `${r.slowestFile.rows} rows ${r.slowestFile.ms.toFixed(0)} ms`,
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  const fmt = (row: string[]) => row.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log('');
  console.log(fmt(header));
  for (const row of table) console.log(fmt(row));
  console.log(`(* default detector; ${values.cli ? 'each file through a real `etz detect` process' : 'in-process, same CSV runner as `etz detect`'})`);
  console.log('Published full-corpus NAB standard scores: ARTime 74.9, HTM 70.5, CAD OSE 69.9, RCF 51.7, windowed Gaussian 39.6, null 0.');

  if (!values.quiet) {
    const best = results[DEFAULT_SERIES_DETECTOR];
    if (best) {
      console.log(`\nPer-file standard-profile scores, ${DEFAULT_SERIES_DETECTOR}:`);
      for (const f of best.profiles.standard!.perFile) console.log(`  ${f.score.toFixed(3).padStart(8)}  tp ${String(f.tp).padStart(4)} fp ${String(f.fp).padStart(4)}  ${f.name}`);
    }
  }

  const outFile = join(ROOT, 'bench/results/nab.json');
  await mkdir(dirname(outFile), { recursive: true });
  await writeFile(
    outFile,
    JSON.stringify(
      {
        corpus: { files: corpus.length, rows: rowsTotal, windows: windowsTotal },
        mode: values.cli ? 'cli' : 'in-process',
        scoringCheck: repro,
        defaultDetector: DEFAULT_SERIES_DETECTOR,
        detectors: Object.fromEntries(
          Object.entries(results).map(([n, r]) => [
            n,
            {
              seconds: r.seconds,
              rowsPerSecond: r.rowsPerSecond,
              updatesPerSecond: r.updatesPerSecond,
              slowestFile: r.slowestFile,
              profiles: Object.fromEntries(
                Object.entries(r.profiles).map(([p, v]) => [
                  p,
                  { normalized: v.normalized, raw: v.rawScore, threshold: v.threshold, null: v.nullScore, perfect: v.perfectScore, tp: v.tp, fp: v.fp, fn: v.fn, perFile: v.perFile },
                ]),
              ),
            },
          ]),
        ),
      },
      null,
      2,
    ) + '\n',
  );
  console.log(`\nwrote ${outFile}`);
}
