// How long the page waits between automatic reconnect attempts: doubling delays, capped, with jitter.

export interface BackoffOptions {
  baseDelayMs: number;
  maxDelayMs: number;
}

/** Delay before automatic attempt number `attempt` (0-based): 0.5 s, 1 s, 2 s ... capped, with jitter. */
export function backoffDelay(attempt: number, opts: BackoffOptions, rnd = Math.random): number {
  const exp = Math.min(opts.maxDelayMs, opts.baseDelayMs * Math.pow(2, Math.min(attempt, 30)));
  return Math.round(exp * (0.8 + 0.2 * rnd()));
}
