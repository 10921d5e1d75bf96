#!/usr/bin/env node
// The published entry point runs the compiled CLI (production runs compiled JS, never ts sources).
import '../dist/src/cli/main.js';
