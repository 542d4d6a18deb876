#!/usr/bin/env node
/**
 * The CDK app: `npx cdk synth` / `npx cdk deploy` (cdk.json runs it with tsx). Settings come from the
 * CDK context, see lib/stack.ts. cdk-nag's AwsSolutions checks run on every synth and fail it on any
 * finding that is not acknowledged (acknowledgements and their reasons: lib/nag.ts), and so do
 * Autopatch's own (AutopatchChecks: no action on Resource "*" that IAM could scope, no wildcard action).
 */
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ConfigurationError } from '../lambdas/shared/errors';
import { AutopatchChecks } from '../lib/nag';
import { AutopatchStack } from '../lib/stack';

const app = new App();
try {
  new AutopatchStack(app, 'AutopatchStack');
} catch (error) {
  // A configuration mistake is the user's to fix: show the message that names the field, not a trace.
  if (!(error instanceof ConfigurationError)) throw error;
  process.stderr.write(`${error.message}\n`);
  process.exit(1);
}
Validations.of(app).addPlugins(new AwsSolutionsChecks(app), new AutopatchChecks(app));
