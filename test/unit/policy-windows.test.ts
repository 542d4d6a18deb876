import { compileGlobs, type MaintenanceWindow, nextWindow } from '../../lambdas/triage/policy';

const berlinWeekend: MaintenanceWindow = {
  name: 'weekend',
  schedule: { days: ['SAT', 'SUN'], start: '02:00' },
  timeZone: 'Europe/Berlin',
  durationMinutes: 240,
};

const newYorkWeeknights: MaintenanceWindow = {
  name: 'weeknights',
  schedule: { days: ['MON', 'TUE', 'WED', 'THU', 'FRI'], start: '22:00' },
  timeZone: 'America/New_York',
  durationMinutes: 120,
};

const window = (
  over: Partial<MaintenanceWindow> & Pick<MaintenanceWindow, 'schedule' | 'timeZone'>,
): MaintenanceWindow => ({
  name: 'w',
  durationMinutes: 60,
  ...over,
});

describe('nextWindow', () => {
  it.each([
    // Europe/Berlin, summer (CEST, UTC+2): SAT/SUN 02:00 local is 00:00Z
    [
      'Berlin, a Wednesday in summer',
      berlinWeekend,
      '2024-09-04T12:00:00Z',
      false,
      '2024-09-07T00:00:00.000Z',
    ],
    [
      'Berlin, at the very start of the window',
      berlinWeekend,
      '2024-09-07T00:00:00Z',
      true,
      '2024-09-08T00:00:00.000Z',
    ],
    [
      'Berlin, inside Saturday’s window',
      berlinWeekend,
      '2024-09-07T01:00:00Z',
      true,
      '2024-09-08T00:00:00.000Z',
    ],
    [
      'Berlin, at the very end of the window',
      berlinWeekend,
      '2024-09-07T04:00:00Z',
      false,
      '2024-09-08T00:00:00.000Z',
    ],
    [
      'Berlin, Sunday after the window',
      berlinWeekend,
      '2024-09-08T05:00:00Z',
      false,
      '2024-09-14T00:00:00.000Z',
    ],
    // winter (CET, UTC+1): 02:00 local is 01:00Z
    [
      'Berlin, a Wednesday in winter',
      berlinWeekend,
      '2024-11-06T12:00:00Z',
      false,
      '2024-11-09T01:00:00.000Z',
    ],
    [
      'Berlin, just before the winter window',
      berlinWeekend,
      '2024-11-09T00:30:00Z',
      false,
      '2024-11-09T01:00:00.000Z',
    ],
    [
      'Berlin, Saturday before spring-forward (still CET)',
      berlinWeekend,
      '2024-03-29T12:00:00Z',
      false,
      '2024-03-30T01:00:00.000Z',
    ],
    // 02:00 does not exist on 2024-03-31 in Berlin: the window opens at 03:00 CEST (01:00Z)
    [
      'Berlin, spring-forward Sunday',
      berlinWeekend,
      '2024-03-30T12:00:00Z',
      false,
      '2024-03-31T01:00:00.000Z',
    ],
    // 02:00 happens twice on 2024-10-27 in Berlin: the first one (CEST, 00:00Z)
    ['Berlin, fall-back Sunday', berlinWeekend, '2024-10-26T12:00:00Z', false, '2024-10-27T00:00:00.000Z'],
    // America/New_York, summer (EDT, UTC-4): 22:00 local is 02:00Z the next day
    [
      'New York, a Sunday in summer',
      newYorkWeeknights,
      '2024-06-30T12:00:00Z',
      false,
      '2024-07-02T02:00:00.000Z',
    ],
    [
      'New York, inside Monday night’s window',
      newYorkWeeknights,
      '2024-07-02T03:00:00Z',
      true,
      '2024-07-03T02:00:00.000Z',
    ],
    [
      'New York, after Monday night’s window',
      newYorkWeeknights,
      '2024-07-02T04:30:00Z',
      false,
      '2024-07-03T02:00:00.000Z',
    ],
    [
      'New York, Friday night (Saturday in UTC)',
      newYorkWeeknights,
      '2024-07-06T03:30:00Z',
      true,
      '2024-07-09T02:00:00.000Z',
    ],
    // winter (EST, UTC-5): 22:00 local is 03:00Z the next day
    [
      'New York, a Monday in winter',
      newYorkWeeknights,
      '2024-12-02T12:00:00Z',
      false,
      '2024-12-03T03:00:00.000Z',
    ],
    // the Friday before spring-forward is still EST; the Monday after is EDT
    [
      'New York, across spring-forward',
      newYorkWeeknights,
      '2024-03-09T12:00:00Z',
      false,
      '2024-03-12T02:00:00.000Z',
    ],
  ])('%s', (_what, w, now, inside, nextStart) => {
    // Act
    const state = nextWindow([w], new Date(now));

    // Assess
    expect(state.inside).toBe(inside);
    expect(state.nextStart?.toISOString()).toBe(nextStart);
  });

  it('tells which occurrence now is inside of', () => {
    // Act
    const state = nextWindow([berlinWeekend], new Date('2024-09-07T01:00:00Z'));

    // Assess
    expect(state.current).toEqual({
      name: 'weekend',
      start: new Date('2024-09-07T00:00:00.000Z'),
      end: new Date('2024-09-07T04:00:00.000Z'),
    });
  });

  it.each([
    // a start that does not exist (02:30 on spring-forward day) is pushed forward by the gap
    ['Berlin', 'SUN', '02:30', '2024-03-30T12:00:00Z', '2024-03-31T01:30:00.000Z'],
    ['New York', 'SUN', '02:30', '2024-03-09T12:00:00Z', '2024-03-10T07:30:00.000Z'],
    // a start that happens twice (fall-back day) is its first occurrence, in daylight time
    ['Berlin', 'SUN', '02:30', '2024-10-26T12:00:00Z', '2024-10-27T00:30:00.000Z'],
    ['New York', 'SUN', '01:30', '2024-11-02T12:00:00Z', '2024-11-03T05:30:00.000Z'],
    // the week after each change, the plain offset again
    ['Berlin', 'SUN', '02:30', '2024-04-06T12:00:00Z', '2024-04-07T00:30:00.000Z'],
    ['New York', 'SUN', '01:30', '2024-11-09T12:00:00Z', '2024-11-10T06:30:00.000Z'],
  ])('%s: a %s %s window around a DST change', (city, day, start, now, nextStart) => {
    // Prepare
    const w = window({
      schedule: { days: [day as 'SUN'], start },
      timeZone: city === 'Berlin' ? 'Europe/Berlin' : 'America/New_York',
    });

    // Act
    const state = nextWindow([w], new Date(now));

    // Assess
    expect(state.nextStart?.toISOString()).toBe(nextStart);
  });

  it('keeps a window that runs past local midnight open into the next day', () => {
    // Prepare: SAT 23:00-02:00 in Berlin; now is Sunday 00:30 local
    const w = window({
      schedule: { days: ['SAT'], start: '23:00' },
      timeZone: 'Europe/Berlin',
      durationMinutes: 180,
    });

    // Act
    const state = nextWindow([w], new Date('2024-09-07T22:30:00Z'));

    // Assess
    expect(state.inside).toBe(true);
    expect(state.current?.start.toISOString()).toBe('2024-09-07T21:00:00.000Z');
    expect(state.current?.end.toISOString()).toBe('2024-09-08T00:00:00.000Z');
  });

  it('measures the duration in elapsed time across a DST change', () => {
    // Prepare: SUN 01:00-05:00 Berlin on spring-forward day: four real hours, until 06:00 CEST
    const w = window({
      schedule: { days: ['SUN'], start: '01:00' },
      timeZone: 'Europe/Berlin',
      durationMinutes: 240,
    });

    // Act
    const state = nextWindow([w], new Date('2024-03-31T03:30:00Z'));

    // Assess
    expect(state.inside).toBe(true);
    expect(state.current?.end.toISOString()).toBe('2024-03-31T04:00:00.000Z');
  });

  it('picks the earliest of several windows', () => {
    // Act
    const state = nextWindow([berlinWeekend, newYorkWeeknights], new Date('2024-09-04T12:00:00Z'));

    // Assess
    expect(state.inside).toBe(false);
    expect(state.next?.name).toBe('weeknights');
    expect(state.nextStart?.toISOString()).toBe('2024-09-05T02:00:00.000Z');
  });

  it('is inside when any window is open', () => {
    // Act
    const state = nextWindow([newYorkWeeknights, berlinWeekend], new Date('2024-09-07T01:00:00Z'));

    // Assess
    expect(state.inside).toBe(true);
    expect(state.current?.name).toBe('weekend');
  });

  it('works in UTC', () => {
    // Prepare
    const w = window({ schedule: { days: ['TUE'], start: '00:00' }, timeZone: 'UTC' });

    // Act
    const state = nextWindow([w], new Date('2024-09-04T12:00:00Z'));

    // Assess
    expect(state.nextStart?.toISOString()).toBe('2024-09-10T00:00:00.000Z');
  });

  it('is always inside a week-long window', () => {
    // Prepare
    const w = window({
      schedule: { days: ['MON'], start: '00:00' },
      timeZone: 'Europe/Berlin',
      durationMinutes: 10_080,
    });

    // Act
    const states = ['2024-09-02T12:00:00Z', '2024-09-05T12:00:00Z', '2024-09-08T21:59:00Z'].map((now) =>
      nextWindow([w], new Date(now)),
    );

    // Assess
    expect(states.map((s) => s.inside)).toEqual([true, true, true]);
  });

  it('has nothing to say without windows', () => {
    // Act
    const state = nextWindow([], new Date('2024-09-04T12:00:00Z'));

    // Assess
    expect(state).toEqual({ inside: false });
  });

  it.each([
    [window({ schedule: { days: ['MON'], start: '25:00' }, timeZone: 'UTC' }), /start 25:00 is not HH:MM/],
    [window({ schedule: { days: ['MON'], start: '02:00' }, timeZone: 'Nowhere/Special' }), /time zone/i],
  ])('throws for a window parsePolicy would have rejected (%#)', (w, message) => {
    // Act
    const act = () => nextWindow([w], new Date('2024-09-04T12:00:00Z'));

    // Assess
    expect(act).toThrow(message);
  });
});

describe('repository patterns', () => {
  it.each([
    ['payments/*', 'payments/api', true],
    ['payments/*', 'payments/api/v2', false],
    ['payments/*', 'payments', false],
    ['payments/*', 'billing/api', false],
    ['payments/**', 'payments/api/v2', true],
    ['payments/**/api', 'payments/api', true],
    ['payments/**/api', 'payments/eu/west/api', true],
    ['payments/**/api', 'payments/eu/west/api-old', false],
    ['**/api', 'api', true],
    ['**/api', 'team/x/api', true],
    ['**', 'anything/at/all', true],
    ['*', 'inspector2', true],
    ['*', 'team/app', false],
    ['app-?', 'app-1', true],
    ['app-?', 'app-12', false],
    ['app.v1', 'app.v1', true],
    ['app.v1', 'appxv1', false],
    ['inspector2', 'inspector2', true],
    ['inspector2', 'inspector22', false],
    ['inspector2', 'my-inspector2', false],
  ])('%s matches %s: %s', (pattern, repository, expected) => {
    // Prepare
    const re = compileGlobs([pattern]);

    // Act
    const matched = re.test(repository);

    // Assess
    expect(matched).toBe(expected);
  });

  it('matches any of several patterns', () => {
    // Prepare
    const re = compileGlobs(['payments/*', 'billing/**']);

    // Act
    const results = ['payments/api', 'billing/a/b', 'orders/api'].map((r) => re.test(r));

    // Assess
    expect(results).toEqual([true, true, false]);
  });
});
