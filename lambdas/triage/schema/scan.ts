import * as z from 'zod';
import type { Severity } from '../../shared/contracts';
import { EventBridgeSchema, ecrRepositoryUri, INSPECTOR_SOURCE, SCAN_DETAIL_TYPE } from './envelope';
import { describeIssue } from './issues';
import {
  imageDigestSchema,
  imageTagSchema,
  LIMITS,
  plainText,
  regionSchema,
  repositoryNameSchema,
  tokenSchema,
} from './values';

const REPOSITORY_ARN = /^arn:(aws[a-z-]*):ecr:([a-z0-9-]+):(\d{12}):repository\/(.+)$/;

const scanDetailSchema = z.object({
  'scan-status': tokenSchema,
  // Documented as a repository ARN; a bare repository name is accepted too (registry = event account).
  'repository-name': plainText(LIMITS.text).pipe(z.string().min(1)),
  'image-digest': imageDigestSchema,
  'image-tags': z.array(imageTagSchema).max(LIMITS.imageTags).default([]),
  // Inspector lists only some levels (CRITICAL, HIGH, MEDIUM, TOTAL in the documented example).
  'finding-severity-counts': z
    .object({
      CRITICAL: z.number().int().min(0).optional(),
      HIGH: z.number().int().min(0).optional(),
      MEDIUM: z.number().int().min(0).optional(),
      LOW: z.number().int().min(0).optional(),
      INFORMATIONAL: z.number().int().min(0).optional(),
      UNTRIAGED: z.number().int().min(0).optional(),
      TOTAL: z.number().int().min(0).optional(),
    })
    .default({}),
});

export interface ScanEvent {
  /** E.g. "INITIAL_SCAN_COMPLETE", "SCAN_ELIGIBILITY_EXPIRED". */
  readonly scanStatus: string;
  readonly account: string;
  readonly region: string;
  /** ISO-8601 time of the event. */
  readonly time: string;
  /** The repository ARN as Inspector reported it (or the bare name, if it sent one). */
  readonly repositoryArn?: string;
  readonly repository: string;
  readonly registry: string;
  readonly repositoryUri: string;
  readonly imageDigest: string;
  readonly imageTags: readonly string[];
  /** Counts per severity, only for the levels Inspector reported, plus TOTAL when reported. */
  readonly severityCounts: Readonly<Partial<Record<Severity | 'TOTAL', number>>>;
}

/** The whole `Inspector2 Scan` EventBridge event; its output is the normalised `ScanEvent`. */
export const inspectorScanEventSchema = EventBridgeSchema.extend({
  source: z.literal(INSPECTOR_SOURCE),
  'detail-type': z.literal(SCAN_DETAIL_TYPE),
  detail: scanDetailSchema,
}).transform((event, ctx): ScanEvent => {
  const d = event.detail;
  const arn = REPOSITORY_ARN.exec(d['repository-name']);
  const region = arn ? (arn[2] as string) : event.region;
  const registry = arn ? (arn[3] as string) : event.account;
  const repository = arn ? (arn[4] as string) : d['repository-name'];
  // The parts of the ARN reach the rescan's repository URI: held to the same grammar as a finding's.
  for (const [schema, value] of [
    [repositoryNameSchema, repository],
    [regionSchema, region],
  ] as const) {
    const checked = schema.safeParse(value);
    if (!checked.success) {
      for (const issue of checked.error.issues) {
        ctx.issues.push({
          code: 'custom',
          message: describeIssue(issue),
          path: ['detail', 'repository-name'],
          input: value,
        });
      }
    }
  }
  const counts: Partial<Record<Severity | 'TOTAL', number>> = {};
  for (const [level, count] of Object.entries(d['finding-severity-counts'])) {
    if (count !== undefined) counts[level as Severity | 'TOTAL'] = count;
  }
  return {
    scanStatus: d['scan-status'],
    account: event.account,
    region,
    time: new Date(event.time).toISOString(),
    ...(arn ? { repositoryArn: d['repository-name'] } : {}),
    repository,
    registry,
    repositoryUri: ecrRepositoryUri(registry, region, repository),
    imageDigest: d['image-digest'],
    imageTags: d['image-tags'],
    severityCounts: counts,
  };
});
