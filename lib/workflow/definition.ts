import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { ArnFormat, Fn, Stack } from 'aws-cdk-lib';
import type * as codebuild from 'aws-cdk-lib/aws-codebuild';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';
import { ConfigurationError } from '../../lambdas/shared/errors';
import { ROOT } from './functions';
import type { WorkflowStatements } from './iam';
import { isLambdaInvoke, lambdaRetrier, type Retrier } from './retry-policy';

/** The workflow definition: the source of truth, rendered by {@link renderDefinition}. */
export const DEFINITION_FILE = path.join(ROOT, 'statemachines', 'remediation.asl.json');

type State = Record<string, unknown> & {
  Type?: string;
  Resource?: unknown;
  Parameters?: Record<string, unknown>;
  Retry?: Retrier[];
};
type States = Record<string, State>;
interface Definition {
  States: States;
}

/** Every state of the definition, nested ones (Map, Parallel) included, with its name. */
const eachState = function* (states: States): Generator<[string, State]> {
  for (const [name, s] of Object.entries(states)) {
    yield [name, s];
    for (const key of ['ItemProcessor', 'Iterator'] as const) {
      const inner = s[key] as { States?: States } | undefined;
      if (inner?.States) yield* eachState(inner.States);
    }
    for (const branch of (s.Branches ?? []) as Array<{ States: States }>) yield* eachState(branch.States);
  }
};

/**
 * `state` with its Retry set to `retry`, the key placed where the file puts it (before Catch, Next or
 * End), so the rendered text reads like the file.
 */
const withRetry = (state: State, retry: Retrier[]): State => {
  if (state.Retry) return { ...state, Retry: retry };
  const out: State = {};
  let placed = false;
  for (const [key, value] of Object.entries(state)) {
    if (!placed && (key === 'Catch' || key === 'Next' || key === 'End')) {
      out.Retry = retry;
      placed = true;
    }
    out[key] = value;
  }
  if (!placed) out.Retry = retry;
  return out;
};

/**
 * The shared Lambda retrier (./retry-policy.ts) after each Lambda Task's own retriers. A Task whose
 * own Retry names one of the shared errors is refused: the policy is decided in one place.
 */
const applyLambdaRetry = (states: States): void => {
  for (const [name, s] of Object.entries(states)) {
    if (s.Type === 'Task' && isLambdaInvoke(s.Resource)) {
      const shared = lambdaRetrier(s.Resource);
      const own = s.Retry ?? [];
      const overlap = own.flatMap((r) => r.ErrorEquals).filter((e) => shared.ErrorEquals.includes(e));
      if (overlap.length > 0)
        throw new ConfigurationError(
          `${DEFINITION_FILE}: "${name}" retries ${overlap.join(', ')} itself; the shared Lambda retry policy ` +
            '(lib/workflow/retry-policy.ts) covers them: remove them from its Retry',
        );
      states[name] = withRetry(s, [...own, shared]);
    }
    for (const key of ['ItemProcessor', 'Iterator'] as const) {
      const inner = s[key] as { States?: States } | undefined;
      if (inner?.States) applyLambdaRetry(inner.States);
    }
    for (const branch of (s.Branches ?? []) as Array<{ States: States }>) applyLambdaRetry(branch.States);
  }
};

/**
 * The definition file as deployed: the shared Lambda retry policy added to every Lambda Task
 * (./retry-policy.ts). Nothing else is sized at synth: the rescan wait's timeout is derived from the
 * request by the Map (States.MathAdd).
 */
export const renderDefinition = (): string => {
  const definition = JSON.parse(readFileSync(DEFINITION_FILE, 'utf8')) as Definition;
  applyLambdaRetry(definition.States);
  return JSON.stringify(definition, null, 2);
};

/** The `${…}` substitutions the definition's Lambda Tasks invoke (their FunctionName), in order of appearance. */
export const invokedSubstitutions = (definition: string): string[] => {
  const names = new Set<string>();
  for (const [name, s] of eachState((JSON.parse(definition) as Definition).States)) {
    if (s.Type !== 'Task' || !isLambdaInvoke(s.Resource)) continue;
    const fn = /^\$\{(\w+)\}$/.exec(String(s.Parameters?.FunctionName ?? ''))?.[1];
    if (!fn)
      throw new ConfigurationError(
        `${DEFINITION_FILE}: "${name}" must name its function as \${…FunctionArn}`,
      );
    names.add(fn);
  }
  return [...names];
};

/**
 * `/aws/vendedlogs/states/<state machine name>-<first 8 hex digits of the stack's id>`.
 *
 * Every log group Autopatch creates is kept when the stack is deleted (the execution history is the
 * audit trail of what was deployed), so a fixed name would make the next `cdk deploy` after a
 * `cdk destroy` fail with "already exists". The other log groups have names CloudFormation generates;
 * this one keeps a name of its own for its prefix: Step Functions delivers logs through CloudWatch
 * Logs' vended-logs delivery, which adds each log group to the account's CloudWatch Logs resource
 * policy (limited to 5,120 characters) unless the name starts with `/aws/vendedlogs/`, which one
 * policy entry covers. The stack id's GUID is new for every stack created, so a recreated stack
 * writes to a new group next to the retained one; updates of the same stack keep the name.
 */
export const stateMachineLogGroupName = (stateMachineName: string, stack: Stack): string =>
  `/aws/vendedlogs/states/${stateMachineName}-${Fn.select(0, Fn.split('-', Fn.select(2, Fn.split('/', stack.stackId))))}`;

export interface StateMachineProps {
  readonly stateMachineName: string;
  readonly encryptionKey: kms.IKey;
  readonly logRetention: logs.RetentionDays;
  /** The functions the definition may invoke, by the substitution that names them. */
  readonly functions: ReadonlyMap<string, lambda.IFunction>;
  /** The projects "Build the patched image" may start: Autopatch's own and the targets' own. */
  readonly projects: readonly codebuild.IProject[];
  readonly targetProjectArns: readonly string[];
  readonly statements: WorkflowStatements;
}

/**
 * The remediation state machine (created in `scope`, the workflow: `StateMachine`, `StateMachineLogs`)
 * and its role's permissions, which follow from the definition's Tasks: each function a Lambda Task
 * names is substituted and may be invoked, and no other.
 */
export const createStateMachine = (
  scope: Construct,
  props: StateMachineProps,
): { readonly stateMachine: sfn.StateMachine; readonly logGroup: logs.LogGroup } => {
  const stack = Stack.of(scope);
  const s = props.statements;
  const logGroup = new logs.LogGroup(scope, 'StateMachineLogs', {
    logGroupName: stateMachineLogGroupName(props.stateMachineName, stack),
    encryptionKey: props.encryptionKey,
    retention: props.logRetention,
  });
  const definition = renderDefinition();
  const invoked = invokedSubstitutions(definition).map((name) => {
    const fn = props.functions.get(name);
    if (!fn)
      throw new ConfigurationError(
        `${DEFINITION_FILE}: a Task invokes \${${name}}, which no workflow function stands for (lib/workflow/functions.ts)`,
      );
    return [name, fn] as const;
  });
  const stateMachine = new sfn.StateMachine(scope, 'StateMachine', {
    stateMachineName: props.stateMachineName,
    stateMachineType: sfn.StateMachineType.STANDARD,
    // Inline (fromString, not fromFile): fromFile uploads the file as an S3 asset and the template then
    // holds only its S3 location; inline, `cdk diff` shows definition changes and tests read the exact
    // definition that deploys. The file stays the source of truth (see renderDefinition).
    definitionBody: sfn.DefinitionBody.fromString(definition),
    definitionSubstitutions: Object.fromEntries(invoked.map(([name, fn]) => [name, fn.functionArn])),
    logs: { destination: logGroup, level: sfn.LogLevel.ALL, includeExecutionData: true },
    tracingEnabled: true,
  });
  for (const [, fn] of invoked) fn.grantInvoke(stateMachine);
  stateMachine.addToRolePolicy(
    new iam.PolicyStatement({
      actions: ['codebuild:StartBuild', 'codebuild:StopBuild', 'codebuild:BatchGetBuilds'],
      resources: [...props.projects.map((p) => p.projectArn), ...props.targetProjectArns],
    }),
  );
  stateMachine.addToRolePolicy(
    // The .sync integration follows builds with this managed rule.
    new iam.PolicyStatement({
      actions: ['events:PutTargets', 'events:PutRule', 'events:DescribeRule'],
      resources: [s.arn('events', 'rule', 'StepFunctionsGetEventForCodeBuildStartBuildRule')],
    }),
  );
  stateMachine.addToRolePolicy(s.deploy);
  if (s.deployTargets) stateMachine.addToRolePolicy(s.deployTargets);
  stateMachine.addToRolePolicy(s.stopDeployment);
  return { stateMachine, logGroup };
};

/** The state machine's ARN from its fixed name: for the functions it invokes (a reference would be circular). */
export const stateMachineArnOf = (scope: Construct, stateMachineName: string): string =>
  Stack.of(scope).formatArn({
    service: 'states',
    resource: 'stateMachine',
    resourceName: stateMachineName,
    arnFormat: ArnFormat.COLON_RESOURCE_NAME,
  });
