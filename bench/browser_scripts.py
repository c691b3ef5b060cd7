"""The scripts bench/browser.py runs inside Chromium's pages: the plain RTCDataChannel floor,
the composer echo on both sides, per-step timings of the page's message path, and the
member-list watch of the mesh race. Each is a JavaScript function for Playwright's
`page.evaluate` (or, for MEMBER_WATCH, an init script)."""

# Plain RTCDataChannel: the offering page makes a connection and an ordered channel and
# returns its complete offer (no trickle: the pages exchange one description each).
FLOOR_OFFER = """async () => {
  const pc = new RTCPeerConnection();
  const channel = pc.createDataChannel('floor', { ordered: true });
  globalThis.floor = { pc, channel, open: new Promise((r) => { channel.onopen = r; }) };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') resolve();
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') resolve(); };
  });
  return pc.localDescription.toJSON();
}"""

# The answering page echoes every message straight back.
FLOOR_ANSWER = """async (offer) => {
  const pc = new RTCPeerConnection();
  pc.ondatachannel = (e) => { const ch = e.channel; ch.onmessage = (m) => ch.send(m.data); };
  globalThis.floor = { pc };
  await pc.setRemoteDescription(offer);
  await pc.setLocalDescription(await pc.createAnswer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') resolve();
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') resolve(); };
  });
  return pc.localDescription.toJSON();
}"""

FLOOR_ACCEPT = """async (answer) => {
  await globalThis.floor.pc.setRemoteDescription(answer);
  await globalThis.floor.open;
}"""

# `count` round trips, one at a time, of texts shaped like the UI echo's: ms each.
FLOOR_ECHO = """async ({ count, start }) => {
  const { channel } = globalThis.floor;
  const rows = [];
  for (let i = start; i < start + count; i++) {
    const body = `ping ${i}`;
    const back = new Promise((resolve) => {
      channel.onmessage = (m) => { if (m.data === body) resolve(); };
    });
    const t0 = performance.now();
    channel.send(body);
    await back;
    rows.push(performance.now() - t0);
  }
  return rows;
}"""

# `pairs` connections set up at once inside one page, signalled by direct calls (no server):
# ms from the first offer until every channel is open.
FLOOR_LINKS = """async ({ pairs }) => {
  const made = [];
  const t0 = performance.now();
  await Promise.all(Array.from({ length: pairs }, async () => {
    const a = new RTCPeerConnection();
    const b = new RTCPeerConnection();
    made.push(a, b);
    a.onicecandidate = (e) => { if (e.candidate) b.addIceCandidate(e.candidate); };
    b.onicecandidate = (e) => { if (e.candidate) a.addIceCandidate(e.candidate); };
    const channel = a.createDataChannel('floor');
    const open = new Promise((resolve) => { channel.onopen = resolve; });
    await a.setLocalDescription();
    await b.setRemoteDescription(a.localDescription);
    await b.setLocalDescription();
    await a.setRemoteDescription(b.localDescription);
    await open;
  }));
  const ms = performance.now() - t0;
  for (const pc of made) pc.close();
  return ms;
}"""

# Page B of the UI echo: on seeing `ping N` from another device in the list, it answers
# `pong N` through the composer, as a person does (the text box, then Enter).
RESPONDER = """() => {
  const list = document.getElementById('messages');
  const text = document.getElementById('composer-text');
  const answered = new Set();
  new MutationObserver((records) => {
    for (const r of records) {
      for (const node of r.addedNodes) {
        if (node.nodeType !== 1 || node.classList.contains('mine')) continue;
        const body = node.querySelector('.text')?.textContent || '';
        if (!body.startsWith('ping ') || answered.has(body)) continue;
        answered.add(body);
        text.value = `pong ${body.slice(5)}`;
        text.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true,
                                                         cancelable: true }));
      }
    }
  }).observe(list, { childList: true });
}"""

# Page A of the UI echo: types `ping N` and presses Enter, then waits for `pong N` from the
# other page in its list; ms each, one at a time.
ECHO = """async ({ count, start }) => {
  const list = document.getElementById('messages');
  const text = document.getElementById('composer-text');
  const rows = [];
  for (let i = start; i < start + count; i++) {
    const want = `pong ${i}`;
    let watch;
    const seen = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${want} within 30 s`)), 30000);
      watch = new MutationObserver((records) => {
        for (const r of records) {
          for (const node of r.addedNodes) {
            if (node.nodeType === 1 && !node.classList.contains('mine')
                && node.querySelector('.text')?.textContent === want) {
              clearTimeout(timer);
              resolve();
            }
          }
        }
      });
      watch.observe(list, { childList: true });
    });
    const t0 = performance.now();
    text.value = `ping ${i}`;
    text.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true,
                                                     cancelable: true }));
    try {
      await seen;
    } finally {
      watch.disconnect();
    }
    rows.push(performance.now() - t0);
  }
  return rows;
}"""

# Time the page's own steps of a message's path by wrapping its modules' methods (the page
# imported the same module instances, so the running peer and view use the wrapped ones).
# Durations are wall time from call to settle, awaits included.
STEPS = [
    ("BrowserPeer", "browser-peer.js", "send", "send: the whole of BrowserPeer.send"),
    ("BrowserLog", "browser-log.js", "author", "send: sign + store (BrowserLog.author)"),
    ("Mesh", "browser-mesh.js", "broadcast", "send: onto the data channels (Mesh.broadcast)"),
    ("BrowserPeer", "browser-peer.js", "receive", "receive: the whole of BrowserPeer.receive"),
    ("BrowserPeer", "browser-peer.js", "verified", "receive: verify (BrowserPeer.verified)"),
    ("BrowserLog", "browser-log.js", "addMany", "receive: store (BrowserLog.addMany)"),
    ("ChatView", "ui.js", "addMessages", "both: draw the message (ChatView.addMessages)"),
    ("ChatView", "ui.js", "renderState", "both: member list and banner (ChatView.renderState)"),
    ("BrowserPeer", "browser-peer.js", "flushOutbox",
     "background: upload to the server (flushOutbox, its round trip included)"),
]
TIME_STEPS = """async (steps) => {
  const timings = globalThis.benchSteps = {};
  for (const [cls, file, method, label] of steps) {
    const mod = await import(`/static/chat/${file}`);
    const proto = mod[cls].prototype;
    const original = proto[method];
    timings[label] = [];
    proto[method] = function (...args) {
      const t0 = performance.now();
      const done = () => { timings[label].push(performance.now() - t0); };
      const result = original.apply(this, args);
      if (result && typeof result.then === 'function') return result.finally(done);
      done();
      return result;
    };
  }
  // Below the page's code: WebCrypto's Ed25519 and IndexedDB's transactions (made to complete).
  for (const [method, label] of [['sign', 'WebCrypto sign (Ed25519)'],
                                 ['verify', 'WebCrypto verify (Ed25519)']]) {
    const original = SubtleCrypto.prototype[method];
    timings[label] = [];
    SubtleCrypto.prototype[method] = function (...args) {
      const t0 = performance.now();
      return original.apply(this, args).finally(() => {
        timings[label].push(performance.now() - t0); });
    };
  }
  // Per mode and stores, from its creation to its completion (a read-write one to its commit).
  const transaction = IDBDatabase.prototype.transaction;
  IDBDatabase.prototype.transaction = function (stores, mode, ...rest) {
    const tx = transaction.call(this, stores, mode, ...rest);
    const t0 = performance.now();
    const names = [...tx.objectStoreNames].join(' + ');
    const label = `IndexedDB ${tx.mode} transaction on ${names} (durability ${tx.durability})`;
    tx.addEventListener('complete', () => {
      (timings[label] ||= []).push(performance.now() - t0);
    });
    return tx;
  };
}"""
READ_STEPS = """() => {
  const timings = globalThis.benchSteps;
  const out = {};
  for (const label of Object.keys(timings)) {
    out[label] = timings[label];
    timings[label] = [];
  }
  return out;
}"""

# The already-present page of an open: once the newcomer shows as connected in its member
# list, it writes one message through the composer (the newcomer's first live message).
GREET_NEWCOMER = """(newcomer) => {
  const members = document.getElementById('members');
  const text = document.getElementById('composer-text');
  const watch = new MutationObserver(() => {
    for (const li of members.querySelectorAll('.member[data-state="connected"]')) {
      if (li.querySelector('.member-name')?.textContent !== newcomer) continue;
      watch.disconnect();
      text.value = `welcome ${newcomer}`;
      text.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true,
                                                       cancelable: true }));
      return;
    }
  });
  watch.observe(members, { childList: true, subtree: true, attributes: true });
}"""

# The newcomer's opening, ms from its navigation: DOMContentLoaded and the page's marks
# (static/chat/browser-main.js), null for a mark not made yet.
OPEN_MARKS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const mark = (name) => performance.getEntriesByName(name, 'mark')[0]?.startTime ?? null;
  return { dcl: nav ? nav.domContentLoadedEventEnd : null, ready: mark('gibberish:ready'),
           joined: mark('gibberish:joined'), channel: mark('gibberish:channel-open'),
           first: mark('gibberish:first-peer-message') };
}"""

# Init script of the mesh race's pages: the wall-clock time (ms since the epoch) at which
# each member first showed as connected in this page's list, and when the socket joined.
MEMBER_WATCH = """(() => {
  const first = globalThis.benchConnected = {};
  const scan = () => {
    const members = document.getElementById('members');
    if (!members) return;
    for (const li of members.querySelectorAll('.member[data-state="connected"]')) {
      const name = li.querySelector('.member-name')?.textContent;
      if (name && !(name in first)) first[name] = performance.timeOrigin + performance.now();
    }
  };
  new MutationObserver(scan).observe(document, { childList: true, subtree: true,
                                                  attributes: true });
})()"""
MESH_TIMES = """() => {
  const mark = performance.getEntriesByName('gibberish:joined', 'mark')[0];
  return { origin: performance.timeOrigin, joined: mark ? performance.timeOrigin + mark.startTime
           : null, connected: globalThis.benchConnected || {} };
}"""
