import { describe, expect, it } from 'vitest';
import { banner, type BannerInfo } from '../src/local/banner.js';

const info: BannerInfo = {
  dataDir: '.warden',
  storage: { kind: 'pglite', location: '.warden/cp' },
  controlPlane: '127.0.0.1:7070',
  gateway: { host: '127.0.0.1', port: 15432, pid: 1 },
  tunnel: '127.0.0.1:7443',
  agent: { pid: 2 },
  resource: 'shop',
  demo: { host: '127.0.0.1', port: 5433 },
};

describe('warden start banner', () => {
  it('shows a ready token only when given one (a terminal), and always the command that mints one', () => {
    const withToken = banner({ ...info, token: 'eyJ.test.token' });
    expect(withToken).toContain('dbname=shop user=demo sslmode=disable password=eyJ.test.token"');
    const without = banner(info);
    expect(without).not.toMatch(/password=|eyJ/);
    for (const b of [withToken, without]) expect(b).toMatch(/PGPASSWORD=\$\(.*warden token --sub demo\) psql "host=127\.0\.0\.1 port=15432 dbname=shop user=demo sslmode=disable"/);
  });

  it('says, with the seeded rules, that demo sees card numbers and e-mails masked and demo-admin sees them in clear', () => {
    const seeded = banner({ ...info, demoRules: true });
    expect(seeded).toContain("'demo' sees card numbers and e-mails masked (mask demo-pii on public.customers); 'demo-admin' is exempt and sees them in clear:");
    expect(seeded).toContain('  SELECT name, email, card_number FROM customers LIMIT 3;');
    // Once a policy file is in force, the file says what is masked; a database of the user's own has no demo mask.
    expect(banner(info)).not.toContain('masked');
    expect(banner({ ...info, demo: undefined, upstream: { host: 'db', port: 5432, database: 'app', user: 'app', sslmode: 'require' }, demoRules: true })).not.toContain('masked');
  });

  it('lists the metrics address of each process', () => {
    const shown = banner({ ...info, metrics: { controlPlane: 'http://127.0.0.1:40001', gateway: 'http://127.0.0.1:40002', agent: 'http://127.0.0.1:40003' } });
    expect(shown).toContain(
      [
        '  metrics         control plane http://127.0.0.1:40001/metrics',
        '                  gateway       http://127.0.0.1:40002/metrics',
        '                  agent         http://127.0.0.1:40003/metrics  (/healthz and /readyz beside each)',
      ].join('\n'),
    );
    expect(banner(info)).not.toContain('metrics');
  });
});
