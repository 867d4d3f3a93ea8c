"""The web dashboard (issue 12): server-rendered pages at the control plane's root URL.

Every action a page offers calls the same management API (/v1/...) the CLI calls; a page's
session cookie stands in for the `Authorization` header there (auth.py), with a CSRF token.
"""
