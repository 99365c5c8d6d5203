// Preloaded (`node --import`) into every etz process the demo starts, which it starts with an IPC
// channel. The channel closes when the demo goes away, even by SIGKILL, where no cleanup of the
// demo's own can run: the child then stops as if sent SIGTERM (its own graceful shutdown), and
// exits at the latest a few seconds later. Portable, unlike Linux's PR_SET_PDEATHSIG, and it
// survives `ip netns exec`, which execs the command with the same pid and file descriptors.

const HARD_EXIT_MS = 8000;

if (process.channel) {
  // The channel must not keep a finished command alive: the child's own work decides that.
  process.channel.unref();
  process.once('disconnect', () => {
    setTimeout(() => process.exit(1), HARD_EXIT_MS).unref();
    process.kill(process.pid, 'SIGTERM');
  });
}

export {};
