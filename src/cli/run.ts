import { parseArgs, type ParseArgsConfig } from 'node:util';
import { EtzError, UsageError } from '../core/errors.js';
import { VERSION } from '../core/version.js';

/** A subcommand: parses its own argv and resolves to the process exit status. */
export interface Command {
  summary: string;
  run(argv: string[]): Promise<number>;
}

// Subcommands load lazily so that `etz version` does not pay for the sidecar's imports.
const COMMANDS: Record<string, { summary: string; load: () => Promise<{ command: Command }> }> = {
  sidecar: { summary: 'Run the sidecar proxy beside one service', load: () => import('./commands/sidecar.js') },
  version: { summary: 'Print the etz version', load: async () => ({ command: versionCommand }) },
};

/** Register a subcommand; each command module's import is listed in ./commands/index.ts. */
export function registerCommand(name: string, summary: string, load: () => Promise<{ command: Command }>): void {
  COMMANDS[name] = { summary, load };
}

const versionCommand: Command = {
  summary: 'Print the etz version',
  async run() {
    process.stdout.write(`etz ${VERSION} (node ${process.version})\n`);
    return 0;
  },
};

export function helpText(): string {
  const names = Object.keys(COMMANDS).sort();
  const w = Math.max(...names.map((n) => n.length));
  return [
    'etz — a zero-trust service mesh with ephemeral trust zones',
    '',
    'Usage: etz <command> [options]',
    '',
    'Commands:',
    ...names.map((n) => `  ${n.padEnd(w)}  ${COMMANDS[n]!.summary}`),
    '',
    'Run `etz <command> --help` for the options of one command.',
    '',
  ].join('\n');
}

export async function runCli(argv: string[]): Promise<number> {
  await import('./commands/index.js');
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(helpText());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v') return versionCommand.run([]);
  const entry = COMMANDS[name];
  if (!entry) return usageFailure(`unknown command '${name}'`);
  try {
    const { command } = await entry.load();
    return await command.run(rest);
  } catch (err) {
    return reportCliError(err, name);
  }
}

/** The one place a CLI error becomes a message and an exit status. */
export function reportCliError(err: unknown, name?: string): number {
  if (err instanceof UsageError) return usageFailure(err.message, name);
  if (err instanceof EtzError && (err.code === 'ETZ_ERR_CONFIG_INVALID' || err.code === 'ETZ_ERR_CONFIG_READ')) {
    process.stderr.write(`etz: invalid config: ${err.message} [${err.code}]\n`);
    return 2;
  }
  if (err instanceof EtzError) {
    process.stderr.write(`etz: ${err.message} [${err.code}]\n`);
    return 1;
  }
  throw err;
}

function usageFailure(message: string, name?: string): number {
  process.stderr.write(`etz: ${message}\nRun 'etz ${name ? `${name} ` : ''}--help' for usage.\n`);
  return 2;
}

/**
 * node:util parseArgs with etz's conventions: strict, and any parse problem is a UsageError
 * (exit 2). Returns null when --help was asked for, after printing `usage`.
 */
export function parseCommandArgs<T extends NonNullable<ParseArgsConfig['options']>>(
  argv: string[],
  options: T,
  usage: string,
  allowPositionals = false,
) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if ((parsed.values as Record<string, unknown>).help) {
    process.stdout.write(usage.endsWith('\n') ? usage : `${usage}\n`);
    return null;
  }
  return parsed;
}
