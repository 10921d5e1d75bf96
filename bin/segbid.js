#!/usr/bin/env -S node --min-semi-space-size=16 --max-semi-space-size=16
// The published entry point runs the compiled CLI (production runs compiled JS, never ts sources).
// The node flags are src/common/node-flags.ts's BIDDER_NODE_FLAGS (test/node-flags.test.ts keeps them equal).
import '../dist/src/cli/main.js';
