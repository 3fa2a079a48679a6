// The agent's version, from its package.json (sent to gateways in `hello`, printed by --version).
import { packageVersion } from '@warden/proto/cli';

export const VERSION: string = packageVersion(new URL('../package.json', import.meta.url));
