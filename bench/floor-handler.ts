// The cold-start floor: a handler that loads only the Step Functions client, which every Autopatch
// Lambda that starts or resumes an execution needs anyway.
import { SFNClient } from '@aws-sdk/client-sfn';

const sfn = new SFNClient({});

export const handler = async (): Promise<string> => sfn.config.serviceId;
