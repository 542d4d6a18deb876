import type { AffectedImage } from '../shared/contracts';
import type { OutcomeRecord } from '../shared/ledger';
import { mergeImage } from '../shared/remediation';

/**
 * "Act on what runs now" for a remediation that starts after another one (queued behind it, or
 * merged while it gathered): its findings named the image digests the service ran back then. If a
 * previous Autopatch run has since patched such a digest (its history record says which digests it
 * replaced by which, and which CVEs that closed), the CVEs it closed are already fixed, and what is
 * left must be rebuilt from the patched digest the service runs now — rebuilding the pre-patch
 * image would undo the previous patch, and registering it would fail TaskDefinitionMismatchError.
 */

export interface Resolution {
  /** The images to rebuild: unchanged, or rebased onto the digest a previous run deployed. */
  readonly images: readonly AffectedImage[];
  /** (digest, CVE) pairs a previous run fixed already: closed, not rebuilt. */
  readonly alreadyFixed: ReadonlyArray<{
    readonly digest: string;
    readonly cve: string;
    readonly by: string;
  }>;
  /** Images moved onto the digest a previous run patched them to. */
  readonly rebased: ReadonlyArray<{ readonly from: string; readonly to: string; readonly by: string }>;
  /** Images the service no longer runs at all (the owner deployed another one): left to its own findings. */
  readonly dropped: ReadonlyArray<{ readonly digest: string; readonly runs: string }>;
  /** Nothing is left to rebuild: the definition ends the run as AlreadyFixed. */
  readonly nothingLeft: boolean;
}

interface Patch {
  readonly to: string;
  readonly fixed: ReadonlySet<string>;
  readonly by: string;
}

/** oldDigest → what the Patched runs in `history` replaced it with, oldest run first. */
const patchesOf = (history: readonly OutcomeRecord[]): Map<string, Patch> => {
  const patches = new Map<string, Patch>();
  const patched = history
    .filter((r) => r.outcome === 'Patched')
    .sort((a, b) => a.finishedAt.localeCompare(b.finishedAt));
  for (const record of patched) {
    const closed = new Set(record.cvesClosed);
    for (const image of record.images) {
      if (!image.newDigest || image.newDigest === image.oldDigest) continue;
      patches.set(image.oldDigest, {
        to: image.newDigest,
        fixed: new Set(image.cves.filter((cve) => closed.has(cve))),
        by: record.executionName,
      });
    }
  }
  return patches;
};

/**
 * Re-resolve a request's images against the service's history (and, when known, the digest each
 * container runs now: `running`, container name → digest). Pure.
 */
export const resolveFollowUp = (
  images: readonly AffectedImage[],
  history: readonly OutcomeRecord[],
  running?: ReadonlyMap<string, string>,
): Resolution => {
  const patches = patchesOf(history);
  const alreadyFixed: Array<{ digest: string; cve: string; by: string }> = [];
  const rebased: Array<{ from: string; to: string; by: string }> = [];
  const dropped: Array<{ digest: string; runs: string }> = [];
  const out: AffectedImage[] = [];
  for (const image of images) {
    // Follow the chain of patches from the finding's digest (a digest patched twice moves twice).
    const chain: Array<{ digest: string; fixed: Set<string>; by?: string }> = [
      { digest: image.imageDigest, fixed: new Set() },
    ];
    for (let step = patches.get(image.imageDigest); step; step = patches.get(step.to)) {
      if (chain.some((c) => c.digest === step?.to)) break; // a cycle would be a bug: stop
      const previous = chain.at(-1) as (typeof chain)[number];
      chain.push({ digest: step.to, fixed: new Set([...previous.fixed, ...step.fixed]), by: step.by });
    }
    // Where the service is now: what its containers run, if known; else the end of the chain.
    const runs = image.containers.map((c) => running?.get(c)).find((d) => d !== undefined);
    const at = runs === undefined ? chain.at(-1) : chain.find((c) => c.digest === runs);
    if (!at) {
      dropped.push({ digest: image.imageDigest, runs: runs as string });
      continue;
    }
    if (at.digest === image.imageDigest) {
      out.push(image);
      continue;
    }
    const by = at.by as string;
    const left = image.cves.filter((cve) => !at.fixed.has(cve));
    for (const cve of image.cves.filter((c) => at.fixed.has(c)))
      alreadyFixed.push({ digest: image.imageDigest, cve, by });
    if (left.length === 0) continue;
    if (image.index) {
      // An image index was patched into a new index whose platforms this request does not know (its
      // platform list is the old index's): rebuilding them would undo the patch. Left to the findings
      // Inspector reports on the new index's platforms, which triage maps to it afresh.
      dropped.push({ digest: image.imageDigest, runs: at.digest });
      continue;
    }
    rebased.push({ from: image.imageDigest, to: at.digest, by });
    // The tags named the old image; the patched one is known by digest (and its autopatch- tag).
    out.push({ ...image, imageDigest: at.digest, imageTags: [], cves: left });
  }
  // Two findings' images rebased onto the same digest are one image to rebuild.
  const byDigest = new Map<string, AffectedImage>();
  for (const image of out) {
    const seen = byDigest.get(image.imageDigest);
    byDigest.set(image.imageDigest, seen ? mergeImage(seen, image) : image);
  }
  const resolved = [...byDigest.values()];
  return { images: resolved, alreadyFixed, rebased, dropped, nothingLeft: resolved.length === 0 };
};
