import { type EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { OUTCOME_EVENT } from '../shared/outcome-event';
import { awsCall } from './aws';

/**
 * Put one outcome event (source `autopatch`) on the bus; a rejected entry is an error, so the caller's
 * retry (the finish step's, or the next sweep's) tries again. Shared by the finish step and the
 * sweep's late announcements.
 */
export const putOutcomeEvent = async (
  events: Pick<EventBridgeClient, 'send'>,
  detail: Record<string, unknown>,
  options: {
    readonly eventBusName?: string;
    readonly resources?: readonly string[];
    /** How errors name the event. @default 'outcome event' */
    readonly label?: string;
    /** Another of Autopatch's events (same source). @default OUTCOME_EVENT.detailType */
    readonly detailType?: string;
  } = {},
): Promise<void> => {
  const out = await awsCall('events PutEvents', () =>
    events.send(
      new PutEventsCommand({
        Entries: [
          {
            Source: OUTCOME_EVENT.source,
            DetailType: options.detailType ?? OUTCOME_EVENT.detailType,
            EventBusName: options.eventBusName ?? 'default',
            ...(options.resources ? { Resources: [...options.resources] } : {}),
            Detail: JSON.stringify(detail),
          },
        ],
      }),
    ),
  );
  if ((out.FailedEntryCount ?? 0) > 0) {
    const entry = out.Entries?.find((e) => e.ErrorCode);
    throw new Error(
      `events PutEvents rejected the ${options.label ?? 'outcome event'}: ${entry?.ErrorCode}: ${entry?.ErrorMessage}`,
    );
  }
};
