/**
 * Repository patterns, compiled once per policy to one anchored RegExp (evaluate runs per finding,
 * tens of thousands of times in a burst).
 *
 * Syntax, on ECR repository names (lowercase, path segments separated by '/'):
 * - `*` matches any characters within one segment: "payments/*" matches "payments/api", not
 *   "payments/api/v2";
 * - `**` matches across segments: "payments/**" matches "payments/api/v2"; "**\/api" matches "api"
 *   and "team/x/api";
 * - `?` matches one character other than '/';
 * - anything else matches itself.
 */

/** Characters a pattern may contain: those of ECR repository names, plus the wildcards. */
export const REPOSITORY_PATTERN = /^[a-z0-9._/*?-]+$/;

const escapeChar = (c: string): string => (/[.+^${}()|[\]\\]/.test(c) ? `\\${c}` : c);

/** RegExp source (unanchored) for one pattern. */
export const globSource = (glob: string): string => {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*' && glob[i + 1] === '*') {
      i++;
      if (glob[i + 1] === '/') {
        // "**/" also matches no segment at all, so "payments/**/api" matches "payments/api".
        i++;
        out += '(?:.*/)?';
      } else out += '.*';
    } else if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else out += escapeChar(c);
  }
  return out;
};

/** One anchored RegExp matching any of the patterns. */
export const compileGlobs = (globs: readonly string[]): RegExp =>
  new RegExp(`^(?:${globs.map(globSource).join('|')})$`);
