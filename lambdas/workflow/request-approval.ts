import type { SNSClient } from '@aws-sdk/client-sns';
import { placeOfServiceKey, severityRank } from '../shared/contracts';
import type { Ledger } from '../shared/ledger';
import { accountOf, links, regionOf } from './aws';
import { publishNotification } from './notify';
import type { WorkflowState } from './state';

/** Why the alarm check asked for approval (no alarm can judge the service), when it did. */
const gateReason = (request: object): string | undefined => {
  const gate = (request as { gate?: { verdict?: string; approvalRequired?: boolean; reason?: string } }).gate;
  return gate?.verdict === 'unobserved' && gate.approvalRequired ? gate.reason : undefined;
};

export interface RequestApprovalInput {
  readonly taskToken: string;
  readonly executionName: string;
  readonly executionArn: string;
  readonly request: WorkflowState;
}

export interface RequestApprovalDeps {
  readonly sns: Pick<SNSClient, 'send'>;
  readonly ledger: Pick<Ledger, 'putTaskToken'>;
  readonly topicArn: string;
  /** The ledger table, named in the approve/reject commands so they work as pasted. @default - not named */
  readonly tableName?: string;
  /** The account's alias, shown next to its id. @default - the id only */
  readonly accountAlias?: string;
  /** Other accounts' aliases by id (config accountAliases): a service outside the hub's account. */
  readonly accountAliases?: Readonly<Record<string, string>>;
}

/**
 * The commands an approver runs (bin/approve.ts). Given the execution ARN (which carries the Region)
 * and the ledger table, they work as pasted from any shell with credentials for the account.
 */
export const approveCommand = (
  execution: string,
  tableName?: string,
): { approve: string; reject: string } => {
  const table = tableName ? ` --table ${tableName}` : '';
  return {
    approve: `npm run approve -- ${execution} --approve${table}`,
    reject: `npm run approve -- ${execution} --reject --reason "<why>"${table}`,
  };
};

/** The approval request, written for the person who has to decide. Pure. */
export const approvalMessage = (
  input: Omit<RequestApprovalInput, 'taskToken'>,
  context: {
    readonly tableName?: string;
    readonly accountAlias?: string;
    readonly accountAliases?: Readonly<Record<string, string>>;
  } = {},
): { subject: string; message: string } => {
  const { request } = input;
  const cves = [...new Set(request.images.flatMap((i) => i.cves))].sort();
  // The service's account and Region: the hub's, or those its key names (a service outside the hub).
  const away = placeOfServiceKey(request.service.key);
  const region = away?.region ?? regionOf(input.executionArn);
  const account = away?.account ?? accountOf(input.executionArn);
  const alias = context.accountAliases?.[account] ?? (away ? undefined : context.accountAlias);
  const commands = approveCommand(input.executionArn, context.tableName);
  const hours = Math.round((request.target.approvalTimeoutSeconds / 3600) * 10) / 10;
  const lines = [
    `Autopatch wants to patch ECS service ${request.service.key} and needs your approval.`,
    '',
    `Why: ${request.decision.reason}`,
    ...(request.decision.deadline ? [`Deadline: ${request.decision.deadline} (deploy by then)`] : []),
    ...(gateReason(request) ? [`Also: ${gateReason(request)}`] : []),
    `Account: ${account}${alias ? ` (${alias})` : ''}`,
    `Region: ${region}`,
    `CVEs (${cves.length}): ${cves.join(', ')}`,
    `Findings: ${request.findingsCount}`,
    '',
    'Images to rebuild:',
    ...request.images.map(
      (i) =>
        `- ${i.repository}@${i.imageDigest} (containers ${i.containers.join(', ')}; worst severity ${i.severity}; ` +
        `rebuild ${i.rebuild.mode}; CVEs ${i.cves.join(', ')})\n` +
        `  image:    ${links.image(region, i.registry, i.repository, i.imageDigest)}\n` +
        `  findings: ${links.imageFindings(region, i.repository, i.imageDigest)}`,
    ),
    '',
    'If approved, Autopatch rebuilds these images, proves the fix with an Inspector rescan, deploys the ' +
      `patched task definition and watches it through a ${request.target.bakeTimeMinutes}-minute bake after production traffic reaches it, rolling back if an alarm fires.`,
    '',
    `Approve: ${commands.approve}`,
    `Reject:  ${commands.reject}`,
    `They run with your own AWS credentials (npm run approve -- --help lists what they need); the execution's name is ${input.executionName}.`,
    '',
    `This request expires in ${hours} hours; then nothing is changed (outcome ApprovalExpired).`,
    `Execution: ${links.execution(input.executionArn)}`,
    `Service:   ${links.service(request.service.clusterArn, request.service.serviceName)}`,
  ];
  const worst =
    [...request.images].sort((a, b) => severityRank(a.severity) - severityRank(b.severity))[0]?.severity ??
    '';
  const subject = `[Autopatch] Approval needed: ${worst} ${cves.length === 1 ? cves[0] : `${cves.length} CVEs`} on ${request.service.key}`;
  // SNS subjects are at most 100 characters.
  return {
    subject: subject.length > 100 ? `${subject.slice(0, 97)}...` : subject,
    message: lines.join('\n'),
  };
};

/**
 * "Wait for approval": invoked with a task token, returns at once. The token goes to the ledger
 * first, so an approval can never arrive for a token Autopatch does not know.
 */
export const requestApproval = async (
  input: RequestApprovalInput,
  deps: RequestApprovalDeps,
): Promise<void> => {
  await deps.ledger.putTaskToken(input.executionName, 'approval', input.taskToken, input.request.service.key);
  await publishNotification(deps.sns, deps.topicArn, {
    ...approvalMessage(input, {
      ...(deps.tableName ? { tableName: deps.tableName } : {}),
      ...(deps.accountAlias ? { accountAlias: deps.accountAlias } : {}),
      ...(deps.accountAliases ? { accountAliases: deps.accountAliases } : {}),
    }),
    attributes: {
      kind: 'approval-request',
      service: input.request.service.key,
      account: placeOfServiceKey(input.request.service.key)?.account,
    },
  });
};
