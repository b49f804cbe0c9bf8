/**
 * Preloaded into `regtrain run` by `epoch-step.js --cpu` (node -r): process.hrtime.bigint reads the
 * process's CPU time (user + system, all threads) instead of the wall clock, so the run's `epoch`
 * events report CPU seconds in `trainSeconds` and `seconds`. On a loaded machine the wall clock
 * also counts the time other processes hold the cores; CPU time does not. The loop (epoch and
 * training times) and the run's elapsed time are the only readers of this clock.
 */
process.hrtime.bigint = () => {
  const { user, system } = process.cpuUsage();
  return BigInt(user + system) * 1000n;
};
