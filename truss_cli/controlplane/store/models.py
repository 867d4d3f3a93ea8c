"""Models: a name users push to, owning deployments, with a description and a README."""

from __future__ import annotations

import re

import sqlalchemy as sa

from truss_cli.controlplane.store import schema
from truss_cli.controlplane.store._rows import now, to_record
from truss_cli.controlplane.store.database import read_transaction, write_transaction
from truss_cli.controlplane.store.environments import insert_production
from truss_cli.controlplane.store.errors import Conflict, NotFound, StoreError
from truss_cli.controlplane.store.ids import new_id
from truss_cli.controlplane.store.records import Deployment, Model, Removed, Replica
from truss_cli.controlplane.store.usage import mark_deleted

t = schema.models
# Baseten's rule: letters, digits, spaces, '-' and '_'. (A name is not editable later.)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9 _-]+$")
MAX_README_CHARS = 1 << 20


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 255:
        raise StoreError(f"a model name must have 1 to 255 characters, not {len(name)}", code="INVALID_MODEL_NAME")
    if not NAME_PATTERN.match(name):
        raise StoreError(f"invalid model name {name!r}", hint="use letters, digits, spaces, '-' and '_'",
                         code="INVALID_MODEL_NAME")
    return name


class Models:
    def __init__(self, engine: sa.Engine):
        self._engine = engine

    def create(self, name: str, readme: str = "") -> Model:
        """A new model named `name` (its README `readme`); Conflict when the name is taken."""
        name = check_name(name)
        _check_readme(readme)
        model = Model(id=new_id(), name=name, created_at=now(), readme=readme)
        try:
            with write_transaction(self._engine) as db:
                db.execute(t.insert().values(id=model.id, name=model.name, created_at=model.created_at,
                                             description="", readme=readme, last_version=None,
                                             last_ordinal=0))
                insert_production(db, model.id)  # every model has one, from its first moment
        except sa.exc.IntegrityError as exc:
            raise Conflict(f"a model named {name!r} exists", hint="push a new deployment of it instead") from exc
        return model

    def get_or_create(self, name: str, readme: str = "") -> tuple[Model, bool]:
        """The model named `name`, creating it if needed (True when created; `readme` is then its
        README); safe when two pushes of a new model race."""
        found = self.find(name)
        if found is not None:
            return found, False
        try:
            return self.create(name, readme), True
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

    def describe(self, model_id: str, *, description: str | None = None, readme: str | None = None) -> Model:
        """Change the description and/or the README (None leaves one as it is)."""
        values: dict[str, str] = {}
        if description is not None:
            if len(description) > 10_000:
                raise StoreError("a description has at most 10000 characters", hint="put long text in the README")
            values["description"] = description
        if readme is not None:
            values["readme"] = _check_readme(readme)
        if values:
            with write_transaction(self._engine) as db:
                if db.execute(t.update().where(t.c.id == model_id).values(**values)).rowcount != 1:
                    raise NotFound("model", model_id)
        return self.get(model_id)

    def delete(self, model_id: str) -> Removed:
        """Delete a model with its deployments, replicas and builds, in one transaction, marking
        their usage deleted. Rows only: stopping the replicas it returns is the caller's job."""
        d, r = schema.deployments, schema.replicas
        with write_transaction(self._engine) as db:
            if db.execute(sa.select(t.c.id).where(t.c.id == model_id).with_for_update()).first() is None:
                raise NotFound("model", model_id)
            deployments = [to_record(Deployment, row)
                           for row in db.execute(sa.select(d).where(d.c.model_id == model_id).order_by(d.c.ordinal))]
            ids = [deployment.id for deployment in deployments]
            replicas = [to_record(Replica, row) for row in db.execute(sa.select(r).where(r.c.deployment_id.in_(ids)))]
            mark_deleted(db, ids, now())
            db.execute(t.delete().where(t.c.id == model_id))
        return Removed(tuple(deployments), tuple(replicas))


def _check_readme(readme: str) -> str:
    if len(readme) > MAX_README_CHARS:
        raise StoreError(f"a README has at most {MAX_README_CHARS} characters, not {len(readme)}")
    return readme
