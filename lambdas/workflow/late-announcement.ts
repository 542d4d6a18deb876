import type { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import type { SNSClient } from '@aws-sdk/client-sns';
import type { OutcomeRecord } from '../shared/ledger';
import { publishNotification } from './notify';
import { putOutcomeEvent } from './put-outcome-event';

export interface LateAnnouncementDeps {
  readonly sns: Pick<SNSClient, 'send'>;
  readonly events: Pick<EventBridgeClient, 'send'>;
  readonly topicArn: string;
  readonly eventBusName?: string;
}

/**
 * Announce an outcome that was recorded but never announced (EventBridge or SNS failed after the
 * finish step wrote the history record): the reconciler's re-send. The same event and topic as the
 * finish step, marked `late`, with what the ledger kept: the outcome, its reason and the images.
 */
export const announceLate =
  (deps: LateAnnouncementDeps) =>
  async (record: OutcomeRecord): Promise<void> => {
    const cves = [...new Set(record.images.flatMap((i) => i.cves))].sort();
    await putOutcomeEvent(
      deps.events,
      {
        outcome: record.outcome,
        service: record.serviceKey,
        remediationId: record.remediationId,
        executionName: record.executionName,
        reason: record.reason,
        cves,
        cvesClosed: record.cvesClosed,
        images: record.images,
        finishedAt: record.finishedAt,
        late: true,
      },
      { label: 'late outcome event', ...(deps.eventBusName ? { eventBusName: deps.eventBusName } : {}) },
    );
    await publishNotification(deps.sns, deps.topicArn, {
      subject: `[Autopatch] ${record.outcome}: ${record.serviceKey} (announced late)`,
      message: [
        `Outcome: ${record.outcome} (recorded ${record.finishedAt}; this announcement failed then and is sent now)`,
        `Service: ${record.serviceKey}`,
        `Execution: ${record.executionName}`,
        `CVEs: ${cves.join(', ') || '-'}`,
        '',
        record.reason,
        '',
        `Runbook: docs/runbook.md#${record.outcome.toLowerCase()}`,
      ].join('\n'),
      attributes: { kind: 'outcome', outcome: record.outcome, service: record.serviceKey },
    });
  };
