import { Token } from 'aws-cdk-lib';
import type { z } from 'zod';
import { issueProblems, type Problem } from '../lambdas/triage/schema/issues';

const problemText = (p: Problem): string => `${p.path}: ${p.message}`;

/**
 * Token-aware validation helpers for construct props. A token (a reference such as
 * `cluster.clusterName`, or a parameter's `valueAsNumber`) has no value until deploy, so it cannot be
 * checked at synth: issues about a token are dropped, everything else is reported.
 */

const isRecord = (value: unknown): value is Record<PropertyKey, unknown> =>
  typeof value === 'object' && value !== null;

const isPlain = (value: unknown): value is Record<PropertyKey, unknown> =>
  isRecord(value) &&
  (Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null);

const valueAt = (root: unknown, path: readonly PropertyKey[]): unknown =>
  path.reduce<unknown>((value, segment) => (isRecord(value) ? value[segment] : undefined), root);

/** True when the value, or anything inside it, is a token. */
export const containsToken = (value: unknown): boolean => {
  if (Token.isUnresolved(value)) return true;
  if (Array.isArray(value)) return value.some(containsToken);
  if (isPlain(value)) return Object.values(value).some(containsToken);
  return false;
};

/** Copies plain objects and arrays; anything else (tokens included) is kept by reference. */
const copyPlain = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(copyPlain);
  if (isPlain(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, copyPlain(v)]));
  return value;
};

export type Parsed<T> =
  | { readonly value: T; readonly errors?: undefined }
  | { readonly value?: undefined; readonly errors: string[] };

/**
 * Parse `input` with `schema`, reporting each issue as `<path>: <message>`. A token that fails a check
 * (a number token is a huge negative number until deploy) is set aside, the rest is parsed with the
 * schema's defaults, and the token is put back in the result.
 */
export const parseTokenAware = <S extends z.ZodType>(
  schema: S,
  input: unknown,
  prefix: string,
): Parsed<z.output<S>> => {
  const first = schema.safeParse(input);
  if (first.success) return { value: first.data };

  const tokenPaths: PropertyKey[][] = [];
  const errors: string[] = [];
  for (const issue of first.error.issues) {
    const path = [...issue.path];
    const last = path.at(-1);
    if (typeof last === 'string' && Token.isUnresolved(valueAt(input, path))) tokenPaths.push(path);
    else errors.push(...issueProblems([issue], { root: prefix, messages: 'zod' }).map(problemText));
  }
  if (errors.length > 0) return { errors };

  const stripped = copyPlain(input);
  for (const path of tokenPaths) {
    const parent = valueAt(stripped, path.slice(0, -1));
    if (isRecord(parent)) delete parent[path.at(-1) as PropertyKey];
  }
  const second = schema.safeParse(stripped);
  if (!second.success) {
    return {
      errors: issueProblems(second.error.issues, { root: prefix, messages: 'zod' }).map(problemText),
    };
  }
  for (const path of tokenPaths) {
    const parent = valueAt(second.data, path.slice(0, -1));
    if (isRecord(parent)) parent[path.at(-1) as PropertyKey] = valueAt(input, path);
  }
  return { value: second.data };
};
