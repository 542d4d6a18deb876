import { ExecutionAlreadyExists, type SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import * as z from 'zod';
import type { TargetConfig, WorkflowDefaults } from '../shared/config';
import {
  type Action,
  coveredFindings,
  type RebuildMode,
  type RemediationRequest,
  SEVERITIES,
} from '../shared/contracts';
import { InvalidEventError, TransientError } from '../shared/errors';
import { type FindingKey, isUrgent, type Ledger, MAX_REQUEST_BYTES } from '../shared/ledger';
import { urgentFindingText } from '../shared/urgency';
import { answerWindow, preemptApproval } from '../shared/window-wait';
import { aggregate, type Contribution, type ServicePlan, targetFor } from './aggregate';
import { type FindingDetailsReader, policyNeedsExploitation } from './finding-details';
import type { InventoryResolver, ServiceUse } from './inventory';
import { evaluate, type Policy } from './policy';
import {
  AWS_REGION,
  type Finding,
  formatIssues,
  imageDigestSchema,
  imageTagSchema,
  parseEvent,
  printable,
  registryIdSchema,
  repositoryNameSchema,
  vulnerabilityIdSchema,
} from './schema';

/** One input to triage: an id to report failures by (SQS message id, file name) and the raw event. */
export interface TriageInput {
  readonly id: string;
  /** The event, already JSON-parsed; a string is parsed here (an SQS body). */
  readonly event: unknown;
}

/**
 * What triage decided for one input. `reject` means the input was not a valid event (never retried);
 * `retry` that it could not be triaged for a reason that is not the event's (retried, and
 * dead-lettered by the queue if it keeps failing).
 */
export interface FindingReport {
  readonly id: string;
  readonly findingArn?: string;
  readonly action: Action | 'reject' | 'retry';
  readonly reason: string;
  readonly services: readonly string[];
}

/** A delivery to mark as seen once settled, with the batch items that carried it. */
export interface SeenKey {
  readonly findingArn: string;
  /** As Inspector wrote it: the deduplication key. */
  readonly updatedAt: string;
  /** The same instant as ISO-8601, for ordering the updates of one finding. */
  readonly updatedAtIso: string;
  readonly itemIds: readonly string[];
}

/**
 * What the ledger knows of the order of a finding's updates (Ledger.unseenAndNewest; markSeen moves
 * a finding's newest-seen mark forward from SeenKey.updatedAtIso): triage ignores updates older than
 * one already triaged in an earlier batch (an ACTIVE update delivered after the CLOSED one that
 * followed it). Within a batch, triage orders updates itself.
 */
export interface FindingVersions {
  /** Which keys are not marked seen yet and, in the same read, the newest `updatedAt` (ISO-8601) seen of their findings. */
  unseenAndNewest<K extends FindingKey>(
    keys: readonly K[],
  ): Promise<{ readonly unseen: K[]; readonly newest: ReadonlyMap<string, string> }>;
}

export interface TriagePlan {
  readonly findings: readonly FindingReport[];
  readonly remediations: readonly ServicePlan[];
  /** Dedup keys of the findings this plan covers: marked seen once the plan is carried out. */
  readonly seenKeys: ReadonlyArray<SeenKey>;
  /** Ids that failed transiently while planning (inventory calls throttled...): retry them. */
  readonly failedIds: readonly string[];
}

export interface PlanDeps {
  readonly policy: Policy;
  readonly resolver: InventoryResolver;
  readonly targets: readonly TargetConfig[];
  readonly defaults: WorkflowDefaults;
  readonly now: () => Date;
  /**
   * When present, findings already seen (duplicate deliveries) are dropped, and, when it also knows
   * the order of a finding's updates, so are updates older than one already seen.
   */
  readonly ledger?: Pick<Ledger, 'unseen'> & Partial<FindingVersions>;
  /** Exploitation facts for rules that match on them (knownExploited, exploitObserved, kevDueDate). */
  readonly findingDetails?: Pick<FindingDetailsReader, 'read'>;
}

const keyOf = (f: Finding): string => `${f.findingArn}\n${f.updatedAtRaw}`;

/** Largest event read: EventBridge caps an event at 256 KB, so anything larger is not one of its. */
export const MAX_EVENT_BYTES = 256 * 1024;

const parseInput = (input: TriageInput): Finding | { scan: true } => {
  let raw = input.event;
  if (typeof raw === 'string') {
    const bytes = Buffer.byteLength(raw, 'utf8');
    if (bytes > MAX_EVENT_BYTES) {
      throw new InvalidEventError(
        `body is ${bytes} bytes, larger than any EventBridge event (${MAX_EVENT_BYTES} bytes)`,
      );
    }
    try {
      raw = JSON.parse(raw);
    } catch (error) {
      throw new InvalidEventError(`body is not JSON: ${printable((error as Error).message)}`, {
        cause: error,
      });
    }
  }
  const parsed = parseEvent(raw);
  return parsed.kind === 'finding' ? parsed.finding : { scan: true };
};

/** OS findings are fixed by a patch layer; language packages need the target's source rebuild. */
const rebuildFor = (finding: Finding, target: TargetConfig | undefined): RebuildMode | undefined => {
  const osOnly = finding.packageManagers.length > 0 && finding.packageManagers.every((m) => m === 'OS');
  if (target && target.rebuild.mode !== 'patch-os') return target.rebuild;
  return osOnly || finding.packageManagers.length === 0 ? { mode: 'patch-os' } : undefined;
};

/**
 * Parse, decide, resolve and aggregate a batch: everything triage does except side effects.
 * Never throws for bad input: each bad event becomes a `reject` report with its reason.
 */
export const planBatch = async (inputs: readonly TriageInput[], deps: PlanDeps): Promise<TriagePlan> => {
  const now = deps.now();
  // What a warm Lambda keeps of the inventory index is checked against it once per batch.
  deps.resolver.startBatch?.();
  const reports: FindingReport[] = [];
  const failedIds = new Set<string>();
  const parsed: Array<{ input: TriageInput; finding: Finding }> = [];

  for (const input of inputs) {
    try {
      const result = parseInput(input);
      if ('scan' in result) {
        reports.push({
          id: input.id,
          action: 'ignore',
          reason: 'Inspector2 Scan event: scans are read by the remediation workflow, not triage',
          services: [],
        });
      } else parsed.push({ input, finding: result });
    } catch (error) {
      if (error instanceof InvalidEventError) {
        reports.push({ id: input.id, action: 'reject', reason: error.message, services: [] });
        continue;
      }
      // Not the event's fault as far as we know (a bug): retried, and dead-lettered if it persists,
      // rather than dropped or allowed to fail the whole batch.
      failedIds.add(input.id);
      reports.push({
        id: input.id,
        action: 'retry',
        reason: `could not be triaged (${describeError(error)}): retried, dead-lettered if it keeps failing`,
        services: [],
      });
    }
  }

  // Duplicate deliveries: within the batch, then against the ledger.
  const firstByKey = new Map<string, { input: TriageInput; finding: Finding; ids: string[] }>();
  for (const p of parsed) {
    const seen = firstByKey.get(keyOf(p.finding));
    if (seen) {
      seen.ids.push(p.input.id);
      reports.push({
        id: p.input.id,
        findingArn: p.finding.findingArn,
        action: 'ignore',
        reason: `duplicate delivery of ${p.finding.findingArn} (updatedAt ${p.finding.updatedAtRaw}) in this batch`,
        services: [],
      });
    } else firstByKey.set(keyOf(p.finding), { ...p, ids: [p.input.id] });
  }
  // Out-of-order updates: of one finding's updates in the batch, only the newest counts.
  const newestInBatch = new Map<string, Finding>();
  for (const { finding } of firstByKey.values()) {
    const newest = newestInBatch.get(finding.findingArn);
    if (!newest || finding.updatedAt > newest.updatedAt) newestInBatch.set(finding.findingArn, finding);
  }
  const seenKeys: SeenKey[] = [];
  const superseded = (
    c: { input: TriageInput; finding: Finding; ids: string[] },
    newer: string,
    where: string,
  ): void => {
    reports.push({
      id: c.input.id,
      findingArn: c.finding.findingArn,
      action: 'ignore',
      reason:
        c.finding.updatedAt === newer
          ? `duplicate delivery: ${c.finding.findingArn} (updatedAt ${c.finding.updatedAtRaw}) is the same instant as its update of ${newer} ${where}, written differently`
          : `out-of-order update: ${c.finding.findingArn} (updatedAt ${c.finding.updatedAt}) is older than its update of ${newer} ${where}`,
      services: [],
    });
    seenKeys.push(seenKeyOf(c.finding, c.ids));
  };
  let candidates = [...firstByKey.values()].filter((c) => {
    const newest = newestInBatch.get(c.finding.findingArn) as Finding;
    if (newest === c.finding) return true;
    superseded(c, newest.updatedAt, 'in this batch');
    return false;
  });
  if (deps.ledger && candidates.length > 0) {
    const keys = candidates.map((c) => ({
      findingArn: c.finding.findingArn,
      updatedAt: c.finding.updatedAtRaw,
      // The instant too: a delivery of the newest update triaged is a duplicate however it is written.
      updatedAtIso: c.finding.updatedAt,
    }));
    // One read answers both questions when the ledger knows the order of updates.
    const { unseen, newest } = deps.ledger.unseenAndNewest
      ? await deps.ledger.unseenAndNewest(keys)
      : { unseen: await deps.ledger.unseen(keys), newest: undefined };
    const fresh = new Set(unseen.map((k) => `${k.findingArn}\n${k.updatedAt}`));
    for (const c of candidates.filter((c) => !fresh.has(keyOf(c.finding)))) {
      reports.push({
        id: c.input.id,
        findingArn: c.finding.findingArn,
        action: 'ignore',
        reason: `duplicate delivery: ${c.finding.findingArn} (updatedAt ${c.finding.updatedAtRaw}) was already triaged`,
        services: [],
      });
    }
    candidates = candidates.filter((c) => fresh.has(keyOf(c.finding)));
    if (newest) {
      candidates = candidates.filter((c) => {
        const seen = newest.get(c.finding.findingArn);
        if (seen === undefined || seen <= c.finding.updatedAt) return true;
        superseded(c, seen, 'already triaged');
        return false;
      });
    }
  }

  // Exploitation facts, read only when policy needs them, only for findings it could act on, in
  // batches of ten and cached: one read serves every service and every redelivery.
  const exploitation =
    deps.findingDetails && policyNeedsExploitation(deps.policy)
      ? await deps.findingDetails.read(
          candidates
            .filter(
              ({ finding: f }) =>
                f.status === 'ACTIVE' && f.image !== undefined && f.type === 'PACKAGE_VULNERABILITY',
            )
            .map(({ finding: f }) => f.findingArn),
        )
      : undefined;

  const contributions: Contribution[] = [];
  for (const { input, finding, ids } of candidates) {
    const facts = exploitation?.get(finding.findingArn);
    if (facts !== undefined && 'retry' in facts) {
      // Transient: not taken as "not exploited", the item is delivered again.
      for (const id of ids) failedIds.add(id);
      reports.push({
        id: input.id,
        findingArn: finding.findingArn,
        action: 'retry',
        reason: `could not read the finding's exploitation details, will retry: ${facts.retry}`,
        services: [],
      });
      continue;
    }
    const known = facts === undefined ? {} : { exploitation: facts };
    // Decide first without service context: most findings are settled here without any API call.
    const base = evaluate(deps.policy, finding, { now, ...known });
    // Notify decisions too: their digest is per service (lambdas/triage/notices.ts).
    const actionable =
      finding.image !== undefined &&
      (base.action === 'remediate' || base.action === 'approve' || base.action === 'notify');
    const mayMatchTags = deps.policy.rules.some((r) => r.match.serviceTags !== undefined);
    if (!actionable && !(mayMatchTags && finding.image)) {
      reports.push({
        id: input.id,
        findingArn: finding.findingArn,
        action: base.action,
        reason: base.reason,
        services: [],
      });
      seenKeys.push(seenKeyOf(finding, ids));
      continue;
    }
    let uses: ServiceUse[];
    try {
      uses = await deps.resolver.servicesForImage(finding.image as NonNullable<Finding['image']>);
    } catch (error) {
      for (const id of ids) failedIds.add(id);
      reports.push({
        id: input.id,
        findingArn: finding.findingArn,
        action: base.action,
        reason: `could not resolve the services that run the image, will retry: ${(error as Error).message}`,
        services: [],
      });
      continue;
    }
    seenKeys.push(seenKeyOf(finding, ids));
    if (uses.length === 0) {
      reports.push({
        id: input.id,
        findingArn: finding.findingArn,
        action: base.action === 'ignore' ? 'ignore' : 'notify',
        reason: `${base.reason}; but no ECS service runs ${finding.image?.repository}@${finding.image?.imageDigest}: reported, not remediated`,
        services: [],
      });
      continue;
    }
    const acted: string[] = [];
    let strongest: { action: Action; reason: string } = base;
    for (const use of uses) {
      const decision = mayMatchTags
        ? evaluate(deps.policy, finding, { now, serviceTags: use.tags, ...known })
        : base;
      if (decision.action !== 'remediate' && decision.action !== 'approve') {
        if (strongest.action === 'ignore') strongest = decision;
        continue;
      }
      if (use.deploymentController === 'EXTERNAL') {
        // Decided here, before any build: an external controller deploys with task sets of its own
        // making; Autopatch deploys with UpdateService (ECS) or through CodeDeploy (CODE_DEPLOY).
        strongest = {
          action: 'notify',
          reason: `${decision.reason}; but ${use.service.key} is deployed by its EXTERNAL deployment controller, not by ECS or CodeDeploy: reported, not remediated (patch it through the tool that deploys it)`,
        };
        continue;
      }
      const target = targetFor(deps.targets, use);
      const rebuild = rebuildFor(finding, target);
      if (!rebuild) {
        strongest = {
          action: 'notify',
          reason: `${decision.reason}; but ${finding.packageManagers.join(', ')} packages need a source rebuild and ${use.service.key} has none configured (targets[].rebuild): reported, not remediated`,
        };
        continue;
      }
      strongest = decision;
      acted.push(use.service.key);
      contributions.push({
        finding,
        use,
        action: decision.action,
        reason: decision.reason,
        ...(decision.notBefore === undefined ? {} : { notBefore: decision.notBefore }),
        ...(decision.deadline === undefined ? {} : { deadline: decision.deadline }),
        ...(decision.knownExploited ? { knownExploited: true } : {}),
        rebuild,
        itemIds: ids,
      });
    }
    reports.push({
      id: input.id,
      findingArn: finding.findingArn,
      action: strongest.action,
      reason: strongest.reason,
      services: acted.length > 0 ? acted : uses.map((u) => u.service.key),
    });
  }

  const remediations = boundedPlans(contributions, { targets: deps.targets, defaults: deps.defaults, now });
  return { findings: reports, remediations, seenKeys, failedIds: [...failedIds] };
};

const seenKeyOf = (finding: Finding, itemIds: readonly string[]): SeenKey => ({
  findingArn: finding.findingArn,
  updatedAt: finding.updatedAtRaw,
  updatedAtIso: finding.updatedAt,
  itemIds,
});

const describeError = (error: unknown): string =>
  printable(error instanceof Error ? `${error.name}: ${error.message}` : String(error)).slice(0, 500);

/**
 * Image tags a request carries per image. They are for reference only (the inventory matched them
 * already), and ECR allows 1,000 of 128 characters each: more than a whole execution input can hold.
 */
export const MAX_TAGS_PER_IMAGE = 20;

const requestBytes = (request: RemediationRequest): number =>
  Buffer.byteLength(JSON.stringify(request), 'utf8');

/**
 * One remediation per service, each within MAX_REQUEST_BYTES (what one execution can carry through
 * its state): a service whose findings in this batch would make a larger request gets several,
 * split by finding, which the ledger then merges or queues as it does for any later request.
 */
const boundedPlans = (
  contributions: readonly Contribution[],
  opts: Parameters<typeof aggregate>[1],
): ServicePlan[] => {
  const plansFor = (list: readonly Contribution[]): ServicePlan[] =>
    aggregate(list, opts).flatMap((plan) => {
      const request: RemediationRequest = {
        ...plan.request,
        images: plan.request.images.map((i) =>
          i.imageTags.length > MAX_TAGS_PER_IMAGE
            ? { ...i, imageTags: i.imageTags.slice(0, MAX_TAGS_PER_IMAGE) }
            : i,
        ),
      };
      if (list.length === 1 || requestBytes(request) <= MAX_REQUEST_BYTES) return [{ ...plan, request }];
      const half = Math.ceil(list.length / 2);
      return [...plansFor(list.slice(0, half)), ...plansFor(list.slice(half))];
    });
  const byService = new Map<string, Contribution[]>();
  for (const c of contributions) {
    const list = byService.get(c.use.service.key);
    if (list) list.push(c);
    else byService.set(c.use.service.key, [c]);
  }
  return [...byService.keys()].sort().flatMap((key) => plansFor(byService.get(key) as Contribution[]));
};

// ---------------------------------------------------------------------------------------------------
// What may be started
// ---------------------------------------------------------------------------------------------------

/** Step Functions caps an execution's input at 256 KiB. */
export const MAX_EXECUTION_INPUT_BYTES = 256 * 1024;

/**
 * StartExecution errors that say this request can never start (its name or input is refused),
 * as the SDK's own model names them (@aws-sdk/client-sfn, StartExecutionCommand). Anything else
 * (throttling, KMS, a missing state machine) is not the request's fault and is retried.
 */
export const PERMANENT_START_ERRORS: ReadonlySet<string> = new Set([
  'ValidationException',
  'InvalidExecutionInput',
  'InvalidName',
]);

const EXECUTION_NAME = /^[A-Za-z0-9_-]{1,80}$/;
const NAME_PART = /^[A-Za-z0-9_-]{1,255}$/;
const REPOSITORY_URI = new RegExp(
  `^(\\d{12})\\.dkr\\.ecr\\.(${AWS_REGION.source.slice(1, -1)})\\.amazonaws\\.com(?:\\.cn)?/(.{2,256})$`,
);

const affectedImageSchema = z
  .object({
    repository: repositoryNameSchema,
    registry: registryIdSchema,
    repositoryUri: z.string().max(400),
    imageDigest: imageDigestSchema,
    imageTags: z.array(imageTagSchema).max(1_000),
    containers: z.array(z.string().regex(NAME_PART)).max(100),
    cves: z.array(vulnerabilityIdSchema).min(1),
    severity: z.enum(SEVERITIES),
  })
  .superRefine((image, ctx) => {
    const m = REPOSITORY_URI.exec(image.repositoryUri);
    if (!m || m[1] !== image.registry || m[3] !== image.repository) {
      ctx.addIssue({
        code: 'custom',
        path: ['repositoryUri'],
        message: `expected "<registry>.dkr.ecr.<region>.amazonaws.com/<repository>" for ${image.registry}/${image.repository}`,
      });
    }
  });

/** The parts of a request that reach an execution name, a ledger key, a build or a notification. */
const startableRequestSchema = z.object({
  executionName: z.string().regex(EXECUTION_NAME, 'expected 1-80 letters, digits, "-" or "_"'),
  service: z.object({
    clusterArn: z.string().min(1).max(2_048),
    serviceName: z.string().regex(NAME_PART),
    key: z.string().min(3).max(512),
  }),
  images: z.array(affectedImageSchema).min(1),
});

/**
 * Why a request can never be started, or undefined when it can. Triage builds requests only from
 * validated findings, but a lock may hold one stored before those checks existed, or written by
 * another version: it is checked again here, before StartExecution and before it can hold a service.
 */
export const requestProblem = (request: RemediationRequest): string | undefined => {
  const checked = startableRequestSchema.safeParse(request);
  if (!checked.success) return `invalid request: ${formatIssues(checked.error.issues.slice(0, 10))}`;
  const bytes = requestBytes(request);
  if (bytes > MAX_EXECUTION_INPUT_BYTES) {
    return `the request is ${bytes} bytes, more than an execution input may be (${MAX_EXECUTION_INPUT_BYTES})`;
  }
  return undefined;
};

export interface ExecuteDeps {
  readonly ledger: Pick<Ledger, 'claim' | 'markStarted' | 'markSeen' | 'release' | 'getInFlight'> &
    Partial<Pick<Ledger, 'getTaskToken' | 'deleteTaskToken'>>;
  readonly sfn: SFNClient;
  readonly stateMachineArn: string;
  /**
   * The invocation's remaining time (Lambda's context.getRemainingTimeInMillis): a claim that races
   * other triage invocations for the same lock keeps trying until CLAIM_RESERVE_MS before the end,
   * instead of failing its messages back to SQS. @default - the ledger's own contention budget
   */
  readonly remainingTimeMs?: () => number;
  /**
   * The order services are claimed in: `shuffled` (the default) walks the plan in a random order of
   * its own, so that concurrent invocations of a burst, whose plans name mostly the same services, do
   * not all claim the same lock first and then queue behind each other service after service;
   * `plan` walks it in the plan's (sorted) order, as before (kept for the contention benchmark).
   */
  readonly walk?: 'shuffled' | 'plan';
  /** @default Math.random */
  readonly random?: () => number;
}

/** The indexes 0 … n-1 in the order an invocation walks them (Fisher-Yates with `random`). */
export const walkOrder = (n: number, walk: 'shuffled' | 'plan', random: () => number): number[] => {
  const order = Array.from({ length: n }, (_, i) => i);
  if (walk === 'plan') return order;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  return order;
};

/** Time kept after the last claim attempt for StartExecution, markSeen and the batch response. */
const CLAIM_RESERVE_MS = 15_000;

export type StartResult =
  | { readonly service: string; readonly kind: 'started' | 'resumed'; readonly executionName: string }
  | { readonly service: string; readonly kind: 'queued' | 'merged'; readonly inFlight: string }
  /** Every finding is under a churn hold (a fix that failed): not remediated again until it is lifted. */
  | { readonly service: string; readonly kind: 'held'; readonly cves: readonly string[] }
  | { readonly service: string; readonly kind: 'failed'; readonly error: Error }
  /**
   * A request that can never start was dropped and its lock left: this batch's own request
   * (`resumed: false`, its items are not retried) or one an earlier batch left claimed (`resumed: true`).
   */
  | {
      readonly service: string;
      readonly kind: 'rejected';
      readonly executionName: string;
      readonly reason: string;
      readonly resumed: boolean;
      /** This batch's items that carried it (none for a resumed request). */
      readonly itemIds: readonly string[];
    };

type StartAttempt = { readonly arn: string } | { readonly refused: string };

const start = async (deps: ExecuteDeps, request: RemediationRequest): Promise<StartAttempt> => {
  const problem = requestProblem(request);
  if (problem) return { refused: problem };
  try {
    const out = await deps.sfn.send(
      new StartExecutionCommand({
        stateMachineArn: deps.stateMachineArn,
        name: request.executionName,
        input: JSON.stringify(request),
      }),
    );
    return { arn: out.executionArn as string };
  } catch (error) {
    // Same name and input already started (a retried batch): that is the execution we wanted.
    if (error instanceof ExecutionAlreadyExists) {
      return {
        arn: `${deps.stateMachineArn.replace(':stateMachine:', ':execution:')}:${request.executionName}`,
      };
    }
    if (error instanceof Error && PERMANENT_START_ERRORS.has(error.name)) {
      return { refused: `Step Functions refused to start it: ${describeError(error)}` };
    }
    throw error;
  }
};

/** Claims of one service in one batch before its items are retried instead (each resume starts a run). */
const MAX_CLAIM_ROUNDS = 4;

/**
 * Start what a release handed over (the requests queued behind a dropped one), dropping in turn any
 * that cannot start. Bounded: what is left stays claimed, and the next claim for the service resumes it.
 */
const startReleased = async (
  deps: ExecuteDeps,
  serviceKey: string,
  first: RemediationRequest,
): Promise<StartResult[]> => {
  const results: StartResult[] = [];
  let next: RemediationRequest | undefined = first;
  for (let round = 0; next && round < MAX_CLAIM_ROUNDS; round++) {
    const attempt = await start(deps, next);
    if ('arn' in attempt) {
      await deps.ledger.markStarted(serviceKey, next.executionName, attempt.arn);
      results.push({ service: serviceKey, kind: 'resumed', executionName: next.executionName });
      break;
    }
    results.push({
      service: serviceKey,
      kind: 'rejected',
      executionName: next.executionName,
      reason: attempt.refused,
      resumed: true,
      itemIds: [],
    });
    next = (await deps.ledger.release(serviceKey, next.executionName)).next;
  }
  return results;
};

/**
 * Carry a plan out: claim each service in the ledger and start (or resume) its execution, or queue
 * the findings for the run in flight. Returns the batch item ids to retry: those of any service whose
 * claim or start failed, plus those that failed while planning. Findings are marked seen only once
 * their service is settled, so a retry of a failed item is never mistaken for a duplicate.
 *
 * A request that can never start (invalid, or refused by Step Functions as invalid) is dropped with
 * its reason and its claim released, so it never holds the service: later findings claim it anew.
 * Its batch items are reported in `rejected` and not retried.
 */
export const executePlan = async (
  plan: TriagePlan,
  deps: ExecuteDeps,
): Promise<{
  results: StartResult[];
  failedIds: string[];
  /** Batch item ids whose request was dropped as unstartable, with the reason. */
  rejected: ReadonlyMap<string, string>;
  markSeenError?: Error;
}> => {
  const failed = new Set(plan.failedIds);
  const rejected = new Map<string, string>();
  // Results are reported in the plan's order, whatever order the services were claimed in.
  const resultsOf: StartResult[][] = plan.remediations.map(() => []);
  for (const at of walkOrder(plan.remediations.length, deps.walk ?? 'shuffled', deps.random ?? Math.random)) {
    const { request, itemIds } = plan.remediations[at] as TriagePlan['remediations'][number];
    const results = resultsOf[at] as StartResult[];
    const serviceKey = request.service.key;
    const problem = requestProblem(request);
    if (problem) {
      // Never claimed: an unstartable request must not hold the service even for a moment.
      results.push({
        service: serviceKey,
        kind: 'rejected',
        executionName: request.executionName,
        reason: problem,
        resumed: false,
        itemIds,
      });
      for (const id of itemIds) rejected.set(id, problem);
      continue;
    }
    try {
      // A resumed claim is an earlier batch's request: once it is started, claim again for this
      // batch's own findings (they merge, queue, or - if that run already ended - claim anew).
      for (let round = 0; ; round++) {
        if (round === MAX_CLAIM_ROUNDS) {
          throw new TransientError(`the lock of ${serviceKey} kept changing; retrying the batch items`);
        }
        const remaining = deps.remainingTimeMs?.();
        const claim = await deps.ledger.claim(
          request,
          remaining === undefined ? {} : { deadlineMs: Date.now() + remaining - CLAIM_RESERVE_MS },
        );
        if (claim.kind === 'queued' || claim.kind === 'merged') {
          results.push({ service: serviceKey, kind: claim.kind, inFlight: claim.inFlight });
          // An urgent finding (known exploited, CRITICAL, or due within 48 hours) does not wait behind a run that only
          // waits for its maintenance window: end that wait, and the run takes it and deploys now. A
          // failure here is retried with the batch item; the sweep ends the wait within a minute anyway.
          if (claim.kind === 'queued' && isUrgent(request) && deps.ledger.getTaskToken) {
            const waits = {
              ledger: {
                getTaskToken: deps.ledger.getTaskToken.bind(deps.ledger),
                ...(deps.ledger.deleteTaskToken
                  ? { deleteTaskToken: deps.ledger.deleteTaskToken.bind(deps.ledger) }
                  : {}),
              },
              sfn: deps.sfn,
            };
            const reason = `${urgentFindingText([request], new Date())} queued behind this remediation (${request.executionName})`;
            // A window wait: the run takes it and deploys now. An approval wait: the run steps aside.
            if (
              !(await answerWindow(waits, claim.inFlight, {
                preempted: true,
                reason: `${reason}: it deploys now.`,
              }))
            )
              await preemptApproval(waits, claim.inFlight, `${reason}: it runs first.`);
          }
          break;
        }
        if (claim.kind === 'held') {
          results.push({ service: serviceKey, kind: 'held', cves: claim.holds.map((h) => h.cve) });
          break;
        }
        const resumed = claim.kind === 'resume';
        // A claim returns the request to start when it differs from ours (resumed, or held findings taken out).
        const toStart = claim.request ?? request;
        const attempt = await start(deps, toStart);
        if ('refused' in attempt) {
          // Leave the lock, under the name it was claimed with (a stored request may not even name
          // itself properly). Requests queued behind it become the next claim, resumed next round.
          const holder = resumed
            ? ((await deps.ledger.getInFlight(serviceKey))?.executionName ?? toStart.executionName)
            : request.executionName;
          const { next } = await deps.ledger.release(serviceKey, holder);
          results.push({
            service: serviceKey,
            kind: 'rejected',
            executionName: holder,
            reason: attempt.refused,
            resumed,
            itemIds: resumed ? [] : itemIds,
          });
          if (resumed) continue; // the next claim resumes what was queued behind it, or claims anew
          for (const id of itemIds) rejected.set(id, attempt.refused);
          // Requests queued behind ours while it was being refused: start them now, as a release does.
          if (next) results.push(...(await startReleased(deps, serviceKey, next)));
          break;
        }
        await deps.ledger.markStarted(serviceKey, toStart.executionName, attempt.arn);
        results.push({
          service: serviceKey,
          kind: resumed ? 'resumed' : 'started',
          executionName: toStart.executionName,
        });
        const covered = new Set(coveredFindings(toStart.images));
        if (coveredFindings(request.images).every((pair) => covered.has(pair))) break;
      }
    } catch (error) {
      for (const id of itemIds) failed.add(id);
      results.push({ service: serviceKey, kind: 'failed', error: error as Error });
    }
  }
  const results = resultsOf.flat();
  // A delivery whose message is retried stays unseen, so the retry is not mistaken for a duplicate.
  const settled = plan.seenKeys
    .filter((k) => !k.itemIds.some((id) => failed.has(id)))
    .map(({ findingArn, updatedAt, updatedAtIso }) => ({ findingArn, updatedAt, updatedAtIso }));
  let markSeenError: Error | undefined;
  if (settled.length > 0) {
    try {
      await deps.ledger.markSeen(settled);
    } catch (error) {
      // The executions are started; failing the batch now would queue the same findings again.
      // Unmarked findings that are redelivered only merge into the next run, so carry on and say so.
      markSeenError = error as Error;
    }
  }
  return { results, failedIds: [...failed], rejected, ...(markSeenError ? { markSeenError } : {}) };
};
