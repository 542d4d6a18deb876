import { Match } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { JSONPath } from 'jsonpath-plus';
import { OUTCOMES } from '../../lambdas/shared/contracts';
import { WORKFLOW_ERRORS } from '../../lambdas/workflow/errors';
import { RESCAN_FAILURES, RESCAN_WAIT_MARGIN_SECONDS } from '../../lambdas/workflow/verify-rescan';
import {
  type AslState,
  allStates,
  remediationRequest,
  renderWorkflow,
  taskStateNames,
} from '../support/workflow-harness';

const { definition, template, stack } = renderWorkflow();
const states = allStates(definition);
const entries = [...states];
const tasks = entries.filter(([, s]) => s.Type === 'Task');
const isLambda = (s: AslState) => s.Resource?.startsWith('arn:aws:states:::lambda:invoke') ?? false;
const errorNames = new Set<string>(Object.values(WORKFLOW_ERRORS));

describe('the remediation definition', () => {
  it('is JSONPath only: no JSONata fields the local interpreter would silently ignore', () => {
    const text = JSON.stringify(definition);
    for (const field of ['"QueryLanguage"', '"Arguments"', '"Output"', '"Assign"', '"Condition"']) {
      expect(text).not.toContain(field);
    }
  });

  it('gives every state a Comment for on-call', () => {
    const missing = entries.filter(([, s]) => !s.Comment || s.Comment.length < 20).map(([n]) => n);
    expect(missing).toEqual([]);
  });

  it('matches and raises only the error names listed in WORKFLOW_ERRORS (or outcomes)', () => {
    const used = new Set<string>();
    for (const [, s] of entries) {
      for (const r of s.Retry ?? []) for (const e of r.ErrorEquals) used.add(e);
      for (const c of s.Catch ?? []) for (const e of c.ErrorEquals) used.add(e);
      if (s.Type === 'Fail' && s.Error) used.add(s.Error);
      const raised = s.Parameters?.Error;
      if (typeof raised === 'string') used.add(raised);
    }
    const unknown = [...used].filter(
      (e) => !errorNames.has(e) && !(OUTCOMES as readonly string[]).includes(e),
    );
    expect(unknown).toEqual([]);
    // And the constant lists nothing the definition does not use (taskFailed is matched by a Choice).
    const choiceText = JSON.stringify(definition);
    const unused = [...errorNames].filter((e) => !used.has(e) && !choiceText.includes(`"${e}"`));
    expect(unused).toEqual([]);
  });

  it('ends with Succeed for Patched, Rejected, Superseded and a Fail named after every other outcome', () => {
    const succeed = entries.filter(([, s]) => s.Type === 'Succeed').map(([n]) => n);
    expect(succeed.sort()).toEqual(['Already fixed', 'Patched', 'Rejected', 'Superseded']);
    const outcomeFails = new Set(
      entries.filter(([n, s]) => s.Type === 'Fail' && definition.States[n]).map(([, s]) => s.Error),
    );
    for (const outcome of OUTCOMES.filter(
      (o) => !['Patched', 'Rejected', 'Superseded', 'AlreadyFixed'].includes(o),
    )) {
      expect(outcomeFails).toContain(outcome);
    }
    const routed = (definition.States['Which outcome?']?.Choices ?? []).map((c) => c.Next);
    expect(routed).toHaveLength(10);
  });

  it('catches every unexpected error of a top-level Task (States.ALL last), and the Map catches its iterations', () => {
    for (const [name, s] of Object.entries(definition.States)) {
      if (s.Type !== 'Task' && s.Type !== 'Map') continue;
      const last = s.Catch?.at(-1);
      expect({ name, catchAll: last?.ErrorEquals }).toEqual({ name, catchAll: ['States.ALL'] });
    }
  });

  it('bounds every Task with a timeout ("every wait has a timeout")', () => {
    const unbounded = tasks
      .filter(([, s]) => !('TimeoutSeconds' in s) && !('TimeoutSecondsPath' in s))
      .map(([n]) => n);
    expect(unbounded).toEqual([]);
  });

  it('reads dynamic timeouts from fields of the request (TimeoutSecondsPath resolves against the state input)', () => {
    const paths = tasks.flatMap(([name, s]) => {
      const path = (s as AslState & { TimeoutSecondsPath?: string }).TimeoutSecondsPath;
      return path ? [[name, path] as const] : [];
    });
    expect(Object.fromEntries(paths)).toEqual({
      'Verify the patched image by rescan': '$.rescanWaitSeconds',
      'Wait for approval': '$.target.approvalTimeoutSeconds',
      'Watch the deployment through the bake time': '$.target.deploymentTimeoutSeconds',
      'Wait for the rollback': '$.target.deploymentTimeoutSeconds',
      'Wait until the last good revision runs': '$.target.deploymentTimeoutSeconds',
    });
    // Inside the Map the state input is the ItemSelector's output (tested above).
    for (const [, path] of paths.filter(([name]) => name !== 'Verify the patched image by rescan')) {
      const [value] = JSONPath({
        path,
        json: remediationRequest() as unknown as object,
        wrap: true,
      }) as unknown[];
      expect(Number.isInteger(value)).toBe(true);
    }
  });

  it('retries transient Lambda and ECS errors with backoff and jitter', () => {
    for (const [name, s] of tasks) {
      const retriers = (s.Retry ?? []) as ReadonlyArray<{
        ErrorEquals: readonly string[];
        JitterStrategy?: string;
      }>;
      if (isLambda(s)) {
        const r = retriers.find((x) => x.ErrorEquals.includes('Lambda.TooManyRequestsException'));
        expect({
          name,
          jitter: r?.JitterStrategy,
          transient: r?.ErrorEquals.includes('TransientError'),
        }).toEqual({
          name,
          jitter: 'FULL',
          transient: true,
        });
      }
      if (s.Resource?.startsWith('arn:aws:states:::aws-sdk:ecs:')) {
        const r = retriers.find((x) => x.ErrorEquals.includes('Ecs.ThrottlingException'));
        expect({
          name,
          jitter: r?.JitterStrategy,
          server: r?.ErrorEquals.includes('Ecs.ServerException'),
        }).toEqual({
          name,
          jitter: 'FULL',
          server: true,
        });
      }
      if (s.Resource?.startsWith('arn:aws:states:::codebuild:')) {
        // The names CodeBuild really answers with: throttling, account limits, and its 5xx.
        const retried = retriers.flatMap((x) => x.ErrorEquals);
        expect({ name, retried: [...retried].sort() }).toEqual({
          name,
          retried: [
            'CodeBuild.AccountLimitExceededException',
            'CodeBuild.InternalFailureException',
            'CodeBuild.ServiceUnavailableException',
            'CodeBuild.ThrottlingException',
          ],
        });
      }
    }
  });

  it('waits for the rescan on a task token bounded by the rescan timeout plus a margin, never a poll', () => {
    const verify = states.get('Verify the patched image by rescan') as AslState & {
      TimeoutSecondsPath?: string;
      ResultPath?: string;
      Parameters: { Payload: Record<string, unknown> };
    };
    expect(verify.Resource).toBe('arn:aws:states:::lambda:invoke.waitForTaskToken');
    expect(verify.Parameters.Payload).toEqual(
      expect.objectContaining({ 'taskToken.$': '$$.Task.Token', 'executionName.$': '$$.Execution.Name' }),
    );
    // The Map computes the bound from the request: nothing is sized at synth.
    const map = states.get('Rebuild and verify each image') as AslState & {
      ItemSelector: Record<string, string>;
    };
    expect(verify.TimeoutSecondsPath).toBe('$.rescanWaitSeconds');
    expect(map.ItemSelector['rescanWaitSeconds.$']).toBe(
      `States.MathAdd($.target.rescanTimeoutSeconds, ${RESCAN_WAIT_MARGIN_SECONDS})`,
    );
    // The shared Lambda retry, and nothing else: no poll, and the deadline (States.Timeout) is never retried.
    const retried = (verify.Retry ?? []).flatMap((r) => r.ErrorEquals);
    expect(retried).not.toContain('RescanPendingError');
    expect(retried).not.toContain('States.Timeout');
    expect(retried).toEqual(expect.arrayContaining(['Lambda.ServiceException', 'TransientError']));
    expect(verify.Catch).toEqual([
      expect.objectContaining({
        ErrorEquals: ['States.Timeout'],
        Next: 'Nobody answered the rescan wait in time',
      }),
    ]);
    expect(states.get('Nobody answered the rescan wait in time')?.Error).toBe('RescanTimedOutError');
  });

  it('turns each failed rescan verdict into the error the Map already catches, with the verdict as Cause', () => {
    const choice = states.get('Did the rescan prove the fix?') as AslState;
    type Comparison = { Variable: string; IsPresent?: boolean; StringEquals?: string };
    // Each rule: And [the field is present, the field equals a value] (a missing path is a States.Runtime).
    const rules = ((choice.Choices ?? []) as ReadonlyArray<{ And: Comparison[]; Next: string }>).map((c) => {
      const [present, equals] = c.And;
      expect(present).toEqual({ Variable: equals?.Variable, IsPresent: true });
      return { variable: equals?.Variable, value: equals?.StringEquals, next: c.Next };
    });
    expect(choice.Type).toBe('Choice');
    const verified = rules.find((r) => r.variable === '$.rescan.verdict');
    expect(verified?.value).toBe('verified');
    expect(states.get(verified?.next ?? '')).toEqual(
      expect.objectContaining({ Type: 'Pass', InputPath: '$.rescan.image', End: true }),
    );
    const raised = Object.fromEntries(
      rules
        .filter((r) => r.variable === '$.rescan.error')
        .map((r) => {
          const fail = states.get(r.next) as AslState & { CausePath?: string };
          expect({ next: r.next, type: fail.Type, causePath: fail.CausePath }).toEqual({
            next: r.next,
            type: 'Fail',
            causePath: '$.rescan.cause',
          });
          return [r.value, fail.Error];
        }),
    );
    expect(raised).toEqual(Object.fromEntries(RESCAN_FAILURES.map((e) => [e, e])));
    // An error no retry cures keeps its own name and message (as the verify Lambda threw it).
    const error = rules.find((r) => r.variable === '$.rescan.verdict' && r.value === 'error');
    expect(states.get(error?.next ?? '')).toEqual(
      expect.objectContaining({ Type: 'Fail', ErrorPath: '$.rescan.error', CausePath: '$.rescan.cause' }),
    );
    expect(states.get(choice.Default ?? '')?.Type).toBe('Fail');
  });

  it('waits for the bake and every rollback with token waits, never a loop whose transitions grow with time', () => {
    for (const name of [
      'Watch the deployment through the bake time',
      'Wait for the rollback',
      'Wait until the last good revision runs',
    ]) {
      const wait = states.get(name) as AslState & { Parameters: { Payload: Record<string, unknown> } };
      expect({ name, resource: wait.Resource }).toEqual({
        name,
        resource: 'arn:aws:states:::lambda:invoke.waitForTaskToken',
      });
      // The deadline is the timeout itself: a States.Timeout is never retried.
      const retried = (wait.Retry ?? []).flatMap((r) => r.ErrorEquals);
      expect(retried).not.toContain('States.Timeout');
      expect(wait.Parameters.Payload.mode).toBe(name.startsWith('Watch') ? 'bake' : 'rollback');
    }
    // No Wait state loops on the deployment and bake: the only Wait states gather, hold for a window,
    // or hold while an alarm fires before anything is deployed.
    const waits = entries.filter(([, s]) => s.Type === 'Wait').map(([n]) => n);
    expect(waits.sort()).toEqual([
      'Wait for the burst to go quiet',
      'Wait for the firing alarm to clear',
      'Wait for the firing alarm to clear before deploying',
      'Wait for the rest of the burst',
    ]);
  });

  it('takes the deployment to watch from the UpdateService response, and the configured bake to the watch', () => {
    const deploy = states.get('Deploy the patched revision') as AslState & { ResultSelector?: unknown };
    expect(deploy.ResultSelector).toEqual({ 'deploymentArn.$': '$.Service.CurrentServiceDeployment' });
    const watch = states.get('Watch the deployment through the bake time') as AslState & {
      Parameters: { Payload: Record<string, unknown> };
    };
    expect(watch.Parameters.Payload).toEqual(
      expect.objectContaining({
        'deploymentArn.$': '$.deployment.deploymentArn',
        'bakeTimeMinutes.$': '$.target.bakeTimeMinutes',
      }),
    );
  });

  it('names its Task states (the simulation routes them by name)', () => {
    expect(taskStateNames(definition)).toEqual([
      'Acquire the service lock',
      'Take the findings gathered meanwhile',
      'Wait for the maintenance window',
      'Take the urgent findings',
      'Check the service can be watched',
      'Wait for approval',
      'Plan the image builds',
      'Build the patched image',
      'Verify the patched image by rescan',
      'Assemble the patched image indexes',
      'Register the patched task definition',
      'Check the alarms before deploying',
      'Take a deployment slot',
      'Wait for a deployment slot',
      'Deploy the patched revision',
      "Deploy the patched revision in the service's account",
      'Deploy the patched revision with CodeDeploy',
      'Watch the deployment through the bake time',
      'Roll back the deployment',
      "Roll back the deployment in the service's account",
      'Wait for the rollback',
      'Put the service back on its last good revision',
      'Wait until the last good revision runs',
      'Record the outcome and release the lock',
      'Release the lock anyway',
    ]);
  });
});

describe('RemediationWorkflow construct', () => {
  it('creates a Standard state machine with ALL logging to a KMS-encrypted log group and X-Ray tracing', () => {
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineName: 'AutopatchTest-Remediation',
      StateMachineType: 'STANDARD',
      LoggingConfiguration: Match.objectLike({ Level: 'ALL', IncludeExecutionData: true }),
      TracingConfiguration: { Enabled: true },
      DefinitionSubstitutions: Match.objectLike({ FinishFunctionArn: Match.anyValue() }),
    });
    template.hasResourceProperties('AWS::Logs::LogGroup', {
      // Unique to the stack (its id), so a retained group does not block a redeploy after cdk destroy.
      LogGroupName: {
        'Fn::Join': ['', ['/aws/vendedlogs/states/AutopatchTest-Remediation-', Match.anyValue()]],
      },
      KmsKeyId: Match.anyValue(),
    });
  });

  it('runs every Lambda on arm64 Node.js 24 (lib/workflow/lambda-runtime.ts) with tracing, each with a KMS-encrypted log group', () => {
    const functions = template.findResources('AWS::Lambda::Function');
    expect(Object.keys(functions)).toHaveLength(15);
    for (const fn of Object.values(functions)) {
      expect(fn.Properties).toEqual(
        expect.objectContaining({
          Architectures: ['arm64'],
          Runtime: 'nodejs24.x',
          TracingConfig: { Mode: 'Active' },
          LoggingConfig: expect.objectContaining({ LogGroup: expect.anything() }),
        }),
      );
    }
    const groups = Object.values(template.findResources('AWS::Logs::LogGroup'));
    expect(groups.every((g) => g.Properties.KmsKeyId !== undefined)).toBe(true);
  });

  it('builds images in privileged, KMS-encrypted CodeBuild projects whose buildspec exports IMAGE_DIGEST', () => {
    const projects = Object.values(template.findResources('AWS::CodeBuild::Project'));
    expect(projects).toHaveLength(4);
    for (const p of projects) {
      expect(p.Properties.Environment.PrivilegedMode).toBe(true);
      expect(p.Properties.EncryptionKey).toBeDefined();
      const spec = p.Properties.Source.BuildSpec as string;
      expect(spec).toContain('exported-variables');
      expect(spec).toContain('IMAGE_DIGEST');
    }
    const patch = projects
      .map((p) => p.Properties.Source.BuildSpec as string)
      .find((s) => s.includes('USER root'));
    for (const needle of [
      'apt-get',
      'apk upgrade',
      'dnf -y upgrade',
      'yum -y update',
      '.Config.User',
      '.Config.Entrypoint',
      '.Config.Cmd',
    ]) {
      expect(patch).toContain(needle);
    }
    const source = projects
      .map((p) => p.Properties.Source.BuildSpec as string)
      .find((s) => s.includes('--pull'));
    expect(source).toBeDefined();
  });

  it('deploys services carrying the Autopatch tag and the explicit targets by ARN, and grants no wildcard actions', () => {
    const policies = Object.values(template.findResources('AWS::IAM::Policy'));
    const statements = policies.flatMap(
      (p) => p.Properties.PolicyDocument.Statement as Array<Record<string, unknown>>,
    );
    const actions = (s: Record<string, unknown>) => [s.Action].flat() as string[];
    const deploying = statements.filter((s) => actions(s).includes('ecs:UpdateService'));
    expect(deploying.length).toBeGreaterThan(0);
    // Discovered services by their tag; explicit targets (remediated tagged or not) by service ARN only.
    for (const s of deploying) {
      if (s.Condition !== undefined) {
        expect(s.Condition).toEqual({ StringEquals: { 'aws:ResourceTag/autopatch:enabled': 'true' } });
      } else {
        const resources = JSON.stringify(s.Resource);
        expect(resources).toContain(':service/prod/payments-api');
        expect(resources).toContain(':service/prod/ledger-api');
        expect(resources).not.toContain('*');
      }
    }
    expect(deploying.some((s) => s.Condition === undefined)).toBe(true);
    // Service deployments carry no tags: StopServiceDeployment is scoped to service deployments only.
    const stopping = statements.filter((s) => actions(s).includes('ecs:StopServiceDeployment'));
    expect(stopping.length).toBeGreaterThan(0);
    for (const s of stopping) {
      expect(s.Condition).toBeUndefined();
      expect(JSON.stringify(s.Resource)).toContain(':service-deployment/*');
    }
    const wildcard = statements.flatMap(actions).filter((a) => a === '*' || a.endsWith(':*'));
    expect(wildcard).toEqual([]);
    const passRole = statements.find((s) => actions(s).includes('iam:PassRole'));
    expect(passRole?.Condition).toEqual({
      StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' },
    });
  });

  it('routes ECS deployment and alarm events to the deployment-events Lambda, with a dead-letter queue', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.ecs'],
        'detail-type': ['ECS Deployment State Change'],
        detail: { eventName: [{ 'anything-but': ['SERVICE_DEPLOYMENT_IN_PROGRESS'] }] },
      },
      Targets: [Match.objectLike({ DeadLetterConfig: Match.anyValue(), RetryPolicy: Match.anyValue() })],
    });
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.cloudwatch'],
        'detail-type': ['CloudWatch Alarm State Change'],
        detail: { state: { value: ['ALARM'] } },
      },
    });
  });

  it('dead-letters those events to a queue EventBridge can write to: SQS-managed encryption, TLS only', () => {
    const [dlqId] = Object.keys(
      template.findResources('AWS::SQS::Queue', { Properties: { SqsManagedSseEnabled: true } }),
    );
    expect(dlqId).toBeDefined();
    const rules = Object.values(template.findResources('AWS::Events::Rule')) as Array<{
      Properties: { Targets?: Array<{ DeadLetterConfig?: { Arn: unknown } }> };
    }>;
    const dlqArns = rules.flatMap((r) =>
      (r.Properties.Targets ?? []).flatMap((t) => t.DeadLetterConfig?.Arn ?? []),
    );
    expect(dlqArns.length).toBeGreaterThanOrEqual(3);
    for (const arn of dlqArns) expect(arn).toEqual({ 'Fn::GetAtt': [dlqId, 'Arn'] });
    const policies = Object.values(template.findResources('AWS::SQS::QueuePolicy')) as Array<{
      Properties: { Queues: unknown[]; PolicyDocument: { Statement: Array<Record<string, unknown>> } };
    }>;
    const dlqPolicy = policies.find((p) => JSON.stringify(p.Properties.Queues).includes(dlqId as string));
    expect(dlqPolicy?.Properties.PolicyDocument.Statement).toContainEqual(
      expect.objectContaining({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
    );
  });

  it('releases the lock of executions that end outside their own finish state (stopped by hand, timed out)', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.states'],
        'detail-type': ['Step Functions Execution Status Change'],
        detail: { status: ['ABORTED', 'TIMED_OUT', 'FAILED'], stateMachineArn: [Match.anyValue()] },
      },
    });
  });

  it('passes cdk-nag AwsSolutions checks (what remains is acknowledged with a reason)', () => {
    const report = new AwsSolutionsChecks().validateScope(stack);
    const ours = report.violations
      .map((v) => ({
        rule: v.ruleName,
        resources: v.violatingResources
          .map((r) => r.constructPath ?? '')
          .filter((p) => p.includes('/Workflow/')),
      }))
      .filter((v) => v.resources.length > 0);
    expect(ours).toEqual([]);
  });
});
