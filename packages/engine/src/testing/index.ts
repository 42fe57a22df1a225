/** Test helpers for store implementations: `@coffer/engine/testing`. */
export { describeObjectStore, type StoreFactory } from './store-conformance.js';
