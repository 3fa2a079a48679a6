// Reads a resource's catalog over an upstream session that the agent has
// just opened, as a tiny Postgres client speaking the simple query protocol.
//
// On a fresh channel the agent first relays what the server sent after
// AuthenticationOk: ParameterStatus messages (server_version among them),
// BackendKeyData, then ReadyForQuery. We wait for that ReadyForQuery, send
// the one catalog query (after a SET LOCAL), take its DataRow, wait for the next ReadyForQuery,
// then say Terminate and close the channel.
import type { Upstream } from '../tunnel/upstream.js';
import {
  DATA_ROW,
  ERROR_RESPONSE,
  type Message,
  MessageReader,
  PARAMETER_STATUS,
  parseDataRow,
  parseErrorResponse,
  parseParameterStatus,
  query,
  READY_FOR_QUERY,
  terminate,
} from '@warden/proto/pgwire';
import { catalogQuery, parseCatalog, serverMajorVersion } from './query.js';
import type { ResourceCatalog } from './types.js';

/** Default budget for the whole exchange. */
export const CATALOG_FETCH_TIMEOUT_MS = 30_000;

/**
 * Sent ahead of the catalog query, in the same Query message (one implicit
 * transaction, which SET LOCAL lasts for). The planner's estimates for the
 * query's recursive CTEs pass jit_above_cost, and compiling it takes seconds
 * (about 5 s against 0.1 s without, on PostgreSQL 15): on every refresh.
 */
export const CATALOG_PREAMBLE = 'set local jit = off;\n';

/** A catalog big enough to pass this is refused rather than buffered. */
const MAX_MESSAGE = 512 * 1024 * 1024;

/** The catalog could not be read; `sqlstate` is the server's when it refused the query. */
export class CatalogFetchError extends Error {
  constructor(
    message: string,
    readonly sqlstate?: string,
  ) {
    super(message);
    this.name = 'CatalogFetchError';
  }
}

/** The first column of a DataRow as text (null for SQL NULL). */
function firstColumn(body: Buffer): string | null {
  if (body.length < 2 || body.readInt16BE(0) < 1) throw new CatalogFetchError('the catalog query returned a row without columns');
  let first: Buffer | null;
  try {
    first = parseDataRow(body)[0]!;
  } catch {
    throw new CatalogFetchError('the catalog query returned a truncated row');
  }
  return first === null ? null : first.toString('utf8');
}

/**
 * Runs the catalog query on an opened upstream and closes it. Rejects with a
 * CatalogFetchError on an ErrorResponse (with the server's SQLSTATE), when
 * the channel ends early, or after `timeoutMs`; the upstream is closed in
 * every case.
 */
export function fetchCatalog(upstream: Upstream, timeoutMs: number = CATALOG_FETCH_TIMEOUT_MS): Promise<ResourceCatalog> {
  return new Promise<ResourceCatalog>((resolve, reject) => {
    // Joins a big DataRow once, when it is complete, not on every chunk.
    const reader = new MessageReader();

    let phase: 'startup' | 'query' = 'startup';
    let serverVersion: string | undefined;
    let startedAt = 0;
    let text: string | null | undefined;
    let error: CatalogFetchError | undefined;
    let settled = false;

    const finish = (err: Error | undefined, catalog?: ResourceCatalog): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      upstream.close();
      if (err) reject(err);
      else resolve(catalog!);
    };

    const timer = setTimeout(() => {
      finish(
        new CatalogFetchError(
          `the catalog query on agent ${upstream.agent} did not complete within ${timeoutMs / 1000} s` +
            (phase === 'startup' ? ' (the session never became ready)' : ''),
        ),
      );
    }, timeoutMs);
    timer.unref?.();

    const onMessage = (m: Message): void => {
      if (m.type === ERROR_RESPONSE) {
        const f = parseErrorResponse(m.body);
        const e = new CatalogFetchError(
          `the catalog query failed on agent ${upstream.agent}: ${f.message ?? 'unknown error'}` +
            (f.detail ? ` (${f.detail})` : '') +
            (f.code ? ` [SQLSTATE ${f.code}]` : ''),
          f.code,
        );
        // A FATAL error ends the session: no ReadyForQuery will follow.
        if (phase === 'startup' || f.severity === 'FATAL' || f.severity === 'PANIC') finish(e);
        else error ??= e;
        return;
      }
      if (phase === 'startup') {
        if (m.type === PARAMETER_STATUS) {
          const p = parseParameterStatus(m.body);
          if (p?.name === 'server_version') serverVersion = p.value;
        } else if (m.type === READY_FOR_QUERY) {
          phase = 'query';
          startedAt = Date.now();
          upstream.write(query(CATALOG_PREAMBLE + catalogQuery(serverMajorVersion(serverVersion))));
        }
        // BackendKeyData, notices: nothing to do.
        return;
      }
      if (m.type === DATA_ROW) {
        if (text === undefined) {
          try {
            text = firstColumn(m.body);
          } catch (err) {
            error ??= err as CatalogFetchError;
          }
        }
        return;
      }
      if (m.type !== READY_FOR_QUERY) return; // RowDescription, CommandComplete, notices, ParameterStatus
      upstream.write(terminate());
      if (error) return finish(error);
      if (text === undefined || text === null) return finish(new CatalogFetchError('the catalog query returned no catalog'));
      let catalog: ResourceCatalog;
      try {
        catalog = parseCatalog(text, startedAt);
      } catch (err) {
        return finish(err as Error);
      }
      finish(undefined, catalog);
    };

    upstream.start({
      data(chunk: Buffer): void {
        if (settled) return;
        reader.push(chunk);
        try {
          for (let m = reader.nextTyped(MAX_MESSAGE); m && !settled; m = reader.nextTyped(MAX_MESSAGE)) onMessage(m);
        } catch (err) {
          finish(new CatalogFetchError(`the catalog session's byte stream is malformed: ${(err as Error).message}`));
          return;
        }
      },
      drain(): void {},
      end(err?: Error): void {
        finish(
          new CatalogFetchError(
            `the session on agent ${upstream.agent} ended before the catalog was read` + (err ? `: ${err.message}` : ''),
          ),
        );
      },
    });
  });
}
