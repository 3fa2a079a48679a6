// node-postgres driven over stdin/stdout, one JSON object a line, so that a
// test can run real clients inside another network namespace
// (`ip netns exec NS node pg-driver.mjs`). Requests carry an id; each gets one
// answer with that id. Requests run concurrently.
//   {id, op: 'connect', name, config}       -> {id, ok, pid, secret} (the BackendKeyData the client got)
//   {id, op: 'query', name, sql}            -> {id, ok, rows} | {id, ok: false, code, message}
//   {id, op: 'cancel', host, port, pid, secret} -> {id, ok} (a CancelRequest on a connection of its own)
//   {id, op: 'end', name}                   -> {id, ok}
// A client whose connection breaks while idle reports {event: 'error', name, code, message}.
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import pg from 'pg';

const clients = new Map();
const send = (msg) => process.stdout.write(`${JSON.stringify(msg)}\n`);
const failure = (err) => ({ ok: false, code: err.code ?? '', message: err.message });

async function handle(req) {
  switch (req.op) {
    case 'connect': {
      const { ca, ...config } = req.config;
      const client = new pg.Client({ ...config, ssl: ca ? { ca: readFileSync(ca, 'utf8') } : false });
      client.on('error', (err) => send({ event: 'error', name: req.name, ...failure(err) }));
      await client.connect();
      clients.set(req.name, client);
      return { ok: true, pid: client.processID, secret: client.secretKey };
    }
    case 'query': {
      const r = await clients.get(req.name).query(req.sql);
      return { ok: true, rows: r.rows };
    }
    case 'cancel':
      await cancel(req.host, req.port, req.pid, req.secret);
      return { ok: true };
    case 'end':
      await clients.get(req.name)?.end();
      clients.delete(req.name);
      return { ok: true };
    default:
      throw new Error(`unknown op ${req.op}`);
  }
}

/** CancelRequest: length 16, code 80877102, the key; the server answers by closing. */
function cancel(host, port, pid, secret) {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port }, () => {
      const msg = Buffer.alloc(16);
      msg.writeInt32BE(16, 0);
      msg.writeInt32BE(80877102, 4);
      msg.writeInt32BE(pid, 8);
      msg.writeInt32BE(secret, 12);
      socket.end(msg);
    });
    socket.on('error', reject);
    socket.on('close', () => resolve());
    socket.resume();
  });
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const req = JSON.parse(line);
  handle(req).then(
    (answer) => send({ id: req.id, ...answer }),
    (err) => send({ id: req.id, ...failure(err) }),
  );
});
process.stdin.on('end', () => process.exit(0));
