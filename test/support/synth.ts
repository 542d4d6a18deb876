import { App, CfnElement, type Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import type { AutopatchProps } from '../../lib/autopatch';
import { AutopatchStack } from '../../lib/stack';

export interface SynthOptions {
  /** Construct props; when absent the stack reads them from `context` as `cdk synth` does. */
  readonly props?: AutopatchProps;
  /** Extra CDK context (e.g. `autopatch`, `autopatchPolicyFile`). */
  readonly context?: Record<string, unknown>;
  /**
   * Run CloudFormation's template validation during synth, strictly: any finding fails the synth
   * (see `validatingApp`). Off by default (see `testApp`).
   */
  readonly cfnValidation?: boolean;
}

export interface Synthesized {
  readonly app: App;
  readonly stack: AutopatchStack;
  readonly template: Template;
}

/** No bundling: an empty `aws:cdk:bundling-stacks` makes NodejsFunction skip esbuild. */
export const NO_BUNDLING = { 'aws:cdk:bundling-stacks': [] as string[] };

/**
 * An App for tests: no bundling (a synth needs no Docker and does not depend on the Lambda sources
 * compiling), and no built-in CloudFormation template validation. That validation starts a WASM
 * engine that costs about 10 s of CPU in every test file that synthesizes, and in a test synth it
 * asserts nothing: without the `@aws-cdk/core:validateAgainstDefaultRules` flag its errors are
 * downgraded to printed warnings and the synth succeeds. `validatingApp` runs it strictly instead,
 * once per file, over the configurations test/infra/autopatch.test.ts names.
 */
export const testApp = (context: Record<string, unknown> = {}): App =>
  new App({ context: { ...NO_BUNDLING, ...context }, builtinCloudFormationValidation: false });

/**
 * An App whose synth runs CloudFormation's template validation (as `cdk synth` does) and fails on
 * any finding: errors are not downgraded to warnings, and warnings count as errors.
 */
export const validatingApp = (context: Record<string, unknown> = {}): App =>
  new App({
    context: {
      ...NO_BUNDLING,
      '@aws-cdk/core:validateAgainstDefaultRules': true,
      '@aws-cdk/core:strictCfnValidateErrors': true,
      ...context,
    },
    builtinCloudFormationValidation: true,
  });

/**
 * Build the AutopatchStack the way bin/autopatch.ts does, in a `testApp` (or a `validatingApp` with
 * `cfnValidation`), so a synth takes about a second.
 */
export const synthAutopatch = (options: SynthOptions = {}): Synthesized => {
  const app = options.cfnValidation ? validatingApp(options.context) : testApp(options.context);
  const stack = new AutopatchStack(app, 'AutopatchStack', options.props ? { autopatch: options.props } : {});
  return { app, stack, template: Template.fromStack(stack) };
};

export interface NagFinding {
  /** Rule id, with the finding for granular rules, e.g. `AwsSolutions-IAM5[Resource::*]`. */
  readonly rule: string;
  readonly path: string;
  readonly description: string;
}

/**
 * The cdk-nag AwsSolutions findings that are not acknowledged. cdk-nag v3 is a policy-validation
 * plugin (the CLI reports its violations in policy-validation-report.json and fails synth);
 * `validateScope` runs the same rules over the construct tree directly, honouring
 * `Validations.of(x).acknowledge(...)` exactly as synth does.
 */
export const unacknowledgedNagFindings = (scope: IConstruct): NagFinding[] =>
  new AwsSolutionsChecks().validateScope(scope).violations.flatMap((violation) =>
    violation.violatingResources.map((resource) => ({
      rule: violation.ruleName,
      path: resource.constructPath ?? '(unknown)',
      description: violation.description,
    })),
  );

/** One statement of any policy in a template, with where it lives. */
export interface FoundStatement {
  readonly logicalId: string;
  /** Construct path of the resource that holds the policy. */
  readonly path: string;
  readonly sid?: string;
  readonly type: string;
  /** Identity policies (IAM) vs resource policies (queue, topic, key). */
  readonly kind: 'identity' | 'resource';
  readonly effect: string;
  readonly actions: string[];
  readonly resources: unknown[];
  readonly principal: unknown;
  readonly condition: unknown;
}

type Json = Record<string, unknown>;
const asArray = (value: unknown): unknown[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

const statementsOf = (document: unknown): Json[] =>
  asArray((document as Json | undefined)?.Statement).filter(
    (s): s is Json => typeof s === 'object' && s !== null,
  );

/** Construct path of each resource, by logical id (tests synthesize without path metadata). */
const constructPaths = (stack: Stack): Map<string, string> =>
  new Map(
    stack.node
      .findAll()
      .filter((c): c is CfnElement => CfnElement.isCfnElement(c))
      .map((c) => [stack.getLogicalId(c), c.node.path]),
  );

/** Every policy statement in the template: IAM policies, inline role policies, queue, topic and key policies. */
export const policyStatements = (stack: Stack, template: Template): FoundStatement[] => {
  const paths = constructPaths(stack);
  const found: FoundStatement[] = [];
  const resources = (template.toJSON().Resources ?? {}) as Record<
    string,
    { Type: string; Properties?: Json }
  >;
  for (const [logicalId, { Type: type, Properties: props = {} }] of Object.entries(resources)) {
    const documents: Array<[unknown, FoundStatement['kind']]> = [];
    if (type === 'AWS::IAM::Policy' || type === 'AWS::IAM::ManagedPolicy')
      documents.push([props.PolicyDocument, 'identity']);
    if (type === 'AWS::IAM::Role') {
      for (const p of asArray(props.Policies)) documents.push([(p as Json).PolicyDocument, 'identity']);
    }
    if (type === 'AWS::SQS::QueuePolicy' || type === 'AWS::SNS::TopicPolicy')
      documents.push([props.PolicyDocument, 'resource']);
    if (type === 'AWS::KMS::Key') documents.push([props.KeyPolicy, 'resource']);
    for (const [document, kind] of documents) {
      for (const s of statementsOf(document)) {
        found.push({
          logicalId,
          path: paths.get(logicalId) ?? logicalId,
          ...(typeof s.Sid === 'string' ? { sid: s.Sid } : {}),
          type,
          kind,
          effect: String(s.Effect),
          actions: asArray(s.Action).map(String),
          resources: asArray(s.Resource),
          principal: s.Principal,
          condition: s.Condition,
        });
      }
    }
  }
  return found;
};

/** The logical id of a construct's CloudFormation resource. */
export const logicalIdOf = (stack: Stack, construct: IConstruct): string =>
  stack.getLogicalId(construct.node.defaultChild as CfnElement);
