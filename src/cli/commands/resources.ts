import type { Command } from '../run.js';
import { parseCommandArgs } from '../run.js';
import { ConfigError, UsageError } from '../../core/errors.js';
import { readConfigFile } from '../../config/load.js';
import { RESOURCE_TYPES, isTopic } from '../../protocol/messages.js';
import { CLIENT_OPTIONS, CLIENT_USAGE, clientFromFlags } from '../../manager/api-client.js';

const USAGE = `Usage: etz resources get TYPE [--topic TOPIC] [connection options]
       etz resources set TYPE -f FILE [--topic TOPIC] [connection options]
       etz resources clear TYPE [--topic TOPIC] [connection options]

The resources the zone manager pushes to sidecars, one type on one topic at a time.
TYPE is one of: ${RESOURCE_TYPES.join(', ')}.
TOPIC is mesh (the default), service/NAME or instance/NAME; a sidecar sees the list types of
its three topics concatenated, and for object types (peerAuthentication) the most specific one.

get     print the type's value on the topic (JSON)
set     replace it with FILE's content: a YAML or JSON list (routes, rateLimits, intel …) or
        object (peerAuthentication), validated by the manager (400 naming the field; nothing
        pushed) and then pushed; prints the config version that carries it
clear   remove the type from the topic (an empty list)

Example: inbound mTLS PERMISSIVE on port 9090 for every reviews sidecar, STRICT elsewhere:
  printf 'mode: STRICT\\nportLevel: { "9090": PERMISSIVE }\\n' > pa.yaml
  etz resources set peerAuthentication -f pa.yaml --topic service/reviews

The revocation list is kept by the manager (etz revoke), zones by the zone manager (etz zones)
and policies by etz policy apply: set refuses revoked, and the others are best changed there.

Options:
  -f, --file FILE        the new value (set)
  -t, --topic TOPIC      mesh | service/NAME | instance/NAME (default mesh)

${CLIENT_USAGE}`;

type ResourceValue = unknown[] | Record<string, unknown>;

function resourceType(t: string | undefined): string {
  if (!t) throw new UsageError(`missing TYPE: one of ${RESOURCE_TYPES.join(', ')}`);
  if (!(RESOURCE_TYPES as readonly string[]).includes(t)) throw new UsageError(`unknown resource type '${t}': one of ${RESOURCE_TYPES.join(', ')}`);
  return t;
}

export const command: Command = {
  summary: 'Get, set or clear the resources the zone manager pushes (routes, rate limits, intel, peerAuthentication …)',
  async run(argv) {
    const parsed = parseCommandArgs(argv, {
      ...CLIENT_OPTIONS,
      file: { type: 'string', short: 'f' },
      topic: { type: 'string', short: 't' },
    }, USAGE, true);
    if (parsed === null) return 0;
    const v = parsed.values as Record<string, unknown>;
    const [action, typeArg, ...rest] = parsed.positionals;
    if (rest.length) throw new UsageError(`unexpected argument '${rest[0]}'`);
    if (action !== 'get' && action !== 'set' && action !== 'clear') throw new UsageError(action ? `unknown action '${action}': get, set or clear` : 'missing action: get, set or clear');
    const type = resourceType(typeArg);
    const topic = typeof v.topic === 'string' ? v.topic : 'mesh';
    if (!isTopic(topic)) throw new UsageError(`--topic '${topic}': mesh, service/NAME or instance/NAME`);
    const path = `/v1/resources/${type}?topic=${encodeURIComponent(topic)}`;

    if (action === 'get') {
      if (v.file !== undefined) throw new UsageError('get takes no --file');
      const client = await clientFromFlags(v);
      const res = await client.call<{ items: ResourceValue }>('GET', path);
      process.stdout.write(`${JSON.stringify(v.json ? res : res.items, null, 2)}\n`);
      return 0;
    }

    let items: ResourceValue = [];
    if (action === 'set') {
      if (typeof v.file !== 'string') throw new UsageError('set needs the new value: -f FILE');
      // A file that cannot be read or parsed exits 2 naming it, before anything is sent.
      const doc = await readConfigFile(v.file);
      if (doc === null || typeof doc !== 'object') throw new ConfigError(v.file, '/', `must be a list or an object, not ${doc === null ? 'null' : typeof doc}`);
      items = doc as ResourceValue;
    } else if (v.file !== undefined) throw new UsageError('clear takes no --file');
    const client = await clientFromFlags(v);
    const res = await client.call<{ topic: string; type: string; items: number; configVersion: number }>('PUT', path, { items });
    if (v.json) process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
    else process.stdout.write(`${action === 'clear' ? 'cleared' : 'set'} ${res.type} on ${res.topic}${action === 'set' ? ` (${res.items} item${res.items === 1 ? '' : 's'})` : ''}: config version ${res.configVersion}\n`);
    return 0;
  },
};
