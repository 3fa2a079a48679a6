// Small shared pieces: the states a page can be in besides "here it is".
import type { ComponentChildren } from 'preact';
import { useLayoutEffect, useRef } from 'preact/hooks';
import type { ApiFailure } from './api.js';

export function Loading() {
  return <p class="muted" role="status">Loading…</p>;
}

export function Empty({ title, children }: { title: string; children?: ComponentChildren }) {
  return (
    <div class="empty">
      <h3>{title}</h3>
      {children}
    </div>
  );
}

/** The server's messages start in lower case (they also end up in logs); on a page they are sentences. */
export const sentence = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

/** A 403 is a page of its own: what is needed, and whom to ask. */
export function Forbidden({ message }: { message: string }) {
  return (
    <section class="forbidden" data-testid="forbidden">
      <h1>403: not for your role</h1>
      <p>{sentence(message)}</p>
      <p>
        <a href="/">Back to the overview</a>
      </p>
    </section>
  );
}

export function Failure({ error, retry }: { error: ApiFailure; retry?: () => void }) {
  if (error.status === 403) return <Forbidden message={error.message} />;
  return (
    <div class="error" role="alert">
      <strong>{error.status === 404 ? 'Not found. ' : error.status === 0 ? 'No answer. ' : 'Something went wrong. '}</strong>
      {sentence(error.message)}
      {retry && (
        <button type="button" class="link" onClick={retry}>
          Try again
        </button>
      )}
    </div>
  );
}

export function Badge({ kind, children }: { kind: string; children: ComponentChildren }) {
  return <span class={`badge ${kind}`}>{children}</span>;
}

/** A list table: its column headings, and the rows as children. */
export function Table({ heads, testid, children }: { heads: string[]; testid?: string; children: ComponentChildren }) {
  // On a phone the rows stack, each cell led by its heading (style.css shows data-label).
  const ref = useRef<HTMLTableElement>(null);
  useLayoutEffect(() => {
    for (const row of ref.current?.tBodies[0]?.rows ?? []) [...row.cells].forEach((td, i) => (td.dataset.label = heads[i] ?? ''));
  });
  return (
    <table class="list" data-testid={testid} ref={ref}>
      <thead>
        <tr>
          {heads.map((h) => (
            <th>{h}</th>
          ))}
        </tr>
      </thead>
      <tbody>{children}</tbody>
    </table>
  );
}
