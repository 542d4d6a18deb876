/**
 * Scenario files: what the simulated account holds, what happens to it and when, and what the run
 * is expected to end with. Validated strictly and all at once before anything runs, so that a typo
 * fails with the path of the offending field instead of a simulation that quietly does nothing.
 * The format is documented for users in simulation/SCENARIOS.md.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as z from 'zod';
import { discoverByTagSchema, targetSchema, workflowDefaultsSchema } from '../lambdas/shared/config';
import { OUTCOMES, SEVERITIES } from '../lambdas/shared/contracts';
import { fleetSchema } from '../lambdas/shared/fleet';
import { parsePolicy } from '../lambdas/triage/policy';
import { issueProblems } from '../lambdas/triage/schema';
import { checkOrganization } from '../lib/organization';
import {
  errorNames,
  LAMBDA_INVOKE_ERRORS,
  OPERATIONS,
  resolveError,
  resolveLambdaError,
  SERVICES,
} from './model/catalog';
import { isIsoInstant, parseDuration, resolveAt } from './time';

const DIGEST = /^sha256:[a-f0-9]{64}$/;
const REPOSITORY = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$/;

const duration = z.union([
  z.number().int().nonnegative(),
  z.string().refine((s) => parseDuration(s) !== undefined, {
    message: 'expected a duration such as "+5m", "90s", "1h30m" or a number of milliseconds',
  }),
]);
const instant = z.union([
  z.number().int().nonnegative(),
  z.string().refine((s) => parseDuration(s) !== undefined || isIsoInstant(s), {
    message: 'expected an offset such as "+5m" (from the scenario start) or an ISO-8601 timestamp',
  }),
]);

export const PACKAGE_MANAGERS = [
  'OS',
  'NPM',
  'YARN',
  'PIP',
  'PIPENV',
  'POETRY',
  'PYTHONPKG',
  'NODEPKG',
  'GOMOD',
  'GOBINARY',
  'JAR',
  'POM',
  'GEMSPEC',
  'BUNDLER',
  'NUGET',
  'DOTNET_CORE',
  'CARGO',
  'COMPOSER',
] as const;

/** One vulnerability Inspector reports (or will report) on an image. */
const findingSpec = z.strictObject({
  cve: z
    .string()
    .regex(/^[A-Za-z][A-Za-z0-9]*-[A-Za-z0-9-]+$/, 'expected a vulnerability id such as CVE-2024-6119'),
  severity: z.enum(SEVERITIES),
  packageManager: z.enum(PACKAGE_MANAGERS).default('OS'),
  /** Package name; defaults to one typical of the package manager. */
  package: z.string().min(1).optional(),
  fixAvailable: z.enum(['YES', 'NO', 'PARTIAL']).default('YES'),
  exploitAvailable: z.enum(['YES', 'NO']).optional(),
  /** Absent by default, as in many real findings. */
  inspectorScore: z.number().min(0).max(10).optional(),
  epss: z.number().min(0).max(1).optional(),
  status: z.enum(['ACTIVE', 'SUPPRESSED', 'CLOSED']).default('ACTIVE'),
  /**
   * In CISA's KEV catalog: Inspector's finding details (BatchGetFindingDetails) report cisaData with
   * this due date (and date added). Absent: not in KEV.
   */
  kev: z
    .strictObject({
      dateDue: z.string().refine(isIsoInstant, 'expected an ISO-8601 timestamp'),
      dateAdded: z.string().refine(isIsoInstant, 'expected an ISO-8601 timestamp').optional(),
    })
    .optional(),
  /** Inspector's threat intelligence has observed exploitation (finding details exploitObserved). */
  exploitObserved: z.boolean().optional(),
});
export type FindingSpec = z.infer<typeof findingSpec>;

const imageSpec = z.strictObject({
  /** Derived from the repository and tags when omitted, so scenarios need not invent 64 hex digits. */
  digest: z.string().regex(DIGEST, 'expected sha256: followed by 64 lowercase hex digits').optional(),
  tags: z.array(z.string().regex(TAG, 'not a valid image tag')).default([]),
  platform: z.string().min(1).default('UBUNTU_24_04'),
  architecture: z.enum(['amd64', 'arm64']).default('arm64'),
  /** Offset or timestamp of the push; defaults to a day before the scenario starts. */
  pushedAt: instant.optional(),
  findings: z.array(findingSpec).default([]),
  /**
   * An image index (multi-architecture image) over these images of the same repository (tags, or
   * digests for untagged platform manifests), in order: its own platform, architecture and findings
   * do not apply (Inspector scans the platforms).
   */
  manifests: z.array(z.string().min(1)).min(1).optional(),
});

const repositorySpec = z.strictObject({
  name: z.string().regex(REPOSITORY, 'not a valid ECR repository name'),
  images: z.array(imageSpec).min(1),
  /**
   * The repository policy (an IAM policy document, as `aws ecr set-repository-policy` takes it): what
   * principals of other accounts may do with it. A central registry grants pulls to the organization.
   */
  policy: z
    .strictObject({
      Version: z.string().optional(),
      Statement: z.array(z.record(z.string(), z.unknown())).min(1),
    })
    .optional(),
});

const containerSpec = z.strictObject({
  name: z.string().regex(NAME, 'not a valid container name'),
  /** "<repository>:<tag>" or "<repository>@sha256:…", resolved against account.repositories. */
  image: z.string().min(1),
});

const serviceSpec = z.strictObject({
  name: z.string().regex(NAME, 'not a valid service name'),
  containers: z.array(containerSpec).min(1),
  strategy: z.enum(['BLUE_GREEN', 'ROLLING']).default('BLUE_GREEN'),
  bakeTimeMinutes: z.number().int().min(0).max(1440).default(10),
  /** CloudWatch alarms in the service's deploymentConfiguration.alarms: ECS rolls back when one fires. */
  alarms: z.array(z.string().min(1)).default([]),
  tags: z.record(z.string(), z.string()).default({}),
  desiredCount: z.number().int().min(0).max(100).default(2),
  /** Minutes from UpdateService until production traffic is on the new revision (the bake starts then). */
  deployMinutes: z.number().min(0).max(240).default(4),
  /** Minutes a rollback takes to put the previous revision back. */
  rollbackMinutes: z.number().min(0).max(240).default(2),
  /** Who deploys the service: ECS (the default), CODE_DEPLOY or EXTERNAL (UpdateService cannot change its task definition). */
  deploymentController: z.enum(['ECS', 'CODE_DEPLOY', 'EXTERNAL']).default('ECS'),
  /**
   * CODE_DEPLOY services: whether the CodeDeploy application and deployment group the ECS console
   * creates (AppECS-<cluster>-<service>, DgpECS-<cluster>-<service>) exist. false: no group deploys it.
   */
  codeDeployGroup: z.boolean().default(true),
});

const clusterSpec = z.strictObject({
  name: z.string().regex(NAME, 'not a valid cluster name'),
  services: z.array(serviceSpec).default([]),
});

const alarmSpec = z.strictObject({
  name: z.string().min(1).max(255),
  state: z.enum(['OK', 'ALARM', 'INSUFFICIENT_DATA']).default('OK'),
  description: z.string().optional(),
});

const accountSpec = z.strictObject({
  accountId: z
    .string()
    .regex(/^\d{12}$/, 'expected a 12-digit account id')
    .default('123456789012'),
  region: z
    .string()
    .regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'expected a region such as eu-central-1')
    .default('eu-central-1'),
  repositories: z.array(repositorySpec).default([]),
  clusters: z.array(clusterSpec).default([]),
  alarms: z.array(alarmSpec).default([]),
});

/**
 * Another account and Region of an organization (a spoke): its own repositories, clusters and alarms.
 * Services here are keyed "<account>/<region>/<cluster>/<service>" everywhere in the scenario, as
 * Autopatch keys them.
 */
const placeSpec = z.strictObject({
  accountId: z.string().regex(/^\d{12}$/, 'expected a 12-digit account id'),
  region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'expected a region such as eu-central-1'),
  /** How people call the account ("shared-services"), for the timeline. */
  name: z.string().min(1).optional(),
  repositories: z.array(repositorySpec).default([]),
  clusters: z.array(clusterSpec).default([]),
  alarms: z.array(alarmSpec).default([]),
});

/** Where the spoke stack (lib/spoke.ts) is deployed: by default in every account and Region of `accounts`. */
const spokeSpec = z.strictObject({
  account: z.string().regex(/^\d{12}$/, 'expected a 12-digit account id'),
  /** The Regions with the spoke stack (its role is created in the first). Default: the account's declared Regions. */
  regions: z
    .array(z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'expected a region such as eu-central-1'))
    .min(1)
    .optional(),
  /** The spoke role exists. false: the spoke stack was deployed without it (or the role was deleted). */
  role: z.boolean().default(true),
  /** A registry account: the role may read and push images. Default: the account declares repositories. */
  registry: z.boolean().optional(),
});
export type SpokeSpecInput = z.infer<typeof spokeSpec>;

/** Inspector delivers a finding the account already has (declared on the image). */
const findingEvent = z.strictObject({
  kind: z.literal('finding'),
  at: instant,
  repository: z.string().min(1),
  /** Digest or tag of the image in that repository. */
  image: z.string().min(1),
  cve: z.string().min(1),
  /** Extra deliveries of the very same event (EventBridge delivers at least once). */
  duplicate: z.number().int().min(0).max(100).default(0),
  /** Time between the original and each duplicate delivery. */
  duplicateAfter: duration.default('30s'),
});

/** A new vulnerability is published: Inspector raises it on many images at once. */
const burstEvent = z.strictObject({
  kind: z.literal('burst'),
  at: instant,
  /** Explicit ids, or a generated range: { prefix: "CVE-2099-", count: 50 } gives CVE-2099-0001… */
  cves: z.union([
    z.array(z.string().min(1)).min(1),
    z.strictObject({
      prefix: z.string().min(1),
      from: z.number().int().min(0).default(1),
      count: z.number().int().min(1).max(10_000),
    }),
  ]),
  /** "all" (every image in the account) or image references "<repository>:<tag>" / "<repository>@<digest>". */
  images: z.union([z.literal('all'), z.array(z.string().min(1)).min(1)]).default('all'),
  severity: z.enum(SEVERITIES).default('HIGH'),
  packageManager: z.enum(PACKAGE_MANAGERS).default('OS'),
  package: z.string().min(1).optional(),
  fixAvailable: z.enum(['YES', 'NO', 'PARTIAL']).default('YES'),
  exploitAvailable: z.enum(['YES', 'NO']).optional(),
  inspectorScore: z.number().min(0).max(10).optional(),
  epss: z.number().min(0).max(1).optional(),
  /** The events are spread evenly over this long (all at once when 0). */
  spread: duration.default(0),
  /** by-cve: every image for the first CVE, then the next CVE; by-image: every CVE of one image, then the next. */
  order: z.enum(['by-cve', 'by-image']).default('by-cve'),
});

/** Any event, delivered to the bus as written (malformed ones included). */
const rawEvent = z.strictObject({
  kind: z.literal('raw'),
  at: instant,
  event: z.unknown(),
  duplicate: z.number().int().min(0).max(100).default(0),
  duplicateAfter: duration.default('30s'),
});

const eventSpec = z.discriminatedUnion('kind', [findingEvent, burstEvent, rawEvent]);

const buildSpec = z.strictObject({
  /** Only builds of this repository; all builds when omitted. */
  repository: z.string().min(1).optional(),
  outcome: z.enum(['SUCCEEDED', 'FAILED']).default('SUCCEEDED'),
  durationMinutes: z.number().min(0).max(480).default(6),
  /** CVEs the rebuilt image no longer has: "all" or a list. */
  fixes: z.union([z.literal('all'), z.array(z.string().min(1))]).default('all'),
  /** Findings the rebuilt image has that the original did not. */
  introduces: z.array(findingSpec).default([]),
  /** How many builds this entry applies to; every matching build when omitted. */
  times: z.number().int().min(1).optional(),
  /** The build phase that fails, for FAILED builds. */
  failedPhase: z.enum(['INSTALL', 'PRE_BUILD', 'BUILD', 'POST_BUILD']).default('BUILD'),
});
export type BuildSpec = z.infer<typeof buildSpec>;

/** The account and Region of an alarm outside the hub's: default the hub's. */
const alarmPlace = {
  account: z
    .string()
    .regex(/^\d{12}$/, 'expected a 12-digit account id')
    .optional(),
  region: z
    .string()
    .regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'expected a region such as eu-central-1')
    .optional(),
};

const alarmChange = z.strictObject({
  name: z.string().min(1),
  ...alarmPlace,
  state: z.enum(['OK', 'ALARM', 'INSUFFICIENT_DATA']),
  /** Offset from the scenario start, or from the deployment start when afterDeploymentOf is set; or a timestamp. */
  at: instant,
  /** "<cluster>/<service>": `at` counts from the start of that service's (nth) deployment. */
  afterDeploymentOf: z.string().min(1).optional(),
  /** Which deployment of that service (1 = the first Autopatch starts). */
  deployment: z.number().int().min(1).default(1),
  reason: z.string().optional(),
});
export type AlarmChange = z.infer<typeof alarmChange>;

const approvalSpec = z.strictObject({
  /** "<cluster>/<service>" whose remediation is approved or rejected. */
  service: z.string().min(1),
  /** Offset from the moment the approval was requested, or a timestamp. */
  at: instant,
  decision: z.enum(['approve', 'reject']),
  approver: z.string().min(1).default('oncall@example.com'),
  comment: z.string().optional(),
});
export type ApprovalSpec = z.infer<typeof approvalSpec>;

const faultSpec = z.strictObject({
  /** A service the model answers, or "lambda" (operation Invoke: the state machine invoking its functions). */
  service: z.enum([...SERVICES, 'lambda']),
  /** API operation name as in the service's API reference, e.g. DescribeServices. */
  operation: z.string().min(1),
  /**
   * The error the service returns: one of its own (ECS ServerException, CloudWatch Throttling…), or a
   * kind it is translated to: "throttling", "server" (or "5xx"), "access-denied". The older generic
   * names ThrottlingException, InternalServerError and AccessDeniedException stand for those kinds.
   */
  error: z.string().min(1),
  /** How many calls fail. */
  times: z.number().int().min(1).max(1000).default(1),
  /** How many calls succeed before the first failure. */
  after: z.number().int().min(0).default(0),
  /** Every call fails from the first failure on (`times` is ignored): the fault never clears. */
  persistent: z.boolean().optional(),
  /** An outage that recovers: every call fails for this long after the first failure, then all succeed. */
  outage: duration.optional(),
  /** Only calls in this window of virtual time count and fail (offsets from the start or timestamps). */
  from: instant.optional(),
  until: instant.optional(),
});
export type FaultSpec = z.infer<typeof faultSpec>;

/** When a change to the world happens: an offset or timestamp, or an offset from a service's nth deployment. */
const changeTiming = {
  at: instant,
  /** "<cluster>/<service>": `at` counts from the start of that service's (nth) deployment. */
  afterDeploymentOf: z.string().min(1).optional(),
  deployment: z.number().int().min(1).default(1),
};

/**
 * The world changes under Autopatch mid-run: the service's owner deploys, scales, deletes or retags
 * the service; an alarm is deleted; an image tag moves to another image.
 */
const changeSpec = z.discriminatedUnion('kind', [
  /** The owner redeploys the service's current task definition (UpdateService --force-new-deployment). */
  z.strictObject({ kind: z.literal('redeploy'), service: z.string().min(1), ...changeTiming }),
  /** The owner registers a task definition revision with these containers' images and deploys it. */
  z.strictObject({
    kind: z.literal('deploy'),
    service: z.string().min(1),
    /** Container name → image reference ("<repository>:<tag>" or "<repository>@sha256:…"). */
    images: z.record(z.string(), z.string().min(1)),
    ...changeTiming,
  }),
  z.strictObject({
    kind: z.literal('scale'),
    service: z.string().min(1),
    desiredCount: z.number().int().min(0).max(100),
    ...changeTiming,
  }),
  z.strictObject({ kind: z.literal('delete-service'), service: z.string().min(1), ...changeTiming }),
  /** A tag on the service is set (value given) or removed (no value). */
  z.strictObject({
    kind: z.literal('tag'),
    service: z.string().min(1),
    key: z.string().min(1),
    value: z.string().optional(),
    ...changeTiming,
  }),
  z.strictObject({
    kind: z.literal('delete-alarm'),
    alarm: z.string().min(1),
    ...alarmPlace,
    ...changeTiming,
  }),
  /** The spoke role of an account is deleted (its stack updated without it, or by hand). */
  z.strictObject({
    kind: z.literal('delete-spoke-role'),
    account: z.string().regex(/^\d{12}$/, 'expected a 12-digit account id'),
    ...changeTiming,
  }),
  /** An image tag moves to another image of the repository (a push of that tag). */
  z.strictObject({
    kind: z.literal('move-image-tag'),
    repository: z.string().min(1),
    tag: z.string().regex(TAG, 'not a valid image tag'),
    /** The image the tag now points at: a tag or a digest of the same repository. */
    to: z.string().min(1),
    ...changeTiming,
  }),
]);
export type ChangeSpec = z.infer<typeof changeSpec>;

/** ECS misbehaving in a service's nth deployment (counting the deployments started after the start). */
const deploymentTroubleSpec = z.strictObject({
  service: z.string().min(1),
  deployment: z.number().int().min(1).default(1),
  /** The new tasks fail to start this long after the deployment starts: the circuit breaker rolls back. */
  tasksFailAfter: duration.optional(),
  /** ECS's own rollback of this deployment fails (ROLLBACK_FAILED). */
  rollbackFails: z.boolean().default(false),
});

/** EventBridge loses or delays deliveries of some events to the rules' targets. */
const eventFaultSpec = z.strictObject({
  /** The event's detail-type, e.g. "ECS Deployment State Change", "CloudWatch Alarm State Change". */
  detailType: z.string().min(1),
  /** Only events from this source (aws.ecs, aws.cloudwatch, aws.inspector2…). */
  source: z.string().min(1).optional(),
  /** Only deliveries to targets of this rule (a name as the stack defines it). */
  rule: z.string().min(1).optional(),
  effect: z.enum(['lose', 'delay']).default('lose'),
  /** For effect "delay": how late the delivery arrives. */
  delay: duration.default('10m'),
  times: z.number().int().min(1).max(1000).default(1),
  after: z.number().int().min(0).default(0),
  persistent: z.boolean().default(false),
  from: instant.optional(),
  until: instant.optional(),
});
export type EventFaultSpec = z.infer<typeof eventFaultSpec>;

const serviceExpectation = z.strictObject({
  /** The task definition revision the service runs at the end. */
  revision: z.number().int().min(1).optional(),
  /**
   * The image digests its tasks run at the end: "original" (what it ran at the start), "patched" (an
   * image Autopatch built), an image reference "<repository>:<tag>" / "<repository>@sha256:…", or a digest.
   */
  runs: z.string().min(1).optional(),
  /**
   * Multi-architecture images: the platforms of the image index its tasks run at the end, each
   * "patched" (a platform image Autopatch built) or "original"; exactly these, no platform lost.
   */
  platforms: z.record(z.string(), z.enum(['patched', 'original'])).optional(),
  /** ACTIVE, DRAINING or INACTIVE. */
  status: z.enum(['ACTIVE', 'DRAINING', 'INACTIVE']).optional(),
});

/** Bounds on a duration: "at least", "at most". */
const bounds = z.strictObject({ atLeast: duration.optional(), atMost: duration.optional() });

const ACTIONS = ['remediate', 'approve', 'notify', 'ignore', 'reject'] as const;

const expectSpec = z.strictObject({
  /** Number of remediation executions started. */
  executions: z.number().int().min(0).optional(),
  /** Outcome per "<cluster>/<service>": of its last execution, or of each execution in order (an array). */
  outcomes: z.record(z.string(), z.union([z.enum(OUTCOMES), z.array(z.enum(OUTCOMES))])).optional(),
  /** Findings (SQS messages) triaged per action. */
  findings: z.partialRecord(z.enum(ACTIONS), z.number().int().min(0)).optional(),
  /** Messages that ended in the intake dead-letter queue. */
  deadLetters: z.number().int().min(0).optional(),
  /** What each "<cluster>/<service>" runs at the end. */
  services: z.record(z.string(), serviceExpectation).optional(),
  /** Service locks left in the ledger at the end (0: none outlived the run). */
  locks: z.number().int().min(0).optional(),
  /** CodeBuild builds started. */
  builds: z.number().int().min(0).optional(),
  /** Per service: a substring of the Cause (or the output) of its last execution. */
  cause: z.record(z.string(), z.string().min(1)).optional(),
  /** Per service: how long its last execution ran (from start to end). */
  duration: z.record(z.string(), bounds).optional(),
  /** Per service: from a watched alarm going to ALARM to the rollback starting (ECS's or Autopatch's). */
  alarmToRollback: z.record(z.string(), bounds).optional(),
  /** Executions still running at the end. */
  running: z.number().int().min(0).optional(),
  /**
   * At most this many service deployments in flight at once (from a deployment's start to its end,
   * bake included), counting those started after the first execution: across every account and
   * Region (`total`), in one account (`perAccount`), in one Region (`perRegion`).
   */
  inFlight: z
    .strictObject({
      total: z.number().int().min(1).optional(),
      perAccount: z.number().int().min(1).optional(),
      perRegion: z.number().int().min(1).optional(),
    })
    .optional(),
  /**
   * Notify digests sent (SNS messages of kind notify-digest) per "<cluster>/<service>", or `account`
   * for the one about images no service runs.
   */
  notifyDigests: z.record(z.string(), z.number().int().min(0)).optional(),
});
export type Expectations = z.infer<typeof expectSpec>;

/** Overrides of the intake settings the synthesized stack has (queue and event source mapping). */
const intakeSpec = z.strictObject({
  batchSize: z.number().int().min(1).max(10_000).optional(),
  batchingWindowSeconds: z.number().int().min(0).max(300).optional(),
  visibilityTimeoutSeconds: z.number().int().min(1).max(43_200).optional(),
  maxReceiveCount: z.number().int().min(1).max(1000).optional(),
  /** Concurrent triage invocations the event source mapping runs. */
  maxConcurrency: z.number().int().min(1).max(1000).optional(),
});

export const scenarioSchema = z
  .strictObject({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'expected a kebab-case name'),
    description: z.string().min(1),
    startTime: z.string().refine(isIsoInstant, 'expected an ISO-8601 timestamp such as 2024-09-04T16:00:00Z'),
    account: accountSpec,
    /** More accounts and Regions: an organization's workload and registry accounts (spokes). */
    accounts: z.array(placeSpec).default([]),
    /** The hub's `organization` setting (lib/organization.ts): required with `accounts`. */
    organization: z.unknown().optional(),
    /** Where the spoke stack is deployed (default: every account and Region of `accounts`). */
    spokes: z.array(spokeSpec).optional(),
    /** The hub's `fleet` setting: deployments in flight at once (lambdas/shared/fleet.ts). */
    fleet: z.unknown().optional(),
    policy: z.unknown().optional(),
    targets: z.array(targetSchema).default([]),
    discoverByTag: discoverByTagSchema.default({ key: 'autopatch:enabled', value: 'true' }),
    defaults: workflowDefaultsSchema.default(workflowDefaultsSchema.parse({})),
    intake: intakeSpec.default({}),
    events: z.array(eventSpec).default([]),
    builds: z.array(buildSpec).default([]),
    scans: z
      .strictObject({
        delayMinutes: z.number().min(0).max(1440).default(3),
        /** Inspector never scans rebuilt images (coverage stays PENDING_INITIAL_SCAN). */
        never: z.boolean().default(false),
      })
      .default({ delayMinutes: 3, never: false }),
    alarms: z.array(alarmChange).default([]),
    approvals: z.array(approvalSpec).default([]),
    faults: z.array(faultSpec).default([]),
    /** Changes to the world mid-run (the owner deploys, scales, deletes, retags; an alarm is deleted). */
    changes: z.array(changeSpec).default([]),
    /** ECS misbehaving in a deployment: tasks fail to start (circuit breaker), the rollback fails. */
    deployments: z.array(deploymentTroubleSpec).default([]),
    /** EventBridge deliveries lost or delayed. */
    eventFaults: z.array(eventFaultSpec).default([]),
    /** Stop the clock this long after the start even if work remains (default: when everything is done). */
    until: duration.optional(),
    expect: expectSpec.optional(),
  })
  .superRefine((s, ctx) => crossCheck(s, ctx));

export type ScenarioInput = z.input<typeof scenarioSchema>;
type Parsed = z.infer<typeof scenarioSchema>;

/** An image reference as services and scenario events write it. */
export interface ImageRef {
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: string;
}

export const parseImageRef = (ref: string): ImageRef | undefined => {
  const m = /^([^:@\s]+)(?::([^@\s]+))?(?:@(sha256:[a-f0-9]{64}))?$/.exec(ref);
  if (!m) return undefined;
  const [, repository, tag, digest] = m;
  if (!repository || !REPOSITORY.test(repository) || (tag === undefined && digest === undefined))
    return undefined;
  return { repository, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
};

/** The digest a scenario image gets when it does not name one: stable across runs. */
export const derivedDigest = (repository: string, index: number, tags: readonly string[]): string =>
  `sha256:${createHash('sha256')
    .update(`${repository}\n${index}\n${tags.join(',')}`)
    .digest('hex')}`;

const digestOf = (
  repository: string,
  image: Parsed['account']['repositories'][number]['images'][number],
  i: number,
) => image.digest ?? derivedDigest(repository, i, image.tags);

/** Generated CVE ids of a burst, e.g. CVE-2099-0001. */
export const burstCves = (cves: Parsed['events'][number] & { kind: 'burst' }): string[] =>
  Array.isArray(cves.cves)
    ? [...cves.cves]
    : Array.from(
        { length: cves.cves.count },
        (_, i) =>
          `${(cves.cves as { prefix: string }).prefix}${String((cves.cves as { from: number }).from + i).padStart(4, '0')}`,
      );

type Ctx = z.RefinementCtx;

/** The hub's account and Region, then every other declared one, with the path of each in the file. */
/** The service key a target names (a cluster ARN of another account or Region: that place's key). */
export const targetKey = (
  s: Pick<Parsed, 'account'>,
  t: { readonly cluster: string; readonly service: string },
): string => {
  const name = t.cluster.includes('/') ? (t.cluster.split('/').pop() as string) : t.cluster;
  const arn = /^arn:aws[a-z-]*:ecs:([a-z0-9-]+):(\d{12}):/.exec(t.cluster);
  return arn && (arn[2] !== s.account.accountId || arn[1] !== s.account.region)
    ? `${arn[2]}/${arn[1]}/${name}/${t.service}`
    : `${name}/${t.service}`;
};

export const scenarioPlaces = (s: Pick<Parsed, 'account' | 'accounts'>) => [
  { path: ['account'] as Array<string | number>, home: true, ...s.account },
  ...s.accounts.map((a, i) => ({ path: ['accounts', i] as Array<string | number>, home: false, ...a })),
];

/** A service's key as Autopatch writes it: "<cluster>/<service>" at home, else "<account>/<region>/<cluster>/<service>". */
export const placedKey = (
  place: { home: boolean; accountId: string; region: string },
  key: string,
): string => (place.home ? key : `${place.accountId}/${place.region}/${key}`);

const crossCheck = (s: Parsed, ctx: Ctx): void => {
  const issue = (path: Array<string | number>, message: string) =>
    ctx.addIssue({ code: 'custom', path, message });
  const repos = new Map<string, { digests: Map<string, Set<string>>; tags: Map<string, string> }>();
  const places = scenarioPlaces(s);

  const seenPlaces = new Set<string>();
  places.forEach((place) => {
    const id = `${place.accountId}/${place.region}`;
    if (seenPlaces.has(id))
      issue([...place.path, 'region'], `account ${place.accountId} in ${place.region} is declared twice`);
    seenPlaces.add(id);
  });

  for (const place of places)
    place.repositories.forEach((repo, r) => {
      if (repos.has(repo.name))
        issue(
          [...place.path, 'repositories', r, 'name'],
          `repository ${repo.name} is declared twice (names are unique across the scenario's accounts)`,
        );
      const digests = new Map<string, Set<string>>();
      const tags = new Map<string, string>();
      repo.images.forEach((image, i) => {
        const digest = digestOf(repo.name, image, i);
        if (digests.has(digest))
          issue(
            [...place.path, 'repositories', r, 'images', i, 'digest'],
            `digest ${digest} is declared twice in ${repo.name}`,
          );
        const cves = new Set<string>();
        image.findings.forEach((f, k) => {
          if (cves.has(f.cve))
            issue(
              [...place.path, 'repositories', r, 'images', i, 'findings', k, 'cve'],
              `${f.cve} is declared twice on this image`,
            );
          cves.add(f.cve);
        });
        digests.set(digest, cves);
        image.tags.forEach((tag, t) => {
          if (tags.has(tag))
            issue(
              [...place.path, 'repositories', r, 'images', i, 'tags', t],
              `tag ${tag} is on two images of ${repo.name}`,
            );
          tags.set(tag, digest);
        });
      });
      repos.set(repo.name, { digests, tags });
    });

  /** Resolve "<repo>:<tag>" / "<repo>@<digest>" to a declared image, or report why it does not exist. */
  const resolveRef = (ref: string, path: Array<string | number>): string | undefined => {
    const parsed = parseImageRef(ref);
    if (!parsed) {
      issue(path, `"${ref}" is not an image reference ("<repository>:<tag>" or "<repository>@sha256:…")`);
      return undefined;
    }
    const repo = repos.get(parsed.repository);
    if (!repo) {
      issue(path, `repository ${parsed.repository} is not declared in account.repositories`);
      return undefined;
    }
    if (parsed.digest) {
      if (!repo.digests.has(parsed.digest)) {
        issue(path, `image ${parsed.repository}@${parsed.digest} does not exist`);
        return undefined;
      }
      return parsed.digest;
    }
    const digest = repo.tags.get(parsed.tag as string);
    if (!digest) {
      issue(
        path,
        `image ${parsed.repository}:${parsed.tag} does not exist (tags: ${[...repo.tags.keys()].join(', ') || 'none'})`,
      );
    }
    return digest;
  };

  // Image indexes: their manifests are single-platform images of the same repository.
  for (const place of places)
    place.repositories.forEach((repo, r) => {
      const indexes = new Set(
        repo.images.flatMap((image, i) => (image.manifests ? [digestOf(repo.name, image, i)] : [])),
      );
      repo.images.forEach((image, i) => {
        const path = [...place.path, 'repositories', r, 'images', i];
        if (image.manifests && image.findings.length > 0)
          issue(
            [...path, 'findings'],
            'an image index has no findings of its own: put them on its platforms',
          );
        image.manifests?.forEach((ref, m) => {
          const digest = resolveRef(/^sha256:/.test(ref) ? `${repo.name}@${ref}` : `${repo.name}:${ref}`, [
            ...path,
            'manifests',
            m,
          ]);
          if (digest && indexes.has(digest))
            issue([...path, 'manifests', m], `${ref} is an image index itself, not a platform image`);
        });
      });
    });

  /** Alarms by place ("<account>/<region>"). */
  const alarmsAt = new Map<string, Set<string>>();
  const alarms = new Set<string>();
  places.forEach((place) => {
    const here = new Set<string>();
    place.alarms.forEach((a, i) => {
      if (here.has(a.name)) issue([...place.path, 'alarms', i, 'name'], `alarm ${a.name} is declared twice`);
      here.add(a.name);
    });
    alarmsAt.set(`${place.accountId}/${place.region}`, here);
    if (place.home) for (const a of here) alarms.add(a);
  });
  const alarmAt = (
    a: { account?: string | undefined; region?: string | undefined },
    name: string,
    path: Array<string | number>,
  ) => {
    const id = `${a.account ?? s.account.accountId}/${a.region ?? s.account.region}`;
    const here = alarmsAt.get(id);
    if (!here) issue(path, `no account and Region ${id} is declared (account or accounts[])`);
    else if (!here.has(name)) {
      const i = s.accounts.findIndex((x) => `${x.accountId}/${x.region}` === id);
      issue(path, `alarm ${name} is not declared in ${i < 0 ? 'account.alarms' : `accounts[${i}].alarms`}`);
    }
  };

  const services = new Set<string>();
  places.forEach((place) => {
    const clusters = new Set<string>();
    const here = alarmsAt.get(`${place.accountId}/${place.region}`) ?? new Set<string>();
    place.clusters.forEach((cluster, c) => {
      if (clusters.has(cluster.name))
        issue([...place.path, 'clusters', c, 'name'], `cluster ${cluster.name} is declared twice`);
      clusters.add(cluster.name);
      cluster.services.forEach((service, v) => {
        const key = placedKey(place, `${cluster.name}/${service.name}`);
        const path = [...place.path, 'clusters', c, 'services', v];
        if (services.has(key)) issue([...path, 'name'], `service ${key} is declared twice`);
        services.add(key);
        const names = new Set<string>();
        service.containers.forEach((container, k) => {
          if (names.has(container.name))
            issue([...path, 'containers', k, 'name'], `container ${container.name} is declared twice`);
          names.add(container.name);
          resolveRef(container.image, [...path, 'containers', k, 'image']);
        });
        service.alarms.forEach((alarm, k) => {
          if (!here.has(alarm))
            issue(
              [...path, 'alarms', k],
              `alarm ${alarm} is not declared in ${place.home ? 'account.alarms' : `accounts[${place.path[1]}].alarms`}`,
            );
        });
      });
    });
  });

  // An organization: the hub's setting, validated as the stack validates it, and every account it serves.
  const otherAccounts = [...new Set(s.accounts.map((a) => a.accountId))].filter(
    (a) => a !== s.account.accountId,
  );
  let organization: ReturnType<typeof checkOrganization>['value'];
  if (s.organization !== undefined) {
    const checked = checkOrganization(s.organization, 'organization');
    for (const e of checked.errors) issue(['organization'], e.replace(/^organization(\.)?/, ''));
    organization = checked.value;
  } else if (otherAccounts.length > 0)
    issue(
      ['organization'],
      `required with accounts of other account ids (${otherAccounts.join(', ')}): the hub's organization setting ({ organizationId?, accounts? })`,
    );
  if (organization?.accounts !== undefined)
    s.accounts.forEach((a, i) => {
      if (a.accountId !== s.account.accountId && !organization?.accounts?.includes(a.accountId))
        issue(['accounts', i, 'accountId'], `${a.accountId} is not in organization.accounts`);
    });
  s.spokes?.forEach((spoke, i) => {
    const declared = places.filter((p) => p.accountId === spoke.account);
    if (declared.length === 0)
      issue(['spokes', i, 'account'], `account ${spoke.account} is not declared in accounts[]`);
    spoke.regions?.forEach((r, k) => {
      if (!declared.some((p) => p.region === r))
        issue(['spokes', i, 'regions', k], `account ${spoke.account} is not declared in ${r}`);
    });
    if (spoke.account === s.account.accountId && spoke.role)
      issue(
        ['spokes', i, 'role'],
        "the hub's own account has no spoke role (the hub uses its own credentials)",
      );
    if (s.spokes?.findIndex((x) => x.account === spoke.account) !== i)
      issue(['spokes', i, 'account'], `account ${spoke.account} is listed twice`);
  });
  if (s.fleet !== undefined) {
    const fleet = fleetSchema.safeParse(s.fleet);
    if (!fleet.success)
      for (const problem of formatIssues(fleet.error.issues))
        issue(['fleet'], problem.replace(/^\(root\): /, ''));
  }

  const checkService = (key: string, path: Array<string | number>) => {
    if (!services.has(key)) {
      issue(
        path,
        `service ${key} is not declared in account.clusters (expected "<cluster>/<service>"; declared: ${[...services].join(', ') || 'none'})`,
      );
    }
  };

  if (s.policy !== undefined) {
    try {
      parsePolicy(s.policy);
    } catch (error) {
      issue(['policy'], (error as Error).message);
    }
  }

  s.targets.forEach((t, i) => {
    checkService(targetKey(s, t), ['targets', i, 'service']);
    t.alarmNames.forEach((a, k) => {
      if (!alarms.has(a))
        issue(['targets', i, 'alarmNames', k], `alarm ${a} is not declared in account.alarms`);
    });
    t.repositories.forEach((r, k) => {
      if (!repos.has(r))
        issue(['targets', i, 'repositories', k], `repository ${r} is not declared in account.repositories`);
    });
  });

  s.events.forEach((e, i) => {
    if (e.kind === 'finding') {
      const repo = repos.get(e.repository);
      if (!repo) {
        issue(
          ['events', i, 'repository'],
          `repository ${e.repository} is not declared in account.repositories`,
        );
        return;
      }
      const digest = DIGEST.test(e.image)
        ? repo.digests.has(e.image)
          ? e.image
          : undefined
        : repo.tags.get(e.image);
      if (!digest) {
        issue(['events', i, 'image'], `image ${e.image} does not exist in ${e.repository}`);
        return;
      }
      if (!repo.digests.get(digest)?.has(e.cve)) {
        issue(
          ['events', i, 'cve'],
          `${e.cve} is not a finding of ${e.repository}@${digest.slice(0, 19)}… (declare it in the image's findings)`,
        );
      }
    } else if (e.kind === 'burst' && e.images !== 'all') {
      e.images.forEach((ref, k) => {
        resolveRef(ref, ['events', i, 'images', k]);
      });
    } else if (e.kind === 'raw' && (typeof e.event !== 'object' || e.event === null)) {
      // A raw event must at least be an object for EventBridge to accept it.
      issue(['events', i, 'event'], 'expected an event object');
    }
  });

  s.builds.forEach((b, i) => {
    if (b.repository !== undefined && !repos.has(b.repository)) {
      issue(
        ['builds', i, 'repository'],
        `repository ${b.repository} is not declared in account.repositories`,
      );
    }
  });

  s.alarms.forEach((a, i) => {
    alarmAt(a, a.name, ['alarms', i, 'name']);
    if (a.afterDeploymentOf !== undefined)
      checkService(a.afterDeploymentOf, ['alarms', i, 'afterDeploymentOf']);
    if (a.afterDeploymentOf !== undefined && typeof a.at === 'string' && isIsoInstant(a.at)) {
      issue(['alarms', i, 'at'], 'an offset is expected when afterDeploymentOf is set');
    }
  });

  s.approvals.forEach((a, i) => {
    checkService(a.service, ['approvals', i, 'service']);
  });

  s.faults.forEach((f, i) => {
    if (f.service === 'lambda') {
      if (f.operation !== 'Invoke')
        issue(
          ['faults', i, 'operation'],
          `lambda has no modelled operation ${f.operation} (modelled: Invoke)`,
        );
      if (!resolveLambdaError(f.error))
        issue(
          ['faults', i, 'error'],
          `lambda Invoke does not fail with ${f.error} (it can: throttling, server, access-denied, ${Object.values(
            LAMBDA_INVOKE_ERRORS,
          )
            .map((e) => e.name)
            .join(', ')})`,
        );
      return;
    }
    const ops = OPERATIONS[f.service];
    if (!ops.includes(f.operation)) {
      issue(
        ['faults', i, 'operation'],
        `${f.service} has no modelled operation ${f.operation} (modelled: ${ops.join(', ')})`,
      );
    }
    if (!resolveError(f.service, f.error)) {
      issue(
        ['faults', i, 'error'],
        `${f.service} does not return ${f.error} (it can return: ${errorNames(f.service).join(', ')})`,
      );
    }
    if (f.persistent && f.outage !== undefined)
      issue(['faults', i, 'outage'], 'a fault is either persistent or an outage that recovers, not both');
    if (
      f.from !== undefined &&
      f.until !== undefined &&
      resolveAt(f.until, Date.parse(s.startTime)) <= resolveAt(f.from, Date.parse(s.startTime))
    )
      issue(['faults', i, 'until'], 'until must be later than from');
  });

  s.changes.forEach((c, i) => {
    if (c.afterDeploymentOf !== undefined)
      checkService(c.afterDeploymentOf, ['changes', i, 'afterDeploymentOf']);
    if ('service' in c) checkService(c.service, ['changes', i, 'service']);
    if (c.kind === 'delete-alarm') alarmAt(c, c.alarm, ['changes', i, 'alarm']);
    if (c.kind === 'delete-spoke-role') {
      const listed = s.spokes?.find((x) => x.account === c.account);
      const declared = s.accounts.some((a) => a.accountId === c.account);
      if (c.account === s.account.accountId || !declared || (listed !== undefined && !listed.role))
        issue(['changes', i, 'account'], `account ${c.account} has no spoke role to delete`);
    }
    if (c.kind === 'deploy') {
      const declared = places
        .flatMap((p) =>
          p.clusters.flatMap((x) => x.services.map((v) => ({ key: placedKey(p, `${x.name}/${v.name}`), v }))),
        )
        .find((x) => x.key === c.service)?.v;
      for (const [container, ref] of Object.entries(c.images)) {
        if (declared && !declared.containers.some((x) => x.name === container))
          issue(['changes', i, 'images', container], `${c.service} has no container ${container}`);
        resolveRef(ref, ['changes', i, 'images', container]);
      }
    }
    if (c.kind === 'move-image-tag') {
      const repo = repos.get(c.repository);
      if (!repo) issue(['changes', i, 'repository'], `repository ${c.repository} is not declared`);
      else if (!(DIGEST.test(c.to) ? repo.digests.has(c.to) : repo.tags.has(c.to)))
        issue(['changes', i, 'to'], `image ${c.to} does not exist in ${c.repository}`);
    }
  });
  s.deployments.forEach((d, i) => {
    checkService(d.service, ['deployments', i, 'service']);
  });
  s.eventFaults.forEach((f, i) => {
    if (f.persistent && f.effect === 'delay')
      issue(
        ['eventFaults', i, 'persistent'],
        'a persistent fault loses events; a delay applies to a number of them',
      );
  });
  for (const key of Object.keys(s.expect?.outcomes ?? {})) checkService(key, ['expect', 'outcomes', key]);
  for (const field of ['services', 'cause', 'duration', 'alarmToRollback'] as const)
    for (const key of Object.keys(s.expect?.[field] ?? {})) checkService(key, ['expect', field, key]);
};

export interface Scenario extends Parsed {
  /** Where the scenario came from (file path or "inline"). */
  readonly source: string;
}

/** Format zod issues as "path: message", one per line (with the scenario schema's own messages). */
export const formatIssues = (issues: readonly z.core.$ZodIssue[]): string[] =>
  issueProblems(issues, { messages: 'zod' }).map((p) => `${p.path}: ${p.message}`);

export class ScenarioError extends Error {
  constructor(
    readonly source: string,
    readonly problems: readonly string[],
  ) {
    super(`${source} is not a valid scenario:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'ScenarioError';
  }
}

export const parseScenario = (raw: unknown, source = 'inline'): Scenario => {
  const parsed = scenarioSchema.safeParse(raw);
  if (!parsed.success) throw new ScenarioError(source, formatIssues(parsed.error.issues));
  return { ...parsed.data, source };
};

export const loadScenario = (path: string): Scenario => {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ScenarioError(path, [`cannot read the file: ${(error as Error).message}`]);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ScenarioError(path, [`not valid JSON: ${(error as Error).message}`]);
  }
  return parseScenario(raw, path);
};

/** Every image of the scenario with its resolved digest. */
export const scenarioImages = (s: Parsed) =>
  scenarioPlaces(s).flatMap((place) =>
    place.repositories.flatMap((repo) =>
      repo.images.map((image, i) => ({
        repository: repo.name,
        digest: digestOf(repo.name, image, i),
        image,
        account: place.accountId,
        region: place.region,
      })),
    ),
  );

/** Resolve a reference that validation accepted. */
export const resolveImageRef = (s: Parsed, ref: string): { repository: string; digest: string } => {
  const parsed = parseImageRef(ref);
  const images = scenarioImages(s).filter((i) => i.repository === parsed?.repository);
  const hit = parsed?.digest
    ? images.find((i) => i.digest === parsed.digest)
    : images.find((i) => i.image.tags.includes(parsed?.tag as string));
  if (!parsed || !hit) throw new Error(`unresolved image reference ${ref}`);
  return { repository: hit.repository, digest: hit.digest };
};
