#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.hugetlb=1 node --min-semi-space-size=16 --max-semi-space-size=16
// The published entry point runs the compiled CLI (production runs compiled JS, never ts sources).
// The node flags are src/common/node-flags.ts's BIDDER_NODE_FLAGS and the variable its HUGE_PAGE_TUNABLE
// (test/node-flags.test.ts keeps them equal); it replaces a GLIBC_TUNABLES of the caller's, who can run node
// on dist/src/cli/main.js directly to keep their own.
import '../dist/src/cli/main.js';
