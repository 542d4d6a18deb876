/**
 * The virtual clock: fake timers for setTimeout/setInterval/Date, driven forward only when nothing
 * real is happening. setImmediate, process.nextTick and queueMicrotask stay real, so loopback I/O to
 * dynalite (and the promise chains around it) still progresses while virtual time stands still.
 *
 * The driver loop: wait until no tracked I/O is in flight and a few event-loop turns pass without any
 * new activity, then run the next fake timer (which jumps the clock to its due time), and repeat until
 * nothing is scheduled, the horizon is reached or the caller says it is done. A 60-minute bake is a
 * single jump.
 */
import { type Clock, withGlobal } from '@sinonjs/fake-timers';

// Captured before any fake timers are installed: these are what make the driver's waits real.
const realSetImmediate = globalThis.setImmediate;
const nextTurn = () => new Promise<void>((resolve) => realSetImmediate(resolve));

const MAX_TIMEOUT_MS = 2 ** 31 - 1;
/** Quiet event-loop turns required before the driver believes the world is idle. */
const QUIET_TURNS = 4;
/** A runaway (an interval nobody clears) stops here instead of spinning for a virtual month. */
const MAX_STEPS = 250_000;

/** Small, fast, seedable PRNG (mulberry32): reproducible retry jitter and ids. */
export const seededRandom = (seed: number): (() => number) => {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
};

export interface RunResult {
  /** Timers the driver ran (each one a jump of the clock). */
  readonly steps: number;
  /** Virtual milliseconds from install to the end of the run. */
  readonly virtualMs: number;
  /** Why the loop stopped. */
  readonly stoppedBy: 'idle' | 'done' | 'horizon';
}

export class VirtualClock {
  private clock: Clock | undefined;
  private originalRandom: (() => number) | undefined;
  private inFlight = 0;
  private activity = 0;
  private idleWaiters: Array<() => void> = [];
  private horizonId: ReturnType<typeof setTimeout> | undefined;
  private horizonReached = false;

  constructor(
    readonly startMs: number,
    private readonly seed = 1,
  ) {}

  install(): void {
    if (this.clock) throw new Error('the virtual clock is already installed');
    this.clock = withGlobal(globalThis).install({
      now: this.startMs,
      toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'],
      // A burst schedules thousands of deliveries; the default limit (1000) is for unit tests.
      loopLimit: MAX_STEPS,
      // A request that started before the clock was installed clears its (native) timers after.
      shouldClearNativeTimers: true,
    });
    this.originalRandom = Math.random;
    Math.random = seededRandom(this.seed);
  }

  uninstall(): void {
    if (this.horizonId !== undefined) clearTimeout(this.horizonId);
    this.horizonId = undefined;
    this.clock?.uninstall();
    this.clock = undefined;
    if (this.originalRandom) Math.random = this.originalRandom;
    this.originalRandom = undefined;
  }

  now(): number {
    return Date.now();
  }

  elapsed(): number {
    return Date.now() - this.startMs;
  }

  /** Run real I/O (a dynalite request) so that the driver does not move time while it is pending. */
  async io<T>(work: () => Promise<T>): Promise<T> {
    this.inFlight += 1;
    this.activity += 1;
    try {
      return await work();
    } finally {
      this.inFlight -= 1;
      this.activity += 1;
      if (this.inFlight === 0) for (const wake of this.idleWaiters.splice(0)) wake();
    }
  }

  /** Resolves once no I/O is in flight and the event loop has turned a few times with nothing new. */
  async settle(): Promise<void> {
    let quiet = 0;
    while (quiet < QUIET_TURNS) {
      if (this.inFlight > 0) {
        await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
        quiet = 0;
        continue;
      }
      const before = this.activity;
      await nextTurn();
      quiet = this.activity === before && this.inFlight === 0 ? quiet + 1 : 0;
    }
  }

  /**
   * Drive the clock: settle, run the next timer, repeat. Stops when nothing but the horizon is
   * scheduled ("idle"), when `done()` says so, or at `horizonMs` after the start.
   */
  async run(options: { horizonMs: number; done?: () => boolean }): Promise<RunResult> {
    const clock = this.clock;
    if (!clock) throw new Error('install the virtual clock before running it');
    this.horizonReached = false;
    const horizonAt = this.startMs + options.horizonMs;
    // setTimeout takes at most 2^31-1 ms (about 24.8 days): a longer horizon is reached in legs.
    const arm = () => {
      this.horizonId = setTimeout(
        () => {
          this.horizonId = undefined;
          if (Date.now() >= horizonAt) this.horizonReached = true;
          else arm();
        },
        Math.min(MAX_TIMEOUT_MS, Math.max(0, horizonAt - Date.now())),
      );
    };
    arm();
    let steps = 0;
    let stoppedBy: RunResult['stoppedBy'] = 'idle';
    for (;;) {
      await this.settle();
      if (this.horizonReached) {
        stoppedBy = 'horizon';
        break;
      }
      if (options.done?.()) {
        stoppedBy = 'done';
        break;
      }
      const ours = this.horizonId === undefined ? 0 : 1;
      if (clock.countTimers() <= ours) break;
      if (steps >= MAX_STEPS) {
        throw new Error(
          `the virtual clock ran ${MAX_STEPS} timers without settling: something reschedules itself forever`,
        );
      }
      await clock.nextAsync();
      steps += 1;
    }
    if (this.horizonId !== undefined) clearTimeout(this.horizonId);
    this.horizonId = undefined;
    return { steps, virtualMs: this.elapsed(), stoppedBy };
  }
}
