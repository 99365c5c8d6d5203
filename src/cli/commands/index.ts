// Each subcommand registers itself here, one line per command, so that adding a command never
// touches the dispatcher. Imports stay lazy: only the chosen command's module is loaded.
import { registerCommand } from '../run.js';

registerCommand('iptables', 'Install, print or remove the iptables rules that redirect pod traffic to the sidecar', () => import('./iptables.js'));
registerCommand('detect', 'Score a metric series for anomalies and drift (CSV in, CSV out)', () => import('./detect.js'));
registerCommand('ca', 'Create the mesh CA and issue or sign workload certificates', () => import('./ca.js'));
registerCommand('replay', 'Replay a telemetry trace through the risk engine and zone manager (deterministic)', () => import('./replay.js'));
registerCommand('demo', 'Run the Bookinfo demo on a live etz mesh, with a scripted attack, on loopback', () => import('./demo.js'));
registerCommand('manager', 'Run the zone manager (control plane): CA, enrollment, config push, telemetry, API', () => import('./manager.js'));
registerCommand('status', 'Show the zone manager, its sidecars and rollout state', () => import('./status.js'));
registerCommand('zones', 'List, create, dissolve or pin trust zones', () => import('./zones.js'));
registerCommand('audit', 'Show the zone manager audit log', () => import('./audit.js'));
registerCommand('token', 'Create, list or revoke sidecar bootstrap tokens', () => import('./token.js'));
registerCommand('resources', 'Get, set or clear the resources the zone manager pushes (routes, rate limits, intel, peerAuthentication …)', () => import('./resources.js'));
registerCommand('revoke', "Revoke a sidecar's identity (evict a compromised workload) or list revocations", () => import('./revoke.js'));
registerCommand('gateway', 'Run the ingress gateway at the edge of the mesh (external HTTP/HTTPS into the mesh)', () => import('./gateway.js'));
registerCommand('policy', 'Lint, check (explain), import and apply authorization and network policies', () => import('./policy.js'));

registerCommand('risk', 'Show risk scores and explain them (etz risk ls | explain SUBJECT)', () => import('./risk.js'));
registerCommand('traffic', 'Traffic analysis per service and edge, with anomalies', () => import('./traffic.js'));

void registerCommand;
