import { ExecutionAlreadyExists, type SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import type { TargetConfig, WorkflowDefaults } from '../shared/config';
import { type Action, coveredFindings, type RebuildMode, type RemediationRequest } from '../shared/contracts';
import { InvalidEventError, TransientError } from '../shared/errors';
import type { Ledger } from '../shared/ledger';
import { aggregate, type Contribution, type ServicePlan, targetFor } from './aggregate';
import type { InventoryResolver, ServiceUse } from './inventory';
import { evaluate, type Policy } from './policy';
import { type Finding, parseEvent } from './schema';

/** One input to triage: an id to report failures by (SQS message id, file name) and the raw event. */
export interface TriageInput {
  readonly id: string;
  /** The event, already JSON-parsed; a string is parsed here (an SQS body). */
  readonly event: unknown;
}

/** What triage decided for one input. `reject` means the input was not a valid event. */
export interface FindingReport {
  readonly id: string;
  readonly findingArn?: string;
  readonly action: Action | 'reject';
  readonly reason: string;
  readonly services: readonly string[];
}

/** A delivery to mark as seen once settled, with the batch items that carried it. */
export interface SeenKey {
  readonly findingArn: string;
  readonly updatedAt: string;
  readonly itemIds: readonly string[];
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
  /** When present, findings already seen (duplicate deliveries) are dropped. */
  readonly ledger?: Pick<Ledger, 'unseen'>;
}

const keyOf = (f: Finding): string => `${f.findingArn}\n${f.updatedAtRaw}`;

const parseInput = (input: TriageInput): Finding | { scan: true } => {
  let raw = input.event;
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw);
    } catch (error) {
      throw new InvalidEventError(`body is not JSON: ${(error as Error).message}`, { cause: error });
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
      if (!(error instanceof InvalidEventError)) throw error;
      reports.push({ id: input.id, action: 'reject', reason: error.message, services: [] });
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
  let candidates = [...firstByKey.values()];
  if (deps.ledger && candidates.length > 0) {
    const unseen = await deps.ledger.unseen(
      candidates.map((c) => ({ findingArn: c.finding.findingArn, updatedAt: c.finding.updatedAtRaw })),
    );
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
  }

  const contributions: Contribution[] = [];
  const seenKeys: SeenKey[] = [];
  for (const { input, finding, ids } of candidates) {
    // Decide first without service context: most findings are settled here without any API call.
    const base = evaluate(deps.policy, finding, { now });
    const actionable =
      finding.image !== undefined && (base.action === 'remediate' || base.action === 'approve');
    const mayMatchTags = deps.policy.rules.some((r) => r.match.serviceTags !== undefined);
    if (!actionable && !(mayMatchTags && finding.image)) {
      reports.push({
        id: input.id,
        findingArn: finding.findingArn,
        action: base.action,
        reason: base.reason,
        services: [],
      });
      seenKeys.push({ findingArn: finding.findingArn, updatedAt: finding.updatedAtRaw, itemIds: ids });
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
    seenKeys.push({ findingArn: finding.findingArn, updatedAt: finding.updatedAtRaw, itemIds: ids });
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
      const decision = mayMatchTags ? evaluate(deps.policy, finding, { now, serviceTags: use.tags }) : base;
      if (decision.action !== 'remediate' && decision.action !== 'approve') {
        if (strongest.action === 'ignore') strongest = decision;
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

  const remediations = aggregate(contributions, { targets: deps.targets, defaults: deps.defaults, now });
  return { findings: reports, remediations, seenKeys, failedIds: [...failedIds] };
};

export interface ExecuteDeps {
  readonly ledger: Pick<Ledger, 'claim' | 'markStarted' | 'markSeen'>;
  readonly sfn: SFNClient;
  readonly stateMachineArn: string;
  /**
   * The invocation's remaining time (Lambda's context.getRemainingTimeInMillis): a claim that races
   * other triage invocations for the same lock keeps trying until CLAIM_RESERVE_MS before the end,
   * instead of failing its messages back to SQS. @default - the ledger's own contention budget
   */
  readonly remainingTimeMs?: () => number;
}

/** Time kept after the last claim attempt for StartExecution, markSeen and the batch response. */
const CLAIM_RESERVE_MS = 15_000;

export type StartResult =
  | { readonly service: string; readonly kind: 'started' | 'resumed'; readonly executionName: string }
  | { readonly service: string; readonly kind: 'queued' | 'merged'; readonly inFlight: string }
  /** Every finding is under a churn hold (a fix that failed): not remediated again until it is lifted. */
  | { readonly service: string; readonly kind: 'held'; readonly cves: readonly string[] }
  | { readonly service: string; readonly kind: 'failed'; readonly error: Error };

const start = async (deps: ExecuteDeps, request: RemediationRequest): Promise<string> => {
  try {
    const out = await deps.sfn.send(
      new StartExecutionCommand({
        stateMachineArn: deps.stateMachineArn,
        name: request.executionName,
        input: JSON.stringify(request),
      }),
    );
    return out.executionArn as string;
  } catch (error) {
    // Same name and input already started (a retried batch): that is the execution we wanted.
    if (error instanceof ExecutionAlreadyExists) {
      return `${deps.stateMachineArn.replace(':stateMachine:', ':execution:')}:${request.executionName}`;
    }
    throw error;
  }
};

/** Claims of one service in one batch before its items are retried instead (each resume starts a run). */
const MAX_CLAIM_ROUNDS = 4;

/**
 * Carry a plan out: claim each service in the ledger and start (or resume) its execution, or queue
 * the findings for the run in flight. Returns the batch item ids to retry: those of any service whose
 * claim or start failed, plus those that failed while planning. Findings are marked seen only once
 * their service is settled, so a retry of a failed item is never mistaken for a duplicate.
 */
export const executePlan = async (
  plan: TriagePlan,
  deps: ExecuteDeps,
): Promise<{ results: StartResult[]; failedIds: string[]; markSeenError?: Error }> => {
  const failed = new Set(plan.failedIds);
  const results: StartResult[] = [];
  for (const { request, itemIds } of plan.remediations) {
    try {
      // A resumed claim is an earlier batch's request: once it is started, claim again for this
      // batch's own findings (they merge, queue, or - if that run already ended - claim anew).
      for (let round = 0; ; round++) {
        if (round === MAX_CLAIM_ROUNDS) {
          throw new TransientError(
            `the lock of ${request.service.key} kept changing; retrying the batch items`,
          );
        }
        const remaining = deps.remainingTimeMs?.();
        const claim = await deps.ledger.claim(
          request,
          remaining === undefined ? {} : { deadlineMs: Date.now() + remaining - CLAIM_RESERVE_MS },
        );
        if (claim.kind === 'queued' || claim.kind === 'merged') {
          results.push({ service: request.service.key, kind: claim.kind, inFlight: claim.inFlight });
          break;
        }
        if (claim.kind === 'held') {
          results.push({ service: request.service.key, kind: 'held', cves: claim.holds.map((h) => h.cve) });
          break;
        }
        const toStart = claim.request ?? request;
        const arn = await start(deps, toStart);
        await deps.ledger.markStarted(toStart.service.key, toStart.executionName, arn);
        results.push({
          service: request.service.key,
          kind: claim.kind === 'resume' ? 'resumed' : 'started',
          executionName: toStart.executionName,
        });
        const covered = new Set(coveredFindings(toStart.images));
        if (coveredFindings(request.images).every((pair) => covered.has(pair))) break;
      }
    } catch (error) {
      for (const id of itemIds) failed.add(id);
      results.push({ service: request.service.key, kind: 'failed', error: error as Error });
    }
  }
  // A delivery whose message is retried stays unseen, so the retry is not mistaken for a duplicate.
  const settled = plan.seenKeys
    .filter((k) => !k.itemIds.some((id) => failed.has(id)))
    .map(({ findingArn, updatedAt }) => ({ findingArn, updatedAt }));
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
  return { results, failedIds: [...failed], ...(markSeenError ? { markSeenError } : {}) };
};
