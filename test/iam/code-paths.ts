/**
 * What the code asks of AWS, derived from the sources rather than listed by hand: every SDK command
 * each Lambda's import graph sends (`new XxxCommand(` in a file that imports it from an @aws-sdk
 * package), and every service integration of the state machine definition.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');

/** lib-dynamodb's document commands, by the DynamoDB operation they send. */
const DOCUMENT_COMMANDS: Record<string, string> = {
  GetCommand: 'GetItem',
  PutCommand: 'PutItem',
  UpdateCommand: 'UpdateItem',
  DeleteCommand: 'DeleteItem',
  QueryCommand: 'Query',
  ScanCommand: 'Scan',
  BatchGetCommand: 'BatchGetItem',
  BatchWriteCommand: 'BatchWriteItem',
  TransactGetCommand: 'TransactGetItems',
  TransactWriteCommand: 'TransactWriteItems',
};

/** The simulation's service names (simulation/model/catalog.ts), by SDK package. */
const PACKAGES: Record<string, string> = {
  '@aws-sdk/client-ecs': 'ecs',
  '@aws-sdk/client-codedeploy': 'codedeploy',
  '@aws-sdk/client-ecr': 'ecr',
  '@aws-sdk/client-codebuild': 'codebuild',
  '@aws-sdk/client-inspector2': 'inspector2',
  '@aws-sdk/client-cloudwatch': 'cloudwatch',
  '@aws-sdk/client-sns': 'sns',
  '@aws-sdk/client-eventbridge': 'eventbridge',
  '@aws-sdk/client-ssm': 'ssm',
  '@aws-sdk/client-sfn': 'sfn',
  '@aws-sdk/client-dynamodb': 'dynamodb',
  '@aws-sdk/lib-dynamodb': 'dynamodb',
};

export interface SentCommand {
  /** 'ecs', 'dynamodb', ... */
  readonly service: string;
  /** 'UpdateService', 'PutItem', ... */
  readonly operation: string;
  /** Where it is sent, relative to the repository. */
  readonly file: string;
}

const resolveImport = (from: string, spec: string): string | undefined => {
  const base = path.resolve(path.dirname(from), spec);
  for (const candidate of [`${base}.ts`, path.join(base, 'index.ts')])
    if (existsSync(candidate)) return candidate;
  return undefined;
};

/** Every command sent by the code reachable from `entry` (relative imports, not type-only ones). */
export const commandsSentFrom = (entry: string): SentCommand[] => {
  const seen = new Set<string>();
  const out: SentCommand[] = [];
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    const imported = new Map<string, string>(); // identifier → package
    for (const m of text.matchAll(/import\s+(type\s+)?\{([^}]*)\}\s+from\s+'([^']+)'/g)) {
      const [, typeOnly, names = '', spec = ''] = m;
      if (spec.startsWith('.')) {
        if (!typeOnly) {
          const target = resolveImport(file, spec);
          if (target) visit(target);
        }
        continue;
      }
      const service = PACKAGES[spec];
      if (!service || typeOnly) continue;
      for (const n of names.split(',')) {
        const name =
          n
            .trim()
            .replace(/^type\s+/, '')
            .split(/\s+as\s+/)[0] ?? '';
        if (name.endsWith('Command')) imported.set(name, spec);
      }
    }
    for (const m of text.matchAll(/import\s+(?!type)[^'{]*from\s+'(\.[^']+)'/g)) {
      const target = resolveImport(file, m[1] ?? '');
      if (target) visit(target);
    }
    for (const m of text.matchAll(/new ([A-Z][A-Za-z0-9]+Command)\(/g)) {
      const name = m[1] ?? '';
      const spec = imported.get(name);
      if (!spec) continue;
      const service = PACKAGES[spec] as string;
      const operation =
        spec === '@aws-sdk/lib-dynamodb' ? DOCUMENT_COMMANDS[name] : name.replace(/Command$/, '');
      if (operation) out.push({ service, operation, file: path.relative(ROOT, file) });
    }
  };
  visit(path.join(ROOT, entry));
  return out;
};

export interface Integration {
  readonly state: string;
  readonly resource: string;
  readonly parameters: Record<string, unknown>;
}

/** Every Task of the definition file, with its Resource and Parameters. */
export const definitionTasks = (): Integration[] => {
  const definition = JSON.parse(
    readFileSync(path.join(ROOT, 'statemachines', 'remediation.asl.json'), 'utf8'),
  );
  const out: Integration[] = [];
  const walk = (states: Record<string, Record<string, unknown>>) => {
    for (const [name, s] of Object.entries(states)) {
      if (s.Type === 'Task')
        out.push({
          state: name,
          resource: String(s.Resource),
          parameters: (s.Parameters ?? {}) as Record<string, unknown>,
        });
      for (const key of ['ItemProcessor', 'Iterator']) {
        const inner = s[key] as { States?: Record<string, Record<string, unknown>> } | undefined;
        if (inner?.States) walk(inner.States);
      }
      for (const branch of (s.Branches ?? []) as Array<{ States: Record<string, Record<string, unknown>> }>)
        walk(branch.States);
    }
  };
  walk(definition.States);
  return out;
};
