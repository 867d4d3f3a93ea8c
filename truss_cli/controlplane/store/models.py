"""Models: a name users push to, owning deployments."""

from __future__ import annotations

import sqlalchemy as sa

from truss_cli.controlplane.store import schema
from truss_cli.controlplane.store._rows import now, to_record
from truss_cli.controlplane.store.database import read_transaction, write_transaction
from truss_cli.controlplane.store.errors import Conflict, NotFound, StoreError
from truss_cli.controlplane.store.ids import new_id
from truss_cli.controlplane.store.records import Model

t = schema.models


class Models:
    def __init__(self, engine: sa.Engine):
        self._engine = engine

    def create(self, name: str) -> Model:
        """A new model named `name`; Conflict when the name is taken."""
        name = name.strip()
        if not name or len(name) > 255:
            raise StoreError(f"a model name must have 1 to 255 characters, not {len(name)}")
        model = Model(id=new_id(), name=name, created_at=now())
        try:
            with write_transaction(self._engine) as db:
                db.execute(t.insert().values(id=model.id, name=model.name, created_at=model.created_at))
        except sa.exc.IntegrityError as exc:
            raise Conflict(f"a model named {name!r} exists", hint="push a new deployment of it instead") from exc
        return model

    def get_or_create(self, name: str) -> tuple[Model, bool]:
        """The model named `name`, creating it if needed (True when created); safe when two
        pushes of a new model race."""
        found = self.find(name)
        if found is not None:
            return found, False
        try:
            return self.create(name), True
        except Conflict:
            return self.get(name), False

    def find(self, id_or_name: str) -> Model | None:
        """The model with this id, else with this name, else None."""
        with read_transaction(self._engine) as db:
            row = db.execute(sa.select(t).where(t.c.id == id_or_name)).first()
            if row is None:
                row = db.execute(sa.select(t).where(t.c.name == id_or_name)).first()
        return None if row is None else to_record(Model, row)

    def get(self, id_or_name: str) -> Model:
        """Like find, but a miss raises NotFound naming the models that exist."""
        found = self.find(id_or_name)
        if found is None:
            raise NotFound("model", id_or_name, (f"{m.name} ({m.id})" for m in self.list()))
        return found

    def list(self) -> list[Model]:
        with read_transaction(self._engine) as db:
            rows = db.execute(sa.select(t).order_by(t.c.created_at, t.c.name)).all()
        return [to_record(Model, row) for row in rows]

    def delete(self, model_id: str) -> Model:
        """Delete a model with its deployments, replicas and builds (rows only: stopping the
        replicas is the caller's job, before or after)."""
        model = self.get(model_id)
        with write_transaction(self._engine) as db:
            db.execute(t.delete().where(t.c.id == model.id))
        return model
