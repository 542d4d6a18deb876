import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SNSClient } from '@aws-sdk/client-sns';
import { SSMClient } from '@aws-sdk/client-ssm';
import { ACCOUNT_ALIASES_ENV, parseAccountAliases } from '../../shared/config';
import { Ledger } from '../../shared/ledger';
import { emitMetrics, METRICS } from '../../shared/metrics';
import { type FinishInput, type FinishResult, finish, outcomeMetrics, rollbackIncomplete } from '../finish';
import { requireEnv } from './env';

const env = requireEnv(['LEDGER_TABLE', 'TOPIC_ARN']);
const logger = new Logger({ serviceName: METRICS.workflowService });
const metrics = new Metrics({ namespace: METRICS.namespace, serviceName: METRICS.workflowService });
const deps = {
  ledger: new Ledger({ client: new DynamoDBClient({}), tableName: env.LEDGER_TABLE }),
  sfn: new SFNClient({}),
  ssm: new SSMClient({}),
  events: new EventBridgeClient({}),
  sns: new SNSClient({}),
  topicArn: env.TOPIC_ARN,
  eventBusName: process.env.EVENT_BUS_NAME ?? 'default',
  ...(process.env.ACCOUNT_ALIAS ? { accountAlias: process.env.ACCOUNT_ALIAS } : {}),
  // Spokes' aliases by account id (optional): named next to the id of a service outside the hub.
  accountAliases: parseAccountAliases(process.env[ACCOUNT_ALIASES_ENV]),
};

/**
 * "Record the outcome and release the lock" (and "Release the lock anyway" with releaseOnly). Measures
 * each outcome once it is handled, also on the releaseOnly path (which runs only after the normal one
 * failed for good), and logs one "remediation outcome" line that the dashboard lists.
 */
export const handler = async (event: FinishInput): Promise<FinishResult> => {
  logger.appendKeys({ executionName: event.executionName, serviceKey: event.state.service.key });
  const result = await finish(event, deps);
  emitMetrics(metrics, outcomeMetrics(event, new Date()));
  const { summary } = result;
  logger.info('remediation outcome', {
    outcome: summary.outcome,
    reason: summary.reason,
    cves: summary.cves.join(' '),
    severity: summary.severity,
    rollbackIncomplete: rollbackIncomplete(event.state),
    executionLink: summary.links.execution,
    next: summary.next,
    releaseOnly: event.releaseOnly ?? false,
  });
  return result;
};
