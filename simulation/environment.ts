/**
 * Process environment for a simulation, set before the AWS SDK and Powertools load (bin/simulate.ts
 * imports this first): no AWS account, no network beyond loopback, no log noise. Values already set
 * are kept, so POWERTOOLS_LOG_LEVEL=DEBUG npm run simulate shows the Lambdas' logs.
 */
/** What every simulated Lambda sees too (simulation/runner.ts); the values a real function would not have are fakes. */
export const SIMULATED_ENVIRONMENT: Readonly<Record<string, string>> = {
  AWS_ACCESS_KEY_ID: 'SIMULATED',
  AWS_SECRET_ACCESS_KEY: 'SIMULATED',
  AWS_EC2_METADATA_DISABLED: 'true',
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  POWERTOOLS_LOG_LEVEL: 'SILENT',
  POWERTOOLS_METRICS_DISABLED: 'true',
  POWERTOOLS_TRACE_ENABLED: 'false',
  POWERTOOLS_DEV: 'false',
};
for (const [k, v] of Object.entries({ AWS_REGION: 'eu-central-1', ...SIMULATED_ENVIRONMENT }))
  process.env[k] ??= v;
