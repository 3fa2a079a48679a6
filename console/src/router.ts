// Addresses are the app's pages (/sessions/ID); the control plane answers
// every such address with index.html, and links move with pushState.
import { useEffect, useState } from 'preact/hooks';

export function navigate(to: string): void {
  if (to === location.pathname + location.search) return;
  history.pushState(null, '', to);
  dispatchEvent(new PopStateEvent('popstate'));
}

export function useLocation(): { path: string; query: URLSearchParams } {
  const [, tick] = useState(0);
  useEffect(() => {
    const on = () => tick((n) => n + 1);
    addEventListener('popstate', on);
    return () => removeEventListener('popstate', on);
  }, []);
  return { path: location.pathname, query: new URLSearchParams(location.search) };
}

/** Plain left clicks on in-app links stay in the app. */
export function onLinkClick(e: MouseEvent): void {
  const a = (e.target as HTMLElement).closest('a');
  if (!a || a.target || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const href = a.getAttribute('href');
  if (!href || !href.startsWith('/') || href.startsWith('/auth/') || href.startsWith('/api/')) return;
  e.preventDefault();
  navigate(href);
}
