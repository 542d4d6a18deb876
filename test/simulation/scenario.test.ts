import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { loadScenario, parseScenario, ScenarioError, type ScenarioInput } from '../../simulation/scenario';

/** A small valid scenario to break one field at a time. */
const valid = (): ScenarioInput => ({
  name: 'tiny',
  description: 'one service, one finding',
  startTime: '2024-09-04T16:00:00Z',
  account: {
    repositories: [
      {
        name: 'payments/checkout',
        images: [{ tags: ['v1'], findings: [{ cve: 'CVE-2024-6119', severity: 'HIGH' }] }],
      },
    ],
    clusters: [
      {
        name: 'prod',
        services: [
          {
            name: 'checkout',
            containers: [{ name: 'app', image: 'payments/checkout:v1' }],
            alarms: ['checkout-5xx'],
          },
        ],
      },
    ],
    alarms: [{ name: 'checkout-5xx' }],
  },
  events: [
    { at: '+1m', kind: 'finding', repository: 'payments/checkout', image: 'v1', cve: 'CVE-2024-6119' },
  ],
});

/** The problems a scenario is rejected with (one "path: message" each). */
const problems = (raw: unknown): string[] => {
  try {
    parseScenario(raw, 'test.json');
  } catch (error) {
    if (error instanceof ScenarioError) return [...error.problems];
    throw error;
  }
  return [];
};

describe('scenario validation', () => {
  it('accepts a valid scenario and fills in defaults', () => {
    // Act
    const s = parseScenario(valid(), 'test.json');

    // Assess
    expect(s.account.accountId).toBe('123456789012');
    expect(s.account.clusters[0]?.services[0]?.strategy).toBe('BLUE_GREEN');
    expect(s.scans).toEqual({ delayMinutes: 3, never: false });
    expect(s.discoverByTag).toEqual({ key: 'autopatch:enabled', value: 'true' });
  });

  it('rejects an unknown field with its path', () => {
    const raw = valid();
    (raw.account.clusters?.[0]?.services?.[0] as Record<string, unknown>).bakeTime = 10;
    expect(problems(raw)).toEqual(['account.clusters[0].services[0]: Unrecognized key: "bakeTime"']);
  });

  it('rejects a wrong type with its path', () => {
    const raw = valid();
    (raw.account.clusters?.[0]?.services?.[0] as Record<string, unknown>).bakeTimeMinutes = '30';
    expect(problems(raw)).toEqual([
      'account.clusters[0].services[0].bakeTimeMinutes: Invalid input: expected number, received string',
    ]);
  });

  it('rejects a service that runs an image that does not exist', () => {
    const raw = valid();
    const service = raw.account.clusters?.[0]?.services?.[0] as { containers: Array<{ image: string }> };
    (service.containers[0] as { image: string }).image = 'payments/checkout:v9';
    expect(problems(raw)).toEqual([
      'account.clusters[0].services[0].containers[0].image: image payments/checkout:v9 does not exist (tags: v1)',
    ]);
  });

  it('rejects an alarm that is not defined', () => {
    const raw = { ...valid(), alarms: [{ name: 'checkout-latency', state: 'ALARM', at: '+5m' }] };
    expect(problems(raw)).toEqual([
      'alarms[0].name: alarm checkout-latency is not declared in account.alarms',
    ]);
  });

  it('rejects a finding for an unknown repository, image or CVE', () => {
    const raw = {
      ...valid(),
      events: [
        { at: '+1m', kind: 'finding', repository: 'payments/api', image: 'v1', cve: 'CVE-2024-6119' },
        { at: '+1m', kind: 'finding', repository: 'payments/checkout', image: 'v2', cve: 'CVE-2024-6119' },
        { at: '+1m', kind: 'finding', repository: 'payments/checkout', image: 'v1', cve: 'CVE-2020-0001' },
      ],
    };
    expect(problems(raw)).toEqual([
      'events[0].repository: repository payments/api is not declared in account.repositories',
      'events[1].image: image v2 does not exist in payments/checkout',
      expect.stringMatching(
        /^events\[2\]\.cve: CVE-2020-0001 is not a finding of payments\/checkout@sha256:/,
      ),
    ]);
  });

  it('rejects references to services, faults and expectations that cannot exist', () => {
    const raw = {
      ...valid(),
      approvals: [{ service: 'prod/cart', at: '+5m', decision: 'approve' }],
      faults: [{ service: 'ecs', operation: 'DescribeServicez', error: 'ThrottlingException' }],
      expect: { outcomes: { 'prod/checkout': 'Fixed' } },
    };
    const found = problems(raw);
    expect(found).toEqual([expect.stringMatching(/^expect\.outcomes\.prod\/checkout: Invalid/)]);
    // Structural errors come first; fix them and the cross-references are checked.
    const fixed = { ...raw, expect: { outcomes: { 'prod/checkout': 'Patched' } } };
    expect(problems(fixed)).toEqual([
      expect.stringMatching(/^approvals\[0\]\.service: service prod\/cart is not declared/),
      expect.stringMatching(/^faults\[0\]\.operation: ecs has no modelled operation DescribeServicez/),
    ]);
  });

  it('rejects an invalid policy with the policy field named', () => {
    const raw = {
      ...valid(),
      policy: { rules: [{ name: 'r', match: { severity: ['HIGH'] }, action: 'remediate' }] },
    };
    expect(problems(raw)).toEqual([expect.stringMatching(/^policy: .*severity/)]);
  });

  it('checks faults against the errors each service really returns', () => {
    const raw = {
      ...valid(),
      faults: [
        {
          service: 'cloudwatch',
          operation: 'DescribeAlarms',
          error: 'InternalServiceFault',
          persistent: true,
        },
        { service: 'ecs', operation: 'UpdateService', error: 'server', outage: '15m' },
        { service: 'ecs', operation: 'UpdateService', error: 'InternalServiceFault' },
        { service: 'sns', operation: 'Publish', error: 'Throttled', persistent: true, outage: '5m' },
      ],
    };
    expect(problems(raw)).toEqual([
      expect.stringMatching(
        /^faults\[2\]\.error: ecs does not return InternalServiceFault \(it can return: ThrottlingException, ServerException/,
      ),
      'faults[3].outage: a fault is either persistent or an outage that recovers, not both',
    ]);
  });

  it('checks changes to the world, deployment trouble and the new expectations', () => {
    const raw = {
      ...valid(),
      changes: [
        { kind: 'deploy', service: 'prod/checkout', images: { web: 'payments/checkout:v9' }, at: '+5m' },
        { kind: 'delete-alarm', alarm: 'nope', at: '+5m' },
        { kind: 'scale', service: 'prod/cart', desiredCount: 0, at: '+5m' },
        { kind: 'move-image-tag', repository: 'payments/checkout', tag: 'latest', to: 'v1', at: '+5m' },
      ],
      deployments: [{ service: 'prod/checkout', tasksFailAfter: '2m', rollbackFails: true }],
      eventFaults: [{ detailType: 'ECS Deployment State Change', effect: 'delay', delay: '5m', times: 2 }],
      expect: {
        services: { 'prod/checkout': { runs: 'original', revision: 1 } },
        locks: 0,
        builds: 1,
        cause: { 'prod/checkout': 'rolled back' },
        duration: { 'prod/checkout': { atLeast: '30m' } },
        alarmToRollback: { 'prod/cart': { atMost: '60s' } },
      },
    };
    expect(problems(raw)).toEqual([
      'changes[0].images.web: prod/checkout has no container web',
      expect.stringMatching(/^changes\[0\]\.images\.web: image payments\/checkout:v9 does not exist/),
      'changes[1].alarm: alarm nope is not declared in account.alarms',
      expect.stringMatching(/^changes\[2\]\.service: service prod\/cart is not declared/),
      expect.stringMatching(/^expect\.alarmToRollback\.prod\/cart: service prod\/cart is not declared/),
    ]);
  });

  it('reports every problem at once', () => {
    const raw = valid() as Record<string, unknown>;
    raw.startTime = 'yesterday';
    raw.name = 'Not Kebab';
    expect(problems(raw)).toHaveLength(2);
  });

  it('names the file when it is not JSON', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'scenario-'));
    const file = path.join(dir, 'broken.json');
    writeFileSync(file, '{ "name": ');
    expect(() => loadScenario(file)).toThrow(/broken\.json is not a valid scenario:\n {2}not valid JSON/);
  });
});
