"""Talking to model servers (and later a control plane) over HTTP. No Typer, no rich: what
is shown to a user is the caller's business; failures are TrussErrors that say what went wrong."""
