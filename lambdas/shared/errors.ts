/**
 * Autopatch's error classes. A Lambda reports an error's `name` as the error type that the state
 * machine's Retry and Catch match on, so these names are a contract: the workflow definition names
 * them, and renaming one is a breaking change. Each class sets `name` explicitly (minifiers rename
 * classes) and passes `cause` through.
 */
export class AutopatchError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AutopatchError';
  }
}

/** Input that can never succeed: a poison record. Logged, counted, never retried. */
export class InvalidEventError extends AutopatchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'InvalidEventError';
  }
}

/** A dependency failed in a way worth retrying (throttling, 5xx, timeouts). */
export class TransientError extends AutopatchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TransientError';
  }
}

/** Invalid configuration (policy, targets). Fails synth or start-up with a message naming the field. */
export class ConfigurationError extends AutopatchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConfigurationError';
  }
}

/** A workflow step that needs the service lock found it held by another execution (or released). */
export class LockNotHeldError extends AutopatchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LockNotHeldError';
  }
}

const TRANSIENT_NAMES = new Set([
  'ThrottlingException',
  'Throttling',
  'ThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'ProvisionedThroughputExceededException',
  'RequestThrottledException',
  'LimitExceededException',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'InternalServerError',
  'InternalServerException',
  'InternalFailure',
  'ServerException',
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeoutException',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'TransientError',
]);

/** True when an error (typically from the AWS SDK) is worth retrying. */
export const isTransient = (error: unknown): boolean => {
  if (!(error instanceof Error)) return false;
  const e = error as Error & { $metadata?: { httpStatusCode?: number }; $retryable?: unknown; code?: string };
  if (TRANSIENT_NAMES.has(e.name) || (e.code !== undefined && TRANSIENT_NAMES.has(e.code))) return true;
  if (e.$retryable) return true;
  const status = e.$metadata?.httpStatusCode;
  return status !== undefined && (status === 429 || status >= 500);
};

/**
 * The name of the error the hub raises when it cannot assume a spoke's role (`SpokeAccessError`, in
 * ./accounts.ts, which needs the STS client): never retried; the finish step explains it by name.
 */
export const SPOKE_ACCESS_ERROR = 'SpokeAccessError';
