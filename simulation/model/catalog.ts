/**
 * The services and operations the simulated account answers. Scenario validation uses this list so
 * that a fault injected into an operation nobody calls is rejected instead of silently never firing.
 */
export const SERVICES = [
  'ecs',
  'ecr',
  'codebuild',
  'inspector2',
  'cloudwatch',
  'sns',
  'eventbridge',
  'ssm',
  'sfn',
  'dynamodb',
] as const;
export type ServiceName = (typeof SERVICES)[number];

export const OPERATIONS: Record<ServiceName, readonly string[]> = {
  ecs: [
    'ListClusters',
    'DescribeClusters',
    'ListServices',
    'DescribeServices',
    'ListTagsForResource',
    'DescribeTaskDefinition',
    'RegisterTaskDefinition',
    'ListTasks',
    'DescribeTasks',
    'UpdateService',
    'DescribeServiceDeployments',
    'ListServiceDeployments',
    'StopServiceDeployment',
    'DescribeServiceRevisions',
  ],
  ecr: ['DescribeRepositories', 'DescribeImages', 'BatchGetImage', 'ListImages'],
  codebuild: ['StartBuild', 'BatchGetBuilds', 'StopBuild'],
  inspector2: ['ListCoverage', 'ListFindings'],
  cloudwatch: ['DescribeAlarms', 'DescribeAlarmHistory'],
  sns: ['Publish'],
  eventbridge: ['PutEvents'],
  ssm: ['PutParameter', 'GetParameter'],
  sfn: [
    'StartExecution',
    'DescribeExecution',
    'ListExecutions',
    'StopExecution',
    'SendTaskSuccess',
    'SendTaskFailure',
    'SendTaskHeartbeat',
  ],
  // DynamoDB is not modelled: requests go to an in-process dynalite. Faults can still be injected.
  dynamodb: [
    'GetItem',
    'PutItem',
    'UpdateItem',
    'DeleteItem',
    'Query',
    'Scan',
    'BatchGetItem',
    'BatchWriteItem',
  ],
};

/** Errors a scenario may inject, with how the real service reports each one. */
export const FAULTS = {
  ThrottlingException: { status: 400, fault: 'client', throttling: true, message: 'Rate exceeded' },
  InternalServerError: { status: 500, fault: 'server', throttling: false, message: 'Internal server error' },
  ServiceUnavailable: { status: 503, fault: 'server', throttling: false, message: 'Service unavailable' },
  AccessDeniedException: {
    status: 400,
    fault: 'client',
    throttling: false,
    message: 'User is not authorized to perform this action',
  },
} as const;
export type FaultName = keyof typeof FAULTS;
