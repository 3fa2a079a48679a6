// Loading a page's data: the answer, or the failure to show in its place.
import { useCallback, useEffect, useState } from 'preact/hooks';
import { api, ApiFailure } from './api.js';

export interface Loaded<T> {
  data?: T;
  error?: ApiFailure;
  loading: boolean;
  reload(): void;
}

/** GETs `path` (again when it changes, and every `everyMs` when given). */
export function useApi<T>(path: string | undefined, everyMs?: number): Loaded<T> {
  const [state, setState] = useState<{ data?: T; error?: ApiFailure; loading: boolean }>({ loading: true });
  const [n, setN] = useState(0);
  const reload = useCallback(() => setN((x) => x + 1), []);
  useEffect(() => {
    if (!path) return;
    let live = true;
    const load = () =>
      api<T>(path).then(
        (data) => live && setState({ data, loading: false }),
        (error: ApiFailure) => live && setState((s) => ({ data: error.status === 403 ? undefined : s.data, error, loading: false })),
      );
    setState((s) => ({ ...s, loading: true }));
    void load();
    const timer = everyMs ? setInterval(load, everyMs) : undefined;
    return () => {
      live = false;
      if (timer) clearInterval(timer);
    };
  }, [path, n, everyMs]);
  return { ...state, reload };
}
