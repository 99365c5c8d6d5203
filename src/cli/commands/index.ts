// Each subcommand registers itself here, one line per command, so that adding a command never
// touches the dispatcher. Imports stay lazy: only the chosen command's module is loaded.
import { registerCommand } from '../run.js';

registerCommand('iptables', 'Install, print or remove the iptables rules that redirect pod traffic to the sidecar', () => import('./iptables.js'));

void registerCommand;
