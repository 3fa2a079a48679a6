// Issue 16, end to end: the web console of the real local stack, driven in
// Debian's Chromium with playwright-core (/usr/bin/chromium; .ci/run
// installs it). A person signs in through the development issuer's page,
// finds the session psql made, replays it, approves a statement that holds
// psql and sees psql finish, checks a statement, and a viewer is refused the
// policy page. The pages are photographed, into docs/console/ for the README
// when WARDEN_UPDATE_SCREENSHOTS is set, else into a temporary directory.
// Then the API with plain fetch: cookie flags, CSRF, roles per group, and the
// admin token refused.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { get as httpGet } from 'node:http';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, startStack, type Stack } from './support/stack.js';

const POLICY = join(ROOT, 'test/fixtures/console-policy.yaml');
const SHOTS = process.env.WARDEN_UPDATE_SCREENSHOTS ? join(ROOT, 'docs/console') : mkdtempSync(join(tmpdir(), 'warden-console-shots-'));
const CHROMIUM = process.env.WARDEN_TEST_CHROMIUM ?? '/usr/bin/chromium';

let stack: Stack;
let base: string;

/** psql through the gateway as `sub`; resolves with its exit code and output once it exits. */
function psql(sub: string, sql: string[]): { done: Promise<{ code: number | null; out: string }> } {
  const done = (async () => {
    const token = await stack.token(sub);
    const child = spawn('psql', [stack.conninfo({ user: sub, application_name: 'psql' }), '-X', '-v', 'ON_ERROR_STOP=0', ...sql.flatMap((s) => ['-c', s])], {
      env: { ...process.env, PGPASSWORD: token },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    return { code, out };
  })();
  return { done };
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  stack = await startStack();
  base = stack.console;
  const applied = await stack.cli('policy', 'apply', '-f', POLICY, '--author', 'console-test');
  expect(applied.code, applied.stderr).toBe(0);
  // A second version that changes only the console's section: a change of its own.
  const second = join(stack.dataDir, 'policy-v2.yaml');
  writeFileSync(second, readFileSync(POLICY, 'utf8').replace('approvers: [approvers, dba]', 'approvers: [approvers, dba, sre]'));
  const again = await stack.cli('policy', 'apply', '-f', second, '--author', 'console-test');
  expect(again.code, again.stderr).toBe(0);
  expect(again.stdout).toContain('~ console approvers: [approvers, dba] -> [approvers, dba, sre]');
  expect(again.stdout).toContain('Applied policy version 2.');
  mkdirSync(SHOTS, { recursive: true });
});

afterAll(async () => {
  await stack?.stop();
});

describe('the console in Chromium', () => {
  let browser: Browser;

  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** Signs in on the development issuer's page, from the console's sign-in page. */
  async function signInAs(page: Page, name: string, groups: string[], other = '', shot?: string): Promise<void> {
    await page.goto(base);
    await page.getByRole('link', { name: /Sign in with the development issuer/ }).click();
    await page.waitForURL(/\/dev-issuer\/authorize/);
    await page.getByLabel('Name').fill(name);
    for (const g of groups) await page.getByLabel(g, { exact: true }).check();
    if (other) await page.getByLabel(/Other groups/).fill(other);
    if (shot) await page.screenshot({ path: join(SHOTS, shot) });
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByTestId('who').waitFor();
    expect(await page.getByTestId('who').textContent()).toContain(name);
  }

  it('signs in, lists the psql session, replays it, approves a held statement, and refuses a viewer the policy page', async () => {
    // A session of psql: a refused write, then a masked read (psql's exit code is the last command's).
    const made = await psql('demo', ['DELETE FROM orders', 'SELECT name, email, card_number FROM customers ORDER BY id LIMIT 3']).done;
    expect(made.code).toBe(0);
    expect(made.out).toContain('may not DELETE orders');

    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    await signInAs(page, 'alice', ['admins'], 'dba', 'sign-in.png');
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await page.getByText('Statements and refusals per identity').waitFor();
    await page.locator('.chart-table').getByRole('link', { name: 'demo', exact: true }).waitFor();
    await page.screenshot({ path: join(SHOTS, 'overview.png') });

    // The session psql made, in the list, then its replay.
    await page.getByRole('navigation').getByRole('link', { name: 'Sessions' }).click();
    const row = page.locator('[data-testid=sessions] tbody tr', { hasText: 'demo' }).filter({ hasText: 'refused' }).first();
    await row.waitFor({ timeout: 20_000 });
    expect(await row.textContent()).toContain('psql');
    await page.screenshot({ path: join(SHOTS, 'sessions.png') });
    await row.getByRole('link').first().click();
    const timeline = page.getByTestId('timeline');
    await timeline.waitFor();
    await expect.poll(() => timeline.textContent()).toContain('DELETE FROM orders');
    const text = (await timeline.textContent())!;
    expect(text).toContain('SELECT name, email, card_number FROM customers');
    expect(text).toContain('rule demo-read-only');
    expect(text).toContain('3 rows');
    expect(text).toContain('42501');
    expect(text).toMatch(/masked: .*public\.customers\.card_number/);
    const all = await timeline.locator('li').count();
    expect(all).toBeGreaterThanOrEqual(4); // start, two statements, end
    await page.screenshot({ path: join(SHOTS, 'replay.png'), fullPage: true });
    // Play from the start at 100×: every event comes back.
    await page.getByLabel('Speed').selectOption('100');
    await page.getByTestId('play').click();
    await expect.poll(() => page.getByText(`${all} of ${all} events`).count(), { timeout: 30_000 }).toBe(1);
    expect(await timeline.locator('li').count()).toBe(all);

    // A held DELETE: psql waits until alice approves it in the inbox.
    const held = psql('deployer', ["DELETE FROM orders WHERE status = 'cancelled'"]);
    // Meanwhile its session is live in the list (the list refreshes by itself).
    await page.getByRole('navigation').getByRole('link', { name: 'Sessions' }).click();
    await page.locator('[data-testid=sessions] tbody tr', { hasText: 'deployer' }).filter({ hasText: 'psql' }).filter({ hasText: 'live' }).first().waitFor({ timeout: 30_000 });
    await page.getByRole('navigation').getByRole('link', { name: 'Approvals' }).click();
    const card = page.locator('[data-testid=pending] article', { hasText: 'deployer' });
    await card.waitFor({ timeout: 30_000 });
    expect(await card.textContent()).toContain("DELETE FROM orders WHERE status = 'cancelled'");
    await page.screenshot({ path: join(SHOTS, 'approvals.png') });
    await card.getByLabel('Reason').fill('cleanup agreed in the change ticket');
    await card.getByRole('button', { name: 'Approve' }).click();
    const finished = await held.done;
    expect(finished.out).toMatch(/DELETE \d+/);
    expect(finished.code).toBe(0);
    const decided = page.locator('[data-testid=decided] article', { hasText: 'deployer' }).first();
    await decided.waitFor();
    expect(await decided.textContent()).toContain('Approved by alice');
    // The replay of deployer's session says who let the DELETE run, and why.
    await page.getByRole('navigation').getByRole('link', { name: 'Sessions' }).click();
    await page.locator('[data-testid=sessions] tbody tr', { hasText: 'deployer' }).filter({ hasText: 'psql' }).filter({ hasNotText: 'live' }).first().getByRole('link').first().click();
    const heldNote = page.getByTestId('held');
    await heldNote.waitFor({ timeout: 30_000 });
    expect(await heldNote.textContent()).toContain('held by rule held-deletes');
    expect(await heldNote.textContent()).toContain('approved by alice: cleanup agreed in the change ticket');

    // Policy: version, history, diff, and the statement check.
    await page.getByRole('navigation').getByRole('link', { name: 'Policy' }).click();
    expect(await page.getByTestId('in-force').textContent()).toBe('2');
    const diff = page.getByTestId('diff');
    await diff.waitFor();
    await expect.poll(() => diff.locator('.del').allTextContents()).toEqual(['-   approvers: [approvers, dba]']);
    expect(await diff.locator('.add').allTextContents()).toEqual(['+   approvers: [approvers, dba, sre]']);
    await page.getByLabel('From version').selectOption('0');
    await expect.poll(() => diff.locator('.add').count()).toBeGreaterThan(30);
    expect(await diff.textContent()).toContain('held-deletes');
    await page.getByLabel('From version').selectOption('1');
    await expect.poll(() => diff.locator('.add').count()).toBe(1);
    await page.getByLabel('As identity').selectOption('demo');
    await page.getByLabel('SQL to check').fill('DELETE FROM orders');
    await page.getByRole('button', { name: 'Check' }).click();
    await page.getByTestId('check-result').waitFor();
    expect(await page.getByTestId('check-result').textContent()).toContain('may not DELETE orders on shop (rule: demo-read-only)');
    await page.screenshot({ path: join(SHOTS, 'policy.png'), fullPage: true });

    await page.getByRole('navigation').getByRole('link', { name: 'Audit search' }).click();
    await page.getByLabel('Decision').selectOption('refused');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByTestId('audit-results').waitFor();
    expect(await page.getByTestId('audit-results').textContent()).toContain('DELETE FROM orders');
    await page.screenshot({ path: join(SHOTS, 'audit.png') });

    await page.getByRole('navigation').getByRole('link', { name: 'Resources & agents' }).click();
    const agents = page.getByTestId('agents');
    await agents.waitFor();
    expect(await agents.locator('tbody tr', { hasText: 'local' }).locator('.badge').textContent()).toBe('connected');
    expect(await page.getByTestId('gateways').locator('tbody tr', { hasText: 'local' }).locator('.badge').textContent()).toBe('active');
    expect(await page.getByTestId('resources').locator('tbody tr', { hasText: 'shop' }).locator('.badge').textContent()).toBe('reachable');
    await page.screenshot({ path: join(SHOTS, 'inventory.png'), fullPage: true });

    await page.getByRole('navigation').getByRole('link', { name: 'Audit chain' }).click();
    await page.getByTestId('verify-status').waitFor();
    expect(await page.getByTestId('verify-status').textContent()).toContain('intact');

    // A phone's width: the same session list, the navigation folded away.
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, storageState: await ctx.storageState() });
    const small = await phone.newPage();
    await small.goto(`${base}/sessions`);
    await small.locator('[data-testid=sessions] tbody tr').first().waitFor();
    expect(await small.getByRole('navigation').isVisible()).toBe(false);
    const width = await small.evaluate(() => document.documentElement.scrollWidth);
    expect(width).toBeLessThanOrEqual(390);
    await small.screenshot({ path: join(SHOTS, 'phone-sessions.png') });
    await small.getByRole('button', { name: 'Menu' }).click();
    expect(await small.getByRole('navigation').isVisible()).toBe(true);
    await phone.close();
    await ctx.close();

    // A viewer may not see the policy: the 403 is a page that says why.
    const viewerCtx = await browser.newContext({ viewport: { width: 1280, height: 700 } });
    const viewer = await viewerCtx.newPage();
    await signInAs(viewer, 'victor', ['viewers']);
    expect(await viewer.getByRole('navigation').getByRole('link', { name: 'Policy' }).count()).toBe(0);
    await viewer.goto(`${base}/policy`);
    const forbidden = viewer.getByTestId('forbidden');
    await forbidden.waitFor();
    const said = (await forbidden.textContent())!;
    expect(said).toContain('403');
    expect(said).toContain('needs the console role admins');
    await viewer.screenshot({ path: join(SHOTS, 'forbidden.png') });
    await viewerCtx.close();
  }, 180_000);
});

/** Signs in with plain fetch through the development issuer; the session cookie, its Set-Cookie line and the CSRF token. */
async function signInFetch(sub: string, groups: string[], returnTo?: string) {
  const login = await fetch(`${base}/auth/login?issuer=local-dev${returnTo ? `&return=${encodeURIComponent(returnTo)}` : ''}`, { redirect: 'manual' });
  expect(login.status).toBe(303);
  const loginCookie = login.headers.getSetCookie()[0]!.split(';')[0]!;
  const form = new URL(login.headers.get('location')!).searchParams;
  form.set('sub', sub);
  for (const g of groups) form.append('group', g);
  const authorized = await fetch(`${base}/dev-issuer/authorize`, { method: 'POST', body: form, redirect: 'manual' });
  expect(authorized.status).toBe(303);
  const callback = await fetch(authorized.headers.get('location')!, { headers: { cookie: loginCookie }, redirect: 'manual' });
  const setCookie = callback.headers.getSetCookie().find((c) => c.startsWith('warden_console='));
  expect(setCookie, 'the callback sets the session cookie').toBeDefined();
  const cookie = setCookie!.split(';')[0]!;
  const me = (await (await fetch(`${base}/api/me`, { headers: { cookie } })).json()) as { csrf: string; role: string | null };
  return { cookie, setCookie: setCookie!, csrf: me.csrf, role: me.role, location: callback.headers.get('location') };
}

describe('the console API', () => {
  it('sets the session cookie HttpOnly and SameSite, and without TLS not Secure', async () => {
    const { setCookie, role } = await signInFetch('carol', ['viewers']);
    const attrs = setCookie.split(';').map((a) => a.trim().toLowerCase());
    expect(attrs).toContain('httponly');
    expect(attrs).toContain('samesite=lax');
    expect(attrs).toContain('path=/');
    expect(attrs).not.toContain('secure');
    expect(role).toBe('viewers');
  });

  it('refuses a state-changing request without the CSRF token of the sign-in', async () => {
    const alice = await signInFetch('alice2', ['admins', 'dba']);
    const post = (headers: Record<string, string>) =>
      fetch(`${base}/api/approvals/apr_nonexistent/approve`, { method: 'POST', headers: { cookie: alice.cookie, 'content-type': 'application/json', ...headers }, body: '{}' });
    const none = await post({});
    expect(none.status).toBe(403);
    expect(((await none.json()) as { error: string }).error).toContain('CSRF');
    const wrong = await post({ 'x-csrf-token': 'not-the-token' });
    expect(wrong.status).toBe(403);
    // Another person's token is not this sign-in's either.
    const other = await signInFetch('bob2', ['admins']);
    expect((await post({ 'x-csrf-token': other.csrf })).status).toBe(403);
    const right = await post({ 'x-csrf-token': alice.csrf });
    expect(right.status).toBe(404);
    expect(((await right.json()) as { error: string }).error).toContain('apr_nonexistent');
    const check = await fetch(`${base}/api/policy/check`, { method: 'POST', headers: { cookie: alice.cookie }, body: JSON.stringify({ as: 'demo', resource: 'shop', sql: 'SELECT 1' }) });
    expect(check.status).toBe(403);
  });

  it('gives each group what its role allows, and a 403 that says why', async () => {
    const get = (cookie: string, path: string) => fetch(`${base}${path}`, { headers: { cookie } });
    const viewer = await signInFetch('vera', ['viewers']);
    const approver = await signInFetch('dave', ['dba']);
    const admin = await signInFetch('ada', ['admins']);
    const nobody = await signInFetch('nora', ['marketing']);
    expect(approver.role).toBe('approvers');
    expect(nobody.role).toBeNull();
    const matrix: [string, number, number, number, number][] = [
      // path, nobody, viewer, approver, admin
      ['/api/sessions', 403, 200, 200, 200],
      ['/api/overview', 403, 200, 200, 200],
      ['/api/inventory', 403, 200, 200, 200],
      ['/api/audit?decision=refused', 403, 200, 200, 200],
      ['/api/approvals', 403, 403, 200, 200],
      ['/api/policy', 403, 403, 403, 200],
      ['/api/audit/verify', 403, 403, 403, 200],
    ];
    for (const [path, ...want] of matrix) {
      const got = [];
      for (const who of [nobody, viewer, approver, admin]) got.push((await get(who.cookie, path)).status);
      expect(got, path).toEqual(want);
    }
    const refused = (await (await get(viewer.cookie, '/api/policy')).json()) as { error: string };
    expect(refused.error).toContain('needs the console role admins (groups admins)');
    expect(refused.error).toContain('your role is viewers');
    const sessions = (await (await get(viewer.cookie, '/api/sessions?identity=demo')).json()) as { sessions: { identity: string }[] };
    expect(sessions.sessions.length).toBeGreaterThan(0);
    expect(sessions.sessions.every((s) => s.identity === 'demo')).toBe(true);
    const badTime = await get(viewer.cookie, '/api/sessions?since=yesterday');
    expect(badTime.status).toBe(400);
  });

  it('is not opened by the admin token, nor by a sign-in this browser did not start', async () => {
    const adminToken = readFileSync(join(stack.dataDir, 'admin-token'), 'utf8').trim();
    for (const path of ['/api/sessions', '/api/me', '/api/policy']) {
      const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${adminToken}` } });
      expect(res.status, path).toBe(401);
      expect(((await res.json()) as { error: string }).error).toContain('admin token is not a way in');
    }
    expect((await fetch(`${base}/api/sessions`)).status).toBe(401);
    expect((await fetch(`${base}/api/sessions`, { headers: { cookie: 'warden_console=made-up' } })).status).toBe(401);

    // A callback whose state this browser did not start signs nobody in.
    const login = await fetch(`${base}/auth/login?issuer=local-dev`, { redirect: 'manual' });
    const form = new URL(login.headers.get('location')!).searchParams;
    form.set('sub', 'mallory');
    const authorized = await fetch(`${base}/dev-issuer/authorize`, { method: 'POST', body: form, redirect: 'manual' });
    const stolen = await fetch(authorized.headers.get('location')!, { redirect: 'manual' });
    expect(stolen.status).toBe(303);
    expect(stolen.headers.get('location')).toContain('signin=');
    expect(stolen.headers.getSetCookie().some((c) => c.startsWith('warden_console='))).toBe(false);

    // The token endpoint wants the PKCE verifier the challenge was made from.
    const again = await fetch(`${base}/auth/login?issuer=local-dev`, { redirect: 'manual' });
    const f2 = new URL(again.headers.get('location')!).searchParams;
    f2.set('sub', 'mallory');
    const code = new URL((await fetch(`${base}/dev-issuer/authorize`, { method: 'POST', body: f2, redirect: 'manual' })).headers.get('location')!).searchParams.get('code')!;
    const exchange = await fetch(`${base}/dev-issuer/token`, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: f2.get('redirect_uri')!, client_id: 'warden-console', code_verifier: 'guessed' }),
    });
    expect(exchange.status).toBe(400);
    expect(((await exchange.json()) as { error: string }).error).toBe('invalid_grant');
  });

  it('decides approvals as the signed-in person: a denial needs a reason, only the rule\'s approver groups decide, never one\'s own', async () => {
    const held = psql('deployer', ["DELETE FROM orders WHERE status = 'shipped' AND id < 0"]);
    const dba = await signInFetch('dora', ['dba']);
    const approverOnly = await signInFetch('perry', ['approvers']);
    const self = await signInFetch('deployer', ['dba']);
    const list = async (who: { cookie: string }) =>
      ((await (await fetch(`${base}/api/approvals`, { headers: { cookie: who.cookie } })).json()) as { approvals: { id: string; identity: string; sql: string }[] }).approvals;
    const pending = await until('the held DELETE to be pending', async () => (await list(dba)).find((a) => a.sql.includes("status = 'shipped'")));
    const decide = async (who: { cookie: string; csrf: string }, verb: string, reason: string) => {
      const res = await fetch(`${base}/api/approvals/${pending.id}/${verb}`, {
        method: 'POST',
        headers: { cookie: who.cookie, 'x-csrf-token': who.csrf, 'content-type': 'application/json' },
        body: JSON.stringify({ reason }),
      });
      return { status: res.status, body: (await res.json()) as { error?: string; approval?: { state: string; decisions: { approver: string; reason: string }[] } } };
    };
    // The request's own chain in the trail is no client session: the list leaves it out.
    const listed = (await (await fetch(`${base}/api/sessions?identity=deployer`, { headers: { cookie: dba.cookie } })).json()) as { sessions: { sessionId: string; gateway: string }[] };
    expect(listed.sessions.length).toBeGreaterThan(0);
    expect(listed.sessions.filter((x) => x.sessionId === pending.id || x.gateway === 'control-plane')).toEqual([]);
    // perry holds the console role approvers but is in none of the rule's approver groups: the inbox does not show it, nor may he decide.
    expect((await list(approverOnly)).some((a) => a.id === pending.id)).toBe(false);
    const notHis = await decide(approverOnly, 'approve', '');
    expect(notHis.status).toBe(403);
    expect(notHis.body.error).toContain('not in an approver group (dba)');
    const own = await decide(self, 'approve', '');
    expect(own.status).toBe(403);
    expect(own.body.error).toContain('their own request');
    const noReason = await decide(dba, 'deny', '');
    expect(noReason.status).toBe(400);
    expect(noReason.body.error).toContain('a reason is required');
    const denied = await decide(dba, 'deny', 'not during the sale');
    expect(denied.status).toBe(200);
    expect(denied.body.approval).toMatchObject({ state: 'denied', decisions: [{ approver: 'dora', reason: 'not during the sale' }] });
    const finished = await held.done;
    expect(finished.code).not.toBe(0);
    expect(finished.out).toContain('not during the sale');
    const again = await decide(dba, 'approve', '');
    expect(again.status).toBe(409);
    expect(again.body.error).toContain('is denied (by dora), not pending');
  });

  it('answers in local mode only at a loopback name (no DNS rebinding)', async () => {
    const { port } = new URL(base);
    const status = (host: string) =>
      new Promise<number>((resolve, reject) =>
        httpGet({ host: '127.0.0.1', port, path: '/api/auth/providers', headers: { host } }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        }).on('error', reject),
      );
    expect(await status('attacker.example:80')).toBe(421);
    expect(await status(`localhost:${port}`)).toBe(200);
    expect(await status(`127.0.0.1:${port}`)).toBe(200);
  });

  it('returns to the page that asked for the sign-in, never to another site', async () => {
    expect((await signInFetch('rita', ['viewers'], '/sessions?identity=demo')).location).toBe('/sessions?identity=demo');
    expect((await signInFetch('rita', ['viewers'], '//attacker.example/x')).location).toBe('/');
    expect((await signInFetch('rita', ['viewers'], 'https://attacker.example/')).location).toBe('/');
    expect((await signInFetch('rita', ['viewers'])).location).toBe('/');
  });

  it('signs out: the cookie stops working', async () => {
    const s = await signInFetch('olga', ['viewers']);
    const out = await fetch(`${base}/api/auth/logout`, { method: 'POST', headers: { cookie: s.cookie, 'x-csrf-token': s.csrf } });
    expect(out.status).toBe(200);
    expect((await fetch(`${base}/api/sessions`, { headers: { cookie: s.cookie } })).status).toBe(401);
  });
});
