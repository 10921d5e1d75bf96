/**
 * Builds a Decider from a config file: load + validate + compile the config, read + verify the segment store,
 * check that both speak the same segment dictionary. Any failure throws a SegbidError and leaves whatever is
 * serving untouched; the caller swaps only a complete Decider.
 */
import { loadConfigFile } from '../config/load.js';
import { compileConfig } from '../config/compile.js';
import { SegmentStore, checkStoreMatches, readStore } from '../segments/segment-store.js';
import { Decider } from './decide.js';

export function loadDecider(configPath: string): Decider {
  const config = compileConfig(loadConfigFile(configPath));
  let store: SegmentStore;
  if (config.storePath === null) {
    store = SegmentStore.empty(config.dictionary.words, config.dictionary.segments.map((s) => s.id));
  } else {
    store = readStore(config.storePath);
    checkStoreMatches(store, config.dictionary);
  }
  return new Decider(config, store);
}
