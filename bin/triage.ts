/**
 * npm run triage -- --inventory <inventory.json> [--policy <policy.json>] [--now <ISO time>] <event.json>...
 *
 * Runs triage's own parsing, policy, resolution and aggregation code locally, with no AWS account,
 * and prints one JSON document: what was decided for each finding and which remediations would start.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { workflowDefaultsSchema } from '../lambdas/shared/config';
import { InventoryResolver } from '../lambdas/triage/inventory';
import { DEFAULT_POLICY, parsePolicy } from '../lambdas/triage/policy';
import { planBatch, requestProblem, type TriageInput } from '../lambdas/triage/triage';

const USAGE =
  'usage: npm run triage -- --inventory <inventory.json> [--policy <policy.json>] [--now <ISO time>] <event.json>...';

const fail = (message: string): never => {
  process.stderr.write(`triage: ${message}\n${USAGE}\n`);
  process.exit(2);
};

const readJson = (path: string, what: string): unknown => {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    return fail(`cannot read ${what} ${path}: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    return fail(`${what} ${path} is not valid JSON: ${(error as Error).message}`);
  }
};

const parseCli = () =>
  parseArgs({
    options: {
      inventory: { type: 'string' },
      policy: { type: 'string' },
      now: { type: 'string' },
      help: { type: 'boolean' },
    },
    allowPositionals: true,
  });

const main = async (): Promise<void> => {
  let parsed: ReturnType<typeof parseCli>;
  try {
    parsed = parseCli();
  } catch (error) {
    return fail((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (!values.inventory) return fail('--inventory is required');
  if (positionals.length === 0) return fail('at least one event file is required');
  const now = values.now ? new Date(values.now) : new Date();
  if (Number.isNaN(now.getTime())) return fail(`--now ${values.now} is not a time`);

  let resolver: InventoryResolver;
  try {
    resolver = InventoryResolver.fromSnapshot(readJson(values.inventory, 'inventory'));
  } catch (error) {
    return fail(`inventory ${values.inventory}: ${(error as Error).message}`);
  }
  let policy: ReturnType<typeof parsePolicy>;
  try {
    policy = parsePolicy(values.policy ? readJson(values.policy, 'policy') : DEFAULT_POLICY);
  } catch (error) {
    return fail(`policy ${values.policy}: ${(error as Error).message}`);
  }

  // A file that is not valid JSON is one rejected input; the others are still triaged.
  const inputs: TriageInput[] = [];
  const unreadable: Array<{ id: string; reason: string }> = [];
  for (const file of positionals) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      unreadable.push({ id: file, reason: `cannot read file: ${(error as Error).message}` });
      continue;
    }
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (error) {
      unreadable.push({ id: file, reason: `not valid JSON: ${(error as Error).message}` });
      continue;
    }
    if (Array.isArray(doc)) {
      for (const [i, event] of doc.entries()) inputs.push({ id: `${file}#${i}`, event });
    } else inputs.push({ id: file, event: doc });
  }

  const plan = await planBatch(inputs, {
    policy,
    resolver,
    targets: [],
    defaults: workflowDefaultsSchema.parse({}),
    now: () => now,
  });
  const problems = new Map(
    plan.remediations.flatMap(({ request }) => {
      const problem = requestProblem(request);
      return problem ? [[request, problem] as const] : [];
    }),
  );
  const output = {
    findings: [
      ...unreadable.map((u) => ({ id: u.id, action: 'reject', reason: u.reason, services: [] })),
      ...plan.findings.map((f) => ({
        id: f.id,
        ...(f.findingArn ? { findingArn: f.findingArn } : {}),
        action: f.action,
        reason: f.reason,
        services: f.services,
      })),
    ],
    remediations: plan.remediations.map(({ request }) => ({
      service: request.service.key,
      action: request.decision.action,
      ...(request.decision.notBefore ? { notBefore: request.decision.notBefore } : {}),
      images: request.images.map((i) => ({
        repository: i.repository,
        imageDigest: i.imageDigest,
        containers: i.containers,
        cves: i.cves,
        severity: i.severity,
        rebuild: i.rebuild.mode,
      })),
      executionName: request.executionName,
      // What the Lambda would drop instead of starting (and why); absent when it would start.
      ...(problems.has(request) ? { rejected: problems.get(request) } : {}),
    })),
  };
  process.stdout.write(`${JSON.stringify(output, null, 2)}\n`);
};

main().catch((error: unknown) => {
  process.stderr.write(`triage: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
