// The Logs tab (templates/model_logs.html): follows a deployment's logs from the existing
// NDJSON endpoint with fetch and a stream reader, appending each line as it comes. The session
// cookie goes along (same origin); a GET needs no CSRF header. Every piece of a line is set
// with textContent, never as HTML: log text is whatever the model printed.

(function () {
  const view = document.getElementById('log-view');
  if (!view) { return; }
  const lines = document.getElementById('log-lines');
  const kind = document.getElementById('log-kind');
  const filter = document.getElementById('log-filter');
  const state = document.getElementById('log-state');
  const count = document.getElementById('log-count');
  let controller = null;

  function showState(name, text) {
    state.dataset.state = name;
    state.textContent = text;
  }

  function matches(item) {
    const wanted = filter.value.trim().toLowerCase();
    return !wanted || item.dataset.search.includes(wanted);
  }

  function updateCount() {
    const all = lines.children.length;
    const shown = lines.querySelectorAll('li:not([hidden])').length;
    count.textContent = shown === all ? `${all} lines` : `${shown} of ${all} lines`;
  }

  function append(entry) {
    const item = document.createElement('li');
    const at = document.createElement('time');
    // UTC to the millisecond, as the server keeps it: no guess at the viewer's zone. (toISOString
    // writes every time alike, which the server's isoformat does not for a whole second.)
    const utc = new Date(entry.at).toISOString();
    at.dateTime = utc;
    at.textContent = utc.replace('T', ' ').slice(0, 23);
    const source = document.createElement('span');
    source.className = 'source';
    source.textContent = entry.source;
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = entry.text;
    item.append(at, source, text);
    item.dataset.source = entry.source;
    item.dataset.search = `${entry.source} ${entry.text}`.toLowerCase();
    item.hidden = !matches(item);
    // Keep following the bottom only when the reader is there already (not while reading above).
    const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 8;
    item.dataset.at = utc;
    // In time order: the build log and each replica's log are read side by side, so their
    // lines arrive interleaved by reader, not by time. New lines belong at the end, so the
    // walk back is short. (toISOString's strings sort as the times do.)
    let before = lines.lastElementChild;
    while (before && before.dataset.at > item.dataset.at) { before = before.previousElementSibling; }
    if (before) { before.after(item); } else { lines.prepend(item); }
    if (atBottom) { item.scrollIntoView({block: 'end'}); }
  }

  // Reconnecting. A followed replica stream never ends by itself, so its end, like a network
  // error or a 502/503/504 (the control plane restarting behind a proxy), means the connection
  // was lost: the page asks again after a backoff (0.5 s doubling to 10 s, back to 0.5 s once an
  // answer comes), resuming from a little before the newest line it has (`since`, inclusive on
  // the server) and dropping every line it already shows (same time, source and text): the
  // overlap catches lines a slower reader had not delivered yet when the connection went.
  // A build-only stream's clean end is the build log being whole: no reconnection then.
  const FIRST_DELAY_MS = 500;
  const MAX_DELAY_MS = 10000;
  const OVERLAP_MS = 2000;
  const RETRIED_STATUSES = new Set([502, 503, 504]);
  let seen = new Set();
  let newest = null;  // the newest line's time (ms since the epoch), for `since`
  let delay = FIRST_DELAY_MS;
  let attempt = 0;
  let retryTimer = null;

  function take(entry) {
    const key = `${entry.at}\u0000${entry.source}\u0000${entry.text}`;
    if (seen.has(key)) { return; }
    seen.add(key);
    const at = Date.parse(entry.at);
    if (newest === null || at > newest) { newest = at; }
    append(entry);
  }

  function streamUrl() {
    let url = `${view.dataset.logsUrl}?follow=true&kind=${encodeURIComponent(kind.value)}`;
    if (newest !== null) { url += `&since=${encodeURIComponent(new Date(newest - OVERLAP_MS).toISOString())}`; }
    return url;
  }

  function reconnectLater(mine, why) {
    if (controller !== mine) { return; }
    attempt += 1;
    showState('reconnecting', `${why}: reconnecting in ${(delay / 1000).toFixed(1)} s (attempt ${attempt})`);
    retryTimer = setTimeout(function () { retryTimer = null; if (controller === mine) { connect(mine); } }, delay);
    delay = Math.min(delay * 2, MAX_DELAY_MS);
  }

  async function connect(mine) {
    try {
      const answer = await fetch(streamUrl(), {credentials: 'same-origin', signal: mine.signal,
                                               headers: {'Accept': 'application/x-ndjson'}});
      if (!answer.ok) {
        if (RETRIED_STATUSES.has(answer.status)) { reconnectLater(mine, `the logs answered ${answer.status}`); return; }
        let message = `the logs answered ${answer.status}`;
        try { const body = await answer.json(); message = body.error || message; } catch (e) { /* not JSON */ }
        showState('failed', message);
        return;
      }
      showState('following', attempt ? 'following (reconnected)' : 'following');
      delay = FIRST_DELAY_MS;
      const reader = answer.body.getReader();
      const decoder = new TextDecoder();
      let pending = '';
      for (;;) {
        const {value, done} = await reader.read();
        if (done) { break; }
        pending += decoder.decode(value, {stream: true});
        const complete = pending.split('\n');
        pending = complete.pop();  // a line cut between two chunks waits for its end
        for (const raw of complete) {
          if (raw.trim()) { take(JSON.parse(raw)); }
        }
        updateCount();
      }
      if (pending.trim()) { take(JSON.parse(pending)); updateCount(); }
      if (controller !== mine) { return; }
      // Build logs end once the deployment is final; replica logs end only when the server goes.
      if (kind.value === 'build') { showState('ended', 'ended (nothing more will come)'); return; }
      reconnectLater(mine, 'the stream ended');
    } catch (error) {
      if (error.name === 'AbortError') { return; }  // another kind was chosen: a new stream took over
      reconnectLater(mine, `connection lost (${error.message})`);
    }
  }

  function follow() {
    if (controller) { controller.abort(); }
    if (retryTimer !== null) { clearTimeout(retryTimer); retryTimer = null; }
    const mine = new AbortController();
    controller = mine;
    seen = new Set();
    newest = null;
    delay = FIRST_DELAY_MS;
    attempt = 0;
    lines.replaceChildren();
    updateCount();
    showState('starting', 'starting…');
    connect(mine);
  }

  filter.addEventListener('input', function () {
    for (const item of lines.children) { item.hidden = !matches(item); }
    updateCount();
  });
  kind.addEventListener('change', follow);
  const picker = document.getElementById('log-deployment');
  if (picker) { picker.addEventListener('change', function () { picker.form.submit(); }); }
  follow();
})();
