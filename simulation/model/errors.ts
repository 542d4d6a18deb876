/**
 * Errors thrown the way the AWS SDK throws them: an instance of the client's modelled exception class
 * when there is one (so `instanceof ExecutionAlreadyExists` works), else of the client's base
 * ServiceException, with `name`, `$fault`, `$metadata.httpStatusCode` and, for throttling, `$retryable`.
 */
import * as cloudwatch from '@aws-sdk/client-cloudwatch';
import * as codebuild from '@aws-sdk/client-codebuild';
import * as codedeploy from '@aws-sdk/client-codedeploy';
import * as dynamodb from '@aws-sdk/client-dynamodb';
import * as ecr from '@aws-sdk/client-ecr';
import * as ecs from '@aws-sdk/client-ecs';
import * as eventbridge from '@aws-sdk/client-eventbridge';
import * as inspector2 from '@aws-sdk/client-inspector2';
import * as sfn from '@aws-sdk/client-sfn';
import * as sns from '@aws-sdk/client-sns';
import * as ssm from '@aws-sdk/client-ssm';
import type { ServiceName } from './catalog';

type ServiceExceptionClass = new (options: {
  name: string;
  $fault: 'client' | 'server';
  $metadata: object;
  message?: string;
}) => Error;

const modules: Record<ServiceName, { ns: Record<string, unknown>; base: ServiceExceptionClass }> = {
  ecs: { ns: ecs, base: ecs.ECSServiceException as unknown as ServiceExceptionClass },
  ecr: { ns: ecr, base: ecr.ECRServiceException as unknown as ServiceExceptionClass },
  codebuild: { ns: codebuild, base: codebuild.CodeBuildServiceException as unknown as ServiceExceptionClass },
  codedeploy: {
    ns: codedeploy,
    base: codedeploy.CodeDeployServiceException as unknown as ServiceExceptionClass,
  },
  inspector2: {
    ns: inspector2,
    base: inspector2.Inspector2ServiceException as unknown as ServiceExceptionClass,
  },
  cloudwatch: {
    ns: cloudwatch,
    base: cloudwatch.CloudWatchServiceException as unknown as ServiceExceptionClass,
  },
  sns: { ns: sns, base: sns.SNSServiceException as unknown as ServiceExceptionClass },
  eventbridge: {
    ns: eventbridge,
    base: eventbridge.EventBridgeServiceException as unknown as ServiceExceptionClass,
  },
  ssm: { ns: ssm, base: ssm.SSMServiceException as unknown as ServiceExceptionClass },
  sfn: { ns: sfn, base: sfn.SFNServiceException as unknown as ServiceExceptionClass },
  dynamodb: { ns: dynamodb, base: dynamodb.DynamoDBServiceException as unknown as ServiceExceptionClass },
};

const THROTTLING = new Set([
  'ThrottlingException',
  'Throttling',
  'TooManyRequestsException',
  'ThrottledException',
  'ProvisionedThroughputExceededException',
  'RequestLimitExceeded',
]);

export interface SdkErrorOptions {
  readonly status?: number;
  readonly fault?: 'client' | 'server';
  readonly requestId?: string;
}

export type SdkError = Error & {
  $fault: 'client' | 'server';
  $metadata: { httpStatusCode: number; requestId?: string; attempts?: number; totalRetryDelay?: number };
  $retryable?: { throttling: boolean };
};

export const sdkError = (
  service: ServiceName,
  name: string,
  message: string,
  options: SdkErrorOptions = {},
): SdkError => {
  const { ns, base } = modules[service];
  const status = options.status ?? (options.fault === 'server' ? 500 : 400);
  const fault = options.fault ?? (status >= 500 ? 'server' : 'client');
  const $metadata = {
    httpStatusCode: status,
    ...(options.requestId ? { requestId: options.requestId } : {}),
    attempts: 1,
    totalRetryDelay: 0,
  };
  const Modelled = ns[name];
  let error: Error;
  if (typeof Modelled === 'function' && Modelled.prototype instanceof base) {
    error = new (Modelled as new (o: { message: string; $metadata: object }) => Error)({
      message,
      $metadata,
    });
  } else {
    error = new base({ name, $fault: fault, $metadata, message });
  }
  const e = error as SdkError;
  e.$fault = fault;
  e.$metadata = $metadata;
  if (THROTTLING.has(name) || status === 429) e.$retryable = { throttling: true };
  return e;
};

/** The model was asked for something it does not simulate: say so plainly. */
export const notModelled = (service: ServiceName, what: string): SdkError =>
  sdkError(service, 'UnsupportedOperationException', `the simulation does not model ${service} ${what}`, {
    status: 400,
  });
