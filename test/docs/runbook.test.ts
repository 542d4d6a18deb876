/**
 * docs/runbook.md has an entry for every way the REAL workflow definition can end and for every alarm
 * the construct creates, and each entry says what it means, what Autopatch did, what to check and what
 * to do next.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { OUTCOMES } from '../../lambdas/shared/contracts';
import { AutopatchStack } from '../../lib/stack';

const ROOT = path.resolve(__dirname, '..', '..');
const RUNBOOK = readFileSync(path.join(ROOT, 'docs', 'runbook.md'), 'utf8');

interface State {
  readonly Type: string;
  readonly Result?: unknown;
  readonly ResultPath?: string;
  readonly Error?: string;
  readonly Choices?: ReadonlyArray<{ readonly StringEquals?: string; readonly Next: string }>;
  readonly Default?: string;
}
const definition = JSON.parse(
  readFileSync(path.join(ROOT, 'statemachines', 'remediation.asl.json'), 'utf8'),
) as { States: Record<string, State> };
const states = Object.entries(definition.States);

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
const slug = (heading: string): string =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s-]/gu, '')
    .replace(/\s/g, '-');

/** The `### ` entries under one `## ` section, with their text. */
const entries = (section: string): Map<string, string> => {
  const start = RUNBOOK.indexOf(`\n## ${section}\n`);
  if (start < 0) throw new Error(`docs/runbook.md has no "## ${section}" section`);
  const rest = RUNBOOK.slice(start + section.length + 5);
  const end = rest.search(/\n## /);
  const body = end < 0 ? rest : rest.slice(0, end);
  const found = new Map<string, string>();
  for (const part of body.split(/\n### /).slice(1)) {
    const newline = part.indexOf('\n');
    found.set(part.slice(0, newline).trim(), part.slice(newline + 1));
  }
  return found;
};

const outcomeEntries = entries('Outcomes');
const alarmEntries = entries('Alarms on Autopatch itself');

/** The workflow's terminal states (top level: the Fail states inside the Map end one iteration only). */
const terminal = states.filter(([, s]) => s.Type === 'Succeed' || s.Type === 'Fail').map(([name]) => name);

/** "Which outcome?" routes each recorded outcome to its terminal state; its Default takes the rest. */
const router = states.find(
  ([, s]) => s.Type === 'Choice' && (s.Choices ?? []).every((c) => terminal.includes(c.Next)),
)?.[1];
const outcomeOfTerminal = new Map<string, string>([
  ...(router?.Choices ?? []).map((c) => [c.Next, c.StringEquals ?? ''] as [string, string]),
  ...(router?.Default ? [[router.Default, 'Failed'] as [string, string]] : []),
]);

/** Outcome names the definition sets ($.outcome) or routes on, and the contract's list. */
const outcomeNames = [
  ...new Set([
    ...states.filter(([, s]) => s.ResultPath === '$.outcome').map(([, s]) => String(s.Result)),
    ...(router?.Choices ?? []).map((c) => c.StringEquals ?? ''),
    ...OUTCOMES,
  ]),
].sort();

describe('docs/runbook.md', () => {
  test('reads the real definition: its terminal states and outcomes', () => {
    expect(terminal.length).toBeGreaterThanOrEqual(OUTCOMES.length);
    expect(router).toBeDefined();
    expect(outcomeNames).toEqual([...OUTCOMES].sort());
  });

  test.each(outcomeNames)('has an entry for outcome %s', (outcome) => {
    expect([...outcomeEntries.keys()]).toContain(outcome);
  });

  test.each(terminal)('has an entry for the terminal state "%s"', (state) => {
    // Reached through "Which outcome?": the outcome's entry; otherwise an entry by the state's name.
    const heading = outcomeOfTerminal.get(state) ?? state;
    expect([...outcomeEntries.keys()]).toContain(heading);
    // And the entry says which way the execution ends, by the state's name as the console shows it.
    expect(outcomeEntries.get(heading)).toContain(`**Execution ends in**: \`${state}\``);
  });

  test('has no outcome entry for something the workflow cannot end in', () => {
    const known = new Set([...outcomeNames, ...terminal]);
    expect([...outcomeEntries.keys()].filter((h) => !known.has(h))).toEqual([]);
  });

  test('the notification’s runbook link (docs/runbook.md#<outcome>) lands on each outcome’s entry', () => {
    const anchors = new Set([...outcomeEntries.keys()].map(slug));
    for (const outcome of OUTCOMES) expect(anchors).toContain(outcome.toLowerCase());
  });

  describe('alarms', () => {
    /** Every alarm in the smallest deployment with its dashboard, by logical id → description. */
    let descriptions: Map<string, string>;

    beforeAll(() => {
      const app = new App({
        context: { 'aws:cdk:bundling-stacks': [] },
        builtinCloudFormationValidation: false,
      });
      const stack = new AutopatchStack(app, 'AutopatchStack', { autopatch: {} });
      const alarms = Template.fromStack(stack).findResources('AWS::CloudWatch::Alarm');
      descriptions = new Map(
        Object.entries(alarms).map(([id, r]) => [id, String(r.Properties?.AlarmDescription ?? '')]),
      );
    });

    test('the construct creates alarms', () => {
      expect(descriptions.size).toBeGreaterThanOrEqual(4);
    });

    test('every alarm links to its runbook entry, and the entry exists', () => {
      const anchors = new Set([...alarmEntries.keys()].map(slug));
      for (const [id, description] of descriptions) {
        const link = /docs\/runbook\.md#([a-z0-9-]+)/.exec(description);
        expect({ id, link: link?.[1] }).toEqual({ id, link: expect.any(String) });
        expect(anchors).toContain(link?.[1]);
      }
    });

    test('every alarm entry belongs to an alarm the construct creates', () => {
      const linked = new Set(
        [...descriptions.values()].map((d) => /docs\/runbook\.md#([a-z0-9-]+)/.exec(d)?.[1]),
      );
      expect([...alarmEntries.keys()].filter((h) => !linked.has(slug(h)))).toEqual([]);
    });
  });

  test.each([
    ...[...outcomeEntries].map(([h, t]) => [`outcome ${h}`, t] as const),
    ...[...alarmEntries].map(([h, t]) => [`alarm ${h}`, t] as const),
  ])(
    'the entry for %s says what it means, what Autopatch did, what to check and do, and where',
    (_, text) => {
      for (const label of ['**Means**:', '**Autopatch did**:', '**Check**:', '**Do next**:']) {
        expect(text).toContain(label);
      }
      // A console path ("… console → …") or a command to run.
      expect(text).toMatch(/console →|`aws |npm run /);
    },
  );
});
