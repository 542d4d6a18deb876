#!/usr/bin/env node
/**
 * npm run approve -- <execution> --approve|--reject [--reason <text>] [--table <ledger table>] [--region <region>] [--by <name>]
 *
 * Answers a remediation that waits for approval, from a terminal, with the caller's own AWS
 * credentials. Who answered is the caller's identity (STS GetCallerIdentity): its ARN goes into the
 * answer, the workflow keeps it in `$.approval.by` (or the rejection's cause), and the history record
 * names it (`approvedBy` / `rejectedBy`); `--by` only adds a name next to it. It runs the same code as the workflow's tests and the simulation (resolveApproval in
 * lambdas/workflow/approval.ts): read the task token the "Wait for approval" step stored in the
 * ledger, SendTaskSuccess (approve) or SendTaskFailure with Autopatch.Rejected (reject), then forget
 * the token. The approval request message has the command ready to paste.
 *
 * Exit status: 0 answered; 1 could not answer (nothing pending, AWS error); 2 bad usage.
 */
import { parseArgs } from 'node:util';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SFNClient } from '@aws-sdk/client-sfn';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { Ledger } from '../lambdas/shared/ledger';
import { type ExecutionRef, parseExecutionRef, resolveApproval } from '../lambdas/workflow/approval';
import { links } from '../lambdas/workflow/aws';
import { ApprovalNotPendingError } from '../lambdas/workflow/errors';

/** Where the ledger table name comes from when --table is not given. */
export const TABLE_ENV = 'AUTOPATCH_LEDGER_TABLE';

export const USAGE = `usage: npm run approve -- <execution> --approve|--reject [--reason <text>] [--table <ledger table>] [--region <region>] [--by <name>]

  <execution>       the execution's ARN or name, as in the approval request
  --approve         let the remediation go ahead
  --reject          stop it: outcome Rejected, nothing is changed
  --reason <text>   why; recorded in the execution (and in the Rejected outcome)
  --table <name>    the Autopatch ledger table (default: $${TABLE_ENV})
  --region <name>   default: the execution ARN's Region, else your AWS configuration's
  --by <name>       a name to record next to your AWS identity (who answers is
                    always recorded as your identity's ARN, from sts:GetCallerIdentity)
  --help            show this help

Runs with your AWS credentials (AWS_PROFILE, SSO, environment variables...): it needs
states:SendTaskSuccess / states:SendTaskFailure and GetItem / DeleteItem on the ledger table
(sts:GetCallerIdentity needs no permission).`;

export interface ApproveRequest {
  readonly execution: ExecutionRef;
  readonly approve: boolean;
  readonly reason?: string;
  readonly tableName: string;
  readonly region?: string;
  /** A name the approver gives (--by), recorded next to the identity. */
  readonly name?: string;
}

export type ParsedCommand =
  | { readonly kind: 'help' }
  | { readonly kind: 'usage-error'; readonly message: string }
  | { readonly kind: 'answer'; readonly request: ApproveRequest };

/** Read the command line. Pure; every mistake gets its own message. */
export const parseCommand = (argv: readonly string[], env: NodeJS.ProcessEnv): ParsedCommand => {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (error) {
    return { kind: 'usage-error', message: (error as Error).message };
  }
  const { values, positionals } = parsed;
  if (values.help) return { kind: 'help' };
  if (positionals.length === 0) return { kind: 'usage-error', message: 'name the execution to answer' };
  if (positionals.length > 1) {
    return {
      kind: 'usage-error',
      message: `one execution at a time (got ${positionals.length}: ${positionals.join(' ')})`,
    };
  }
  const ref = positionals[0] as string;
  const execution = parseExecutionRef(ref);
  if (!execution) {
    return {
      kind: 'usage-error',
      message: `${JSON.stringify(ref)} is neither an execution name nor an execution ARN (arn:aws:states:<region>:<account>:execution:<state machine>:<name>)`,
    };
  }
  if (values.approve === values.reject) {
    return { kind: 'usage-error', message: 'say --approve or --reject (exactly one)' };
  }
  const tableName = values.table ?? env[TABLE_ENV];
  if (!tableName) {
    return {
      kind: 'usage-error',
      message: `name the ledger table with --table or ${TABLE_ENV} (the approval request's command has it)`,
    };
  }
  if (values.reason !== undefined && values.reason.trim() === '') {
    return { kind: 'usage-error', message: '--reason is empty' };
  }
  if (values.by !== undefined && values.by.trim() === '') {
    return { kind: 'usage-error', message: '--by is empty' };
  }
  const region = values.region ?? execution.region;
  return {
    kind: 'answer',
    request: {
      execution,
      approve: values.approve === true,
      ...(values.reason !== undefined ? { reason: values.reason.trim() } : {}),
      tableName,
      ...(region ? { region } : {}),
      ...(values.by !== undefined ? { name: values.by.trim() } : {}),
    },
  };
};

const parse = (argv: readonly string[]) =>
  parseArgs({
    args: [...argv],
    options: {
      approve: { type: 'boolean' },
      reject: { type: 'boolean' },
      reason: { type: 'string' },
      table: { type: 'string' },
      region: { type: 'string' },
      by: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  });

export interface ApproveClients {
  readonly sfn: Pick<SFNClient, 'send'>;
  readonly dynamodb: DynamoDBClient;
  /** Who is answering: the caller's identity is what the record names. */
  readonly sts: Pick<STSClient, 'send'>;
}

export interface ApproveIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  readonly env: NodeJS.ProcessEnv;
  /** The AWS clients for a Region (the default chain's Region when undefined). */
  readonly clients: (region: string | undefined) => ApproveClients;
}

/** A hint for the AWS errors an approver is likely to meet. */
const hint = (error: unknown, request: ApproveRequest): string | undefined => {
  const names = [error, (error as { cause?: unknown } | undefined)?.cause]
    .map((e) => (e instanceof Error ? e.name : undefined))
    .filter(Boolean);
  const where = request.region ? ` in ${request.region}` : ' in your default Region';
  if (names.includes('ResourceNotFoundException'))
    return `Is the ledger table ${request.tableName}${where}? Check --table and --region.`;
  if (names.includes('CredentialsProviderError'))
    return 'No AWS credentials found: set AWS_PROFILE (or run aws sso login) and try again.';
  if (names.some((n) => n === 'AccessDeniedException' || n === 'UnrecognizedClientException'))
    return 'Your credentials are not allowed to do this: see the permissions in --help.';
  return undefined;
};

/** The command itself: returns the exit status. */
export const runApprove = async (argv: readonly string[], io: ApproveIo): Promise<number> => {
  const command = parseCommand(argv, io.env);
  if (command.kind === 'help') {
    io.out(USAGE);
    return 0;
  }
  if (command.kind === 'usage-error') {
    io.err(`approve: ${command.message}`);
    io.err(USAGE);
    return 2;
  }
  const { request } = command;
  const clients = io.clients(request.region);
  try {
    // First: an answer nobody can attribute is not sent.
    const identity = await clients.sts.send(new GetCallerIdentityCommand({}));
    if (!identity.Arn) throw new Error('sts GetCallerIdentity returned no ARN: cannot say who answers');
    const result = await resolveApproval({
      sfn: clients.sfn,
      ledger: new Ledger({ client: clients.dynamodb, tableName: request.tableName }),
      executionName: request.execution.name,
      approve: request.approve,
      ...(request.reason ? { reason: request.reason } : {}),
      by: identity.Arn,
      ...(request.name ? { name: request.name } : {}),
    });
    io.out(
      result.decision === 'approved'
        ? `Approved: ${result.executionName} (${result.serviceKey}) carries on with the rebuild.`
        : `Rejected: ${result.executionName} (${result.serviceKey}) ends with outcome Rejected; nothing was changed.`,
    );
    if (request.execution.arn) io.out(`Follow it: ${links.execution(request.execution.arn)}`);
    return 0;
  } catch (error) {
    if (error instanceof ApprovalNotPendingError) {
      io.err(`approve: ${error.message}`);
      return 1;
    }
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    io.err(`approve: could not answer ${request.execution.name}: ${message}`);
    const advice = hint(error, request);
    if (advice) io.err(advice);
    return 1;
  }
};

// Run only as a script (tsx bin/approve.ts), not when a test imports it.
if (require.main === module) {
  const clients = (region: string | undefined): ApproveClients => {
    const config = region ? { region } : {};
    return {
      sfn: new SFNClient(config),
      dynamodb: new DynamoDBClient(config),
      sts: new STSClient(config),
    };
  };
  runApprove(process.argv.slice(2), {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    env: process.env,
    clients,
  }).then(
    (status) => {
      process.exitCode = status;
    },
    (error: unknown) => {
      process.stderr.write(`approve: ${error instanceof Error ? error.stack : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
