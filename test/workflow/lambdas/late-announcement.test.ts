import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { mockClient } from 'aws-sdk-client-mock';
import type { OutcomeRecord } from '../../../lambdas/shared/ledger';
import { announceLate } from '../../../lambdas/workflow/late-announcement';

const events = mockClient(EventBridgeClient);
const sns = mockClient(SNSClient);
const TOPIC = 'arn:aws:sns:eu-central-1:123456789012:autopatch';
const record: OutcomeRecord = {
  serviceKey: 'prod/checkout',
  remediationId: 'r-1',
  executionName: 'checkout-CVE-2024-6119-cb5b06ab-9d9add-20240904T160121Z',
  outcome: 'Patched',
  reason: 'Patched prod/checkout: closed CVE-2024-6119.',
  images: [
    {
      repository: 'payments/checkout',
      oldDigest: 'sha256:aa',
      newDigest: 'sha256:bb',
      cves: ['CVE-2024-6119'],
    },
  ],
  cvesClosed: ['CVE-2024-6119'],
  startedAt: '2024-09-04T16:01:21.000Z',
  finishedAt: '2024-09-04T17:22:44.000Z',
};

beforeEach(() => {
  events.reset();
  sns.reset();
  events.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'e-1' }] });
  sns.on(PublishCommand).resolves({ MessageId: 'm-1' });
});

describe('announceLate (the reconciler re-sends an outcome the finish step could not announce)', () => {
  const announce = () =>
    announceLate({ sns: new SNSClient({}), events: new EventBridgeClient({}), topicArn: TOPIC })(record);

  it('puts the outcome event, marked late, and notifies the topic', async () => {
    await announce();

    const entry = events.commandCalls(PutEventsCommand)[0]?.args[0].input.Entries?.[0];
    expect(entry).toMatchObject({ Source: 'autopatch', DetailType: 'Autopatch Remediation Outcome' });
    expect(JSON.parse(entry?.Detail ?? '{}')).toMatchObject({
      outcome: 'Patched',
      service: 'prod/checkout',
      cves: ['CVE-2024-6119'],
      late: true,
    });
    const published = sns.commandCalls(PublishCommand)[0]?.args[0].input;
    expect(published).toMatchObject({
      TopicArn: TOPIC,
      Subject: '[Autopatch] Patched: prod/checkout (announced late)',
    });
    expect(published?.Message).toContain('this announcement failed then and is sent now');
  });

  it('fails (so the outcome stays unannounced, for the next sweep) when EventBridge rejects the event', async () => {
    events
      .on(PutEventsCommand)
      .resolves({ FailedEntryCount: 1, Entries: [{ ErrorCode: 'InternalFailure' }] });
    await expect(announce()).rejects.toThrow(/rejected the late outcome event: InternalFailure/);
    expect(sns.commandCalls(PublishCommand)).toHaveLength(0);
  });
});
