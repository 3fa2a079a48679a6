// The console: sign-in, the navigation, and the page for the address.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, ApiFailure, setCsrf } from './api.js';
import { navigate, onLinkClick, useLocation } from './router.js';
import type { Me, Role } from './types.js';
import { Failure, Loading } from './ui.js';
import { OverviewPage } from './pages/overview.js';
import { SessionsPage } from './pages/sessions.js';
import { ReplayPage } from './pages/replay.js';
import { AuditPage } from './pages/audit.js';
import { ApprovalsPage } from './pages/approvals.js';
import { PolicyPage } from './pages/policy.js';
import { InventoryPage } from './pages/inventory.js';
import { VerifyPage } from './pages/verify.js';
import { SignInPage } from './pages/sign-in.js';
import './style.css';

const RANK: Record<Role, number> = { viewers: 0, approvers: 1, admins: 2 };
const NAV: { href: string; label: string; role: Role }[] = [
  { href: '/', label: 'Overview', role: 'viewers' },
  { href: '/sessions', label: 'Sessions', role: 'viewers' },
  { href: '/audit', label: 'Audit search', role: 'viewers' },
  { href: '/approvals', label: 'Approvals', role: 'approvers' },
  { href: '/policy', label: 'Policy', role: 'admins' },
  { href: '/inventory', label: 'Resources & agents', role: 'viewers' },
  { href: '/verify', label: 'Audit chain', role: 'admins' },
];

function Page({ path, me }: { path: string; me: Me }) {
  if (path === '/') return <OverviewPage />;
  if (path === '/sessions') return <SessionsPage />;
  if (path.startsWith('/sessions/')) return <ReplayPage id={decodeURIComponent(path.slice('/sessions/'.length))} />;
  if (path === '/audit') return <AuditPage />;
  if (path === '/approvals') return <ApprovalsPage me={me} />;
  if (path === '/policy') return <PolicyPage />;
  if (path === '/inventory') return <InventoryPage />;
  if (path === '/verify') return <VerifyPage />;
  return (
    <section>
      <h1>No such page</h1>
      <p>
        <a href="/">Go to the overview</a>
      </p>
    </section>
  );
}

function App() {
  const { path, query } = useLocation();
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const [error, setError] = useState<ApiFailure>();
  const [menu, setMenu] = useState(false);

  useEffect(() => {
    api<Me>('/api/me').then(
      (m) => {
        setCsrf(m.csrf);
        setMe(m);
      },
      (e: ApiFailure) => (e.status === 401 ? setMe(null) : setError(e)),
    );
  }, []);
  useEffect(() => setMenu(false), [path]);

  if (error) return <main class="narrow"><Failure error={error} retry={() => location.reload()} /></main>;
  if (me === undefined) return <main class="narrow"><Loading /></main>;
  if (me === null) return <SignInPage message={query.get('signin') ?? undefined} />;

  const rank = me.role ? RANK[me.role] : -1;
  const signOut = async () => {
    await api('/api/auth/logout', { method: 'POST' }).catch(() => undefined);
    setMe(null);
    navigate('/');
  };
  return (
    <div class="shell" onClick={onLinkClick}>
      <header class="top">
        <a href="/" class="brand">Warden</a>
        <button type="button" class="menu-button" aria-expanded={menu} onClick={() => setMenu(!menu)}>
          Menu
        </button>
        <nav class={menu ? 'open' : ''} aria-label="Pages">
          {NAV.filter((n) => RANK[n.role] <= rank).map((n) => (
            <a href={n.href} class={(n.href === '/' ? path === '/' : path.startsWith(n.href)) ? 'active' : ''}>
              {n.label}
            </a>
          ))}
        </nav>
        <div class="who">
          <span data-testid="who">
            {me.display} <span class="muted">({me.role ?? 'no role'})</span>
          </span>
          <button type="button" class="link" onClick={signOut}>
            Sign out
          </button>
        </div>
      </header>
      <main>
        {me.role ? (
          <Page path={path} me={me} />
        ) : (
          <section class="forbidden" data-testid="forbidden">
            <h1>403: you hold no console role</h1>
            <p>
              You are signed in as {me.display} with groups {me.groups.join(', ') || 'none'}. The console lets in groups{' '}
              {[...me.roles.viewers, ...me.roles.approvers, ...me.roles.admins].join(', ') || '(none configured)'}; ask an admin to add you to one,
              or to name your group in the policy file's <code>console:</code> section.
            </p>
          </section>
        )}
      </main>
    </div>
  );
}

render(<App />, document.getElementById('app')!);
