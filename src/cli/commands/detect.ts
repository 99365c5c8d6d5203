import type { Command } from '../run.js';
import { parseCommandArgs } from '../run.js';
import { EtzError, UsageError } from '../../core/errors.js';
import { DEFAULT_SERIES_DETECTOR, getSeriesDetector, seriesDetectors } from '../../scoring/index.js';
import { detectCsv } from '../../scoring/series-csv.js';

const USAGE = `Usage: etz detect [--detector NAME] [--input FILE | -] [--output FILE | -]

Scores one metric series (CSV with a header naming 'timestamp' and 'value', rows in time order)
and writes CSV 'timestamp,value,anomaly_score' with one row per input row; anomaly_score is in
[0, 1], higher is more anomalous. Streaming and causal: a row's score depends only on the rows
before it. Deterministic. A malformed row stops the run with exit status 2 and no output file.

Options:
  --detector NAME    one of the built-in detectors (default: ${DEFAULT_SERIES_DETECTOR}); see --list
  --input FILE | -   input CSV (default: stdin)
  --output FILE | -  output CSV (default: stdout)
  --list             list the built-in detectors and exit
  -h, --help         show this help`;

export const command: Command = {
  summary: 'Score a metric series for anomalies and drift (CSV in, CSV out)',
  async run(argv) {
    const parsed = parseCommandArgs(
      argv,
      {
        detector: { type: 'string', short: 'd' },
        input: { type: 'string', short: 'i' },
        output: { type: 'string', short: 'o' },
        list: { type: 'boolean' },
      },
      USAGE,
    );
    if (!parsed) return 0;
    const v = parsed.values;
    if (v.list) {
      const names = Object.keys(seriesDetectors);
      const w = Math.max(...names.map((n) => n.length));
      for (const n of names) {
        const mark = n === DEFAULT_SERIES_DETECTOR ? ' (default)' : '';
        process.stdout.write(`${n.padEnd(w)}  ${seriesDetectors[n]!.description}${mark}\n`);
      }
      return 0;
    }
    const name = v.detector ?? DEFAULT_SERIES_DETECTOR;
    if (!Object.hasOwn(seriesDetectors, name)) {
      throw new UsageError(`unknown detector '${name}' (known: ${Object.keys(seriesDetectors).join(', ')})`);
    }
    try {
      await detectCsv({ input: v.input ?? '-', output: v.output ?? '-', detector: getSeriesDetector(name) });
      return 0;
    } catch (err) {
      if (err instanceof EtzError && err.code === 'ETZ_ERR_DETECT_INPUT') {
        process.stderr.write(`etz detect: ${err.message} [${err.code}]\n`);
        return 2;
      }
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'EACCES') {
        process.stderr.write(`etz detect: ${(err as Error).message}\n`);
        return 2;
      }
      throw err;
    }
  },
};
