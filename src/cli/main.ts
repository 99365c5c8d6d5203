#!/usr/bin/env node
import { runCli } from './run.js';

runCli(process.argv.slice(2)).then(
  (code) => {
    // Long-running commands (sidecar, manager) resolve only when they are done; short ones set
    // the exit code and let pending async log writes flush.
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`etz: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
