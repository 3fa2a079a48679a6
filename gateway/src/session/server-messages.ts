// The server → client half of the relay: swaps the upstream's BackendKeyData
// for the gateway's own key, and tells the tracker how each statement ended.
// Result rows pass through untouched. A notification the session sent itself
// carries the gateway's pid too, so a client can still tell its own
// notifications by comparing with its backend PID, as Postgres' NOTIFY
// documentation tells it to.
import {
  BACKEND_KEY_DATA,
  COMMAND_COMPLETE,
  EMPTY_QUERY_RESPONSE,
  ERROR_RESPONSE,
  NOTIFICATION_RESPONSE,
  PORTAL_SUSPENDED,
  READY_FOR_QUERY,
  backendKeyData,
  parseErrorResponse,
} from '@warden/proto/pgwire';
import { MessageFilter, messageTypes } from './filter.js';

const INSPECTED = messageTypes(
  COMMAND_COMPLETE,
  ERROR_RESPONSE,
  READY_FOR_QUERY,
  EMPTY_QUERY_RESPONSE,
  PORTAL_SUSPENDED,
  BACKEND_KEY_DATA,
  NOTIFICATION_RESPONSE,
);
import type { ResponseTracker } from './tracker.js';

export function serverMessages(key: { pid: number; secret: number }, tracker: ResponseTracker): MessageFilter {
  let upstreamPid: number | undefined;
  const inspect = (type: number, msg: Buffer): Buffer | null => {
    switch (type) {
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
        const { code = '', message = '' } = parseErrorResponse(msg.subarray(5));
        tracker.error(code, message);
        return null;
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
  return new MessageFilter(
    INSPECTED,
    inspect,
  );
}
