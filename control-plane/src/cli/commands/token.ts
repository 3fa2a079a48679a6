// warden token: mint a development token signed by the local dev issuer.
import { DEV_AUDIENCE, loadDevKey, signDevToken } from '../../local/dev-issuer.js';
import { parseDuration } from '../args.js';
import { CliError } from '../errors.js';
import type { Command } from '../context.js';

export const tokenCommand: Command = {
  name: 'token',
  usage: 'warden token --sub NAME [--group G ...] [--ttl 1h] [--aud warden] [--data-dir D]\n  (local mode only: prints a JWT from the development issuer)',
  options: ['data-dir', 'sub', 'group', 'ttl', 'aud'],
  async run(ctx) {
    ctx.noArgs();
    const sub = ctx.opt('sub');
    if (!sub) throw new CliError('warden token needs --sub, e.g. --sub demo');
    const key = loadDevKey(ctx.dataDir);
    const token = await signDevToken(key, {
      sub,
      groups: ctx.many('group'),
      ttlSeconds: parseDuration(ctx.opt('ttl') ?? '1h'),
      audience: ctx.opt('aud') ?? DEV_AUDIENCE,
    });
    ctx.print(token);
  },
};
