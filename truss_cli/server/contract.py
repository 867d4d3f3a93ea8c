"""What a model class offers, read once after `__init__`: the Truss Model contract.

`predict` (required), `preprocess`, `postprocess` and `is_healthy` (optional) may each be
sync or async; `predict` may be a sync or async generator. A method takes nothing, the
input, a Starlette/FastAPI `Request`, or the input and then the request (as in Truss).
Pydantic annotations on the input of the first step and on the return of the last step
become the published input/output schema, and the input is validated against it.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable, Optional

import pydantic
import starlette.requests


class ModelDefinitionError(Exception):
    """The model class does not follow the contract; the message says how to fix it."""


@dataclass(frozen=True)
class ModelMethod:
    name: str
    function: Callable[..., Any]
    is_async: bool
    is_generator: bool
    takes_input: bool
    takes_request: bool


@dataclass(frozen=True)
class ModelContract:
    predict: ModelMethod
    preprocess: Optional[ModelMethod]
    postprocess: Optional[ModelMethod]
    is_healthy: Optional[ModelMethod]
    input_type: Optional[type[pydantic.BaseModel]]
    output_type: Optional[type[pydantic.BaseModel]]

    @property
    def wants_request(self) -> bool:
        return any(m is not None and m.takes_request for m in (self.preprocess, self.predict, self.postprocess))

    @property
    def reads_body_itself(self) -> bool:
        """The first step takes only the request: the server must not parse (or read) the body."""
        first = self.preprocess or self.predict
        return first.takes_request and not first.takes_input

    def schema(self) -> Optional[dict[str, Any]]:
        if self.input_type is None and self.output_type is None:
            return None
        return {
            "input_schema": self.input_type.model_json_schema() if self.input_type else None,
            "output_schema": self.output_type.model_json_schema() if self.output_type else None,
            "supports_streaming": self.predict.is_generator,
        }


def read_contract(model: Any) -> ModelContract:
    predict = _describe(model, "predict")
    if predict is None:
        raise ModelDefinitionError(f"{type(model).__name__} has no `predict` method; the model class must define one")
    preprocess = _describe(model, "preprocess")
    postprocess = _describe(model, "postprocess")
    is_healthy = _describe(model, "is_healthy")
    if is_healthy is not None and (is_healthy.takes_input or is_healthy.takes_request):
        raise ModelDefinitionError("`is_healthy` must take no arguments besides `self`")
    if preprocess is not None and predict.takes_request and not predict.takes_input:
        raise ModelDefinitionError(
            "`predict` takes only the request, so the result of `preprocess` would be lost; "
            "give `predict` an input parameter"
        )
    if postprocess is not None and not postprocess.takes_input:
        raise ModelDefinitionError("`postprocess` must take the result of `predict` as its first argument")
    first, last = preprocess or predict, postprocess or predict
    return ModelContract(
        predict=predict,
        preprocess=preprocess,
        postprocess=postprocess,
        is_healthy=is_healthy,
        input_type=_input_model(first),
        output_type=_output_model(last),
    )


def _describe(model: Any, name: str) -> Optional[ModelMethod]:
    function = getattr(model, name, None)
    if function is None:
        return None
    if not callable(function):
        raise ModelDefinitionError(f"`{name}` on the model class is not a method")
    parameters = [
        p
        for p in inspect.signature(function).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    hints = _type_hints(function)
    if len(parameters) > 2:
        raise ModelDefinitionError(f"`{name}` takes {len(parameters)} arguments; at most two: the input, then the request")
    is_request = [_is_request_type(hints.get(p.name, p.annotation)) for p in parameters]
    if len(parameters) == 2 and (is_request[0] or not is_request[1]):
        raise ModelDefinitionError(
            f"`{name}` takes two arguments: the second must be annotated as a starlette/fastapi Request "
            "(the first is the input)"
        )
    return ModelMethod(
        name=name,
        function=function,
        is_async=inspect.iscoroutinefunction(function),
        is_generator=inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function),
        takes_input=len(parameters) == 2 or (len(parameters) == 1 and not is_request[0]),
        takes_request=any(is_request),
    )


def _type_hints(function: Callable[..., Any]) -> dict[str, Any]:
    # get_type_hints resolves string annotations (`from __future__ import annotations`), which
    # inspect.signature(eval_str=True) would too, but that needs Python 3.10.
    try:
        return typing.get_type_hints(function)
    except Exception:
        return {}


def _is_request_type(annotation: Any) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, starlette.requests.Request)


def _pydantic_class(annotation: Any) -> Optional[type[pydantic.BaseModel]]:
    if inspect.isclass(annotation) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    # Optional[Out], Union[Out, Generator[...]]: the one pydantic member, if exactly one.
    members = [a for a in typing.get_args(annotation) if inspect.isclass(a) and issubclass(a, pydantic.BaseModel)]
    return members[0] if len(members) == 1 else None


def _input_model(method: ModelMethod) -> Optional[type[pydantic.BaseModel]]:
    if not method.takes_input:
        return None
    hints = _type_hints(method.function)
    first = next(iter(inspect.signature(method.function).parameters.values()))
    annotation = hints.get(first.name, first.annotation)
    return annotation if inspect.isclass(annotation) and issubclass(annotation, pydantic.BaseModel) else None


def _output_model(method: ModelMethod) -> Optional[type[pydantic.BaseModel]]:
    annotation = _type_hints(method.function).get("return", inspect.signature(method.function).return_annotation)
    return _pydantic_class(annotation)
