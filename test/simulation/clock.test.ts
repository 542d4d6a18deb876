import { seededRandom, VirtualClock } from '../../simulation/clock';

const START = Date.parse('2024-09-04T16:00:00Z');
const nativeRandom = Math.random;

/** Real (loopback-like) I/O: completes after a few real event-loop turns, never on a fake timer. */
const realIo = (turns: number) =>
  new Promise<string>((resolve) => {
    let n = 0;
    const step = () => (++n >= turns ? resolve('done') : setImmediate(step));
    setImmediate(step);
  });

describe('virtual clock driver', () => {
  let clock: VirtualClock;
  beforeEach(() => {
    clock = new VirtualClock(START, 7);
    clock.install();
  });
  afterEach(() => clock.uninstall());

  it('jumps over a 60-minute wait in one step', async () => {
    // Prepare
    const fired: number[] = [];
    setTimeout(() => fired.push(Date.now()), 60 * 60_000);

    // Act
    const run = await clock.run({ horizonMs: 24 * 3_600_000 });

    // Assess: one timer, one jump, and Date.now() saw the virtual time.
    expect(fired).toEqual([START + 3_600_000]);
    expect(run).toEqual({ steps: 1, virtualMs: 3_600_000, stoppedBy: 'idle' });
  });

  it('does not move time while tracked I/O is in flight', async () => {
    // Prepare: a timer due in 1 s, and I/O that takes many real turns and then schedules more work.
    const seen: Array<[string, number]> = [];
    setTimeout(() => seen.push(['timer', Date.now() - START]), 1_000);
    void clock
      .io(() => realIo(25))
      .then(() => {
        seen.push(['io', Date.now() - START]);
        setTimeout(() => seen.push(['after io', Date.now() - START]), 500);
      });

    // Act
    await clock.run({ horizonMs: 60_000 });

    // Assess: the I/O completed at virtual 0, before the clock moved on.
    expect(seen).toEqual([
      ['io', 0],
      ['after io', 500],
      ['timer', 1_000],
    ]);
  });

  it('stops at the horizon even with work left', async () => {
    setInterval(() => undefined, 60_000);
    const run = await clock.run({ horizonMs: 10 * 60_000 });
    expect(run.stoppedBy).toBe('horizon');
    expect(run.virtualMs).toBe(10 * 60_000);
  });

  it('reaches horizons beyond the longest setTimeout (24.8 days)', async () => {
    setTimeout(() => undefined, 2 ** 31 - 1);
    setTimeout(() => undefined, 2 ** 31 - 1);
    const run = await clock.run({ horizonMs: 30 * 86_400_000 });
    expect(run.stoppedBy).toBe('idle');
    expect(run.virtualMs).toBe(2 ** 31 - 1);
  });

  it('seeds Math.random while installed and restores it after', () => {
    const first = [Math.random(), Math.random()];
    const again = seededRandom(7);
    expect(first).toEqual([again(), again()]);
    clock.uninstall();
    expect(Math.random).toBe(nativeRandom);
    clock.install();
  });
});
