/**
 * The spoke as a workload account has it: the AutopatchSpokeStack of lib/spoke.ts, synthesized for
 * that account and Region the way bin/organization.ts builds it, and read back from the template: the
 * spoke role (its name, path, trust policy and inline policies) and the rules that forward the
 * account's events to the hub's bus. Nothing here is written by hand: a statement added to
 * lib/spoke.ts shows up here on the next run.
 *
 * Synthesis takes a few seconds, so the result is cached under node_modules/.cache like the hub's
 * stack (simulation/stack.ts), keyed by the sources and the spoke's props.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { CACHE_DIR, cacheKey, resolver } from '../stack';
import type { PolicyDocument } from './policies';

/** What a spoke stack is synthesized with (AutopatchSpokeProps the simulation uses). */
export interface SpokeStackProps {
  readonly account: string;
  readonly region: string;
  readonly hubAccount: string;
  readonly hubRegion: string;
  readonly organizationId?: string;
  readonly roleName?: string;
  /** Create the role (IAM is global: in one Region of the account). */
  readonly createRole: boolean;
  readonly forwardEvents: boolean;
  readonly registry: boolean;
}

export interface SpokeRole {
  readonly arn: string;
  readonly trust: PolicyDocument;
  readonly policies: ReadonlyArray<{ readonly name: string; readonly policy: PolicyDocument }>;
  readonly maxSessionSeconds: number;
}

export interface SpokeTemplate {
  readonly role?: SpokeRole;
  /** The forwarding rules: their event patterns (every target is the hub's default bus). */
  readonly rules: ReadonlyArray<{ readonly name: string; readonly pattern: Record<string, unknown> }>;
}

type Resource = { Type: string; Properties?: Record<string, unknown> };
const CACHE_VERSION = 1;
const memo = new Map<string, Promise<SpokeTemplate>>();

const synthesize = async (props: SpokeStackProps): Promise<Record<string, Resource>> => {
  const [{ App }, { Template }, { AutopatchSpokeStack }] = await Promise.all([
    import('aws-cdk-lib'),
    import('aws-cdk-lib/assertions'),
    import('../../lib/spoke'),
  ]);
  const app = new App({ builtinCloudFormationValidation: false });
  const stack = new AutopatchSpokeStack(app, 'AutopatchSpoke', {
    env: { account: props.account, region: props.region },
    hubAccount: props.hubAccount,
    hubRegion: props.hubRegion,
    ...(props.organizationId !== undefined ? { organizationId: props.organizationId } : {}),
    ...(props.roleName !== undefined ? { roleName: props.roleName } : {}),
    createRole: props.createRole,
    forwardEvents: props.forwardEvents,
    registry: props.registry,
  });
  return (Template.fromStack(stack).toJSON() as { Resources: Record<string, Resource> }).Resources;
};

const read = (resources: Record<string, Resource>, props: SpokeStackProps): SpokeTemplate => {
  const { resolve } = resolver(resources, props.account, props.region, 'AutopatchSpoke');
  let role: SpokeRole | undefined;
  const rules: Array<{ name: string; pattern: Record<string, unknown> }> = [];
  for (const [id, r] of Object.entries(resources)) {
    const p = resolve(r.Properties ?? {}) as Record<string, unknown>;
    if (r.Type === 'AWS::IAM::Role' && p.Path === '/autopatch/') {
      role = {
        arn: `arn:aws:iam::${props.account}:role/autopatch/${String(p.RoleName)}`,
        trust: p.AssumeRolePolicyDocument as PolicyDocument,
        policies: ((p.Policies ?? []) as Array<{ PolicyName: string; PolicyDocument: PolicyDocument }>).map(
          (x) => ({ name: x.PolicyName, policy: x.PolicyDocument }),
        ),
        maxSessionSeconds: Number(p.MaxSessionDuration ?? 3600),
      };
    }
    if (r.Type === 'AWS::Events::Rule' && p.EventPattern)
      rules.push({ name: id, pattern: p.EventPattern as Record<string, unknown> });
  }
  return { ...(role ? { role } : {}), rules };
};

/** The spoke stack for one account and Region, from the cache when lib/ has not changed. */
export const spokeTemplate = (props: SpokeStackProps): Promise<SpokeTemplate> => {
  const key = createHash('sha256').update(JSON.stringify(props)).digest('hex').slice(0, 16);
  let memoized = memo.get(key);
  if (!memoized) {
    memoized = (async () => {
      const file = path.join(CACHE_DIR, `spoke-${cacheKey()}-${key}.json`);
      try {
        const cached = JSON.parse(readFileSync(file, 'utf8')) as {
          version: number;
          resources: Record<string, Resource>;
        };
        if (cached.version === CACHE_VERSION) return read(cached.resources, props);
      } catch {
        // Not cached yet.
      }
      const resources = await synthesize(props);
      try {
        mkdirSync(CACHE_DIR, { recursive: true });
        writeFileSync(file, JSON.stringify({ version: CACHE_VERSION, resources }));
      } catch {
        // Read-only checkout: synthesize every time.
      }
      return read(resources, props);
    })();
    memo.set(key, memoized);
  }
  return memoized;
};
