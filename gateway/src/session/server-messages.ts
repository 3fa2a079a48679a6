// The server → client half of the relay: swaps the upstream's BackendKeyData
// for the gateway's own key, and tells the tracker how each statement ended.
// Result rows pass through untouched, unless the session is under masks: then
// rows, COPY data, notices and errors go through its ResultMasking. A notification the session sent itself
// carries the gateway's pid too, so a client can still tell its own
// notifications by comparing with its backend PID, as Postgres' NOTIFY
// documentation tells it to.
import {
  BACKEND_KEY_DATA,
  COMMAND_COMPLETE,
  COPY_DATA,
  COPY_OUT_RESPONSE,
  DATA_ROW,
  EMPTY_QUERY_RESPONSE,
  ERROR_RESPONSE,
  NOTICE_RESPONSE,
  NOTIFICATION_RESPONSE,
  PORTAL_SUSPENDED,
  READY_FOR_QUERY,
  ROW_DESCRIPTION,
  backendKeyData,
  parseErrorResponse,
} from '@warden/proto/pgwire';
import { MessageFilter, messageTypes, type MemoryBudget } from './filter.js';

/** What every session inspects: how statements end, and the backend's key and pid. */
const ALWAYS = [COMMAND_COMPLETE, ERROR_RESPONSE, READY_FOR_QUERY, EMPTY_QUERY_RESPONSE, PORTAL_SUSPENDED, BACKEND_KEY_DATA, NOTIFICATION_RESPONSE];
const INSPECTED = messageTypes(...ALWAYS);
/** Under masks, rows and what may echo them are inspected too. */
const MASKED_INSPECTED = messageTypes(...ALWAYS, ROW_DESCRIPTION, DATA_ROW, COPY_OUT_RESPONSE, COPY_DATA, NOTICE_RESPONSE);
import type { ResultMasking } from '../masking/results.js';
import type { ResponseTracker } from './tracker.js';

/** `budget`: shared with every session, for the rows masking reads whole. */
export function serverMessages(key: { pid: number; secret: number }, tracker: ResponseTracker, masking?: ResultMasking, budget?: MemoryBudget): MessageFilter {
  let upstreamPid: number | undefined;
  const inspect = (type: number, msg: Buffer): Buffer | null => {
    switch (type) {
      case DATA_ROW:
        return masking!.dataRow(msg);
      case COPY_DATA:
        return masking!.copyData(msg);
      case ROW_DESCRIPTION:
        masking!.rowDescription(msg);
        return null;
      case COPY_OUT_RESPONSE:
        masking!.copyOut(msg);
        return null;
      case NOTICE_RESPONSE:
        return masking!.message(msg);
      case COMMAND_COMPLETE:
        tracker.complete(msg.toString('utf8', 5, msg.length - 1));
        return null;
      case EMPTY_QUERY_RESPONSE:
        tracker.complete('');
        return null;
      case PORTAL_SUSPENDED:
        tracker.complete('SUSPENDED');
        return null;
      case ERROR_RESPONSE: {
        // Scrubbed before the tracker reads it, so the audit trail keeps no value the client may not see.
        const scrubbed = masking?.message(msg) ?? null;
        const { code = '', message = '' } = parseErrorResponse((scrubbed ?? msg).subarray(5));
        tracker.error(code, message);
        return scrubbed;
      }
      case READY_FOR_QUERY:
        tracker.ready(String.fromCharCode(msg[5]!));
        return null;
      case BACKEND_KEY_DATA:
        upstreamPid = msg.readInt32BE(5);
        return backendKeyData(key.pid, key.secret);
      case NOTIFICATION_RESPONSE: {
        if (msg.readInt32BE(5) !== upstreamPid) return null;
        const own = Buffer.from(msg);
        own.writeInt32BE(key.pid, 5);
        return own;
      }
      default:
        return null;
    }
  };
  return new MessageFilter(masking ? MASKED_INSPECTED : INSPECTED, inspect, { budget });
}
