import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

// What ships (lambdas/, lib/) never loads local-only code: the test server, the Node 20 polyfill,
// the simulation, the benchmarks or the tests.
const ROOT = resolve(__dirname, '../..');
const SHIPPED = ['lambdas', 'lib'];
const LOCAL_ONLY = ['local', 'simulation', 'test', 'bench', 'bin'];

const sources = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return /\.tsx?$/.test(entry.name) ? [path] : [];
  });

/** Module specifiers of static imports, re-exports, dynamic imports and require calls. */
const specifiers = (text: string): string[] =>
  [...text.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)['"]([^'"]+)['"]/g)].map(
    (m) => m[1] as string,
  );

describe('module boundaries', () => {
  it('finds the sources it checks', () => {
    expect(SHIPPED.flatMap((dir) => sources(join(ROOT, dir))).length).toBeGreaterThan(20);
  });

  it.each(SHIPPED)('%s/ imports nothing local-only', (dir) => {
    const offending = sources(join(ROOT, dir)).flatMap((file) =>
      specifiers(readFileSync(file, 'utf8'))
        .filter((spec) => spec.startsWith('.'))
        .filter((spec) => {
          const top = relative(ROOT, resolve(file, '..', spec)).split(/[\\/]/)[0];
          return top !== undefined && LOCAL_ONLY.includes(top);
        })
        .map((spec) => `${relative(ROOT, file)} imports ${spec}`),
    );
    expect(offending).toEqual([]);
  });
});
