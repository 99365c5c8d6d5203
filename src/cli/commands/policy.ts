import { readFile, rename, writeFile } from 'node:fs/promises';
import { stringify } from 'yaml';
import type { Command } from '../run.js';
import { parseCommandArgs } from '../run.js';
import { ConfigError, UsageError } from '../../core/errors.js';
import { loadPolicyFiles, parsePolicyText, policyId } from '../../policy/load.js';
import { checkConflicts, lintPolicies, formatFindings } from '../../policy/lint.js';
import { CLIENT_OPTIONS, CLIENT_USAGE, clientFromFlags } from '../../manager/api-client.js';
import { AuthorizationEngine } from '../../policy/engine.js';
import { explanationJson, formatExplanation } from '../../policy/explain.js';
import { importPolicies } from '../../policy/import.js';
import { NetworkPolicyEngine, type NetRequest } from '../../policy/network.js';
import type { PolicyDocument, PolicyRequest } from '../../policy/types.js';

const USAGE = `Usage: etz policy lint FILE… [--json]
       etz policy check [-f FILE…] --to SERVICE [--from SPIFFE_ID] [--principal USER] [--method M]
                        [--path P] [--port N] [--host H] [--ip ADDR] [--version V] [--namespace NS]
                        [--header NAME=VALUE]… [--source-zone Z]… [--dest-zone Z]… [--json]
       etz policy check -f FILE… --network ingress --to SERVICE [--from SPIFFE_ID] [--ip ADDR] [--port N]
       etz policy check -f FILE… --network egress --from-service SERVICE (--to SERVICE | --host H | --ip ADDR)
                        [--port N]
       etz policy import FILE… [-o OUT] [--root-namespace NS]
       etz policy apply -f FILE… [--force] [--dry-run] [connection options]

lint    validate policy files and report conflicts: duplicate rules, rules shadowed by a broader
        rule, ALLOW rules a DENY fully covers, contradictory rules for one selector.
        Exit 0 when clean, 1 with conflicts, 2 when a file is invalid.
check   evaluate one request against the policies (the files, or without -f those in force in
        the zone manager) and explain the decision: the deciding policy and rule, and for every
        other rule the field that did not match.
        With --network, the network-policy decision for an inbound connection (ingress) or an
        outbound request (egress; without --to the destination is outside the mesh).
        Exit 0 when allowed, 1 when denied.
import  convert Istio AuthorizationPolicy (security.istio.io/v1) and Kubernetes NetworkPolicy
        (networking.k8s.io/v1) documents to etz policies (YAML on stdout, or -o FILE). Anything
        that cannot be mapped is refused with the field named (exit 2).
apply   validate, check for conflicts with the policies the zone manager already holds, and apply
        through its API; a set with conflicts is refused (exit 1, naming the rules) unless --force.

${CLIENT_USAGE}`;

type Sub = (argv: string[]) => Promise<number>;

function many(v: unknown): string[] {
  return (v as string[] | undefined) ?? [];
}

const lint: Sub = async (argv) => {
  const parsed = parseCommandArgs(argv, { json: { type: 'boolean' } }, USAGE, true);
  if (parsed === null) return 0;
  if (parsed.positionals.length === 0) throw new UsageError('lint needs at least one FILE');
  const docs = await loadPolicyFiles(parsed.positionals);
  const findings = lintPolicies(docs);
  if (parsed.values.json) process.stdout.write(`${JSON.stringify({ documents: docs.length, conflicts: findings }, null, 2)}\n`);
  else process.stdout.write(`${docs.length} document${docs.length === 1 ? '' : 's'}: ${formatFindings(findings)}`);
  return findings.length ? 1 : 0;
};

function parseHeaders(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of list) {
    const eq = h.indexOf('=');
    if (eq <= 0) throw new UsageError(`--header wants NAME=VALUE, got '${h}'`);
    out[h.slice(0, eq).trim().toLowerCase()] = h.slice(eq + 1);
  }
  return out;
}

const check: Sub = async (argv) => {
  const parsed = parseCommandArgs(
    argv,
    {
      file: { type: 'string', short: 'f', multiple: true },
      from: { type: 'string' },
      to: { type: 'string' },
      principal: { type: 'string' },
      method: { type: 'string', short: 'X' },
      path: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      ip: { type: 'string' },
      version: { type: 'string' },
      namespace: { type: 'string' },
      header: { type: 'string', short: 'H', multiple: true },
      'source-zone': { type: 'string', multiple: true },
      'dest-zone': { type: 'string', multiple: true },
      network: { type: 'string' },
      'from-service': { type: 'string' },
      ...CLIENT_OPTIONS,
    },
    USAGE,
    true,
  );
  if (parsed === null) return 0;
  const v = parsed.values;
  const files = [...many(v.file), ...parsed.positionals];
  // Without files: the policies in force, from the zone manager.
  const load = files.length ? () => loadPolicyFiles(files) : () => heldPolicies(v as Record<string, unknown>);
  if (v.network !== undefined) return checkNetwork(load, v);
  if (!v.to) throw new UsageError('check needs --to SERVICE');
  if (v.from !== undefined && !v.from.startsWith('spiffe://')) throw new UsageError(`--from wants a SPIFFE ID (spiffe://…), got '${v.from}'`);
  const port = portOf(v.port);
  const docs = await load();
  const r: PolicyRequest = {
    destService: v.to,
    method: (v.method ?? 'GET').toUpperCase(),
    path: v.path ?? '/',
    host: (v.host ?? v.to).toLowerCase(),
    headers: parseHeaders(many(v.header)),
    ...(v.from !== undefined ? { sourcePrincipal: v.from } : {}),
    ...(v.principal !== undefined ? { requestPrincipal: v.principal } : {}),
    ...(port !== undefined ? { port } : {}),
    ...(v.ip !== undefined ? { sourceIp: v.ip } : {}),
    ...(v.version !== undefined ? { destVersion: v.version } : {}),
    ...(v.namespace !== undefined ? { destNamespace: v.namespace } : {}),
    ...(v['source-zone'] ? { sourceZones: v['source-zone'] } : {}),
    ...(v['dest-zone'] ? { destZones: v['dest-zone'] } : {}),
  };
  const e = new AuthorizationEngine(docs, { cacheMax: 0 }).explain(r);
  if (v.json) process.stdout.write(`${JSON.stringify(explanationJson(r, e), null, 2)}\n`);
  else process.stdout.write(formatExplanation(r, e));
  return e.decision.allowed ? 0 : 1;
};

function portOf(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const port = Number(v);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`--port wants 1-65535, got '${v}'`);
  return port;
}

async function heldPolicies(v: Record<string, unknown>): Promise<PolicyDocument[]> {
  const client = await clientFromFlags(v);
  return (await client.call<{ items: PolicyDocument[] }>('GET', '/v1/policies')).items;
}

async function checkNetwork(load: () => Promise<PolicyDocument[]>, v: Record<string, string | string[] | boolean | undefined>): Promise<number> {
  const str = (k: string) => v[k] as string | undefined;
  const zones = (k: string) => v[k] as string[] | undefined;
  const port = portOf(str('port'));
  let r: NetRequest;
  if (v.network === 'ingress') {
    if (!str('to')) throw new UsageError('--network ingress needs --to SERVICE (the target)');
    r = {
      direction: 'ingress',
      target: { service: str('to')!, ...(str('version') ? { version: str('version') } : {}), ...(str('namespace') ? { namespace: str('namespace') } : {}), ...(zones('dest-zone') ? { zones: zones('dest-zone') } : {}) },
      ...(str('from') ? { sourcePrincipal: str('from') } : {}),
      ...(str('ip') ? { sourceIp: str('ip') } : {}),
      ...(zones('source-zone') ? { sourceZones: zones('source-zone') } : {}),
      ...(port !== undefined ? { port } : {}),
    };
  } else if (v.network === 'egress') {
    if (!str('from-service')) throw new UsageError('--network egress needs --from-service SERVICE (the caller)');
    if (!str('to') && !str('host') && !str('ip')) throw new UsageError('--network egress needs --to SERVICE, --host H or --ip ADDR');
    r = {
      direction: 'egress',
      target: { service: str('from-service')!, ...(zones('source-zone') ? { zones: zones('source-zone') } : {}) },
      ...(str('to') ? { destService: str('to') } : {}),
      destHost: (str('host') ?? str('to') ?? str('ip'))!.toLowerCase(),
      ...(str('ip') ? { destIp: str('ip') } : {}),
      ...(zones('dest-zone') ? { destZones: zones('dest-zone') } : {}),
      port: port ?? 80,
    };
  } else throw new UsageError(`--network wants ingress or egress, got '${String(v.network)}'`);
  const d = new NetworkPolicyEngine(await load()).evaluate(r);
  if (v.json) process.stdout.write(`${JSON.stringify({ decision: d.allowed ? 'ALLOW' : 'DENY', ...d, request: r }, null, 2)}\n`);
  else process.stdout.write(`${d.allowed ? 'ALLOW' : 'DENY'}: ${d.reason}\n${d.policy ? `decided by: network policy ${d.policy}${d.rule !== undefined ? ` ${r.direction} rule ${d.rule}` : ''}\n` : ''}`);
  return d.allowed ? 0 : 1;
}

const importCmd: Sub = async (argv) => {
  const parsed = parseCommandArgs(argv, { output: { type: 'string', short: 'o' }, 'root-namespace': { type: 'string' } }, USAGE, true);
  if (parsed === null) return 0;
  if (parsed.positionals.length === 0) throw new UsageError('import needs at least one FILE');
  const out: PolicyDocument[] = [];
  for (const file of parsed.positionals) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new ConfigError(file, '/', `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'ETZ_ERR_CONFIG_READ');
    }
    const rootNamespace = parsed.values['root-namespace'];
    out.push(...importPolicies(file, parsePolicyText(file, text), rootNamespace ? { rootNamespace } : {}));
  }
  const yaml = out.map((d) => stringify(d, { lineWidth: 0 })).join('---\n');
  const dest = parsed.values.output;
  if (dest) {
    // Whole file or nothing: an import that fails half-way must not leave a partial policy file.
    const tmp = `${dest}.tmp-${process.pid}`;
    await writeFile(tmp, yaml, { mode: 0o644 });
    await rename(tmp, dest);
    process.stderr.write(`etz: wrote ${out.length} polic${out.length === 1 ? 'y' : 'ies'} to ${dest}\n`);
  } else process.stdout.write(yaml);
  return 0;
};

const apply: Sub = async (argv) => {
  const parsed = parseCommandArgs(
    argv,
    { ...CLIENT_OPTIONS, file: { type: 'string', short: 'f', multiple: true }, force: { type: 'boolean' }, 'dry-run': { type: 'boolean' } },
    USAGE,
    true,
  );
  if (parsed === null) return 0;
  const v = parsed.values as Record<string, unknown>;
  const files = [...many(v.file), ...parsed.positionals];
  if (files.length === 0) throw new UsageError('apply needs the policies: -f FILE');
  const docs = await loadPolicyFiles(files);
  const client = await clientFromFlags(v);
  const held = (await client.call<{ items: PolicyDocument[] }>('GET', '/v1/policies')).items;
  const key = (d: PolicyDocument) => `${d.kind}/${policyId(d)}`;
  const replacing = new Set(docs.map(key));
  const findings = checkConflicts([...held.filter((d) => !replacing.has(key(d))), ...docs], { force: !!v.force, involving: new Set(docs.map(policyId)) });
  for (const f of findings) process.stderr.write(`etz: applying despite conflict [${f.kind}] ${f.message}\n`);
  const res = await client.call<{ applied: string[]; warnings: string[]; dryRun: boolean; configVersion?: number }>('POST', `/v1/policies?dryRun=${v['dry-run'] ? 'true' : 'false'}&force=${v.force ? 'true' : 'false'}`, { items: docs });
  if (v.json) process.stdout.write(`${JSON.stringify({ ...res, conflicts: findings }, null, 2)}\n`);
  else {
    for (const w of res.warnings) process.stderr.write(`etz: warning: ${w}\n`);
    process.stdout.write(`${res.dryRun ? 'would apply' : 'applied'} ${res.applied.join(', ')}${res.configVersion !== undefined && !res.dryRun ? ` (config version ${res.configVersion})` : ''}\n`);
  }
  return 0;
};

/** The subcommands of `etz policy`. */
export const SUBCOMMANDS: Record<string, Sub> = { lint, check, import: importCmd, apply };

export const command: Command = {
  summary: 'Lint, check (explain), import and apply authorization and network policies',
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
      process.stdout.write(`${USAGE}\n`);
      return sub === undefined ? 2 : 0;
    }
    const run = SUBCOMMANDS[sub];
    if (!run) throw new UsageError(`unknown policy subcommand '${sub}' (known: ${Object.keys(SUBCOMMANDS).join(', ')})`);
    try {
      return await run(rest);
    } catch (err) {
      // An importer refusal is bad input like an invalid file: exit 2 with file, field and reason.
      if (err instanceof ConfigError && err.code === 'ETZ_ERR_POLICY_IMPORT') {
        process.stderr.write(`etz: cannot import: ${err.message} [${err.code}]\n`);
        return 2;
      }
      throw err;
    }
  },
};
