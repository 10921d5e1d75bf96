/**
 * Builds a Decider from a config file, or from a config document already in memory (the admin API): validate +
 * compile the config, read + verify the segment store, check that both speak the same segment dictionary. Any
 * failure throws a SegbidError and leaves whatever is serving untouched; the caller swaps only a complete Decider.
 */
import { readConfigFile } from '../config/load.js';
import { compileDocument, type CompiledConfig } from '../config/compile.js';
import { SegmentStore, checkStoreMatches, readStore } from '../segments/segment-store.js';
import { Decider } from './decide.js';

/** `sharedStore`: a store already mapped (worker threads share one over a SharedArrayBuffer). */
export function loadDecider(configPath: string, sharedStore?: SegmentStore): Decider {
  const { doc, baseDir, source } = readConfigFile(configPath);
  return deciderFromDocument(doc, baseDir, source, sharedStore);
}

/**
 * The same as loadDecider for a document in memory (the JSON as the trader wrote it). `baseDir` resolves the
 * relative paths in it (segmentation file, segment store); `source` names it in error messages.
 */
export function deciderFromDocument(doc: unknown, baseDir: string, source: string, sharedStore?: SegmentStore): Decider {
  return deciderFromConfig(compileDocument(doc, baseDir, source), sharedStore);
}

function deciderFromConfig(config: CompiledConfig, sharedStore?: SegmentStore): Decider {
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
