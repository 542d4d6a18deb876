// PLACEHOLDER (replaced by the workflow issue): the props contract between the Autopatch construct
// and the remediation workflow. The state machine below is a stand-in so the stack can reference it.
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as sns from 'aws-cdk-lib/aws-sns';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { TargetConfig, WorkflowDefaults } from '../lambdas/shared/config';

export interface RemediationWorkflowProps {
  /** The ledger table (shared with triage): locks, history, task tokens. */
  readonly ledger: dynamodb.ITable;
  /** Notifications (approval requests, outcomes). */
  readonly topic: sns.ITopic;
  /** The key that encrypts Autopatch's data (logs, topic, queue, table). */
  readonly encryptionKey: kms.IKey;
  /** Explicit targets, for scoping IAM and choosing build projects. */
  readonly targets: readonly TargetConfig[];
  /** Tag that marks services Autopatch may deploy (used in IAM conditions). */
  readonly serviceTag: { readonly key: string; readonly value: string };
  readonly defaults: WorkflowDefaults;
}

export class RemediationWorkflow extends Construct {
  public readonly stateMachine: sfn.StateMachine;

  constructor(scope: Construct, id: string, _props: RemediationWorkflowProps) {
    super(scope, id);
    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      definitionBody: sfn.DefinitionBody.fromChainable(
        new sfn.Pass(this, 'Not implemented yet', { comment: 'Placeholder until the workflow lands.' }),
      ),
      stateMachineType: sfn.StateMachineType.STANDARD,
    });
  }
}
