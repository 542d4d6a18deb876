/**
 * Every example policy people copy must parse: examples/*.json that hold a policy, and every JSON
 * block in the README and docs/ that is one (it has "rules"). The example policy shows the deadline
 * and exploitation fields, so they are documented by something that is checked.
 */
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parsePolicy } from '../../lambdas/triage/policy';

const ROOT = path.join(__dirname, '..', '..');
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');

/** The ```json blocks of a Markdown file that are policies (objects with "rules"). */
const policyBlocks = (file: string): Array<[string, unknown]> =>
  [...read(file).matchAll(/```json\n([\s\S]*?)```/g)]
    .map((m, i): [string, unknown] => [`${file} json block ${i + 1}`, JSON.parse(m[1] as string)])
    .filter(([, json]) => typeof json === 'object' && json !== null && 'rules' in json);

const exampleFiles = readdirSync(path.join(ROOT, 'examples'))
  .filter((f) => f.endsWith('.json'))
  .map((f) => `examples/${f}`)
  .filter((f) => 'rules' in (JSON.parse(read(f)) as object));

const docs = ['README.md', ...readdirSync(path.join(ROOT, 'docs')).map((f) => `docs/${f}`)].filter((f) =>
  f.endsWith('.md'),
);

describe('example policies', () => {
  it('finds them: examples/policy.json and the policy blocks of the README', () => {
    expect(exampleFiles).toContain('examples/policy.json');
    expect(docs.flatMap(policyBlocks).length).toBeGreaterThan(0);
  });

  it.each([
    ...exampleFiles.map((f): [string, unknown] => [f, JSON.parse(read(f))]),
    ...docs.flatMap(policyBlocks),
  ])('%s parses', (_where, json) => {
    expect(() => parsePolicy(json)).not.toThrow();
  });

  it('examples/policy.json shows deadlines, a rule deadline, kevDueDate, knownExploited and exploitObserved', () => {
    // Act
    const policy = parsePolicy(JSON.parse(read('examples/policy.json')));

    // Assess: as parsed, not only as written.
    expect(policy.deadlines).toEqual({ CRITICAL: '2d', HIGH: '7d', MEDIUM: '30d', LOW: '90d' });
    expect(policy.kevDueDate).toBe(true);
    const rule = (name: string) => policy.rules.find((r) => r.name === name);
    expect(rule('known-exploited')).toMatchObject({ match: { knownExploited: true }, deadline: '24h' });
    expect(rule('exploited-in-the-wild')).toMatchObject({ match: { exploitObserved: true }, deadline: '3d' });
    expect(rule('internet-facing')).toMatchObject({
      match: { serviceTags: { exposure: 'internet' } },
      deadline: '3d',
    });
  });
});
