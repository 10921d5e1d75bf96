/**
 * Builds a Decider from a config file: load + validate + compile the config, read + verify the segment store,
 * check that both speak the same segment dictionary. Any failure throws a SegbidError and leaves whatever is
 * serving untouched; the caller swaps only a complete Decider.
 */
import { loadConfigFile } from '../config/load.js';
import { compileConfig } from '../config/compile.js';
import { SegmentStore, checkStoreMatches, readStore } from '../segments/segment-store.js';
import { Decider } from './decide.js';

/** `sharedStore`: a store already mapped (worker threads share one over a SharedArrayBuffer). */
export function loadDecider(configPath: string, sharedStore?: SegmentStore): Decider {
  const config = compileConfig(loadConfigFile(configPath));
  let store: SegmentStore;
  if (sharedStore !== undefined) {
    store = sharedStore;
    checkStoreMatches(store, config.dictionary);
  } else if (config.storePath === null) {
    store = SegmentStore.empty(config.dictionary.words, config.dictionary.segments.map((s) => s.id));
  } else {
    store = readStore(config.storePath);
    checkStoreMatches(store, config.dictionary);
  }
  return new Decider(config, store);
}
