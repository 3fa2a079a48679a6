// Entry point of the `warden` command (bin/warden.js imports this file).
import { runCli } from './run.js';

// Deprecation warnings from libraries are noise for CLI users (grpc-js, for
// one, triggers DEP0123 whenever a TLS control plane is addressed by IP).
process.noDeprecation = true;

runCli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // One line on stderr, whatever went wrong.
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`error: ${message.replace(/\s*\n\s*/g, ' ')}\n`);
    process.exitCode = 1;
  },
);
