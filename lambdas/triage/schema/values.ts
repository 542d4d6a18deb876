import * as z from 'zod';
import { quote } from './issues';

/*
 * Every string of an event that can reach a DynamoDB key, an execution name, a shell, a Dockerfile
 * or a notification is checked here, before anything else sees it: lengths first (so no pattern runs
 * on a huge input and no key exceeds DynamoDB's 2,048 / 1,024-byte limits), then the value's own
 * grammar. A value that fails is a poison event, rejected with a reason naming the field.
 */

/** An ECR image digest: "sha256:" and 64 lowercase hex digits, as ECR and the registry API write it. */
export const IMAGE_DIGEST = /^sha256:[a-f0-9]{64}$/;
/** An ECR repository name: AWS's own pattern (ecr:CreateRepository), 2-256 characters. */
export const ECR_REPOSITORY_NAME = /^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*\/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
/** A registry id (the AWS account that owns the repository). */
export const REGISTRY_ID = /^\d{12}$/;
/** An ECR image tag: the Docker tag grammar ECR enforces, at most 128 characters. */
export const IMAGE_TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
/**
 * A CVE or vendor advisory id: "CVE-2024-6119", "GHSA-jfh8-c2jp-5v3q", "ALAS2-2023-2065",
 * "RHSA-2023:1234", "USN-6986-1". Letters, digits, '.', '_', ':' and '-'; at most 128 characters.
 */
export const VULNERABILITY_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** An AWS region name: "eu-central-1", "us-gov-west-1", "cn-north-1". */
export const AWS_REGION = /^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$/;
/** An Inspector finding ARN. Its id is printable ASCII (the documented example holds a placeholder). */
export const FINDING_ARN =
  /^arn:aws[a-z-]{0,20}:inspector2:[a-z0-9-]{1,32}:\d{12}:finding\/[\x21-\x7e]{1,128}$/;
/** A short identifier Inspector defines: platform, architecture, package manager, source, detector id. */
const TOKEN = /^[A-Za-z0-9][A-Za-z0-9._/+@:-]*$/;
/**
 * Free text without control, format or line-separator characters: no newline can start a forged line
 * in a log or a notification, no bidi override can make text read other than it is.
 */
const PLAIN_TEXT = /^[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}]*$/u;

/** The bounds, in characters (every value bounded here is ASCII or checked to be short). */
export const LIMITS = {
  findingArn: 256,
  repositoryName: 256,
  imageTag: 128,
  imageTags: 1_000,
  vulnerabilityId: 128,
  token: 128,
  title: 1_024,
  text: 2_048,
  description: 65_536,
  packages: 1_000,
  resources: 100,
  resourceTags: 50,
} as const;

/** A string of `min`..`max` characters matching `pattern`; the message says what was expected. */
export const matching = (pattern: RegExp, expected: string, max: number, min = 1) =>
  z
    .string()
    .min(min, { abort: true })
    .max(max, { abort: true })
    .superRefine((value, ctx) => {
      if (!pattern.test(value)) {
        ctx.addIssue({
          code: 'custom',
          message: `expected ${expected}, received ${quote(value)}`,
          input: value,
        });
      }
    });

export const plainText = (max: number) =>
  matching(PLAIN_TEXT, 'text without control or line-separator characters', max, 0);

export const imageDigestSchema = matching(
  IMAGE_DIGEST,
  'an image digest: "sha256:" and 64 lowercase hex digits',
  71,
);
export const repositoryNameSchema = matching(
  ECR_REPOSITORY_NAME,
  'an ECR repository name (lowercase letters and digits, separated by ".", "_", "-" or "/")',
  LIMITS.repositoryName,
  2,
);
export const registryIdSchema = matching(REGISTRY_ID, 'a 12-digit registry (account) id', 12);
export const imageTagSchema = matching(
  IMAGE_TAG,
  'an image tag (letters, digits, "_", "." and "-", not starting with "." or "-")',
  LIMITS.imageTag,
);
export const vulnerabilityIdSchema = matching(
  VULNERABILITY_ID,
  'a vulnerability id such as "CVE-2024-6119" (letters, digits, ".", "_", ":" and "-")',
  LIMITS.vulnerabilityId,
);
export const regionSchema = matching(AWS_REGION, 'an AWS region such as "eu-central-1"', 32);
export const tokenSchema = matching(TOKEN, 'an identifier (letters, digits and . _ / + @ : -)', LIMITS.token);
export const accountIdSchema = matching(REGISTRY_ID, 'a 12-digit account id', 12);
