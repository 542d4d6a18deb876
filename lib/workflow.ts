/**
 * The remediation workflow construct and what its users import. The construct is composed in
 * lib/workflow/remediation-workflow.ts from the parts beside it (see its comment for where a change
 * belongs).
 */
export {
  CODEBUILD_ARM_REGIONS,
  createsArmBuilds,
  NO_ARM_BUILDER,
} from './workflow/builders';
export { renderDefinition, stateMachineLogGroupName } from './workflow/definition';
export { FUNCTIONS, type FunctionRole } from './workflow/functions';
export { RemediationWorkflow, type RemediationWorkflowProps } from './workflow/remediation-workflow';
