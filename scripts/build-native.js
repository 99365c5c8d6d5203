#!/usr/bin/env node
// Install step for the SO_ORIGINAL_DST addon. It compiles from source with the node-gyp that npm
// bundles, against the Node headers already on the machine (never a prebuilt download). A failed
// build must not fail `npm ci`: etz then runs without original-destination recovery and routes
// intercepted traffic by Host header, so this prints why and exits 0.
// ETZ_NATIVE_REQUIRED=1 turns a failed build into a failed install (CI and the container image).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const required = process.env.ETZ_NATIVE_REQUIRED === '1';

function finish(ok, reason) {
  if (ok) {
    console.log('etz: native addon built: build/Release/etz_original_dst.node');
    process.exit(0);
  }
  const msg = `etz: native addon NOT built (${reason}); original-destination recovery is off and intercepted traffic is routed by Host header`;
  console.warn(msg);
  process.exit(required ? 1 : 0);
}

if (process.platform !== 'linux') finish(false, `SO_ORIGINAL_DST is Linux-only, platform is ${process.platform}`);

const candidates = [
  process.env.npm_config_node_gyp,
  join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
].filter(Boolean);
const gyp = candidates.find((p) => existsSync(p));
if (!gyp) finish(false, 'node-gyp not found');

const args = [gyp, 'rebuild', '--release'];
// Build against the headers of the running Node when they are installed locally, so no header
// tarball is fetched.
if (!process.env.npm_config_nodedir) {
  const local = join(dirname(process.execPath), '..');
  if (existsSync(join(local, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${local}`);
}
const r = spawnSync(process.execPath, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
if (r.error) finish(false, r.error.message);
finish(r.status === 0 && existsSync(join(root, 'build', 'Release', 'etz_original_dst.node')), `node-gyp exited ${r.status}`);
