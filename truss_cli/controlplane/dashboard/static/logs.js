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

  async function follow() {
    if (controller) { controller.abort(); }
    const mine = new AbortController();
    controller = mine;
    lines.replaceChildren();
    updateCount();
    showState('following', 'following');
    const url = `${view.dataset.logsUrl}?follow=true&kind=${encodeURIComponent(kind.value)}`;
    try {
      const answer = await fetch(url, {credentials: 'same-origin', signal: mine.signal,
                                       headers: {'Accept': 'application/x-ndjson'}});
      if (!answer.ok) {
        let message = `the logs answered ${answer.status}`;
        try { const body = await answer.json(); message = body.error || message; } catch (e) { /* not JSON */ }
        showState('failed', message);
        return;
      }
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
          if (raw.trim()) { append(JSON.parse(raw)); }
        }
        updateCount();
      }
      if (pending.trim()) { append(JSON.parse(pending)); updateCount(); }
      // Build logs end once the deployment is final; replica logs end only when the server goes.
      if (controller === mine) { showState('ended', 'ended (nothing more will come)'); }
    } catch (error) {
      if (error.name === 'AbortError') { return; }  // another kind was chosen: a new stream took over
      if (controller === mine) { showState('failed', `stopped: ${error.message} (reload to follow again)`); }
    }
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
