/**
 * Where `npm run report` reads from: the ledger table in an account (the history records, and
 * Inspector's coverage for fleet coverage), or the ledger a simulation run leaves behind.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { type Inspector2Client, ListCoverageCommand } from '@aws-sdk/client-inspector2';
import { DynamoDBDocumentClient, ScanCommand } from '@aws-sdk/lib-dynamodb';
import type { Coverage, Period, ReportRecord } from './metrics';

/** What a source gives the report. */
export interface History {
  readonly records: readonly ReportRecord[];
  readonly coverage?: Coverage;
  /** Why there is no coverage, when there is none. */
  readonly coverageUnavailable?: string;
  /** The period the source suggests (a simulation's time span); the caller's own wins. */
  readonly period?: Period;
  /** Problems met on the way (a simulation's errors); the report is still made. */
  readonly warnings: readonly string[];
}

export class ReportSourceError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ReportSourceError';
  }
}

/** The ledger's own bookkeeping on a history item, not part of the record. */
const BOOKKEEPING = ['pk', 'sk', 'recordedAt', 'announced', 'announcedAt'];

/**
 * Every history record in the ledger table (`SERVICE#…` / `REMEDIATION#…`), by a paginated Scan:
 * the report reads the whole history once, the workflow never does.
 */
export const readHistory = async (client: DynamoDBClient, tableName: string): Promise<ReportRecord[]> => {
  const doc = DynamoDBDocumentClient.from(client);
  const records: ReportRecord[] = [];
  let startKey: Record<string, unknown> | undefined;
  do {
    const page = await doc.send(
      new ScanCommand({
        TableName: tableName,
        FilterExpression: 'begins_with(pk, :service) AND begins_with(sk, :remediation)',
        ExpressionAttributeValues: { ':service': 'SERVICE#', ':remediation': 'REMEDIATION#' },
        ...(startKey ? { ExclusiveStartKey: startKey } : {}),
      }),
    );
    for (const item of page.Items ?? []) {
      const record = { ...item };
      for (const k of BOOKKEEPING) delete record[k];
      records.push(record as unknown as ReportRecord);
    }
    startKey = page.LastEvaluatedKey;
  } while (startKey);
  return records;
};

/** Inspector's coverage of container images in the account (paginated ListCoverage). */
export const readCoverage = async (inspector: Pick<Inspector2Client, 'send'>): Promise<Coverage> => {
  let active = 0;
  let total = 0;
  let nextToken: string | undefined;
  do {
    const page = await inspector.send(
      new ListCoverageCommand({
        filterCriteria: { resourceType: [{ comparison: 'EQUALS', value: 'AWS_ECR_CONTAINER_IMAGE' }] },
        ...(nextToken ? { nextToken } : {}),
      }),
    );
    for (const r of page.coveredResources ?? []) {
      total += 1;
      if (r.scanStatus?.statusCode === 'ACTIVE') active += 1;
    }
    nextToken = page.nextToken;
  } while (nextToken);
  return { active, total, source: 'inspector2 ListCoverage' };
};

/** The history in an account's ledger table, and Inspector's coverage when it can be read. */
export const fromTable = async (
  tableName: string,
  clients: { readonly dynamo: DynamoDBClient; readonly inspector: Pick<Inspector2Client, 'send'> },
): Promise<History> => {
  let records: ReportRecord[];
  try {
    records = await readHistory(clients.dynamo, tableName);
  } catch (error) {
    throw new ReportSourceError(`could not read the ledger table ${tableName}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  try {
    return { records, coverage: await readCoverage(clients.inspector), warnings: [] };
  } catch (error) {
    const why = `inspector2 ListCoverage failed: ${(error as Error).name}: ${(error as Error).message}`;
    return { records, coverageUnavailable: why, warnings: [why] };
  }
};

const SCENARIO_DIR = path.join(__dirname, '..', 'simulation', 'scenarios');

/** A scenario argument: a file, or the name of a shipped scenario (`happy-path`, `safety/circuit-breaker`). */
export const scenarioPath = (nameOrPath: string): string => {
  if (existsSync(nameOrPath)) return nameOrPath;
  const name = nameOrPath.replace(/\.json$/, '');
  for (const candidate of [
    path.join(SCENARIO_DIR, `${name}.json`),
    path.join(SCENARIO_DIR, 'safety', `${name}.json`),
  ])
    if (existsSync(candidate)) return candidate;
  throw new ReportSourceError(
    `no scenario "${nameOrPath}": give a scenario file or the name of one in simulation/scenarios/ (or its safety/)`,
  );
};

/**
 * Run a scenario in the simulator and read the history its ledger holds at the end, with the
 * simulated Inspector's coverage. The period is the scenario's time span (start → end of the run).
 * The simulation's environment (simulation/environment.ts) must be set before this module's caller
 * loads the AWS SDK: bin/report.ts does it for --simulate.
 */
export const fromSimulation = async (
  nameOrPath: string,
  options: { readonly seed?: number } = {},
): Promise<History> => {
  const { loadScenario, ScenarioError } = await import('../simulation/scenario');
  const { runScenario } = await import('../simulation/runner');
  let scenario: ReturnType<typeof loadScenario>;
  try {
    scenario = loadScenario(scenarioPath(nameOrPath));
  } catch (error) {
    if (error instanceof ScenarioError)
      throw new ReportSourceError(`invalid scenario ${error.source}: ${error.problems.join('; ')}`, {
        cause: error,
      });
    throw error;
  }
  let records: ReportRecord[] = [];
  let coverage: Coverage | undefined;
  const report = await runScenario(scenario, {
    seed: options.seed ?? 1,
    afterRun: async (after) => {
      records = await readHistory(after.dynamo, after.tableName);
      const resources = after.coverage?.();
      if (resources)
        coverage = {
          active: resources.filter((r) => r.statusCode === 'ACTIVE').length,
          total: resources.length,
          source: 'simulation (inspector2 ListCoverage)',
        };
    },
  });
  const start = Date.parse(scenario.startTime);
  return {
    records,
    ...(coverage ? { coverage } : { coverageUnavailable: 'the simulation did not build its account' }),
    period: { since: new Date(start), until: new Date(start + report.virtual.durationMs) },
    warnings: [...report.errors, ...report.mismatches.map((m) => `scenario expectation not met: ${m}`)],
  };
};
