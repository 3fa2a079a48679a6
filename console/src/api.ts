// Calls to the control plane's console API. Every answer is JSON; errors
// carry a sentence to show ({ error }), and 401 means "sign in".
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

let csrf = '';
export const setCsrf = (token: string) => (csrf = token);

export async function api<T>(path: string, init: { method?: 'GET' | 'POST'; body?: unknown } = {}): Promise<T> {
  const method = init.method ?? 'GET';
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      credentials: 'same-origin',
      headers: method === 'GET' ? { accept: 'application/json' } : { accept: 'application/json', 'content-type': 'application/json', 'x-csrf-token': csrf },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
  } catch {
    throw new ApiFailure(0, 'The control plane does not answer. Is `warden start` (or the control plane) still running?');
  }
  const data = (await res.json().catch(() => ({}))) as T & { error?: string };
  if (!res.ok) throw new ApiFailure(res.status, data.error ?? `the control plane answered HTTP ${res.status}`);
  return data;
}

/** Query string of the filled-in fields only. */
export function qs(fields: Record<string, string | undefined>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) if (v) p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : '';
}
