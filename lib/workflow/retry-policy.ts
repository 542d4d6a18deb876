/**
 * The Lambda retry policy of the remediation workflow, defined once: renderDefinition
 * (./definition.ts) appends it to the Retry of every `arn:aws:states:::lambda:invoke*` Task of
 * statemachines/remediation.asl.json, so the file does not repeat it. No runtime dependencies.
 *
 * Rule: a Task's own Retry (if any) lists only its own errors;
 * the shared retrier comes after them. Step Functions uses the first retrier that matches, so the
 * Task's own retriers win for their errors. A Task that names one of the shared errors in a Retry of
 * its own is refused at synth: one place decides how Lambda errors are retried.
 */

/** A retrier of Amazon States Language. */
export interface Retrier {
  readonly ErrorEquals: readonly string[];
  readonly IntervalSeconds?: number;
  readonly BackoffRate?: number;
  readonly MaxAttempts?: number;
  readonly MaxDelaySeconds?: number;
  readonly JitterStrategy?: 'FULL' | 'NONE';
}

/** The Lambda service's transient errors, as the Lambda integration reports them, and our own TransientError. */
export const LAMBDA_TRANSIENT_ERRORS = [
  'Lambda.ServiceException',
  'Lambda.AWSLambdaException',
  'Lambda.SdkClientException',
  'Lambda.TooManyRequestsException',
  'Lambda.ClientExecutionTimeoutException',
  'TransientError',
] as const;

const BACKOFF = {
  IntervalSeconds: 2,
  BackoffRate: 2,
  MaxAttempts: 6,
  MaxDelaySeconds: 60,
  JitterStrategy: 'FULL',
} as const;

/**
 * The shared retrier for a Lambda Task's Resource. A synchronous invoke also retries its own
 * TimeoutSeconds (States.Timeout: the function hung); a `.waitForTaskToken` Task does not, since its
 * timeout is the end of the wait it stands for (approval, bake, rollback), not a transient fault.
 */
export const lambdaRetrier = (resource: string): Retrier => ({
  ErrorEquals: resource.endsWith('.waitForTaskToken')
    ? [...LAMBDA_TRANSIENT_ERRORS]
    : [...LAMBDA_TRANSIENT_ERRORS, 'States.Timeout'],
  ...BACKOFF,
});

/** Whether a Task's Resource is a Lambda invoke (with or without a task token). */
export const isLambdaInvoke = (resource: unknown): resource is string =>
  typeof resource === 'string' && resource.startsWith('arn:aws:states:::lambda:invoke');
