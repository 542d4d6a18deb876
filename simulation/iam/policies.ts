/**
 * Who may do what in the simulated account, read from the synthesized template: every IAM role the
 * stack creates with the identity policies attached to it, and the resource policies that a call can
 * touch (queue and topic policies, the KMS key policy, Lambda permissions). Nothing here is written by
 * hand: a statement added to lib/ shows up here on the next run.
 */
import type { ResolvedTemplate } from '../stack';

export type PolicyDocument = { readonly Version?: string; readonly Statement: readonly unknown[] };

export interface IamPrincipal {
  /** How the simulation names it: 'triage', a workflow role ('restore'), 'stateMachine', 'codebuild:<project>'. */
  readonly name: string;
  readonly roleArn: string;
  /** The role's logical id in the template. */
  readonly roleId: string;
  readonly identityPolicies: ReadonlyArray<{ readonly name: string; readonly policy: PolicyDocument }>;
  /** Managed policy ARNs attached to the role: not evaluated (none today; reported if one appears). */
  readonly managedPolicyArns: readonly string[];
}

export interface IamModel {
  readonly accountId: string;
  readonly region: string;
  readonly partition: string;
  /** By simulation name. */
  readonly principals: ReadonlyMap<string, IamPrincipal>;
  /** Resource policies by the ARN of the resource they protect (queue, topic, key, function). */
  readonly resourcePolicies: ReadonlyMap<string, PolicyDocument>;
  /** The KMS key (ARN) that encrypts a resource (topic, queue, table, build project), by its ARN. */
  readonly keys: ReadonlyMap<string, string>;
  /** CodeBuild project name → principal name of its service role. */
  readonly projectPrincipals: ReadonlyMap<string, string>;
  /** Lambda function ARN → principal name of its execution role. */
  readonly functionPrincipals: ReadonlyMap<string, string>;
}

type Json = Record<string, unknown>;
const asArray = (v: unknown): unknown[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
const refId = (v: unknown): string | undefined => {
  const o = v as Json | undefined;
  if (o && typeof o.Ref === 'string') return o.Ref;
  const att = o?.['Fn::GetAtt'];
  if (Array.isArray(att) && typeof att[0] === 'string') return att[0];
  return undefined;
};
const documentOf = (v: unknown): PolicyDocument | undefined => {
  const d = v as Json | undefined;
  return d && Array.isArray(d.Statement) ? (d as unknown as PolicyDocument) : undefined;
};

/** The IAM view of the synthesized stack, for one simulated account. */
export const iamModel = (
  t: ResolvedTemplate,
  accountId: string,
  region: string,
  /** Also the inventory index's functions (the simulation runs them in organization scenarios). */
  options: { readonly inventory?: boolean } = {},
): IamModel => {
  const partition = 'aws';
  const names = new Map<string, string>(); // role logical id → principal name
  const functionPrincipals = new Map<string, string>();
  const projectPrincipals = new Map<string, string>();
  const keys = new Map<string, string>();

  for (const [id, r] of Object.entries(t.raw)) {
    const p = (r.Properties ?? {}) as Json;
    if (r.Type === 'AWS::Lambda::Function') {
      const role = refId(p.Role);
      const name =
        id === t.ids.triageFunction
          ? 'triage'
          : (t.functionRoles[id] ?? (options.inventory ? t.inventoryRoles[id] : undefined));
      if (role && name) {
        names.set(role, name);
        functionPrincipals.set(t.arnOf(id), name);
      }
    }
    if (r.Type === 'AWS::StepFunctions::StateMachine' && id === t.ids.stateMachine) {
      const role = refId(p.RoleArn);
      if (role) names.set(role, 'stateMachine');
    }
    if (r.Type === 'AWS::CodeBuild::Project') {
      const role = refId(p.ServiceRole);
      const project = t.refOf(id);
      if (role) {
        names.set(role, `codebuild:${project}`);
        projectPrincipals.set(project, `codebuild:${project}`);
      }
      const key = refId(p.EncryptionKey);
      if (key) keys.set(t.arnOf(id), t.arnOf(key));
    }
    const keyProperty =
      r.Type === 'AWS::SNS::Topic' || r.Type === 'AWS::SQS::Queue'
        ? p.KmsMasterKeyId
        : r.Type === 'AWS::DynamoDB::Table'
          ? (p.SSESpecification as Json | undefined)?.KMSMasterKeyId
          : undefined;
    const key = refId(keyProperty);
    if (key && t.raw[key]?.Type === 'AWS::KMS::Key') {
      // A topic's Ref is its ARN; a queue's and a table's ARN is their GetAtt.
      keys.set(r.Type === 'AWS::SNS::Topic' ? t.refOf(id) : t.arnOf(id), t.arnOf(key));
    }
  }

  const policies = new Map<string, Array<{ name: string; policy: PolicyDocument }>>();
  const managed = new Map<string, string[]>();
  for (const [id, r] of Object.entries(t.raw)) {
    const resolved = (t.resolved[id]?.Properties ?? {}) as Json;
    if (r.Type === 'AWS::IAM::Role') {
      for (const inline of asArray(resolved.Policies) as Json[]) {
        const doc = documentOf(inline.PolicyDocument);
        if (doc)
          policies.set(id, [...(policies.get(id) ?? []), { name: String(inline.PolicyName), policy: doc }]);
      }
      managed.set(id, asArray(resolved.ManagedPolicyArns).map(String));
    }
    if (r.Type === 'AWS::IAM::Policy' || r.Type === 'AWS::IAM::ManagedPolicy') {
      const doc = documentOf(resolved.PolicyDocument);
      if (!doc) continue;
      for (const role of asArray((r.Properties as Json | undefined)?.Roles)) {
        const roleId = refId(role) ?? String(role);
        policies.set(roleId, [...(policies.get(roleId) ?? []), { name: id, policy: doc }]);
      }
    }
  }

  const principals = new Map<string, IamPrincipal>();
  for (const [roleId, name] of names) {
    principals.set(name, {
      name,
      roleArn: t.arnOf(roleId),
      roleId,
      identityPolicies: policies.get(roleId) ?? [],
      managedPolicyArns: managed.get(roleId) ?? [],
    });
  }

  const resourcePolicies = new Map<string, PolicyDocument>();
  const addStatements = (arn: string, statements: readonly unknown[]) => {
    const existing = resourcePolicies.get(arn);
    resourcePolicies.set(arn, {
      Version: '2012-10-17',
      Statement: [...(existing?.Statement ?? []), ...statements],
    });
  };
  for (const [id, r] of Object.entries(t.raw)) {
    const raw = (r.Properties ?? {}) as Json;
    const resolved = (t.resolved[id]?.Properties ?? {}) as Json;
    if (r.Type === 'AWS::SQS::QueuePolicy' || r.Type === 'AWS::SNS::TopicPolicy') {
      const doc = documentOf(resolved.PolicyDocument);
      const targets = asArray(r.Type === 'AWS::SQS::QueuePolicy' ? raw.Queues : raw.Topics);
      for (const target of targets) {
        const targetId = refId(target);
        if (!doc || !targetId) continue;
        addStatements(
          r.Type === 'AWS::SQS::QueuePolicy' ? t.arnOf(targetId) : t.refOf(targetId),
          doc.Statement,
        );
      }
    }
    if (r.Type === 'AWS::KMS::Key') {
      const doc = documentOf(resolved.KeyPolicy);
      if (doc) addStatements(t.arnOf(id), doc.Statement);
    }
    if (r.Type === 'AWS::Lambda::Permission') {
      const fn = String(resolved.FunctionName);
      const principal = String(resolved.Principal);
      const conditions: Json = {};
      if (resolved.SourceArn) conditions.ArnLike = { 'aws:SourceArn': resolved.SourceArn };
      if (resolved.SourceAccount) conditions.StringEquals = { 'aws:SourceAccount': resolved.SourceAccount };
      addStatements(fn, [
        {
          Sid: id,
          Effect: 'Allow',
          Principal: principal.endsWith('.amazonaws.com') ? { Service: principal } : { AWS: principal },
          Action: resolved.Action,
          Resource: fn,
          ...(Object.keys(conditions).length > 0 ? { Condition: conditions } : {}),
        },
      ]);
    }
  }

  return {
    accountId,
    region,
    partition,
    principals,
    resourcePolicies,
    keys,
    projectPrincipals,
    functionPrincipals,
  };
};
