"""The stored text of a patch point's manifest, spliced from its base's per patch
(controlplane/manifest_text.py), is byte for byte what `Manifest.to_json()` writes: the same
tree always gets the same manifest blob, however it was made."""

from __future__ import annotations

import hashlib
import random

from truss_cli.controlplane.manifest_text import ManifestText
from truss_cli.sync.manifest import EXECUTABLE_MODE, FILE_MODE, LINK_MODE, Entry, Manifest

# Names JSON escapes or orders in surprising ways: non-ASCII, a lone surrogate (a non-UTF-8
# name read with surrogateescape), quotes, backslashes, upper case, "." and "-" against "/".
NAMES = ["a", "b/c", "é/ü.py", "z\udcff.bin", "B", "a.b", "a/b", "a-b", "日本.txt", 'q"uote', "back\\slash", "tab\there"]


def _digest(value: object) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()


def test_the_text_of_a_manifest_is_its_json():
    manifest = Manifest({f"{name}{n}": Entry(_digest(n), mode) for n, (name, mode) in
                         enumerate([(name, mode) for name in NAMES for mode in (FILE_MODE, EXECUTABLE_MODE, LINK_MODE)])})
    assert ManifestText.of(manifest).encode() == manifest.to_json().encode()
    assert ManifestText.of(Manifest({})).encode() == Manifest({}).to_json().encode()


def test_spliced_patch_after_patch_the_text_stays_the_json_of_the_tree():
    rnd = random.Random(10)
    manifest = Manifest({f"{name}{n}": Entry(_digest(n), FILE_MODE) for n, name in enumerate(NAMES * 10)})
    text = ManifestText.of(manifest)
    for step in range(300):
        changes: dict = {}
        for _ in range(rnd.randint(1, 5)):
            if rnd.random() < 0.3 and len(manifest):
                changes[rnd.choice(sorted(manifest))] = None  # a delete
            else:  # a new file or a changed one
                changes[f"{rnd.choice(NAMES)}{rnd.randint(0, 300)}"] = Entry(_digest(rnd.random()), rnd.choice([FILE_MODE, EXECUTABLE_MODE]))
        changes = {path: entry for path, entry in changes.items() if entry is not None or path in manifest}
        manifest, text = manifest.with_changes(changes), text.with_changes(changes)
        assert text.encode() == manifest.to_json().encode(), f"step {step}: {changes}"
        assert len(text) == len(manifest)
