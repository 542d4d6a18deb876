import type * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';

/** Source of the outcome events Autopatch publishes on the default event bus. */
export const OUTCOME_EVENT_SOURCE = 'autopatch';

export interface NotificationsProps {
  /** Encrypts the topic when this construct creates it. */
  readonly encryptionKey: kms.IKey;
  /** Email addresses subscribed to the topic (each must confirm the subscription). @default - none */
  readonly emails?: readonly string[];
  /** Use this topic instead of creating one; the emails are subscribed to it. @default - a new topic */
  readonly topic?: sns.ITopic;
}

/**
 * Where people hear from Autopatch: approval requests and remediation outcomes on one SNS topic
 * (email, chat and ticketing subscribe to it). Outcome events also go to the default bus with source
 * {@link OUTCOME_EVENT_SOURCE}, granted by the workflow that publishes them.
 */
export class Notifications extends Construct {
  public readonly topic: sns.ITopic;

  constructor(scope: Construct, id: string, props: NotificationsProps) {
    super(scope, id);
    this.topic =
      props.topic ??
      new sns.Topic(this, 'Topic', {
        displayName: 'Autopatch',
        masterKey: props.encryptionKey,
        enforceSSL: true,
      });
    for (const email of props.emails ?? []) {
      this.topic.addSubscription(new subscriptions.EmailSubscription(email));
    }
  }
}
