"""Models that pin their own pydantic (1 or 2) or an older FastAPI still serve, with `truss run`.

The model's requirements and the server's share one environment, as in Truss's image, so
each case here builds a real environment with the model's pins and serves typed inputs and
outputs through it: predict, a 422 naming the field, the schema route, and FastAPI's
HTTPException raised by model code. The image case is in test_image_build.py.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from run_helpers import TrussRun, shared_cache
from truss_cli.server.protocol import SCHEMA_PATH

TYPED_MODEL = """
import fastapi
import pydantic
from pydantic import BaseModel


class Query(BaseModel):
    name: str
    count: int = 1


class Answer(BaseModel):
    greeting: str
    pydantic_version: str
    fastapi_version: str


class Model:
    def predict(self, query: Query) -> Answer:
        if query.name == "teapot":
            raise fastapi.HTTPException(status_code=418, detail="short and stout")
        return Answer(
            greeting=" ".join([f"Hello, {query.name}!"] * query.count),
            pydantic_version=str(pydantic.VERSION),
            fastapi_version=fastapi.__version__,
        )
"""


@pytest.fixture
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_cache(tmp_path_factory)


@pytest.mark.parametrize(
    "requirements,pydantic_major,fastapi_version",
    [
        (["pydantic<2"], "1", None),
        (["pydantic>=2,<3"], "2", None),
        # The oldest FastAPI tested, and with it the oldest Starlette the server supports
        # (server/requirements.txt's lower bound).
        (["fastapi==0.100.0", "pydantic<2"], "1", "0.100.0"),
    ],
    ids=["pydantic-1", "pydantic-2", "fastapi-0.100-pydantic-1"],
)
def test_a_model_pinning_its_pydantic_serves_typed_inputs_and_outputs(
    make_model_dir, cache: Path, tmp_path: Path, requirements, pydantic_major, fastapi_version
) -> None:
    listed = "".join(f"  - {requirement}\n" for requirement in requirements)
    model_dir = make_model_dir(TYPED_MODEL, f"requirements:\n{listed}")
    run = TrussRun(model_dir, cache, tmp_path / "logs")
    try:
        url = run.wait_for_url()
        answer = run.predict({"name": "world", "count": 2})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["greeting"] == "Hello, world! Hello, world!"
        assert body["pydantic_version"].split(".")[0] == pydantic_major
        if fastapi_version:
            assert body["fastapi_version"] == fastapi_version

        invalid = run.predict({"name": "world", "count": "many"})
        assert invalid.status_code == 422, invalid.text
        assert invalid.json()["error"].startswith("invalid input: count: ")
        assert [error["loc"] for error in invalid.json()["detail"]] == [["count"]]
        missing = run.predict({"count": 1})
        assert missing.status_code == 422 and "name: " in missing.json()["error"]
        not_json = httpx.post(url + "/v1/models/model:predict", content=b"{not json", timeout=30)
        assert not_json.status_code == 400 and not_json.json()["error"].startswith("invalid JSON body")

        teapot = run.predict({"name": "teapot"})
        assert teapot.status_code == 418 and teapot.json() == {"error": "short and stout"}

        schema = httpx.get(url + SCHEMA_PATH, timeout=30).json()
        assert schema["input_schema"]["required"] == ["name"]
        assert set(schema["input_schema"]["properties"]) == {"name", "count"}
        assert set(schema["output_schema"]["properties"]) == {"greeting", "pydantic_version", "fastapi_version"}
        assert schema["supports_streaming"] is False
    finally:
        run.stop(signal.SIGINT)
    assert "Traceback" not in run.stderr


V1_API_UNDER_PYDANTIC_2 = """
from pydantic.v1 import BaseModel


class Query(BaseModel):
    name: str


class Model:
    def predict(self, query: Query) -> Query:
        return Query(name=query.name.upper())
"""


def test_pydantic_1_classes_from_pydantic_v1_work_under_pydantic_2(make_model_dir, cache: Path, tmp_path: Path) -> None:
    # A model half-migrated to pydantic 2 keeps its `pydantic.v1` models.
    run = TrussRun(make_model_dir(V1_API_UNDER_PYDANTIC_2, "requirements:\n  - pydantic>=2,<3\n"), cache, tmp_path / "logs")
    try:
        url = run.wait_for_url()
        assert run.predict({"name": "ada"}).json() == {"name": "ADA"}
        invalid = run.predict({"name": {"first": "ada"}})
        assert invalid.status_code == 422 and invalid.json()["error"].startswith("invalid input: name: ")
        assert httpx.get(url + SCHEMA_PATH, timeout=30).json()["input_schema"]["required"] == ["name"]
    finally:
        run.stop(signal.SIGINT)
