"""The scripts bench/browser.py runs inside Chromium's pages: the plain RTCDataChannel floor,
the composer echo on both sides, the page's own per-step timings of its message path, and the
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
FLOOR_ECHO = """async ({ count, start, gap = 0 }) => {
  const { channel } = globalThis.floor;
  const rows = [];
  for (let i = start; i < start + count; i++) {
    if (gap) await new Promise((resolve) => setTimeout(resolve, gap));
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
# `pong N` through the composer, as a person does (the text box, then Enter). When it saw
# each ping, on the machine's clock (ms), is kept in `globalThis.seenAt`.
RESPONDER = """() => {
  const list = document.getElementById('messages');
  const text = document.getElementById('composer-text');
  const answered = new Set();
  globalThis.seenAt = {};
  new MutationObserver((records) => {
    for (const r of records) {
      for (const node of r.addedNodes) {
        if (node.nodeType !== 1 || node.classList.contains('mine')) continue;
        const body = node.querySelector('.text')?.textContent || '';
        if (!body.startsWith('ping ') || answered.has(body)) continue;
        globalThis.seenAt[body] = performance.timeOrigin + performance.now();
        answered.add(body);
        text.value = `pong ${body.slice(5)}`;
        text.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true,
                                                         cancelable: true }));
      }
    }
  }).observe(list, { childList: true });
}"""

# Page A of the UI echo: types `ping N` and presses Enter, then waits for `pong N` from the
# other page in its list; ms each, one at a time. When it pressed Enter for each ping, on the
# machine's clock (ms), is kept in `globalThis.sentAt`.
ECHO = """async ({ count, start, gap = 0 }) => {
  const list = document.getElementById('messages');
  const text = document.getElementById('composer-text');
  const rows = [];
  globalThis.sentAt = globalThis.sentAt || {};
  for (let i = start; i < start + count; i++) {
    if (gap) await new Promise((resolve) => setTimeout(resolve, gap));
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
    globalThis.sentAt[`ping ${i}`] = performance.timeOrigin + t0;
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

# Switch on the page's own per-step User Timing (static/chat/timing.js): each step of the
# message path is a performance.measure named "gibberish: <step>" (wall time, awaits
# included). Imported from the page's own (versioned) address, so this is the module instance
# the page's code uses, and it sees the switch.
TIME_STEPS = """async () => {
  const main = document.querySelector('script[type=module][src]').src;
  const { timing } = await import(new URL('timing.js', main).href);
  timing.on = true;
  performance.clearMeasures();
}"""
# The measures made since the last read, by step (the prefix left out), then cleared.
READ_STEPS = """async () => {
  const main = document.querySelector('script[type=module][src]').src;
  const { PREFIX } = await import(new URL('timing.js', main).href);
  const out = {};
  for (const m of performance.getEntriesByType('measure')) {
    if (!m.name.startsWith(PREFIX)) continue;
    (out[m.name.slice(PREFIX.length)] ||= []).push(m.duration);
  }
  performance.clearMeasures();
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

# Every room the page keeps has been joined (its entry in the room list says so): a page
# that has just opened joins its other rooms after the shown one, and the opening measured
# next is another page's, beside a peer already present.
ALL_ROOMS_JOINED = """() => {
  const rooms = document.querySelectorAll('#rooms-panel [data-server]');
  return rooms.length > 0 && [...rooms].every((r) => r.dataset.server === 'yes');
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
