import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
// dist/src/core/version.js → ../../../package.json
export const VERSION: string = (require('../../../package.json') as { version: string }).version;
