// warden token: mint a development token signed by the local dev issuer.
import { DEV_AUDIENCE, loadDevKey, signDevToken } from '../../local/dev-issuer.js';
import { parseDuration } from '../args.js';
import { CliError } from '../errors.js';
import type { Command } from '../context.js';

export const tokenCommand: Command = {
  name: 'token',
  summary: 'local mode only: print a token from the development issuer',
  usage: '--sub NAME [--group G ...] [--ttl 1h] [--aud warden] [--data-dir D]',
  options: [['data-dir', 'where local mode keeps the development issuer key'], 'sub', ['group', 'a group claim'], 'ttl', 'aud'],
  async run(ctx) {
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
