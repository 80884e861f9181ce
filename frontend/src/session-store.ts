// Hands this tab's session id to the next page load through sessionStorage, and only while no
// page holds it, so a reload re-attaches while a duplicated tab gets a session of its own.

/**
 * The id is written when the page goes away (pagehide) and taken out again by the next page:
 * a duplicated tab copies sessionStorage, but finds nothing in it while the original page lives.
 */
export class SessionStore {
  constructor(private readonly key: string) {}
  /** Reads and removes the stored id. */
  take(): string | null {
    try {
      const id = window.sessionStorage.getItem(this.key);
      window.sessionStorage.removeItem(this.key);
      return id;
    } catch {
      return null;
    }
  }
  set(id: string): void {
    try {
      window.sessionStorage.setItem(this.key, id);
    } catch {
      /* storage unavailable: re-attach just won't survive a reload */
    }
  }
  clear(): void {
    try {
      window.sessionStorage.removeItem(this.key);
    } catch {
      /* ignore */
    }
  }
}
