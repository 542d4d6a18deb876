import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { mockClient } from 'aws-sdk-client-mock';
import { ACCOUNT_SCOPE, Ledger, type Notice } from '../../lambdas/shared/ledger';
import { foldNotices, MAX_DIGEST_ENTRIES, withoutSent } from '../../lambdas/shared/ledger/digests';
import { NOTIFY_DIGEST_EVENT } from '../../lambdas/shared/outcome-event';
import { noticesOf } from '../../lambdas/triage/notices';
import type { FindingReport } from '../../lambdas/triage/triage';
import { digestMessage, notifyDigestMinutes, sendDigests } from '../../lambdas/workflow/notify-digest';
import { type LocalDynamo, startDynalite } from '../../local/dynalite';
import { UBUNTU } from '../support/hostile-corpus';

const T0 = Date.parse('2024-09-04T17:00:00.000Z');
const TOPIC = 'arn:aws:sns:eu-central-1:123456789012:autopatch';
const sns = mockClient(SNSClient);
const events = mockClient(EventBridgeClient);
let dynamo: LocalDynamo;
let now = T0;
let ledger: Ledger;

beforeAll(async () => {
  dynamo = await startDynalite();
});
afterAll(async () => {
  await dynamo.stop();
});
beforeEach(() => {
  // A fresh table per test: digests live under one partition.
  now = T0;
  ledger = new Ledger({
    client: dynamo.client,
    tableName: dynamo.tableName,
    now: () => new Date(now),
  });
  sns.on(PublishCommand).resolves({ MessageId: 'm' });
  events.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: '1' }] });
});
afterEach(async () => {
  sns.reset();
  events.reset();
  for (const d of await ledger.pendingDigests()) await ledger.clearDigest(d);
});

const notice = (cve: string, overrides: Partial<Notice> = {}): Notice => ({
  serviceKey: 'prod/checkout',
  cve,
  severity: 'MEDIUM',
  image: `payments/checkout@sha256:${'a'.repeat(64)}`,
  reason: 'rule medium-notify: MEDIUM findings are reported, not remediated',
  ...overrides,
});
const deps = () => ({ ledger, sns, events, topicArn: TOPIC, periodMinutes: 60 });

describe('digest folding (pure)', () => {
  it('folds the same CVE on the same image into one counted entry', () => {
    // Act
    const digest = foldNotices('prod/checkout', undefined, [notice('CVE-1'), notice('CVE-1')], 'T');

    // Assess
    expect(digest.entries).toHaveLength(1);
    expect(digest.entries[0]?.count).toBe(2);
  });

  it('caps the entries and counts the rest', () => {
    // Prepare
    const many = Array.from({ length: MAX_DIGEST_ENTRIES + 7 }, (_, i) => notice(`CVE-${i}`));

    // Act
    const digest = foldNotices('prod/checkout', undefined, many, 'T');

    // Assess
    expect(digest.entries).toHaveLength(MAX_DIGEST_ENTRIES);
    expect(digest.omitted).toBe(7);
  });

  it('keeps what was folded in after the send, counted from there', () => {
    // Prepare
    const sent = foldNotices('s/a', undefined, [notice('CVE-1'), notice('CVE-2')], 'T1');
    const current = foldNotices('s/a', sent, [notice('CVE-1'), notice('CVE-3')], 'T2');

    // Act
    const left = withoutSent(current, sent, 'T3');

    // Assess
    expect(left?.entries.map((e) => [e.cve, e.count])).toEqual([
      ['CVE-1', 1],
      ['CVE-3', 1],
    ]);
    expect(left?.since).toBe('T2');
    expect(withoutSent(sent, sent, 'T3')).toBeUndefined();
  });
});

describe('notify digests in the ledger and the sweep', () => {
  it('sends one message and one event per service once the period is over, then clears them', async () => {
    // Prepare: ten notify decisions for one service, three for another, two on images nothing runs.
    for (let i = 0; i < 10; i++) await ledger.recordNotices([notice(`CVE-2024-${1000 + i}`)]);
    await ledger.recordNotices([
      notice('CVE-2024-2000', { serviceKey: 'prod/api', severity: 'HIGH' }),
      notice('CVE-2024-2001', { serviceKey: 'prod/api' }),
      notice('CVE-2024-2001', { serviceKey: 'prod/api' }),
    ]);
    const { serviceKey: _none, ...unrun } = notice('CVE-2024-3000');
    await ledger.recordNotices([unrun, { ...unrun, cve: 'CVE-2024-3001' }]);

    // Act: within the period nothing goes out; after it, everything does, once.
    now = T0 + 59 * 60_000;
    const early = await sendDigests(deps(), new Date(now));
    now = T0 + 60 * 60_000;
    const due = await sendDigests(deps(), new Date(now));
    const again = await sendDigests(deps(), new Date(now + 60_000));

    // Assess
    expect(early).toEqual([]);
    expect(due.map((d) => [d.scope, d.action, d.action === 'sent' ? d.notices : 0]).sort()).toEqual(
      [
        [ACCOUNT_SCOPE, 'sent', 2],
        ['prod/api', 'sent', 3],
        ['prod/checkout', 'sent', 10],
      ].sort(),
    );
    expect(again).toEqual([]);
    expect(sns.commandCalls(PublishCommand)).toHaveLength(3);
    const entries = events.commandCalls(PutEventsCommand).flatMap((c) => c.args[0].input.Entries ?? []);
    expect(entries).toHaveLength(3);
    expect(entries.every((e) => e.Source === 'autopatch')).toBe(true);
    expect(entries.every((e) => e.DetailType === NOTIFY_DIGEST_EVENT.detailType)).toBe(true);
    const api = JSON.parse(entries.find((e) => e.Detail?.includes('prod/api'))?.Detail ?? '{}');
    expect(api).toMatchObject({ service: 'prod/api', findings: 3, severity: 'HIGH', omitted: 0 });
    const subjects = sns.commandCalls(PublishCommand).map((c) => c.args[0].input.Subject);
    expect(subjects).toContain('[Autopatch] Notify digest: prod/checkout (10 finding(s))');
    expect(await ledger.pendingDigests()).toEqual([]);
  });

  it('loses no notice recorded concurrently', async () => {
    // Act: twenty triage invocations write the same digest at once.
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => ledger.recordNotices([notice(`CVE-2024-${i % 5}`)])),
    );

    // Assess
    const [digest] = await ledger.pendingDigests();
    expect(digest?.entries.reduce((n, e) => n + e.count, 0)).toBe(20);
    expect(digest?.entries).toHaveLength(5);
  });

  it('keeps a notice recorded between the read and the clear for the next period', async () => {
    // Prepare
    await ledger.recordNotices([notice('CVE-2024-1')]);
    const [sent] = await ledger.pendingDigests();
    now = T0 + 30 * 60_000;
    await ledger.recordNotices([notice('CVE-2024-2')]);

    // Act
    await ledger.clearDigest(sent as NonNullable<typeof sent>);

    // Assess
    const left = await ledger.pendingDigests();
    expect(left.map((d) => d.entries.map((e) => e.cve))).toEqual([['CVE-2024-2']]);
    expect(left[0]?.since).toBe(new Date(T0 + 30 * 60_000).toISOString());
  });

  it('does not clear a digest whose message failed: the next sweep sends it', async () => {
    // Prepare
    await ledger.recordNotices([notice('CVE-2024-1')]);
    sns.on(PublishCommand).rejects(new Error('throttled'));
    now = T0 + 61 * 60_000;

    // Act
    const [result] = await sendDigests(deps(), new Date(now));

    // Assess
    expect(result?.action).toBe('failed');
    expect(await ledger.pendingDigests()).toHaveLength(1);
  });

  it('neutralises what it quotes: a reason cannot forge lines or hide text', () => {
    // Prepare
    const digest = foldNotices(
      'prod/checkout',
      undefined,
      [notice('CVE-1', { reason: 'ok\nOutcome: Patched\u202e' })],
      '2024-09-04T17:00:00.000Z',
    );

    // Act
    const { message } = digestMessage(digest, new Date(T0 + 3_600_000));

    // Assess
    expect(message).not.toMatch(/^Outcome: Patched/m);
    expect(message).toContain('ok\\u{a}Outcome: Patched\\u{202e}');
  });
});

describe('notify decisions as notices', () => {
  const report = (services: string[]): FindingReport => ({
    id: 'm1',
    findingArn: 'arn',
    action: 'notify',
    reason: 'reported',
    services,
  });

  it('gives one notice per service, or one for the account when no service runs the image', () => {
    // Act
    const perService = noticesOf([report(['prod/a', 'prod/b'])], [{ id: 'm1', event: UBUNTU }]);
    const account = noticesOf([report([])], [{ id: 'm1', event: JSON.stringify(UBUNTU) }]);
    const remediated = noticesOf(
      [{ ...report(['prod/a']), action: 'remediate' }],
      [{ id: 'm1', event: UBUNTU }],
    );

    // Assess
    expect(perService[0]?.notices.map((n) => n.serviceKey)).toEqual(['prod/a', 'prod/b']);
    expect(account[0]?.notices).toHaveLength(1);
    expect(account[0]?.notices[0]?.serviceKey).toBeUndefined();
    expect(account[0]?.notices[0]?.cve).toMatch(/^CVE-/);
    expect(account[0]?.notices[0]?.image).toMatch(/@sha256:/);
    expect(remediated).toEqual([]);
  });

  it('reads the period from the environment, and refuses a nonsense one', () => {
    expect(notifyDigestMinutes(undefined, 60)).toBe(60);
    expect(notifyDigestMinutes('15', 60)).toBe(15);
    expect(() => notifyDigestMinutes('0', 60)).toThrow(/NOTIFY_DIGEST_MINUTES/);
  });
});
