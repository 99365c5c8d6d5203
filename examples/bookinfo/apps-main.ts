import { runAppsProcess } from './apps.js';

// Entry point of the apps child process that `etz demo` forks.
void runAppsProcess();
