import { ConfigError } from '../core/errors.js';
import { validatePolicyDocuments } from './load.js';
import type { PolicyDocument } from './types.js';

/**
 * The sidecar's policy resources (`policies`, `networkPolicies`): lists of policy documents,
 * checked with the same validator as files, errors named `/resources/<key>/<index>/…` so a NACK
 * says exactly which document and field were refused.
 */
export function loadResource(key: string, value: unknown[] | undefined): PolicyDocument[] {
  if (value === undefined) return [];
  try {
    return validatePolicyDocuments('resources', value, { indexed: true });
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError('resources', `/resources/${key}${err.field === '/' ? '' : err.field}`, err.reason);
    throw err;
  }
}
