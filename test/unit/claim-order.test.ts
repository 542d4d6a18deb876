/**
 * The order triage claims services in (executePlan): each invocation walks its plan in an order of
 * its own, so concurrent invocations of a burst do not race for the same lock service after service;
 * results are still reported in the plan's order.
 */
import type { SFNClient } from '@aws-sdk/client-sfn';
import type { RemediationRequest } from '../../lambdas/shared/contracts';
import { executionName, remediationId } from '../../lambdas/shared/remediation';
import { type ExecuteDeps, executePlan, type TriagePlan, walkOrder } from '../../lambdas/triage/triage';

const REGION = 'eu-central-1';
const ACCOUNT = '123456789012';

const request = (service: string): RemediationRequest => {
  const images = [
    {
      repository: 'shop/api',
      registry: ACCOUNT,
      repositoryUri: `${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com/shop/api`,
      imageDigest: `sha256:${'b2'.repeat(32)}`,
      imageTags: ['1'],
      containers: ['app'],
      packageManagers: ['OS'],
      cves: ['CVE-2024-0001'],
      severity: 'HIGH' as const,
      findingArns: [`arn:aws:inspector2:${REGION}:${ACCOUNT}:finding/f`],
      rebuild: { mode: 'patch-os' as const },
    },
  ];
  const key = `prod/${service}`;
  const name = executionName({ serviceName: service, key }, images, new Date('2026-01-01T00:00:00Z'));
  return {
    remediationId: remediationId(key, name),
    executionName: name,
    service: { clusterArn: `arn:aws:ecs:${REGION}:${ACCOUNT}:cluster/prod`, serviceName: service, key },
    images,
    decision: { action: 'remediate', reason: 'test' },
    target: {
      alarmNames: [],
      bakeTimeMinutes: 60,
      deploymentTimeoutSeconds: 7_200,
      rescanTimeoutSeconds: 3_600,
      approvalTimeoutSeconds: 86_400,
    },
    findingsCount: 1,
    requestedAt: '2026-01-01T00:00:00.000Z',
  };
};

const SERVICES = Array.from({ length: 12 }, (_, i) => `svc-${String(i).padStart(2, '0')}`);
const plan: TriagePlan = {
  findings: [],
  remediations: SERVICES.map((s) => ({ request: request(s), itemIds: [s] })),
  seenKeys: [],
  failedIds: [],
};

/** A ledger whose every claim merges into a run in flight; it records the order of the claims. */
const recordingLedger = () => {
  const claimed: string[] = [];
  const ledger = {
    claim: async (r: RemediationRequest) => {
      claimed.push(r.service.key);
      return { kind: 'merged' as const, inFlight: 'run-1' };
    },
    markSeen: async () => {},
  } as unknown as ExecuteDeps['ledger'];
  return { ledger, claimed };
};

const seeded = (seed: number) => {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) >>> 0;
    return state / 2 ** 32;
  };
};

describe('the order services are claimed in', () => {
  it('is a permutation, the plan itself when asked', () => {
    // Act
    const shuffled = walkOrder(50, 'shuffled', seeded(3));

    // Assess
    expect([...shuffled].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(shuffled).not.toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(walkOrder(5, 'plan', seeded(3))).toEqual([0, 1, 2, 3, 4]);
  });

  it('differs between two invocations of the same plan, and results keep the plan order', async () => {
    // Prepare
    const one = recordingLedger();
    const two = recordingLedger();
    const deps = { sfn: {} as SFNClient, stateMachineArn: 'arn:aws:states:eu-central-1:1:stateMachine:x' };

    // Act
    const [a, b] = await Promise.all([
      executePlan(plan, { ...deps, ledger: one.ledger, random: seeded(1) }),
      executePlan(plan, { ...deps, ledger: two.ledger, random: seeded(2) }),
    ]);

    // Assess: both claim every service once, first choices differ, results are in plan order.
    expect([...one.claimed].sort()).toEqual(plan.remediations.map((r) => r.request.service.key));
    expect([...two.claimed].sort()).toEqual(plan.remediations.map((r) => r.request.service.key));
    expect(one.claimed).not.toEqual(two.claimed);
    expect(a.results.map((r) => r.service)).toEqual(plan.remediations.map((r) => r.request.service.key));
    expect(b.results.map((r) => r.service)).toEqual(plan.remediations.map((r) => r.request.service.key));
  });

  it('walks the plan order when asked to (what every invocation did before)', async () => {
    // Prepare
    const one = recordingLedger();

    // Act
    await executePlan(plan, {
      sfn: {} as SFNClient,
      stateMachineArn: 'arn:aws:states:eu-central-1:1:stateMachine:x',
      ledger: one.ledger,
      walk: 'plan',
    });

    // Assess
    expect(one.claimed).toEqual(plan.remediations.map((r) => r.request.service.key));
  });
});
