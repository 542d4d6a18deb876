import { createHash, createHmac } from 'node:crypto';
import type { OrganizationParent, OrganizationParentsApi } from './org-units';

/**
 * organizations:ListParents over HTTPS, signed with Signature Version 4 by hand: the one
 * Organizations call the hub makes (fleet stages by organizational unit), without adding
 * @aws-sdk/client-organizations to the bundle and the lockfile. The wire format is the service's
 * AWS JSON 1.1 protocol (POST /, X-Amz-Target AWSOrganizationsV20161128.ListParents). Swap it for
 * the SDK client's ListParentsCommand when that package is a dependency: OrganizationParentsApi is
 * the only contract.
 */

export interface SigningCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

export interface OrganizationsApiOptions {
  /** @default the Lambda's own credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) */
  readonly credentials?: () => SigningCredentials;
  /** @default globalThis.fetch */
  readonly fetch?: typeof fetch;
  /** @default Date */
  readonly now?: () => Date;
  /** Organizations' endpoint and signing Region. @default the aws partition's: us-east-1 */
  readonly endpoint?: { readonly host: string; readonly region: string };
}

const SERVICE = 'organizations';
const TARGET = 'AWSOrganizationsV20161128.ListParents';
const CONTENT_TYPE = 'application/x-amz-json-1.1';

const sha256 = (data: string): string => createHash('sha256').update(data, 'utf8').digest('hex');
const hmac = (key: Buffer | string, data: string): Buffer =>
  createHmac('sha256', key).update(data, 'utf8').digest();

const environmentCredentials = (): SigningCredentials => {
  const accessKeyId = process.env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = process.env.AWS_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey)
    throw Object.assign(new Error('no AWS credentials in the environment'), { name: 'CredentialsError' });
  const sessionToken = process.env.AWS_SESSION_TOKEN;
  return { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) };
};

/** The headers of a signed AWS JSON 1.1 POST (Signature Version 4, signed body). */
export const signedHeaders = (
  request: { readonly host: string; readonly region: string; readonly target: string; readonly body: string },
  credentials: SigningCredentials,
  at: Date,
): Record<string, string> => {
  const amzDate = at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
  const day = amzDate.slice(0, 8);
  const headers: Record<string, string> = {
    'content-type': CONTENT_TYPE,
    host: request.host,
    // The payload hash, signed as a header too (as the AWS SDK's signer does).
    'x-amz-content-sha256': sha256(request.body),
    'x-amz-date': amzDate,
    ...(credentials.sessionToken ? { 'x-amz-security-token': credentials.sessionToken } : {}),
    'x-amz-target': request.target,
  };
  const names = Object.keys(headers).sort();
  const canonical = [
    'POST',
    '/',
    '',
    ...names.map((n) => `${n}:${headers[n]}`),
    '',
    names.join(';'),
    headers['x-amz-content-sha256'],
  ].join('\n');
  const scope = `${day}/${request.region}/${SERVICE}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n');
  const key = hmac(
    hmac(hmac(hmac(`AWS4${credentials.secretAccessKey}`, day), request.region), SERVICE),
    'aws4_request',
  );
  const signature = createHmac('sha256', key).update(toSign, 'utf8').digest('hex');
  return {
    ...headers,
    authorization: `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`,
  };
};

/** An error shaped as the SDK's: `name` the service's error code, `$metadata.httpStatusCode` (isTransient reads it). */
const serviceError = (status: number, body: string): Error => {
  let code = status === 429 ? 'TooManyRequestsException' : `HTTP${status}`;
  let message = body.slice(0, 300);
  try {
    const parsed = JSON.parse(body) as { __type?: string; message?: string; Message?: string };
    if (parsed.__type) code = parsed.__type.split('#').pop() ?? code;
    message = parsed.message ?? parsed.Message ?? message;
  } catch {
    // not JSON: keep the status and the start of the body
  }
  return Object.assign(new Error(message), { name: code, $metadata: { httpStatusCode: status } });
};

export const organizationsApi = (options: OrganizationsApiOptions = {}): OrganizationParentsApi => {
  const endpoint = options.endpoint ?? { host: 'organizations.us-east-1.amazonaws.com', region: 'us-east-1' };
  const send = options.fetch ?? globalThis.fetch;
  return {
    async listParents(childId: string): Promise<readonly OrganizationParent[]> {
      const parents: OrganizationParent[] = [];
      let nextToken: string | undefined;
      do {
        const body = JSON.stringify({ ChildId: childId, ...(nextToken ? { NextToken: nextToken } : {}) });
        const headers = signedHeaders(
          { host: endpoint.host, region: endpoint.region, target: TARGET, body },
          (options.credentials ?? environmentCredentials)(),
          options.now?.() ?? new Date(),
        );
        const { host: _host, ...sent } = headers;
        const response = await send(`https://${endpoint.host}/`, { method: 'POST', headers: sent, body });
        const text = await response.text();
        if (!response.ok) throw serviceError(response.status, text);
        const out = JSON.parse(text) as {
          Parents?: Array<{ Id?: string; Type?: string }>;
          NextToken?: string | null;
        };
        for (const p of out.Parents ?? [])
          if (p.Id && (p.Type === 'ROOT' || p.Type === 'ORGANIZATIONAL_UNIT'))
            parents.push({ id: p.Id, type: p.Type });
        nextToken = out.NextToken ?? undefined;
      } while (nextToken);
      return parents;
    },
  };
};
