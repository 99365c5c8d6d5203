// `npm run bench -- <name> [args]`: each benchmark is a module ./<name>/index.js exporting run(args).
const BENCHES: Record<string, () => Promise<{ run(args: string[]): Promise<void> }>> = {
  nab: () => import('./nab/index.js'),
  http: () => import('./http/index.js'),
  ca: () => import('./ca/index.js'),
  filters: () => import('./filters/index.js'),
  interception: () => import('./interception/index.js'),
  policy: () => import('./policy/index.js'),
  risk: () => import('./risk/index.js'),
  intel: () => import('./intel/index.js'),
  'control-plane': () => import('./control-plane/index.js'),
  'port-level': () => import('./port-level/index.js'),
  revocation: () => import('./revocation/index.js'),
};

const [name, ...rest] = process.argv.slice(2);
const load = name ? BENCHES[name] : undefined;
if (!load) {
  console.error(`usage: npm run bench -- <${Object.keys(BENCHES).join('|')}> [args]`);
  process.exit(2);
}
await (await load()).run(rest);
