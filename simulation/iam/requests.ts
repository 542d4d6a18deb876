/**
 * What IAM checks for one API call: the actions (one call can need several: RegisterTaskDefinition
 * with tags also needs ecs:TagResource, with roles iam:PassRole; an SNS publish to an encrypted topic
 * needs the topic's key), the resource ARN each one is on, and the condition keys the request and the
 * model know (resource tags, ecs:cluster, ecs:CreateAction, events:source, iam:PassedToService, ...).
 *
 * Inputs are the SDK's (camelCase for ECS, ECR, CodeBuild, Inspector and Step Functions; PascalCase
 * for the others), as the simulation middleware sees them.
 */
import type { AuthorizationRequest } from './evaluate';
import type { IamModel } from './policies';

/** What the simulated account knows about resources, asked at the time of the call. */
export interface ResourceLookups {
  /** The tags of an ECS service, by ARN (undefined: no such service). */
  serviceTags(serviceArn: string): Readonly<Record<string, string>> | undefined;
  /**
   * The application and deployment group of a CodeDeploy deployment, by id: IAM authorizes
   * GetDeployment and StopDeployment on the deployment group (undefined: no such deployment).
   */
  codeDeployGroupOf?(deploymentId: string): { application: string; deploymentGroup: string } | undefined;
  /** The deployment configuration a CodeDeploy deployment group uses. */
  codeDeployConfigOf?(application: string, deploymentGroup: string): string | undefined;
}

type Input = Record<string, unknown>;
const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);
const strings = (v: unknown): string[] =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];

export const authorizationRequests = (
  iam: IamModel,
  lookups: ResourceLookups,
  service: string,
  operation: string,
  input: Input,
): AuthorizationRequest[] => {
  const { region, accountId, partition } = iam;
  const arn = (svc: string, resource: string, r = region) =>
    `arn:${partition}:${svc}:${r}:${accountId}:${resource}`;
  const req = (
    action: string,
    resource: string,
    context: Record<string, string | readonly string[]> = {},
  ): AuthorizationRequest => ({ action, resource, context });
  const last = (s: string) => s.split('/').pop() ?? s;

  // ------------------------------------------------------------------ ECS
  const clusterArn = (cluster: unknown) => {
    const c = str(cluster) ?? 'default';
    return c.startsWith('arn:') ? c : arn('ecs', `cluster/${c}`);
  };
  const clusterName = (cluster: unknown) => last(clusterArn(cluster));
  // A service named within a cluster given by ARN is in that cluster's account and Region.
  const serviceArn = (cluster: unknown, svc: string) => {
    if (svc.startsWith('arn:')) return svc;
    const [, , , r, a] = clusterArn(cluster).split(':');
    return `arn:${partition}:ecs:${r}:${a}:service/${clusterName(cluster)}/${svc}`;
  };
  const tagKeys = (tags: Readonly<Record<string, string>> | undefined, prefix: string) =>
    Object.fromEntries(Object.entries(tags ?? {}).map(([k, v]) => [`${prefix}/${k}`, v]));
  const onService = (action: string, cluster: unknown, svc: string) => {
    const a = serviceArn(cluster, svc);
    const parts = a.split('/');
    const tags = lookups.serviceTags(a);
    const [, , , r, acct] = a.split(':');
    return req(action, a, {
      'ecs:cluster': `arn:${partition}:ecs:${r}:${acct}:cluster/${parts[parts.length - 2] ?? 'default'}`,
      ...tagKeys(tags, 'aws:ResourceTag'),
      ...tagKeys(tags, 'ecs:ResourceTag'),
    });
  };
  /** service-deployment/<cluster>/<service>/<id> and service-revision/<cluster>/<service>/<id>. */
  const onServiceChild = (action: string, childArn: string) => {
    const [, cluster, svc] = childArn.split(':').slice(5).join(':').split('/');
    return req(action, childArn, {
      ...(cluster ? { 'ecs:cluster': arn('ecs', `cluster/${cluster}`) } : {}),
      ...(cluster && svc ? { 'ecs:service': arn('ecs', `service/${cluster}/${svc}`) } : {}),
    });
  };

  switch (`${service}:${operation}`) {
    case 'ecs:ListClusters':
    case 'ecs:ListServices':
    case 'ecs:DescribeTaskDefinition':
      return [req(`ecs:${operation}`, '*')];
    case 'ecs:ListTasks':
      // Resource type container-instance, narrowed only by the ecs:cluster condition key.
      return [req('ecs:ListTasks', '*', { 'ecs:cluster': clusterArn(input.cluster) })];
    case 'ecs:DescribeClusters':
      return strings(input.clusters).map((c) => req('ecs:DescribeClusters', clusterArn(c)));
    case 'ecs:DescribeServices':
      return strings(input.services).map((s) => onService('ecs:DescribeServices', input.cluster, s));
    case 'ecs:UpdateService':
    case 'ecs:DeleteService':
    case 'ecs:ListServiceDeployments':
      return [onService(`ecs:${operation}`, input.cluster, str(input.service) ?? '')];
    case 'ecs:ListTagsForResource':
      return [req('ecs:ListTagsForResource', str(input.resourceArn) ?? '*')];
    case 'ecs:DescribeTasks':
      return strings(input.tasks).map((t) =>
        req(
          'ecs:DescribeTasks',
          t.startsWith('arn:') ? t : arn('ecs', `task/${clusterName(input.cluster)}/${t}`),
          { 'ecs:cluster': clusterArn(input.cluster) },
        ),
      );
    case 'ecs:DescribeServiceDeployments':
      return strings(input.serviceDeploymentArns).map((d) =>
        onServiceChild('ecs:DescribeServiceDeployments', d),
      );
    case 'ecs:StopServiceDeployment':
      return [onServiceChild('ecs:StopServiceDeployment', str(input.serviceDeploymentArn) ?? '')];
    case 'ecs:DescribeServiceRevisions':
      return strings(input.serviceRevisionArns).map((r) => onServiceChild('ecs:DescribeServiceRevisions', r));
    case 'ecs:RegisterTaskDefinition': {
      const family = str(input.family) ?? 'unknown';
      const requestTags = Object.fromEntries(
        (Array.isArray(input.tags) ? (input.tags as Array<{ key?: string; value?: string }>) : []).map(
          (t) => [t.key ?? '', t.value ?? ''],
        ),
      );
      // The revision is not known before the call; IAM sees the family's ARN with its next revision.
      const resource = arn('ecs', `task-definition/${family}:1`);
      const out = [req('ecs:RegisterTaskDefinition', resource, tagKeys(requestTags, 'aws:RequestTag'))];
      if (Object.keys(requestTags).length > 0) {
        out.push(
          req('ecs:TagResource', resource, {
            'ecs:CreateAction': 'RegisterTaskDefinition',
            'aws:TagKeys': Object.keys(requestTags),
            ...tagKeys(requestTags, 'aws:RequestTag'),
          }),
        );
      }
      for (const role of [str(input.taskRoleArn), str(input.executionRoleArn)]) {
        if (role) out.push(req('iam:PassRole', role, { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' }));
      }
      return out;
    }

    // ------------------------------------------------------------------ ECR
    case 'ecr:DescribeImages':
    case 'ecr:BatchGetImage':
    case 'ecr:PutImage':
    case 'ecr:ListImages': {
      const registry = str(input.registryId) ?? accountId;
      return [
        req(
          `ecr:${operation}`,
          `arn:${partition}:ecr:${region}:${registry}:repository/${str(input.repositoryName) ?? ''}`,
        ),
      ];
    }
    case 'ecr:DescribeRepositories': {
      const names = strings(input.repositoryNames);
      const registry = str(input.registryId) ?? accountId;
      return names.length === 0
        ? [req('ecr:DescribeRepositories', '*')]
        : names.map((n) =>
            req('ecr:DescribeRepositories', `arn:${partition}:ecr:${region}:${registry}:repository/${n}`),
          );
    }

    // ------------------------------------------------------------------ CodeBuild
    case 'codebuild:StartBuild':
      return [req('codebuild:StartBuild', arn('codebuild', `project/${str(input.projectName) ?? ''}`))];
    case 'codebuild:StopBuild':
      return [req('codebuild:StopBuild', arn('codebuild', `project/${(str(input.id) ?? '').split(':')[0]}`))];
    case 'codebuild:BatchGetBuilds':
      return [...new Set(strings(input.ids).map((id) => id.split(':')[0] ?? id))].map((project) =>
        req('codebuild:BatchGetBuilds', arn('codebuild', `project/${project}`)),
      );

    // ------------------------------------------------------------------ Inspector
    case 'inspector2:ListCoverage':
    case 'inspector2:ListFindings':
    case 'inspector2:BatchGetFindingDetails':
      return [req(`inspector2:${operation}`, '*')];

    // ------------------------------------------------------------------ CloudWatch
    case 'cloudwatch:DescribeAlarms': {
      const names = strings(input.AlarmNames);
      return names.length === 0
        ? [req('cloudwatch:DescribeAlarms', '*')]
        : names.map((n) => req('cloudwatch:DescribeAlarms', arn('cloudwatch', `alarm:${n}`)));
    }
    case 'cloudwatch:DescribeAlarmHistory':
      return [
        req(
          'cloudwatch:DescribeAlarmHistory',
          str(input.AlarmName) ? arn('cloudwatch', `alarm:${input.AlarmName}`) : '*',
        ),
      ];

    // ------------------------------------------------------------------ SNS (and the topic's key)
    case 'sns:Publish': {
      const topic = str(input.TopicArn) ?? str(input.TargetArn) ?? '';
      const out = [req('sns:Publish', topic)];
      const key = iam.keys.get(topic);
      // SNS encrypts with the publisher's permissions on the topic's key.
      if (key) {
        const via = { 'kms:ViaService': `sns.${region}.amazonaws.com`, 'kms:CallerAccount': accountId };
        out.push(req('kms:GenerateDataKey', key, via), req('kms:Decrypt', key, via));
      }
      return out;
    }

    // ------------------------------------------------------------------ EventBridge
    case 'eventbridge:PutEvents': {
      // One authorization per event bus; events:source and events:detail-type are multivalued keys
      // holding every entry's value.
      const byBus = new Map<string, Input[]>();
      for (const e of Array.isArray(input.Entries) ? (input.Entries as Input[]) : []) {
        const bus = str(e.EventBusName) ?? 'default';
        const busArn = bus.startsWith('arn:') ? bus : arn('events', `event-bus/${bus}`);
        byBus.set(busArn, [...(byBus.get(busArn) ?? []), e]);
      }
      return [...byBus].map(([busArn, entries]) => {
        const values = (key: string) => [...new Set(entries.flatMap((e) => str(e[key]) ?? []))];
        const sources = values('Source');
        const detailTypes = values('DetailType');
        return req('events:PutEvents', busArn, {
          ...(sources.length > 0 ? { 'events:source': sources } : {}),
          ...(detailTypes.length > 0 ? { 'events:detail-type': detailTypes } : {}),
        });
      });
    }

    // ------------------------------------------------------------------ SSM
    // ------------------------------------------------------------------ CodeDeploy
    // Deployments are authorized on their deployment group (Service Authorization Reference).
    case 'codedeploy:ListApplications':
      return [req('codedeploy:ListApplications', '*')];
    case 'codedeploy:ListDeploymentGroups':
      return [
        req(
          'codedeploy:ListDeploymentGroups',
          arn('codedeploy', `application:${str(input.applicationName) ?? ''}`),
        ),
      ];
    case 'codedeploy:GetDeploymentGroup':
    case 'codedeploy:ListDeployments':
      return [
        req(
          `codedeploy:${operation}`,
          arn(
            'codedeploy',
            `deploymentgroup:${str(input.applicationName) ?? ''}/${str(input.deploymentGroupName) ?? ''}`,
          ),
        ),
      ];
    case 'codedeploy:BatchGetDeploymentGroups':
      return strings(input.deploymentGroupNames).map((g) =>
        req(
          'codedeploy:BatchGetDeploymentGroups',
          arn('codedeploy', `deploymentgroup:${str(input.applicationName) ?? ''}/${g}`),
        ),
      );
    case 'codedeploy:CreateDeployment': {
      const application = str(input.applicationName) ?? '';
      const group = str(input.deploymentGroupName) ?? '';
      const config =
        str(input.deploymentConfigName) ??
        lookups.codeDeployConfigOf?.(application, group) ??
        'CodeDeployDefault.ECSAllAtOnce';
      // Modelled stricter than the reference states: the deployer policies AWS shows grant these two
      // with CreateDeployment (it registers the revision and reads the group's deployment config).
      return [
        req('codedeploy:CreateDeployment', arn('codedeploy', `deploymentgroup:${application}/${group}`)),
        req('codedeploy:GetDeploymentConfig', arn('codedeploy', `deploymentconfig:${config}`)),
        req('codedeploy:RegisterApplicationRevision', arn('codedeploy', `application:${application}`)),
        // "If you specify an overrideAlarmConfiguration, you need the UpdateDeploymentGroup IAM
        // permission when calling CreateDeployment" (API reference, CreateDeployment).
        ...(input.overrideAlarmConfiguration !== undefined
          ? [
              req(
                'codedeploy:UpdateDeploymentGroup',
                arn('codedeploy', `deploymentgroup:${application}/${group}`),
              ),
            ]
          : []),
      ];
    }
    // StopDeployment has no resource-level permissions: IAM evaluates it against "*".
    case 'codedeploy:StopDeployment':
      return [req('codedeploy:StopDeployment', '*')];
    case 'codedeploy:GetDeployment': {
      const id = str(input.deploymentId) ?? '';
      const group = lookups.codeDeployGroupOf?.(id);
      return [
        req(
          `codedeploy:${operation}`,
          group
            ? arn('codedeploy', `deploymentgroup:${group.application}/${group.deploymentGroup}`)
            : arn('codedeploy', 'deploymentgroup:unknown/unknown'),
        ),
      ];
    }

    case 'ssm:PutParameter':
    case 'ssm:GetParameter': {
      const name = (str(input.Name) ?? '').replace(/^\//, '');
      return [req(`ssm:${operation}`, arn('ssm', `parameter/${name}`))];
    }

    // ------------------------------------------------------------------ Step Functions
    case 'sfn:StartExecution':
    case 'sfn:ListExecutions':
      return [req(`states:${operation}`, str(input.stateMachineArn) ?? '')];
    case 'sfn:DescribeExecution':
    case 'sfn:StopExecution':
      return [req(`states:${operation}`, str(input.executionArn) ?? '')];
    case 'sfn:SendTaskSuccess':
    case 'sfn:SendTaskFailure':
    case 'sfn:SendTaskHeartbeat':
      return [req(`states:${operation}`, '*')];

    // ------------------------------------------------------------------ DynamoDB (and the table's key)
    default:
      if (service === 'dynamodb') return dynamodbRequests(iam, operation, input, arn);
      return [];
  }
};

/** The IAM action per DynamoDB transaction item kind. */
const TRANSACT_ACTIONS: Record<string, string> = {
  ConditionCheck: 'dynamodb:ConditionCheckItem',
  Put: 'dynamodb:PutItem',
  Update: 'dynamodb:UpdateItem',
  Delete: 'dynamodb:DeleteItem',
  Get: 'dynamodb:GetItem',
};

const dynamodbRequests = (
  iam: IamModel,
  operation: string,
  input: Input,
  arn: (svc: string, resource: string) => string,
): AuthorizationRequest[] => {
  const table = (name: unknown) => arn('dynamodb', `table/${String(name)}`);
  const pairs: Array<[string, string]> = [];
  if (operation === 'BatchGetItem' || operation === 'BatchWriteItem') {
    for (const name of Object.keys((input.RequestItems as Input | undefined) ?? {}))
      pairs.push([`dynamodb:${operation}`, table(name)]);
  } else if (operation === 'TransactWriteItems' || operation === 'TransactGetItems') {
    for (const item of (input.TransactItems as Input[] | undefined) ?? []) {
      for (const [kind, body] of Object.entries(item)) {
        const action = TRANSACT_ACTIONS[kind];
        if (action) pairs.push([action, table((body as Input).TableName)]);
      }
    }
  } else {
    const index = typeof input.IndexName === 'string' ? `/index/${input.IndexName}` : '';
    pairs.push([`dynamodb:${operation}`, `${table(input.TableName)}${index}`]);
  }
  const out: AuthorizationRequest[] = pairs.map(([action, resource]) => ({ action, resource, context: {} }));
  // DynamoDB uses a customer managed table key with the caller's permissions (kms:ViaService dynamodb).
  for (const t of new Set(pairs.map(([, r]) => r.replace(/\/index\/.*$/, '')))) {
    const key = iam.keys.get(t);
    if (key)
      out.push({
        action: 'kms:Decrypt',
        resource: key,
        context: {
          'kms:ViaService': `dynamodb.${iam.region}.amazonaws.com`,
          'kms:CallerAccount': iam.accountId,
        },
      });
  }
  return out;
};
