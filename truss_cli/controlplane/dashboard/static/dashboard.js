// The dashboard's own script (not vendored). Pages act through the management API (/v1/...):
// forms marked hx-ext="json-api" send their fields as a JSON body (htmx sends forms
// url-encoded, which /v1 does not read); the CSRF header comes from <body hx-headers>.
// A refused action shows the server's own message in the page's #action-error (as it is:
// e.g. "production must be replaced before deletion"); a done one reloads the page, unless
// the element says hx-swap or hx-target itself.
htmx.defineExtension('json-api', {
  onEvent: function (name, evt) {
    if (name === 'htmx:configRequest') { evt.detail.headers['Content-Type'] = 'application/json'; }
  },
  encodeParameters: function (xhr, parameters) {
    xhr.overrideMimeType('text/json');
    // Every value is a string: a field that must be a number or a boolean goes in hx-vals.
    return JSON.stringify(Object.fromEntries(parameters));
  }
});

document.addEventListener('htmx:afterRequest', function (evt) {
  const xhr = evt.detail.xhr;
  if (!xhr || !evt.detail.requestConfig || !evt.detail.requestConfig.path.startsWith('/v1/')) { return; }
  const shown = document.getElementById('action-error');
  if (xhr.status >= 400) {
    let message = xhr.responseText;
    try {
      const body = JSON.parse(message);
      // The hint is detail.hint (a 404 naming what exists) or detail itself (a 409's how-to-fix).
      const hint = typeof body.detail === 'string' ? body.detail : (body.detail && body.detail.hint);
      message = body.error + (hint ? ' (' + hint + ')' : '');
    } catch (e) { /* not JSON: shown as it is */ }
    if (shown) { shown.textContent = message; shown.hidden = false; }
  } else if (!evt.detail.elt.hasAttribute('hx-target') && !evt.detail.elt.hasAttribute('hx-swap')) {
    location.reload();
  }
});
