import { BatchGetFindingDetailsCommand, Inspector2Client } from '@aws-sdk/client-inspector2';
import { mockClient } from 'aws-sdk-client-mock';
import {
  FindingDetailsReader,
  MAX_FINDING_ARNS_PER_CALL,
  policyNeedsExploitation,
  UNKNOWN_TTL_MS,
} from '../../lambdas/triage/finding-details';
import { DEFAULT_POLICY_PARSED, parsePolicy } from '../../lambdas/triage/policy';

const inspector = mockClient(Inspector2Client);
const arn = (i: number) =>
  `arn:aws:inspector2:eu-central-1:123456789012:finding/${i.toString(16).padStart(32, '0')}`;

/** Answers every ARN asked: even ones in KEV (due 2024-09-05), odd ones without details. */
const answerByParity = () =>
  inspector.on(BatchGetFindingDetailsCommand).callsFake((input: { findingArns: string[] }) => ({
    findingDetails: input.findingArns.map((a) =>
      Number.parseInt(a.slice(-1), 16) % 2 === 0
        ? {
            findingArn: a,
            cisaData: {
              dateAdded: new Date('2024-08-30T00:00:00Z'),
              dateDue: new Date('2024-09-05T00:00:00Z'),
              action: 'Apply updates',
            },
            exploitObserved: {
              firstSeen: new Date('2024-08-29T00:00:00Z'),
              lastSeen: new Date('2024-09-01T00:00:00Z'),
            },
          }
        : { findingArn: a },
    ),
  }));

afterEach(() => {
  inspector.reset();
});

describe('FindingDetailsReader', () => {
  it('asks in batches of at most ten, each ARN once', async () => {
    // Prepare
    answerByParity();
    const reader = new FindingDetailsReader(new Inspector2Client({}));
    const arns = Array.from({ length: 25 }, (_, i) => arn(i));

    // Act
    const answers = await reader.read([...arns, ...arns]);

    // Assess
    const calls = inspector
      .commandCalls(BatchGetFindingDetailsCommand)
      .map((c) => c.args[0].input.findingArns ?? []);
    expect(calls.map((c) => c.length)).toEqual([10, 10, 5]);
    expect(calls.every((c) => c.length <= MAX_FINDING_ARNS_PER_CALL)).toBe(true);
    expect(new Set(calls.flat()).size).toBe(25);
    expect(answers.get(arn(0))).toEqual({
      kev: {
        dateAdded: '2024-08-30T00:00:00.000Z',
        dateDue: '2024-09-05T00:00:00.000Z',
        action: 'Apply updates',
      },
      exploitObserved: { firstSeen: '2024-08-29T00:00:00.000Z', lastSeen: '2024-09-01T00:00:00.000Z' },
    });
    expect(answers.get(arn(1))).toEqual({});
  });

  it('answers a burst from its cache: a second read of the same findings makes no call', async () => {
    // Prepare
    answerByParity();
    const reader = new FindingDetailsReader(new Inspector2Client({}));
    await reader.read([arn(1), arn(2)]);

    // Act
    const again = await reader.read([arn(2), arn(1), arn(3)]);

    // Assess
    const calls = inspector
      .commandCalls(BatchGetFindingDetailsCommand)
      .map((c) => c.args[0].input.findingArns);
    expect(calls).toEqual([[arn(1), arn(2)], [arn(3)]]);
    expect(again.get(arn(2))).toHaveProperty('kev');
  });

  it('keeps at most maxEntries, dropping the least recently used', async () => {
    // Prepare
    answerByParity();
    const reader = new FindingDetailsReader(new Inspector2Client({}), { maxEntries: 2 });
    await reader.read([arn(1)]);
    await reader.read([arn(2)]);
    await reader.read([arn(1)]); // 1 is now the most recently used
    await reader.read([arn(3)]); // evicts 2

    // Act
    inspector.resetHistory();
    await reader.read([arn(1), arn(2)]);

    // Assess
    expect(
      inspector.commandCalls(BatchGetFindingDetailsCommand).map((c) => c.args[0].input.findingArns),
    ).toEqual([[arn(2)]]);
  });

  it('asks again for a transient failure, and reports it as retry (never as "not exploited")', async () => {
    // Prepare
    inspector
      .on(BatchGetFindingDetailsCommand)
      .rejectsOnce(Object.assign(new Error('slow down'), { name: 'ThrottlingException' }))
      .resolves({ findingDetails: [{ findingArn: arn(1) }] });
    const reader = new FindingDetailsReader(new Inspector2Client({}));

    // Act
    const first = await reader.read([arn(1)]);
    const second = await reader.read([arn(1)]);

    // Assess
    expect(first.get(arn(1))).toEqual({ retry: expect.stringContaining('ThrottlingException') });
    expect(second.get(arn(1))).toEqual({});
  });

  it('reports per-finding errors: INTERNAL_ERROR is retried, the others are unknown', async () => {
    // Prepare
    inspector.on(BatchGetFindingDetailsCommand).resolves({
      errors: [
        { findingArn: arn(1), errorCode: 'INTERNAL_ERROR', errorMessage: 'oops' },
        { findingArn: arn(2), errorCode: 'ACCESS_DENIED', errorMessage: 'no' },
      ],
    });
    const reader = new FindingDetailsReader(new Inspector2Client({}));

    // Act
    const answers = await reader.read([arn(1), arn(2), arn(3)]);

    // Assess
    expect(answers.get(arn(1))).toEqual({ retry: 'BatchGetFindingDetails INTERNAL_ERROR: oops' });
    expect(answers.get(arn(2))).toEqual({ unknown: 'BatchGetFindingDetails ACCESS_DENIED: no' });
    expect(answers.get(arn(3))).toEqual({
      unknown: 'BatchGetFindingDetails returned nothing for the finding',
    });
  });

  it('remembers a permanent failure only briefly', async () => {
    // Prepare
    let now = 0;
    inspector
      .on(BatchGetFindingDetailsCommand)
      .rejects(Object.assign(new Error('denied'), { name: 'AccessDeniedException' }));
    const reader = new FindingDetailsReader(new Inspector2Client({}), { now: () => now });

    // Act
    const first = await reader.read([arn(1)]);
    await reader.read([arn(1)]);
    now += UNKNOWN_TTL_MS + 1;
    await reader.read([arn(1)]);

    // Assess
    expect(first.get(arn(1))).toEqual({ unknown: expect.stringContaining('AccessDeniedException') });
    expect(inspector.commandCalls(BatchGetFindingDetailsCommand)).toHaveLength(2);
  });
});

describe('policyNeedsExploitation', () => {
  it.each([
    ['the default policy', DEFAULT_POLICY_PARSED, false],
    [
      'a knownExploited rule',
      parsePolicy({ rules: [{ name: 'k', match: { knownExploited: true }, action: 'remediate' }] }),
      true,
    ],
    [
      'an exploitObserved rule',
      parsePolicy({ rules: [{ name: 'o', match: { exploitObserved: false }, action: 'notify' }] }),
      true,
    ],
    ['kevDueDate', parsePolicy({ rules: [], kevDueDate: true }), true],
  ])('%s → %s', (_what, policy, needs) => {
    expect(policyNeedsExploitation(policy)).toBe(needs);
  });
});
