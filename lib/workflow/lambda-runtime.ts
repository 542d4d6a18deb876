import * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';

/**
 * The one runtime and bundling policy of every Autopatch Lambda: triage (lib/triage-function.ts) and
 * the workflow's task functions (./functions.ts). Change them here, for all of them at once.
 */

/** The newest Node.js runtime the installed aws-cdk-lib offers. */
export const LAMBDA_RUNTIME = lambda.Runtime.NODEJS_24_X;

/** The Lambdas run on Graviton. */
export const LAMBDA_ARCHITECTURE = lambda.Architecture.ARM_64;

/**
 * esbuild output for {@link LAMBDA_RUNTIME}, minified with a source map (NODE_OPTIONS
 * `--enable-source-maps` maps stack traces back to the TypeScript). The AWS SDK is bundled at the
 * versions package-lock.json pins, not taken from the runtime: the ECS service-deployment APIs need
 * the pinned clients, and TOOLCHAIN.md measured no load-time cost.
 */
export const LAMBDA_BUNDLING: nodejs.BundlingOptions = {
  minify: true,
  sourceMap: true,
  target: 'node24',
  bundleAwsSDK: true,
};
