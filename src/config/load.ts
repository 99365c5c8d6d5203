import { readFile } from 'node:fs/promises';
import { Ajv, type ErrorObject, type Schema, type ValidateFunction } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../core/errors.js';

/**
 * Loading a config is: read → parse (YAML or JSON) → apply ETZ_* overrides → validate with
 * defaults filled in. Any failure becomes a ConfigError naming the file, the field path and the
 * reason, which the CLI prints before exiting 2.
 */

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false, allowUnionTypes: true });
const compiled = new WeakMap<object, ValidateFunction>();

function validator(schema: Schema): ValidateFunction {
  const key = schema as object;
  let v = compiled.get(key);
  if (!v) {
    v = ajv.compile(schema);
    compiled.set(key, v);
  }
  return v;
}

export function formatAjvError(e: ErrorObject): { field: string; reason: string } {
  let field = e.instancePath || '';
  let reason = e.message ?? 'is invalid';
  if (e.keyword === 'additionalProperties') {
    field = `${field}/${(e.params as { additionalProperty: string }).additionalProperty}`;
    reason = 'is not a known field';
  } else if (e.keyword === 'required') {
    field = `${field}/${(e.params as { missingProperty: string }).missingProperty}`;
    reason = 'is required';
  } else if (e.keyword === 'enum') {
    reason = `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((x) => JSON.stringify(x)).join(', ')}`;
  }
  return { field: field || '/', reason };
}

/** Validate `data` (mutating it to fill defaults); throws ConfigError for the first failure. */
export function validateConfig<T>(file: string, schema: Schema, data: unknown): T {
  const v = validator(schema);
  if (!v(data)) {
    const errs = v.errors ?? [];
    // The most specific error is the most useful one; ajv lists anyOf/oneOf wrappers last.
    const first = errs.find((e) => e.keyword !== 'anyOf' && e.keyword !== 'oneOf' && e.keyword !== 'if') ?? errs[0]!;
    const { field, reason } = formatAjvError(first);
    throw new ConfigError(file, field, reason);
  }
  return data as T;
}

export function parseConfigText(file: string, text: string): unknown {
  try {
    if (/\.json$/i.test(file)) return JSON.parse(text);
    return parseYaml(text, { prettyErrors: true }) ?? {};
  } catch (err) {
    throw new ConfigError(file, '/', `cannot parse: ${(err as Error).message.split('\n')[0]}`, 'ETZ_ERR_CONFIG_READ');
  }
}

export async function readConfigFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, '/', `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'ETZ_ERR_CONFIG_READ');
  }
  return parseConfigText(file, text);
}

/**
 * ETZ_* overrides: `ETZ_<SECTION>__<FIELD>=value`, double underscore for nesting, names
 * lower-camel-cased (`ETZ_INBOUND__APP_PORT=8080` sets `inbound.appPort`). Values are JSON when
 * they parse as JSON, else strings. Variables in `ignore` (process-wide ones) are skipped.
 */
export function applyEnvOverrides(
  target: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
  prefix: string,
  ignore: ReadonlySet<string> = new Set(),
): string[] {
  const applied: string[] = [];
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(prefix) || raw === undefined || ignore.has(name)) continue;
    const parts = name.slice(prefix.length).split('__').map(camel);
    if (parts.some((p) => p === '' || p === '__proto__' || p === 'constructor' || p === 'prototype')) continue;
    let obj: Record<string, unknown> = target;
    for (const p of parts.slice(0, -1)) {
      const next = obj[p];
      if (next === undefined || next === null || typeof next !== 'object') obj[p] = {};
      obj = obj[p] as Record<string, unknown>;
    }
    obj[parts[parts.length - 1]!] = parseScalar(raw);
    applied.push(name);
  }
  return applied;
}

function camel(s: string): string {
  return s.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function parseScalar(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** Each process reads its own prefix (ETZ_SIDECAR_, ETZ_MANAGER_), so their overrides never collide. */
  envPrefix: string;
}

/** Read, override, validate. `file` may be undefined: then the schema's defaults alone apply. */
export async function loadConfig<T>(file: string | undefined, schema: Schema, opts: LoadOptions): Promise<T> {
  const data = (file ? await readConfigFile(file) : {}) as Record<string, unknown>;
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError(file ?? '(defaults)', '/', 'must be a mapping of fields');
  }
  applyEnvOverrides(data, opts.env ?? process.env, opts.envPrefix);
  return validateConfig<T>(file ?? '(environment)', schema, data);
}
