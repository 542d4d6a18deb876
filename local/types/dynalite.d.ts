// dynalite ships no type declarations; this covers the part local/dynalite.ts uses. (Not local/dynalite.d.ts:
// TypeScript ignores a .d.ts that sits beside a .ts of the same name, taking it for that file's output.)
declare module 'dynalite' {
  import type { Server } from 'node:http';

  interface DynaliteOptions {
    /** LevelDB directory; in memory when absent. */
    path?: string;
    createTableMs?: number;
    deleteTableMs?: number;
    updateTableMs?: number;
    maxItemSizeKb?: number;
    ssl?: boolean;
    verbose?: boolean;
    debug?: boolean;
  }

  function dynalite(options?: DynaliteOptions): Server;
  export = dynalite;
}
