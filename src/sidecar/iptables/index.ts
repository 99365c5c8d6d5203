// Transparent interception: rule generation (pure) and the runner that applies it.
export {
  CHAINS,
  DEFAULT_OPTIONS,
  buildRules,
  formatRule,
  resolveOptions,
  parsePortList,
  parseCidrList,
  type Family,
  type InterceptOptions,
  type Rule,
  type RulePlan,
} from './rules.js';
export {
  DEFAULT_BINARIES,
  describePlan,
  familiesFor,
  hasGlobalIpv6,
  installInterception,
  removeInterception,
  type Binaries,
  type InterceptResult,
  type Ipv6Mode,
} from './apply.js';
