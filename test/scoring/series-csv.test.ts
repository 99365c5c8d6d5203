import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { detectCsv, parseTimestamp } from '../../src/scoring/series-csv.js';
import { getSeriesDetector } from '../../src/scoring/index.js';
import { EtzError } from '../../src/core/errors.js';
import type { SeriesDetector } from '../../src/scoring/detector.js';

async function run(csv: string, detector: SeriesDetector = getSeriesDetector()): Promise<string> {
  const sink = new PassThrough();
  let out = '';
  sink.setEncoding('utf8').on('data', (d: string) => (out += d));
  await detectCsv({ input: Readable.from([csv]), output: sink, detector, inputName: 'mem.csv' });
  return out;
}

test('timestamps: NAB format as UTC, ISO with zone, epoch seconds and milliseconds', () => {
  assert.equal(parseTimestamp('2014-04-01 00:05:00'), Date.UTC(2014, 3, 1, 0, 5));
  assert.equal(parseTimestamp('2014-04-01T00:05:00+02:00'), Date.UTC(2014, 3, 0, 22, 5));
  assert.equal(parseTimestamp('1396310700'), 1396310700_000);
  assert.equal(parseTimestamp('1396310700000'), 1396310700_000);
  assert.ok(Number.isNaN(parseTimestamp('not a time')));
});

test('the detector sees each value with its own timestamp, in order', async () => {
  const seen: [number, number][] = [];
  const probe: SeriesDetector = {
    update(v, t) {
      seen.push([v, t]);
      return v / 10;
    },
  };
  const out = await run('timestamp,value\n2014-04-01 00:00:00,1\n\n2014-04-01 00:05:00,"2.5"\n2014-04-01 00:10:00,30\n', probe);
  assert.deepEqual(seen, [
    [1, Date.UTC(2014, 3, 1, 0, 0)],
    [2.5, Date.UTC(2014, 3, 1, 0, 5)],
    [30, Date.UTC(2014, 3, 1, 0, 10)],
  ]);
  // Scores are clamped into [0, 1]; a blank line is skipped, quoted cells are unquoted.
  assert.equal(out, 'timestamp,value,anomaly_score\n2014-04-01 00:00:00,1,0.1\n2014-04-01 00:05:00,2.5,0.25\n2014-04-01 00:10:00,30,1\n');
});

test('malformed rows raise ETZ_ERR_DETECT_INPUT with the input name and line', async () => {
  await assert.rejects(run('timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,1,2x\n2014-04-01 00:10:00,zz\n'), (e: unknown) => {
    assert.ok(e instanceof EtzError);
    assert.equal(e.code, 'ETZ_ERR_DETECT_INPUT');
    assert.match(e.message, /^mem\.csv:4: malformed row: value 'zz' is not a number$/);
    return true;
  });
  await assert.rejects(run(''), /mem\.csv:1: .*empty input/);
  await assert.rejects(run('a,b\n1,2\n'), /mem\.csv:1: .*header/);
});
