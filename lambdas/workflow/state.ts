import type {
  AffectedImage,
  IndexPlatform,
  Outcome,
  RebuildMode,
  RemediationRequest,
} from '../shared/contracts';

/**
 * What the remediation workflow accumulates in its state as it runs (the JSONPath `$`), on top of the
 * RemediationRequest it starts with. Each field is written by one state (its ResultPath), named in
 * the comment; the finish Lambda receives the whole thing and reads what is there.
 */

/** One CodeBuild environment variable override, as StartBuild takes it. */
export interface BuildEnvironmentVariable {
  readonly Name: string;
  readonly Value: string;
  readonly Type: 'PLAINTEXT';
}

/** "Plan the image builds" → `$.plan.builds[]`: how one image is rebuilt. */
export interface PlannedBuild {
  readonly image: AffectedImage;
  readonly mode: RebuildMode['mode'];
  readonly projectName: string;
  /** The tag the build pushes, e.g. autopatch-3f2a9c1d0b7e-20240904T165538Z. */
  readonly targetTag: string;
  readonly environment: readonly BuildEnvironmentVariable[];
  /**
   * This build patches one platform of an image index (`image` is then that platform's image, its
   * digest the platform manifest's): "Assemble the patched image indexes" puts the patched platforms
   * back together into a new index.
   */
  readonly platformOf?: {
    readonly indexDigest: string;
    /** The old index's media type (the new one keeps it when its platforms allow). */
    readonly indexMediaType: string;
    readonly platform: IndexPlatform;
    /** How many platforms the index holds: the new index must hold as many. */
    readonly platformCount: number;
  };
}

/**
 * When one image's build ran and its rescan was decided (ISO-8601), for the report's time to
 * verification and cost per rollout (docs/metrics.md). Absent in states from before it existed.
 */
export interface BuildTiming {
  /** The CodeBuild build's StartTime and EndTime, when the build reported them. */
  readonly buildStartedAt?: string;
  readonly buildEndedAt?: string;
  /** When ECR received the patched digest (its imagePushedAt), else the build's end (it pushes last). */
  readonly pushedAt?: string;
  /** When the rescan verdict (verified) was reached. */
  readonly verifiedAt: string;
}

/**
 * A CodeBuild time as Step Functions hands it over (epoch milliseconds, or seconds, as a number), or
 * as an ISO-8601 string: ISO-8601, or undefined when it is neither. Pure.
 */
export const buildTime = (value: unknown): string | undefined => {
  const ms =
    typeof value === 'number' && Number.isFinite(value) && value > 0
      ? value < 1e11
        ? value * 1000
        : value
      : typeof value === 'string'
        ? Date.parse(value)
        : Number.NaN;
  return Number.isNaN(ms) ? undefined : new Date(ms).toISOString();
};

/** "Verify the patched image by rescan" → one element of `$.patched[]`: an image proven fixed. */
export interface PatchedImage {
  readonly repository: string;
  readonly registry: string;
  readonly repositoryUri: string;
  readonly containers: readonly string[];
  readonly cves: readonly string[];
  readonly severity: AffectedImage['severity'];
  readonly oldDigest: string;
  readonly newDigest: string;
  readonly targetTag: string;
  /** The target CVEs Inspector no longer reports on the new digest (all of them, or verify fails). */
  readonly cvesClosed: readonly string[];
  readonly buildId?: string;
  readonly buildLogLink?: string;
  /**
   * A patched image index: each platform, from its old to its new manifest digest (oldDigest and
   * newDigest are then the indexes'). Set by "Assemble the patched image indexes".
   */
  readonly platforms?: readonly PatchedPlatform[];
  /** Its build and rescan times (a single-platform image; an index's are its platforms'). */
  readonly timing?: BuildTiming;
}

/** One platform of a patched image index. */
export interface PatchedPlatform {
  readonly architecture: string;
  readonly os: string;
  readonly variant?: string;
  readonly oldDigest: string;
  readonly newDigest: string;
  readonly buildId?: string;
  readonly buildLogLink?: string;
  readonly timing?: BuildTiming;
}

/**
 * SUCCESSFUL: baked with every watched alarm OK. ALARM: a watched alarm fired (ecsCompleted says
 * whether ECS had already completed the deployment, so rollback means redeploying the last good
 * revision). ROLLED_BACK: the service is back on its last good revision. FAILED: ECS failed or another
 * deployment replaced it. UNKNOWN: Autopatch could not tell whether the service is healthy (fail closed).
 */
export const WATCH_STATUSES = ['SUCCESSFUL', 'ALARM', 'ROLLED_BACK', 'FAILED', 'UNKNOWN'] as const;
export type WatchStatus = (typeof WATCH_STATUSES)[number];

/** "Watch the deployment through the bake time" → `$.watch`: what SendTaskSuccess resumes it with. */
export interface WatchResult {
  readonly status: WatchStatus;
  readonly deploymentArn: string;
  /** The alarm that fired (status ALARM). */
  readonly alarmName?: string;
  /** ISO-8601: when that alarm entered ALARM (CloudWatch's StateUpdatedTimestamp), when known. */
  readonly alarmAt?: string;
  /** ISO-8601: when the watch decided; for ALARM, "Roll back the deployment" is the next state. */
  readonly decidedAt?: string;
  /** ALARM only: ECS had already completed the deployment (roll back by redeploying the last good revision). */
  readonly ecsCompleted?: boolean;
  /**
   * ALARM only: who runs the deployment. CODE_DEPLOY: the rollback goes through CodeDeploy (the
   * restore step), not ECS's StopServiceDeployment.
   */
  readonly controller?: 'ECS' | 'CODE_DEPLOY';
  /** A sentence for people (not read by the definition). */
  readonly reason?: string;
}

/** A caught error, as Catch with ResultPath writes it. */
export interface StateError {
  readonly Error: string;
  readonly Cause?: string;
}

/** "Put the service back on its last good revision" → `$.recovery`. */
export interface RecoveryResult {
  readonly action: 'rollback-requested' | 'rollback-in-progress' | 'redeployed-previous' | 'nothing-to-do';
  readonly detail: string;
  /** The service deployment that puts the last good revision back (absent for nothing-to-do). */
  readonly deploymentArn?: string;
  /**
   * The command that puts the service back by hand, for on-call when the put-back is not confirmed:
   * `aws ecs update-service …`, or for a CODE_DEPLOY service `aws deploy stop-deployment …` /
   * `aws deploy create-deployment …` ('' for nothing-to-do; absent in states recorded before it existed).
   */
  readonly manualCommand?: string;
}

export interface WorkflowState extends RemediationRequest {
  /** "Acquire the service lock". */
  readonly lock?: { readonly status: 'acquired' | 'superseded'; readonly reason: string };
  /** "Wait for approval": what the approver sent. */
  readonly approval?: {
    readonly approved?: boolean;
    readonly by?: string;
    readonly reason?: string;
    /** An urgent finding queued behind this run ended its approval wait: it runs first, this one after it. */
    readonly preempted?: boolean;
  };
  /** "Plan the image builds". */
  readonly plan?: { readonly builds: readonly PlannedBuild[] };
  /** "Rebuild and verify each image" (one per build), then "Assemble the patched image indexes" (one per image). */
  readonly patched?: readonly PatchedImage[];
  /** "Register the patched task definition". */
  readonly taskDefinition?: { readonly previousArn: string; readonly patchedArn: string };
  /** "Watch the deployment through the bake time". */
  readonly watch?: WatchResult;
  /** "Check the service can be watched" / "Check the alarms before deploying". */
  readonly gate?: Partial<import('./gate').GateResult> & { readonly checks?: number };
  /** "Deploy the patched revision": the service deployment UpdateService started. */
  readonly deployment?: { readonly deploymentArn?: string };
  /** "Wait for the rollback" / "Wait until the last good revision runs". */
  readonly rollback?: WatchResult;
  readonly rollbackConflict?: StateError;
  /** "Put the service back on its last good revision". */
  readonly recovery?: RecoveryResult;
  readonly recoveryError?: StateError;
  /** Whatever error led to the outcome (Catch ResultPath, or a Pass state on the failure path). */
  readonly error?: StateError;
  /** Set by the outcome Pass states. */
  readonly outcome?: Outcome;
  readonly finishError?: StateError;
}
