// The server's text frames and close codes as the page reads them (docs/protocol.md).

export interface ReadyFrame {
  type: 'ready';
  protocol: number;
  session: string;
  user: string;
  container: string | null;
  mode: string;
  cols: number;
  rows: number;
  resumed: boolean;
}

/** A text frame of the server, with the fields the page reads still unchecked. */
export type TextFrame = Record<string, unknown>;

/** Parses a text frame; null (and a console warning) when it is not a JSON object. */
export function parseTextFrame(text: string): TextFrame | null {
  try {
    return JSON.parse(text) as TextFrame;
  } catch {
    console.warn('termpool: ignoring a text frame that is not JSON');
    return null;
  }
}

const CLOSE_REASONS: Record<number, string> = {
  1001: 'the server is going away',
  1008: 'refused by the server (policy)',
  1009: 'a message was too big for the server',
  1011: 'server error',
  1012: 'the server is restarting',
  1013: 'the server is busy, try again later',
};

/** Why a socket closed, for people: the server's reason, else the close code's meaning. */
export function closeReason(ev: { code: number; reason: string }, opened: boolean): string {
  return ev.reason || CLOSE_REASONS[ev.code] || (opened ? 'connection lost' : 'could not connect');
}
