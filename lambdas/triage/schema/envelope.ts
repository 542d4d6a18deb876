import * as z from 'zod';
import { accountIdSchema, LIMITS, plainText, regionSchema } from './values';

/**
 * The EventBridge envelope, field for field as Powertools' `EventBridgeSchema`
 * (@aws-lambda-powertools/parser/schemas/eventbridge). Declared here because that module imports
 * `{ z }` from zod, which makes the bundler keep all of zod (445 KB of the triage bundle's 1,254 KB,
 * every locale included); with `import * as z` only what is used stays (97 KB).
 */
export const EventBridgeSchema = z.object({
  version: plainText(LIMITS.token),
  id: plainText(LIMITS.token),
  source: z.string(),
  account: accountIdSchema,
  time: z.iso.datetime(),
  region: regionSchema,
  resources: z.array(plainText(LIMITS.text)).max(LIMITS.resources),
  'detail-type': z.string(),
  detail: z.unknown(),
  'replay-name': plainText(LIMITS.token).optional(),
});

export const FINDING_DETAIL_TYPE = 'Inspector2 Finding';
export const SCAN_DETAIL_TYPE = 'Inspector2 Scan';
export const INSPECTOR_SOURCE = 'aws.inspector2';

/** "<registry>.dkr.ecr.<region>.amazonaws.com/<repository>" (amazonaws.com.cn in the China Regions). */
export const ecrRepositoryUri = (registry: string, region: string, repository: string): string =>
  `${registry}.dkr.ecr.${region}.${region.startsWith('cn-') ? 'amazonaws.com.cn' : 'amazonaws.com'}/${repository}`;
