#!/usr/bin/env node
// A bare TCP relay doing no work at all: two of them in a row stand where
// the gateway and the agent stand, so the bench shows what two Node.js hops
// cost by themselves. Usage: node relay.js LISTEN_PORT TARGET_HOST TARGET_PORT
import net from 'node:net';

const [listenPort, targetHost, targetPort] = process.argv.slice(2);
const server = net.createServer((client) => {
  const upstream = net.connect(Number(targetPort), targetHost);
  for (const [from, to] of [[client, upstream], [upstream, client]]) {
    from.setNoDelay(true);
    from.on('data', (chunk) => { if (!to.write(chunk)) from.pause(); });
    to.on('drain', () => from.resume());
    from.on('close', () => to.destroy());
    from.on('error', () => {});
  }
});
server.listen(Number(listenPort), '127.0.0.1');
