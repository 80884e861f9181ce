// The page's calls to the server's JSON API (`api/*` under the page's base path,
// docs/protocol.md): same-origin fetches whose failures carry the server's `error` text.

import { basePath } from './config';

/** A failed API call: the HTTP status and the server's explanation for people. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/**
 * `api/<rel>` under the server's base path, which serves the page at `<base>` and at
 * `<base>container-terminal` (`/terminal/container-terminal` -> `/terminal/api/...`).
 */
export function apiUrl(pathname: string, rel: string): string {
  return `${basePath(pathname).replace(/\/container-terminal$/, '')}/api/${rel}`;
}

/** The server's `{"error": ...}` text of a failed answer, else a generic line with the status. */
export function errorText(status: number, body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: unknown };
    if (typeof parsed.error === 'string' && parsed.error !== '') return parsed.error;
  } catch {
    /* not JSON: fall through */
  }
  return `the server answered HTTP ${status}`;
}

/** Calls `api/<rel>`; resolves with the parsed JSON (null for 204), rejects with an ApiError. */
export async function callApi<T>(method: 'GET' | 'POST' | 'DELETE', rel: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(apiUrl(window.location.pathname, rel), {
      method,
      credentials: 'same-origin',
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'the server cannot be reached');
  }
  const text = await res.text();
  if (!res.ok) throw new ApiError(res.status, errorText(res.status, text));
  if (res.status === 204 || text === '') return null as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new ApiError(res.status, 'the server sent an answer the page cannot read');
  }
}
