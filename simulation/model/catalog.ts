/**
 * The services and operations the simulated account answers. Scenario validation uses this list so
 * that a fault injected into an operation nobody calls is rejected instead of silently never firing.
 */
export const SERVICES = [
  'ecs',
  'ecr',
  'codebuild',
  'codedeploy',
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
  ecr: ['DescribeRepositories', 'DescribeImages', 'BatchGetImage', 'ListImages', 'PutImage'],
  codebuild: ['StartBuild', 'BatchGetBuilds', 'StopBuild'],
  codedeploy: [
    'ListApplications',
    'ListDeploymentGroups',
    'BatchGetDeploymentGroups',
    'GetDeploymentGroup',
    'CreateDeployment',
    'GetDeployment',
    'ListDeployments',
    'StopDeployment',
  ],
  inspector2: ['BatchGetFindingDetails', 'ListCoverage', 'ListFindings'],
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

/** How a service reports one error: the HTTP status, who is at fault, and whether the SDK throttles on it. */
export interface ErrorShape {
  readonly status: number;
  readonly fault: 'client' | 'server';
  readonly throttling: boolean;
  readonly message: string;
}

/** The three ways every AWS call can fail that the fault matrix exercises. */
export const FAULT_KINDS = ['throttling', 'server', 'access-denied'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

const throttled = (status = 400, message = 'Rate exceeded'): ErrorShape => ({
  status,
  fault: 'client',
  throttling: true,
  message,
});
const server = (
  status = 500,
  message = 'We encountered an internal error. Please try again.',
): ErrorShape => ({
  status,
  fault: 'server',
  throttling: false,
  message,
});
const denied = (status = 400, message = 'User is not authorized to perform this action'): ErrorShape => ({
  status,
  fault: 'client',
  throttling: false,
  message,
});
const client = (message: string): ErrorShape => ({
  status: 400,
  fault: 'client',
  throttling: false,
  message,
});

/**
 * The errors each service really returns, by the name the AWS SDK for JavaScript v3 gives them (the
 * modelled exception class when the service's Smithy model has one, else the wire error code): ECS
 * answers 5xx with ServerException, CloudWatch (query protocol) with InternalServiceFault and throttles
 * with `Throttling`, SNS throttles with ThrottledException (wire code `Throttled`), CodeBuild and Step
 * Functions answer 5xx with the common InternalFailure / ServiceUnavailable, and so on. The first name
 * of each kind is the one the fault matrix injects.
 */
export const SERVICE_ERRORS: Record<
  ServiceName,
  Readonly<Record<FaultKind, Readonly<Record<string, ErrorShape>>>> & {
    readonly other?: Readonly<Record<string, ErrorShape>>;
  }
> = {
  ecs: {
    throttling: { ThrottlingException: throttled() },
    server: { ServerException: server(500, 'Service Unavailable. Please try again later.') },
    'access-denied': { AccessDeniedException: denied() },
    other: { ClientException: client('The request is not valid.') },
  },
  ecr: {
    throttling: { ThrottlingException: throttled() },
    server: { ServerException: server() },
    'access-denied': { AccessDeniedException: denied() },
  },
  codebuild: {
    throttling: { ThrottlingException: throttled() },
    server: {
      InternalFailure: server(500, 'InternalFailure'),
      ServiceUnavailable: server(503, 'Service Unavailable'),
    },
    'access-denied': { AccessDeniedException: denied() },
  },
  // CodeDeploy (JSON protocol): ThrottlingException; 5xx are the common InternalFailure /
  // ServiceUnavailable; the API reference's own errors (DeploymentLimitExceededException and others)
  // are what the model itself throws.
  codedeploy: {
    throttling: { ThrottlingException: throttled(400, 'Rate exceeded') },
    server: {
      InternalFailure: server(500, 'InternalFailure'),
      ServiceUnavailable: server(503, 'Service Unavailable'),
    },
    'access-denied': { AccessDeniedException: denied() },
    other: {
      DeploymentLimitExceededException: client('The number of allowed deployments was exceeded.'),
      DeploymentGroupDoesNotExistException: client(
        'The named deployment group with the user or AWS account does not exist.',
      ),
      ApplicationDoesNotExistException: client(
        'The application does not exist with the user or AWS account.',
      ),
      InvalidDeploymentIdException: client(
        'At least one of the deployment IDs was specified in an invalid format.',
      ),
      DeploymentDoesNotExistException: client('The deployment with the user or AWS account does not exist.'),
      DeploymentAlreadyCompletedException: client('The deployment is already complete.'),
    },
  },
  inspector2: {
    throttling: { ThrottlingException: throttled(429) },
    server: { InternalServerException: server() },
    'access-denied': {
      AccessDeniedException: denied(403, 'You do not have sufficient access to perform this action.'),
    },
  },
  cloudwatch: {
    throttling: { Throttling: throttled(400) },
    server: { InternalServiceFault: server(500, 'Internal service fault') },
    'access-denied': { AccessDenied: denied(403) },
  },
  sns: {
    throttling: { ThrottledException: throttled(400, 'Rate exceeded') },
    server: { InternalErrorException: server(500, 'Internal Error') },
    'access-denied': {
      AuthorizationErrorException: denied(403, 'User is not authorized to perform: SNS:Publish'),
    },
  },
  eventbridge: {
    throttling: { ThrottlingException: throttled() },
    server: { InternalException: server() },
    'access-denied': { AccessDeniedException: denied() },
  },
  ssm: {
    throttling: { ThrottlingException: throttled() },
    server: { InternalServerError: server() },
    'access-denied': { AccessDeniedException: denied() },
  },
  sfn: {
    throttling: { ThrottlingException: throttled() },
    server: {
      InternalFailure: server(500, 'InternalFailure'),
      ServiceUnavailable: server(503, 'Service Unavailable'),
    },
    'access-denied': { AccessDeniedException: denied() },
  },
  dynamodb: {
    throttling: {
      ThrottlingException: throttled(),
      ProvisionedThroughputExceededException: throttled(
        400,
        'The level of configured provisioned throughput for the table was exceeded.',
      ),
      RequestLimitExceeded: throttled(
        400,
        'Throughput exceeds the current throughput limit for your account.',
      ),
    },
    server: { InternalServerError: server(500, 'Internal server error') },
    'access-denied': { AccessDeniedException: denied() },
  },
};

/**
 * Lambda's Invoke API as Step Functions reports its failures to the state's Retry/Catch: throttled
 * (429), a Lambda service error (500), or refused (403 AccessDenied, reported as AWSLambdaException).
 */
export const LAMBDA_INVOKE_ERRORS: Readonly<Record<FaultKind, { name: string; message: string }>> = {
  throttling: { name: 'Lambda.TooManyRequestsException', message: 'Rate Exceeded.' },
  server: { name: 'Lambda.ServiceException', message: 'Lambda was unable to process the request.' },
  'access-denied': {
    name: 'Lambda.AWSLambdaException',
    message: 'User is not authorized to perform: lambda:InvokeFunction (Status Code: 403)',
  },
};

/** The invoke error a scenario's `error` stands for, for faults in service "lambda". */
export const resolveLambdaError = (error: string): { name: string; message: string } | undefined => {
  const kind = ERROR_ALIASES[error];
  if (kind) return LAMBDA_INVOKE_ERRORS[kind];
  return Object.values(LAMBDA_INVOKE_ERRORS).find((e) => e.name === error || e.name === `Lambda.${error}`);
};

/**
 * Names scenarios wrote before the catalog was per service, kept working: each stands for the
 * service's own error of that kind (InternalServerError on ECS is its ServerException). SNS's wire
 * codes are accepted for the SDK's names.
 */
export const ERROR_ALIASES: Readonly<Record<string, FaultKind>> = {
  ThrottlingException: 'throttling',
  InternalServerError: 'server',
  AccessDeniedException: 'access-denied',
  throttling: 'throttling',
  server: 'server',
  '5xx': 'server',
  'access-denied': 'access-denied',
};
const WIRE_CODES: Readonly<Record<string, string>> = {
  Throttled: 'ThrottledException',
  InternalError: 'InternalErrorException',
  AuthorizationError: 'AuthorizationErrorException',
};

/** The error a service returns for a kind of failure (the first of its kind in SERVICE_ERRORS). */
export const errorOfKind = (service: ServiceName, kind: FaultKind): string =>
  Object.keys(SERVICE_ERRORS[service][kind])[0] as string;

/** Every error name a scenario may inject into a service: its own, the common ones, and the aliases. */
export const errorNames = (service: ServiceName): string[] => {
  const e = SERVICE_ERRORS[service];
  return [
    ...new Set([
      ...FAULT_KINDS.flatMap((k) => Object.keys(e[k])),
      ...Object.keys(e.other ?? {}),
      'ServiceUnavailable',
      ...Object.keys(ERROR_ALIASES),
      ...(service === 'sns' ? Object.keys(WIRE_CODES) : []),
    ]),
  ];
};

/**
 * What a scenario's `error` becomes for a service: the real name and how it is reported, or
 * undefined when the service does not return that error.
 */
export const resolveError = (
  service: ServiceName,
  error: string,
): ({ name: string } & ErrorShape) | undefined => {
  const e = SERVICE_ERRORS[service];
  const kind = ERROR_ALIASES[error];
  if (kind) {
    // A real name of this service's own (DynamoDB's InternalServerError) stays itself.
    const own = e[kind][error];
    if (own) return { name: error, ...own };
    const name = errorOfKind(service, kind);
    return { name, ...(e[kind][name] as ErrorShape) };
  }
  const name = service === 'sns' ? (WIRE_CODES[error] ?? error) : error;
  for (const k of FAULT_KINDS) {
    const shape = e[k][name];
    if (shape) return { name, ...shape };
  }
  const other = e.other?.[name];
  if (other) return { name, ...other };
  // Every AWS service can answer 503 ServiceUnavailable (the common error list).
  if (name === 'ServiceUnavailable') return { name, ...server(503, 'Service Unavailable') };
  return undefined;
};

/**
 * Kept for code that looks a fault up by name: every name the catalog knows, with its shape (for a
 * name several services use alike, the first service's).
 */
export const FAULTS: Readonly<Record<string, ErrorShape>> = Object.fromEntries(
  SERVICES.flatMap((service) =>
    errorNames(service).map((name) => [name, resolveError(service, name) as ErrorShape] as const),
  ).reverse(),
);
export type FaultName = string;
