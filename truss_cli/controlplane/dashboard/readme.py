"""A model's README as the model page shows it: Markdown rendered by markdown-it-py, then
sanitised by nh3 (a README is user text: raw HTML is allowed by CommonMark, so without the
sanitiser a README could run script in an admin's browser). Only http(s) and mailto links
survive; `<script>`, `<style>`, `<iframe>`, `on*` attributes and `javascript:` URLs are dropped.

Rendering costs a few ms for a long README, so the HTML is cached per README text (the text is
the key: an edit is a new entry, nothing goes stale)."""

from __future__ import annotations

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt

# The "gfm-like" preset needs linkify-it-py; commonmark with tables and strikethrough is enough.
_markdown = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
_TAGS = nh3.ALLOWED_TAGS | {"details", "summary"}
_ATTRIBUTES = {**nh3.ALLOWED_ATTRIBUTES, "code": {"class"}}  # keeps `language-python` on code blocks


@lru_cache(maxsize=256)
def readme_html(text: str) -> str:
    """Safe HTML for `text` (Markdown); "" for an empty README."""
    if not text.strip():
        return ""
    return nh3.clean(_markdown.render(text), tags=_TAGS, attributes=_ATTRIBUTES,
                     url_schemes={"http", "https", "mailto"}, link_rel="noopener noreferrer nofollow")
