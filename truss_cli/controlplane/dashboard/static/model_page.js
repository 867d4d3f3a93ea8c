// The model page's own behaviour (loaded by templates/model_overview.html; no inline script
// under the pages' CSP). Saving goes through htmx and /v1 (dashboard.js); this file only
// opens and closes the editors and copies the invocation code.

// "Edit" swaps a shown value for its form; "Cancel" puts it back (the form keeps what was
// typed until the page reloads, which a successful save does).
document.addEventListener('click', function (evt) {
  const button = evt.target.closest('.editable .edit, .editable .cancel');
  if (!button) { return; }
  const box = button.closest('.editable');
  const editing = button.classList.contains('edit');
  box.querySelector('.editor').hidden = !editing;
  box.querySelector('.shown').hidden = editing;
  box.querySelector('.edit').hidden = editing;
  if (editing) { box.querySelector('.editor input, .editor textarea').focus(); }
});

// Copy: the Clipboard API exists only in a secure context (https, or http on loopback); on
// plain http from another host it is undefined, and it may refuse without permission. Then
// the code is selected instead and the user is told to press Ctrl+C (or Cmd+C).
function selectCode(code) {
  const range = document.createRange();
  range.selectNodeContents(code);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

function showNote(snippet, text) {
  const note = snippet.querySelector('.copy-note');
  note.textContent = text;
  note.hidden = false;
}

document.addEventListener('click', function (evt) {
  const button = evt.target.closest('.snippet .copy');
  if (!button) { return; }
  const snippet = button.closest('.snippet');
  const code = snippet.querySelector('code');
  const fallback = function () {
    selectCode(code);
    showNote(snippet, 'Selected: press Ctrl+C (⌘C) to copy');
  };
  if (!navigator.clipboard || !window.isSecureContext) { fallback(); return; }
  navigator.clipboard.writeText(code.textContent).then(function () {
    showNote(snippet, 'Copied');
  }, fallback);
});
