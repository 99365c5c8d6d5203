import { parseArgs } from 'node:util';
import { runAppsProcess } from './apps.js';

// Entry point of the apps child process that `etz demo` starts: all six apps on loopback, or
// `--only reviews-v2 --listen 0.0.0.0:9080 --direct`, one app in its own pod calling the others
// by name (`etz demo --iptables`).
const { values } = parseArgs({
  options: { only: { type: 'string' }, listen: { type: 'string' }, direct: { type: 'boolean' } },
  strict: true,
});
const listen = values.listen === undefined ? undefined : /^(.+):(\d+)$/.exec(values.listen);
if (values.listen !== undefined && !listen) throw new Error(`--listen: expected HOST:PORT, got '${values.listen}'`);
void runAppsProcess({
  ...(values.only ? { only: values.only.split(',') } : {}),
  ...(listen ? { host: listen[1]!, port: Number(listen[2]) } : {}),
  direct: !!values.direct,
});
