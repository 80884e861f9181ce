// Browser test of permessage-deflate: headless Chromium offers it on every WebSocket; the server
// must accept it (without context takeover) and the page must work compressed, in both
// directions (Chromium compresses what it sends too).
//
//   node --test tests/browser/compression.test.mjs     (see terminal.test.mjs for the environment)

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fixture, openTerminal, run, start, stop, typeLine, waitForLine } from './helpers.mjs';

before(start);
after(stop);

describe('compression', { timeout: 120_000 }, () => {
  test('the page negotiates permessage-deflate and works compressed', async () => {
    const context = await fixture.browser.newContext();
    try {
      const { page } = await openTerminal(context);
      // The handshake's headers as Chromium's network stack saw them.
      const handshakes = [];
      const client = await context.newCDPSession(page);
      await client.send('Network.enable');
      client.on('Network.webSocketHandshakeResponseReceived', (e) => handshakes.push(e.response));
      // Reload so the socket's handshake happens with the network domain listening.
      await page.reload();
      await page.waitForSelector('#status[data-state="connected"]', { timeout: 20_000 });
      await page.click('#terminal');

      assert.ok(handshakes.length >= 1, 'a WebSocket handshake was seen');
      const headers = handshakes[handshakes.length - 1].headers;
      const key = Object.keys(headers).find((k) => k.toLowerCase() === 'sec-websocket-extensions');
      assert.ok(key, `the server accepted an extension: ${JSON.stringify(headers)}`);
      assert.match(headers[key], /permessage-deflate/);
      assert.match(headers[key], /server_no_context_takeover/);
      assert.match(headers[key], /client_no_context_takeover/);
      const offered = handshakes[handshakes.length - 1].requestHeaders ?? {};
      const offer = Object.entries(offered).find(([k]) => k.toLowerCase() === 'sec-websocket-extensions');
      if (offer) assert.match(offer[1], /permessage-deflate/);

      // Output large enough to go compressed, and typed input (which Chromium sends compressed).
      const lines = await run(page, 'seq 1 3000 | tail -n 3');
      assert.deepEqual(lines, ['2998', '2999', '3000']);
      await typeLine(page, 'for i in $(seq 1 400); do printf "line-%04d of a listing\\n" $i; done');
      await waitForLine(page, (l) => l.trim() === 'line-0400 of a listing', 'the last line of the listing');
      const echoed = await run(page, 'echo compressed-$((6*7))');
      assert.deepEqual(echoed, ['compressed-42']);
    } finally {
      await context.close();
    }
  });
});
