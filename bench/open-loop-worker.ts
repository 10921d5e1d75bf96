/**
 * Worker thread entry of runOpenLoopInWorker (bench/open-loop.ts): runs the open-loop driver with the options it
 * is given and posts its result back once, then ends. Never throws for server behaviour (runOpenLoop does not).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { runOpenLoop, type OpenLoopOptions, type OpenLoopResult } from './open-loop.js';

const result: OpenLoopResult = await runOpenLoop(workerData as OpenLoopOptions);
// The latency arrays are the worker's own: hand them over rather than copy them.
parentPort!.postMessage(result, [result.latenciesMs.buffer, result.fromSendMs.buffer, result.lateMs.buffer] as ArrayBuffer[]);
