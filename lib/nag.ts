import { type CfnResource, Stack, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { NagMessageLevel, NagPack, type NagPackProps, NagRuleCompliance, type NagRuleResult } from 'cdk-nag';
import type { IConstruct } from 'constructs';

/**
 * Every cdk-nag acknowledgement Autopatch makes, in one place, so a reviewer reads them together.
 *
 * cdk-nag v3 reads CDK's own acknowledged-rules metadata and walks up the construct tree, so an
 * acknowledgement applies to the construct it is put on and everything below it. Each one is put on
 * the narrowest construct that carries the finding (a single IAM policy, never the stack) and names
 * the finding precisely (`RuleId[FindingId]`), so a new wildcard added later still fails synth.
 */

/** The finding id cdk-nag reports for an IAM statement with `Resource: '*'`. */
export const IAM5_ANY_RESOURCE = 'AwsSolutions-IAM5[Resource::*]';

/** The finding id cdk-nag reports for a resource ARN pattern, as cdk-nag renders its tokens. */
export const iam5Resource = (arnPattern: string): string => `AwsSolutions-IAM5[Resource::${arnPattern}]`;

/** ECS ARNs in this account and Region, rendered the way cdk-nag prints `formatArn` tokens. */
export const ecsArnPattern = (resource: string): string =>
  `arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:${resource}/*`;

export const NAG_REASONS = {
  xray:
    'X-Ray active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords do not support ' +
    'resource-level permissions, so IAM requires Resource "*".',
  ecsUnscopable:
    'Inventory discovery (services tagged for Autopatch may run in any cluster): ecs:ListClusters, ' +
    'ecs:ListServices, ecs:ListTasks and ecs:DescribeTaskDefinition are read-only and do not support ' +
    'resource-level permissions for an unfiltered listing, so IAM requires Resource "*".',
  ecsServices:
    'ecs:DescribeServices is read-only and scoped to ECS services in this account and Region; the ' +
    'cluster and service names are discovered at run time by tag, so they cannot be listed at synth.',
  ecsTasks:
    'ecs:DescribeTasks is read-only and scoped to ECS tasks in this account and Region; task ids are ' +
    'random and only known at run time.',
  ecrIndexes:
    'ecr:BatchGetImage (read-only) of the images services run, to map a platform digest Inspector ' +
    'reports to the image index the service runs: the repositories are those of the discovered ' +
    "services' task definitions, known only at run time, in this account and Region.",
  inspectorFindingDetails:
    'inspector2:BatchGetFindingDetails (read-only) reads CISA KEV membership and observed exploitation ' +
    'of findings for policy rules that match on them; it supports no resource-level permissions, so IAM ' +
    'requires Resource "*".',
} as const;

/** Acknowledge one precise cdk-nag finding on one construct, with a reason a reviewer can check. */
export const acknowledge = (scope: IConstruct, id: string, reason: string): void => {
  Validations.of(scope).acknowledge({ id, reason });
};

/**
 * Actions IAM evaluates against `Resource: "*"` because they support no resource-level permissions
 * (the Service Authorization Reference lists no resource type for them), or, for ecs:ListTasks, only
 * the container instance a listing by service does not name. Only these may be granted on "*";
 * test/iam checks this list against the reference's data.
 */
export const ACTIONS_WITHOUT_RESOURCE_LEVEL_PERMISSIONS: Readonly<Record<string, string>> = {
  'xray:PutTraceSegments': 'X-Ray active tracing (Lambda and Step Functions)',
  'xray:PutTelemetryRecords': 'X-Ray active tracing (Lambda and Step Functions)',
  'xray:GetSamplingRules': 'X-Ray tracing of the state machine',
  'xray:GetSamplingTargets': 'X-Ray tracing of the state machine',
  'logs:CreateLogDelivery': 'Step Functions log delivery to CloudWatch Logs',
  'logs:GetLogDelivery': 'Step Functions log delivery to CloudWatch Logs',
  'logs:UpdateLogDelivery': 'Step Functions log delivery to CloudWatch Logs',
  'logs:DeleteLogDelivery': 'Step Functions log delivery to CloudWatch Logs',
  'logs:ListLogDeliveries': 'Step Functions log delivery to CloudWatch Logs',
  'logs:PutResourcePolicy': 'Step Functions log delivery to CloudWatch Logs',
  'logs:DescribeResourcePolicies': 'Step Functions log delivery to CloudWatch Logs',
  'logs:DescribeLogGroups': 'Step Functions log delivery to CloudWatch Logs',
  'ecr:GetAuthorizationToken': 'registry login of the image builds',
  'inspector2:ListCoverage': 'rescan verification reads the coverage of the pushed digest',
  'inspector2:ListFindings': 'rescan verification reads the findings of the pushed digest',
  'inspector2:BatchGetFindingDetails':
    'triage reads the exploitation details of findings (CISA KEV, observed exploitation)',
  'ecs:ListClusters': 'inventory discovery',
  'ecs:ListServices': 'inventory discovery',
  'ecs:ListTasks':
    'inventory discovery lists tasks by cluster and service (the container-instance resource type applies only when one is named)',
  'ecs:DescribeTaskDefinition': 'reading the running task definition',
  'states:SendTaskSuccess': 'resuming a watching execution by its task token',
  'codedeploy:ListApplications': 'finding the CodeDeploy deployment group of a CODE_DEPLOY service',
  'codedeploy:StopDeployment': 'rolling back the CodeDeploy deployment of a patched CODE_DEPLOY service',
  'states:SendTaskFailure': 'resuming a watching execution by its task token',
};

/** Identity policy documents of a CloudFormation resource (a role's inline policies, a policy). */
const identityDocuments = (node: CfnResource): unknown[] => {
  const stack = Stack.of(node);
  if (node instanceof iam.CfnPolicy || node instanceof iam.CfnManagedPolicy)
    return [stack.resolve(node.policyDocument)];
  if (node instanceof iam.CfnRole) {
    const inline = (stack.resolve(node.policies) ?? []) as Array<{
      policyDocument?: unknown;
      PolicyDocument?: unknown;
    }>;
    return inline.map((p) => stack.resolve(p.policyDocument ?? p.PolicyDocument));
  }
  return [];
};

const allowStatements = (document: unknown): Array<{ actions: string[]; resources: unknown[] }> => {
  const statements = ((document as { Statement?: unknown[] } | undefined)?.Statement ?? []) as Array<
    Record<string, unknown>
  >;
  const list = (v: unknown): unknown[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
  return statements
    .filter((s) => s.Effect === 'Allow')
    .map((s) => ({ actions: list(s.Action).map(String), resources: list(s.Resource) }));
};

/** Findings `Action::<action>` for each action an identity policy grants on `Resource: "*"` that IAM could scope. */
export const anyResourceFindings = (node: CfnResource): NagRuleResult => {
  const docs = identityDocuments(node);
  if (docs.length === 0) return NagRuleCompliance.NOT_APPLICABLE;
  const findings = new Set<string>();
  for (const s of docs.flatMap(allowStatements)) {
    if (!s.resources.includes('*')) continue;
    for (const a of s.actions)
      if (!(a in ACTIONS_WITHOUT_RESOURCE_LEVEL_PERMISSIONS)) findings.add(`Action::${a}`);
  }
  return findings.size > 0 ? [...findings] : NagRuleCompliance.COMPLIANT;
};

/** Findings `Action::<action>` for each wildcard action an identity policy grants. */
export const wildcardActionFindings = (node: CfnResource): NagRuleResult => {
  const docs = identityDocuments(node);
  if (docs.length === 0) return NagRuleCompliance.NOT_APPLICABLE;
  const findings = new Set<string>();
  for (const s of docs.flatMap(allowStatements))
    for (const a of s.actions) if (a.includes('*') || a.includes('?')) findings.add(`Action::${a}`);
  return findings.size > 0 ? [...findings] : NagRuleCompliance.COMPLIANT;
};

/**
 * Autopatch's own checks, next to cdk-nag's AwsSolutions: acknowledgements of AwsSolutions-IAM5 name
 * resource patterns, so a new action on `Resource: "*"` would pass under an existing
 * `AwsSolutions-IAM5[Resource::*]`. These fail synth on any role that grants an action on "*" that
 * IAM could scope, or any wildcard action, unless acknowledged finding by finding
 * (`Autopatch-IAMAnyResource[Action::s3:GetObject]`).
 */
export class AutopatchChecks extends NagPack {
  readonly name = 'Autopatch';

  constructor(scope?: IConstruct, props?: NagPackProps) {
    super(scope, props);
    this.packName = 'Autopatch';
  }

  protected checkResource(node: CfnResource): void {
    this.applyRule({
      ruleSuffixOverride: 'IAMAnyResource',
      info: 'The IAM policy grants an action on Resource "*" that supports resource-level permissions.',
      explanation:
        'Only actions IAM cannot scope (ACTIONS_WITHOUT_RESOURCE_LEVEL_PERMISSIONS in lib/nag.ts) may be granted on "*"; name the resources instead.',
      level: NagMessageLevel.ERROR,
      node,
      rule: anyResourceFindings,
    });
    this.applyRule({
      ruleSuffixOverride: 'IAMWildcardAction',
      info: 'The IAM policy grants a wildcard action.',
      explanation: 'Grant the concrete actions the code calls (lib/grants.ts).',
      level: NagMessageLevel.ERROR,
      node,
      rule: wildcardActionFindings,
    });
  }
}
