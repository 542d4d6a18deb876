import { PublishCommand, type SNSClient } from '@aws-sdk/client-sns';
import { awsCall } from './aws';

/**
 * Publish one message to the notification topic. `attributes` become String message attributes, so
 * subscriptions can filter on them (kind, outcome, service, severity); undefined ones are left out.
 */
export const publishNotification = async (
  sns: Pick<SNSClient, 'send'>,
  topicArn: string,
  notification: {
    readonly subject: string;
    readonly message: string;
    readonly attributes: Readonly<Record<string, string | undefined>>;
  },
): Promise<void> => {
  const MessageAttributes = Object.fromEntries(
    Object.entries(notification.attributes).flatMap(([name, value]) =>
      value === undefined ? [] : [[name, { DataType: 'String', StringValue: value }]],
    ),
  );
  await awsCall('sns Publish', () =>
    sns.send(
      new PublishCommand({
        TopicArn: topicArn,
        Subject: notification.subject,
        Message: notification.message,
        MessageAttributes,
      }),
    ),
  );
};
