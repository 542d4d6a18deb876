/**
 * The parts lib/workflow/ composes: the shared Lambda retry policy as renderDefinition applies it, and
 * the invoke grants that follow from the definition's Tasks.
 */
import { readFileSync } from 'node:fs';
import { DEFINITION_FILE, invokedSubstitutions, renderDefinition } from '../../lib/workflow/definition';
import { FUNCTIONS } from '../../lib/workflow/functions';
import { isLambdaInvoke, LAMBDA_TRANSIENT_ERRORS, lambdaRetrier } from '../../lib/workflow/retry-policy';

type State = {
  Type: string;
  Resource?: string;
  Retry?: Array<{ ErrorEquals: string[] }>;
  ItemProcessor?: { States: Record<string, State> };
};
const tasks = (states: Record<string, State>): Array<[string, State]> =>
  Object.entries(states).flatMap(([name, s]) => [
    ...(s.Type === 'Task' ? [[name, s] as [string, State]] : []),
    ...(s.ItemProcessor ? tasks(s.ItemProcessor.States) : []),
  ]);
const lambdaTasks = (definition: string) =>
  tasks((JSON.parse(definition) as { States: Record<string, State> }).States).filter(([, s]) =>
    isLambdaInvoke(s.Resource),
  );

describe('the shared Lambda retry policy', () => {
  const rendered = lambdaTasks(renderDefinition());

  test('every Lambda Task of the rendered definition ends with it', () => {
    expect(rendered.length).toBeGreaterThan(10);
    for (const [name, s] of rendered) {
      expect({ name, last: s.Retry?.at(-1) }).toEqual({ name, last: lambdaRetrier(s.Resource as string) });
    }
  });

  test('a task-token wait does not retry its own timeout; a synchronous invoke does', () => {
    expect(lambdaRetrier('arn:aws:states:::lambda:invoke.waitForTaskToken').ErrorEquals).toEqual([
      ...LAMBDA_TRANSIENT_ERRORS,
    ]);
    expect(lambdaRetrier('arn:aws:states:::lambda:invoke').ErrorEquals).toContain('States.Timeout');
  });

  test('the definition file holds no copy of it: a Lambda Task retries only its own errors there', () => {
    const shared = new Set<string>([...LAMBDA_TRANSIENT_ERRORS, 'States.Timeout']);
    const inFile = lambdaTasks(readFileSync(DEFINITION_FILE, 'utf8'));
    expect(inFile.length).toBe(rendered.length);
    for (const [name, s] of inFile) {
      const own = (s.Retry ?? []).flatMap((r) => r.ErrorEquals).filter((e) => shared.has(e));
      expect({ name, own }).toEqual({ name, own: [] });
    }
    // The rescan is a task-token wait now: its only retrier is the shared one, without States.Timeout
    // (a timeout of the wait goes to its Catch, "Nobody answered the rescan wait in time").
    const verify = rendered.find(([name]) => name === 'Verify the patched image by rescan')?.[1];
    expect(verify?.Retry).toHaveLength(1);
    expect(verify?.Retry?.[0]?.ErrorEquals).not.toContain('States.Timeout');
  });
});

describe('invoke grants follow from the Tasks', () => {
  test('each function a Lambda Task names has a substitution, and each substitution is named by a Task', () => {
    const invoked = new Set(invokedSubstitutions(renderDefinition()));
    const declared = new Set(
      Object.values(FUNCTIONS).flatMap((f) => ('substitution' in f ? [f.substitution] : [])),
    );
    expect(invoked).toEqual(declared);
  });
});
