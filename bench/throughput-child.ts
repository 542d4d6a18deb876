/**
 * Runs one throughput measurement in a process of its own, so that its peak memory is the burst's
 * alone: `node --expose-gc --import tsx bench/throughput-child.ts '{"size":50000,"batchSize":100}'`.
 * Prints one JSON document: the ThroughputResult plus the process's memory figures.
 */
import '../simulation/environment';
import { measureThroughput, type ThroughputOptions } from './throughput';

const main = async (): Promise<void> => {
  const options = JSON.parse(process.argv[2] ?? '{}') as ThroughputOptions;
  const rssBefore = process.memoryUsage().rss;
  const result = await measureThroughput(options);
  const usage = process.resourceUsage();
  process.stdout.write(
    `${JSON.stringify({
      ...result,
      memory: {
        // maxRSS is in kilobytes.
        peakRssBytes: usage.maxRSS * 1024,
        rssBeforeBytes: rssBefore,
        heapUsedAfterBytes: process.memoryUsage().heapUsed,
      },
    })}\n`,
  );
};

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
