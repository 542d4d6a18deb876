import type { Notice } from '../shared/ledger';
import { parseEvent } from './schema';
import type { FindingReport, TriageInput } from './triage';

/**
 * The `notify` decisions of a batch as the ledger's digests record them: one notice per service the
 * finding's image runs in, or one for the account when none runs it. The finding's details (CVE,
 * severity, image) come from its input, parsed again: only notify decisions are, and parsing a
 * finding that already parsed cannot fail. Pure.
 */
export const noticesOf = (
  reports: readonly FindingReport[],
  inputs: readonly TriageInput[],
): Array<{ readonly id: string; readonly notices: readonly Notice[] }> => {
  const byId = new Map(inputs.map((i) => [i.id, i]));
  return reports.flatMap((report) => {
    const input = byId.get(report.id);
    if (report.action !== 'notify' || !input) return [];
    let parsed: ReturnType<typeof parseEvent>;
    try {
      parsed = parseEvent(typeof input.event === 'string' ? JSON.parse(input.event) : input.event);
    } catch {
      return [];
    }
    if (parsed.kind !== 'finding') return [];
    const { finding } = parsed;
    const notice = {
      cve: finding.vulnerabilityId,
      severity: finding.severity,
      ...(finding.image ? { image: `${finding.image.repository}@${finding.image.imageDigest}` } : {}),
      reason: report.reason,
    };
    const notices: Notice[] =
      report.services.length === 0
        ? [notice]
        : [...new Set(report.services)].map((serviceKey) => ({ ...notice, serviceKey }));
    return [{ id: report.id, notices }];
  });
};
