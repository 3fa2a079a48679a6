export type * from './types.js';
export { CatalogShapeError, catalogQuery, parseCatalog, serverMajorVersion } from './query.js';
export { CATALOG_FETCH_TIMEOUT_MS, CATALOG_PREAMBLE, CatalogFetchError, fetchCatalog } from './fetch.js';
export { CATALOG_RETRY_MS, CatalogStore, type CatalogStoreOptions } from './store.js';
