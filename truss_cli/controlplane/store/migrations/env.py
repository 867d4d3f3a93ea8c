"""Alembic's entry point, run only programmatically by store/database.py.

The caller passes an open connection (inside its migration transaction) through
`config.attributes["connection"]`; there is no alembic.ini and no URL to read.
"""

from __future__ import annotations

from alembic import context

from truss_cli.controlplane.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things in place; batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
