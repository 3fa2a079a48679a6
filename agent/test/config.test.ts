import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseConfig, resourcePassword } from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'warden-agent-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function base(): Record<string, any> {
  return {
    name: 'local',
    controlPlane: { address: '127.0.0.1:7070' },
    enrollmentToken: 'tok',
    resources: { shop: { host: '127.0.0.1', port: 5432, database: 'shop', user: 'app', password: 'pw' } },
  };
}

function errorOf(raw: unknown, env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    parseConfig(raw, { baseDir: dir, env });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('config', () => {
  it('accepts the documented shape and fills defaults', () => {
    const raw = base();
    delete raw.resources.shop.port;
    delete raw.resources.shop.database;
    const { config, warnings } = parseConfig(raw, { baseDir: dir, env: {} });
    expect(warnings).toEqual([]);
    expect(config.name).toBe('local');
    expect(config.enrollmentToken).toBe('tok');
    expect(config.gatewayTls).toEqual({ ca: undefined });
    expect(config.resources.shop).toEqual({
      host: '127.0.0.1',
      port: 5432,
      database: 'app',
      user: 'app',
      password: 'pw',
      sslmode: 'disable',
    });
  });

  it('takes several control-plane replicas, separated by commas', () => {
    const raw = base();
    raw.controlPlane.address = 'cp1.internal:7070, 10.0.0.2:7070';
    expect(parseConfig(raw, { baseDir: dir, env: {} }).config.controlPlane.address).toBe('cp1.internal:7070, 10.0.0.2:7070');
  });

  it('names the field at fault', () => {
    const cases: Array<[(c: Record<string, any>) => void, string, RegExp]> = [
      [(c) => delete c.name, 'name', /"name" is required/],
      [(c) => (c.name = 42), 'name', /must be a string/],
      [(c) => (c.name = 'bad name'), 'name', /letters, digits/],
      [(c) => delete c.controlPlane, 'controlPlane', /must be an object/],
      [(c) => (c.controlPlane.address = 'nohostport'), 'controlPlane.address', /host:port/],
      [(c) => (c.controlPlane.address = 'cp1:7070,cp2'), 'controlPlane.address', /several separated by commas/],
      [(c) => (c.controlPlane.ca = 'missing-ca.pem'), 'controlPlane.ca', /cannot be read/],
      [(c) => (c.gatewayTls = { ca: '/nonexistent/ca.pem' }), 'gatewayTls.ca', /cannot be read/],
      [(c) => (c.resources = []), 'resources', /must be an object, got an array/],
      [(c) => delete c.resources.shop.host, 'resources.shop.host', /is required/],
      [(c) => (c.resources.shop.port = 70000), 'resources.shop.port', /between 1 and 65535/],
      [(c) => (c.resources.shop.port = 'x'), 'resources.shop.port', /port number/],
      [(c) => delete c.resources.shop.user, 'resources.shop.user', /is required/],
      [(c) => (c.resources.shop.sslmode = 'prefer'), 'resources.shop.sslmode', /disable, require, verify-full/],
      [(c) => (c.resources.shop.sslrootcert = 'nope.pem'), 'resources.shop.sslrootcert', /cannot be read/],
      [(c) => (c.resources.shop.passwordFile = 'pw.txt'), 'resources.shop.password', /both set/],
      [(c) => (c.resources.shop.password = 5), 'resources.shop.password', /must be a string/],
      [(c) => (c.enrollmentTokenFile = 'x'), 'enrollmentToken', /both set/],
    ];
    for (const [mutate, field, message] of cases) {
      const raw = base();
      mutate(raw);
      const err = errorOf(raw);
      expect(err.field, `${field}: ${err.message}`).toBe(field);
      expect(err.message).toMatch(message);
      expect(err.message).toContain(`"${field}"`);
    }
  });

  it('reports every field at fault at once, the first as the field', () => {
    const raw = base();
    delete raw.name;
    raw.resources.shop.port = 'x';
    raw.resources.shop.roles = { reed: 'r' };
    const err = errorOf(raw);
    expect(err.field).toBe('name');
    expect(err.message.split('\n')).toEqual([
      'config field "name" is required',
      'config field "resources.shop.port" must be a port number between 1 and 65535, got "x"',
      'config field "resources.shop.roles.reed" is not an access level (use read, write, ddl, admin)',
    ]);
    const both = base();
    both.resources.shop.passwordFile = '/etc/hostname';
    expect(errorOf(both).message).toBe('config field "resources.shop.password" and "resources.shop.passwordFile" are both set; give only one');
  });

  it('finds the enrollment token inline, in a file or in the environment', () => {
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'from-file\n');
    const raw = base();
    delete raw.enrollmentToken;
    raw.enrollmentTokenFile = 'token'; // relative to the config directory
    expect(parseConfig(raw, { baseDir: dir, env: {} }).config.enrollmentToken).toBe('from-file');

    delete raw.enrollmentTokenFile;
    expect(parseConfig(raw, { baseDir: dir, env: { WARDEN_ENROLLMENT_TOKEN: 'from-env' } }).config.enrollmentToken).toBe(
      'from-env',
    );
    const err = errorOf(raw, {});
    expect(err.field).toBe('enrollmentTokenFile');
    expect(err.message).toMatch(/WARDEN_ENROLLMENT_TOKEN/);

    raw.enrollmentTokenFile = 'missing-token';
    expect(errorOf(raw).message).toMatch(/"enrollmentTokenFile" names a file that cannot be read/);
  });

  it('reads passwordFile at login time and warns about unknown keys', async () => {
    const pwFile = join(dir, 'pw.txt');
    writeFileSync(pwFile, 'first\n');
    const raw = base();
    delete raw.resources.shop.password;
    raw.resources.shop.passwordFile = pwFile;
    raw.resources.shop.pasword = 'typo';
    raw.extra = true;
    const { config, warnings } = parseConfig(raw, { baseDir: dir, env: {} });
    expect(warnings.join('\n')).toMatch(/"resources.shop.pasword"/);
    expect(warnings.join('\n')).toMatch(/"extra"/);
    expect(await resourcePassword(config.resources.shop!)).toBe('first');
    writeFileSync(pwFile, 'rotated');
    expect(await resourcePassword(config.resources.shop!)).toBe('rotated');
  });

  it('loadConfig reports unreadable files and bad JSON', () => {
    expect(() => loadConfig(join(dir, 'nope.json'))).toThrow(/cannot read config file .*nope.json \(ENOENT\)/);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{ "name": ');
    expect(() => loadConfig(bad)).toThrow(/is not valid JSON/);
    const good = join(dir, 'good.json');
    writeFileSync(good, JSON.stringify(base()));
    expect(loadConfig(good, {}).config.resources.shop?.user).toBe('app');
  });
});
