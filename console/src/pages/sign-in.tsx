// Not signed in: the issuers to sign in with.
import { useApi } from '../hooks.js';
import { Failure, Loading, sentence } from '../ui.js';

export function SignInPage({ message }: { message?: string }) {
  // Back to the page that asked for sign-in (a link to a session or an approval).
  const back = location.pathname === '/' ? '' : `&return=${encodeURIComponent(location.pathname + location.search)}`;
  const providers = useApi<{ providers: { name: string; local: boolean }[] }>('/api/auth/providers');
  return (
    <main class="narrow sign-in">
      <h1>Warden console</h1>
      <p>Replay what tokens did, decide on held statements, and see what is healthy. Sign in with your identity provider.</p>
      {message && (
        <p class="error" role="alert">
          {sentence(message)}
        </p>
      )}
      {providers.error && <Failure error={providers.error} />}
      {providers.loading && !providers.data && <Loading />}
      {providers.data?.providers.length === 0 && (
        <div class="empty">
          <h3>No issuer to sign in with</h3>
          <p>
            Give a trusted issuer a <code>client_id</code> (and, for a confidential client, <code>client_secret_env</code>) in the policy file's{' '}
            <code>issuers</code> and apply it; in local mode (<code>npm start</code>) the development issuer is offered here.
          </p>
        </div>
      )}
      <ul class="providers">
        {providers.data?.providers.map((p) => (
          <li>
            <a class="button" href={`/auth/login?issuer=${encodeURIComponent(p.name)}${back}`}>
              Sign in with {p.local ? 'the development issuer (local mode)' : p.name}
            </a>
          </li>
        ))}
      </ul>
    </main>
  );
}
