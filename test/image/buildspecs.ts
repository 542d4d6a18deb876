import { readdirSync } from 'node:fs';
import { join } from 'node:path';

/** The parts of a CodeBuild buildspec (version 0.2) that the image test runs. */
export interface BuildSpec {
  readonly version: string;
  readonly env?: { readonly shell?: string; readonly 'exported-variables'?: readonly string[] };
  readonly phases: Partial<Record<Phase, { readonly commands: readonly string[] }>>;
}

export const PHASES = ['install', 'pre_build', 'build', 'post_build'] as const;
export type Phase = (typeof PHASES)[number];

export const BUILDSPEC_DIR = join(__dirname, '..', '..', 'statemachines', 'buildspecs');

const isBuildSpec = (value: unknown): value is BuildSpec =>
  typeof value === 'object' && value !== null && 'phases' in value && 'version' in value;

/** Every buildspec object and every embedded shell script (exported `*_SCRIPT` strings) of the buildspec modules. */
export const loadBuildSpecs = async (): Promise<{
  readonly specs: ReadonlyMap<string, BuildSpec>;
  readonly scripts: ReadonlyMap<string, string>;
}> => {
  const specs = new Map<string, BuildSpec>();
  const scripts = new Map<string, string>();
  for (const file of readdirSync(BUILDSPEC_DIR)
    .filter((f) => f.endsWith('.ts'))
    .sort()) {
    const module = (await import(join(BUILDSPEC_DIR, file))) as Record<string, unknown>;
    for (const [name, value] of Object.entries(module)) {
      if (isBuildSpec(value)) specs.set(`${file}:${name}`, value);
      else if (typeof value === 'string' && name.endsWith('_SCRIPT')) scripts.set(`${file}:${name}`, value);
    }
  }
  return { specs, scripts };
};

/** The buildspec's commands as one script, in phase order, the way CodeBuild runs them in one shell. */
export const commandsAsScript = (spec: BuildSpec): string => {
  const lines = [`#!/usr/bin/env ${spec.env?.shell ?? 'sh'}`];
  for (const phase of PHASES) {
    const commands = spec.phases[phase]?.commands ?? [];
    if (commands.length > 0) lines.push(`# --- ${phase}`, ...commands);
  }
  return `${lines.join('\n')}\n`;
};

/**
 * A bash script that runs a buildspec the way CodeBuild does (buildspec 0.2): every command in one
 * shell session, phases in order; a failed command ends its phase and marks the build failed
 * (CODEBUILD_BUILD_SUCCEEDING=0); after a failed install or pre_build the build phase is skipped, and
 * post_build always runs. The exported variables are written to `exportsFile` when the shell ends,
 * whatever ended it. Exit status 0 when the build succeeded.
 */
export const driverScript = (spec: BuildSpec, exportsFile: string): string => {
  const exported = spec.env?.['exported-variables'] ?? [];
  const lines = [
    '#!/usr/bin/env bash',
    'export CODEBUILD_BUILD_SUCCEEDING=1',
    `__autopatch_exports() { ${exported.map((v) => `printf '%s=%s\\n' ${v} "\${${v}-}";`).join(' ')} }`,
    `trap '__autopatch_status=$?; __autopatch_exports > ${JSON.stringify(exportsFile)}; exit $__autopatch_status' EXIT`,
    '__autopatch_skip=0',
  ];
  for (const phase of PHASES) {
    const commands = spec.phases[phase]?.commands ?? [];
    if (commands.length === 0) continue;
    lines.push(
      `echo "[test:image] entering phase ${phase}"`,
      phase === 'post_build' ? '__autopatch_ok=1' : '__autopatch_ok=$(( __autopatch_skip == 0 ))',
    );
    commands.forEach((command, i) => {
      lines.push(
        'if [ "$__autopatch_ok" = 1 ]; then',
        `echo "[test:image] running command ${i + 1} of ${phase}"`,
        command,
        '__autopatch_rc=$?',
        `if [ "$__autopatch_rc" != 0 ]; then echo "[test:image] command ${i + 1} of ${phase} failed with exit status $__autopatch_rc"; __autopatch_ok=0; CODEBUILD_BUILD_SUCCEEDING=0; fi`,
        'fi',
      );
    });
    if (phase === 'install' || phase === 'pre_build') {
      lines.push('if [ "$__autopatch_ok" != 1 ]; then __autopatch_skip=1; fi');
    }
  }
  lines.push('[ "$CODEBUILD_BUILD_SUCCEEDING" = 1 ]');
  return `${lines.join('\n')}\n`;
};
