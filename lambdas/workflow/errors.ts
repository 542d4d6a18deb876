import { AutopatchError } from '../shared/errors';

/**
 * Every error name the remediation workflow definition (statemachines/remediation.asl.json) matches
 * in a Retry or Catch, or raises itself from a Fail or Pass state. The workflow tests check that the
 * definition names nothing else, so renaming one here without the definition (or the reverse) fails
 * the build.
 */
export const WORKFLOW_ERRORS = {
  // Raised by the workflow Lambdas (the error's `name` is what Step Functions matches).
  /** Inspector has not scanned the rebuilt image yet: the verify state's Retry polls on it. */
  rescanPending: 'RescanPendingError',
  /** Inspector did not scan the rebuilt image within target.rescanTimeoutSeconds. */
  rescanTimedOut: 'RescanTimedOutError',
  /** The rebuilt image still has target CVEs, or a new CRITICAL/HIGH finding. */
  patchIneffective: 'PatchIneffectiveError',
  /** Inspector will never scan the rebuilt image (raised by a Fail state from the rescan verdict). */
  rescanUnavailable: 'RescanUnavailableError',
  /** The build did not export IMAGE_DIGEST (raised by a Fail state from the rescan verdict). */
  buildOutput: 'BuildOutputError',
  /** The rescan wait was answered with something that is not a verdict (a Fail state). */
  rescanVerdictUnknown: 'RescanVerdictUnknown',
  /**
   * Putting the last good revision back failed (any error, transient or not): the restore state's own
   * Retry tries again for about half an hour, then on-call gets the message, which carries the command.
   */
  putBackFailed: 'PutBackFailedError',
  /** A dependency failed in a retryable way (shared TransientError). */
  transient: 'TransientError',
  /**
   * An image index holds a platform Autopatch cannot patch (only linux/amd64 and linux/arm64 have
   * build projects): the plan fails before any build (outcome BuildFailed), never pushing an index
   * that lost a platform.
   */
  platformNotPatchable: 'PlatformNotPatchableError',
  /** SendTaskFailure error an approver's rejection carries (see approval.ts). */
  rejected: 'Autopatch.Rejected',

  // Raised by the definition itself (Fail states inside the Map, Pass states on the failure path).
  buildFailed: 'BuildFailed',
  buildCouldNotRun: 'BuildCouldNotRun',
  deploymentFailed: 'DeploymentFailed',
  deploymentTimedOut: 'DeploymentTimedOut',
  rollbackNotConfirmed: 'RollbackNotConfirmed',
  /** A watched alarm fired after ECS completed the deployment: the last good revision is redeployed. */
  alarmDuringBake: 'AlarmDuringBake',
  /** Fail closed: a watched alarm is missing, or the state stayed unreadable. */
  healthUnknown: 'HealthUnknown',
  /** Putting the last good revision back did not complete: on-call gets the command to do it by hand. */
  restoreNotConfirmed: 'RestoreNotConfirmed',
  /** Before deploying: a watched alarm does not exist. */
  watchedAlarmMissing: 'WatchedAlarmMissing',
  /** Before building: the service is gone or another deployment controller deploys it. */
  unsupportedDeploymentController: 'UnsupportedDeploymentController',

  // Raised by Step Functions and the services it calls.
  all: 'States.ALL',
  timeout: 'States.Timeout',
  taskFailed: 'States.TaskFailed',
  lambdaService: 'Lambda.ServiceException',
  lambdaAws: 'Lambda.AWSLambdaException',
  lambdaSdkClient: 'Lambda.SdkClientException',
  lambdaTooManyRequests: 'Lambda.TooManyRequestsException',
  lambdaClientTimeout: 'Lambda.ClientExecutionTimeoutException',
  // aws-sdk integrations name errors <Service>.<Exception> with the service in PascalCase.
  ecsThrottling: 'Ecs.ThrottlingException',
  ecsServer: 'Ecs.ServerException',
  ecsConflict: 'Ecs.ConflictException',
  // The same conflict raised by "Roll back the deployment in the service's account" (a Lambda: the
  // SDK's own error name).
  ecsConflictFromLambda: 'ConflictException',
  codeBuildAccountLimit: 'CodeBuild.AccountLimitExceededException',
  codeBuildThrottling: 'CodeBuild.ThrottlingException',
  // CodeBuild answers 5xx with the common InternalFailure / ServiceUnavailable; Step Functions adds the suffix.
  codeBuildInternalFailure: 'CodeBuild.InternalFailureException',
  codeBuildUnavailable: 'CodeBuild.ServiceUnavailableException',
} as const;

export type WorkflowErrorName = (typeof WORKFLOW_ERRORS)[keyof typeof WORKFLOW_ERRORS];

/** Not scanned yet: thrown to be retried by the state's Retry, which is the poll loop. */
export class RescanPendingError extends AutopatchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = WORKFLOW_ERRORS.rescanPending;
  }
}

/**
 * "Put the service back on its last good revision" could not: the message says why and ends with the
 * exact command that puts the service back by hand (`command`), which the outcome pages on-call with.
 */
export class PutBackFailedError extends AutopatchError {
  readonly command: string;
  constructor(message: string, command: string, options?: { cause?: unknown }) {
    super(`${message} To put it back by hand: ${command}`, options);
    this.name = WORKFLOW_ERRORS.putBackFailed;
    this.command = command;
  }
}

export class RescanTimedOutError extends AutopatchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = WORKFLOW_ERRORS.rescanTimedOut;
  }
}

export class PatchIneffectiveError extends AutopatchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = WORKFLOW_ERRORS.patchIneffective;
  }
}

/**
 * Inspector cannot scan the rebuilt image at all (unsupported OS, excluded, access denied...): the
 * fix cannot be proven, which is not a timeout and not worth waiting for. Caught as an unexpected
 * failure so on-call reads the reason.
 */
export class RescanUnavailableError extends AutopatchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RescanUnavailableError';
  }
}

/** The build succeeded but did not export IMAGE_DIGEST (a project-mode buildspec missing the export). */
export class BuildOutputError extends AutopatchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BuildOutputError';
  }
}

/** The running task definition does not match what the remediation was planned against. */
export class TaskDefinitionMismatchError extends AutopatchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TaskDefinitionMismatchError';
  }
}

/** The service cannot be watched the way Autopatch deploys (no ECS service deployment to follow). */
export class UnsupportedDeploymentError extends AutopatchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UnsupportedDeploymentError';
  }
}

/** An approve/reject command that cannot be applied (no approval pending, already answered, expired). */
export class ApprovalNotPendingError extends AutopatchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ApprovalNotPendingError';
  }
}

/** An image index holds a platform that no build project patches (see WORKFLOW_ERRORS.platformNotPatchable). */
export class PlatformNotPatchableError extends AutopatchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = WORKFLOW_ERRORS.platformNotPatchable;
  }
}

/** The patched platforms could not be assembled into a new image index (a platform missing, ECR refused the index). */
export class ImageIndexError extends AutopatchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ImageIndexError';
  }
}
