import { TransientError } from '../errors';
import { sleep } from './table';

/** Optimistic-concurrency rounds before a lock transition gives up, whatever time is left (each round is one read + one write). */
const CONTENTION_MAX_ATTEMPTS = 500;

/** See LedgerOptions.contention. */
export interface ContentionPolicy {
  readonly budgetMs: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

/** Per call: an absolute deadline (epoch ms, e.g. from the Lambda's remaining time) for the contention loop. */
export interface ContentionOptions {
  readonly deadlineMs?: number;
}

/**
 * The optimistic-concurrency loop of one lock transition: `next()` is true for the first round at
 * once, then after a pause with full jitter (base * 2^round, capped), as long as the pause ends
 * before the deadline; `lost()` is the error to throw when it returns false. Wall-clock time
 * (Date.now), not the ledger's `now`, which tests and the simulation may freeze or move.
 */
export const contend = (
  policy: ContentionPolicy,
  op: string,
  serviceKey: string,
  options: ContentionOptions = {},
): { next(): Promise<boolean>; lost(): TransientError } => {
  const { budgetMs, baseDelayMs, maxDelayMs } = policy;
  const startedAt = Date.now();
  const deadline = Math.min(startedAt + budgetMs, options.deadlineMs ?? Number.POSITIVE_INFINITY);
  let rounds = 0;
  return {
    next: async (): Promise<boolean> => {
      if (rounds >= CONTENTION_MAX_ATTEMPTS) return false;
      if (rounds > 0) {
        const pause = Math.random() * Math.min(maxDelayMs, baseDelayMs * 2 ** Math.min(rounds, 16));
        if (Date.now() + pause > deadline) return false;
        await sleep(pause);
      }
      rounds++;
      return true;
    },
    lost: (): TransientError =>
      new TransientError(
        `ledger ${op} for ${serviceKey}: the lock changed under ${rounds} attempts in ${Date.now() - startedAt} ms; retry`,
      ),
  };
};
