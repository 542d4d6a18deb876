import { ListParentsCommand, OrganizationsClient } from '@aws-sdk/client-organizations';
import type { OrganizationParent, OrganizationParentsApi } from './org-units';

/**
 * organizations:ListParents, the one Organizations call the hub makes (fleet stages by
 * organizational unit), through the AWS SDK's Organizations client. Its errors keep the SDK's names
 * (AccessDeniedException, AWSOrganizationsNotInUseException, TooManyRequestsException), which the
 * resolver (./org-units.ts) tells apart.
 */
export const organizationsApi = (
  client: OrganizationsClient = new OrganizationsClient({}),
): OrganizationParentsApi => ({
  async listParents(childId: string): Promise<readonly OrganizationParent[]> {
    const parents: OrganizationParent[] = [];
    let nextToken: string | undefined;
    do {
      const out = await client.send(
        new ListParentsCommand({ ChildId: childId, ...(nextToken ? { NextToken: nextToken } : {}) }),
      );
      for (const p of out.Parents ?? [])
        if (p.Id && (p.Type === 'ROOT' || p.Type === 'ORGANIZATIONAL_UNIT'))
          parents.push({ id: p.Id, type: p.Type });
      nextToken = out.NextToken ?? undefined;
    } while (nextToken);
    return parents;
  },
});
