/**
 * The one way Autopatch bounds concurrent AWS calls: a semaphore. `Limiter` is shared by calls made
 * from many places (the inventory's ECS reads under the Describe* rate limits); `mapLimit` maps a
 * list with at most `limit` calls in flight (the ledger's batch reads).
 */
export class Limiter {
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly max: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active < this.max) this.active++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

/** `items` mapped through `fn`, in order, with at most `limit` calls in flight. */
export const mapLimit = <T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> => {
  const limiter = new Limiter(Math.max(1, limit));
  return Promise.all(items.map((item) => limiter.run(() => fn(item))));
};
