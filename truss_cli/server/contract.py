"""What a model class offers, read once after `__init__`: the Truss Model contract.

`predict` (required), `preprocess`, `postprocess` and `is_healthy` (optional) may each be
sync or async; `predict` may be a sync or async generator. A method takes nothing, the
input, a Starlette/FastAPI `Request`, or the input and then the request (as in Truss).
Pydantic annotations on the input of the first step and on the return of the last step
become the published input/output schema; the input and the output are validated against it.
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
    # Pydantic classes from the annotations of the input parameter and of the return value.
    input_type: Optional[type[pydantic.BaseModel]]
    output_type: Optional[type[pydantic.BaseModel]]
    output_may_be_none: bool  # the return annotation is Optional[...]


@dataclass(frozen=True)
class ModelContract:
    predict: ModelMethod
    preprocess: Optional[ModelMethod]
    postprocess: Optional[ModelMethod]
    is_healthy: Optional[ModelMethod]
    input_type: Optional[type[pydantic.BaseModel]]
    output_type: Optional[type[pydantic.BaseModel]]
    output_may_be_none: bool

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
        raise ModelDefinitionError("no `predict` method; the model class must define one")
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
    if postprocess is not None and predict.is_generator:
        raise ModelDefinitionError(
            "`predict` is a generator (it streams), so `postprocess` would never see a result; "
            "remove `postprocess` or make `predict` return its result"
        )
    first, last = preprocess or predict, postprocess or predict
    return ModelContract(
        predict=predict,
        preprocess=preprocess,
        postprocess=postprocess,
        is_healthy=is_healthy,
        input_type=first.input_type,
        output_type=last.output_type,
        output_may_be_none=last.output_may_be_none,
    )


def _describe(model: Any, name: str) -> Optional[ModelMethod]:
    function = getattr(model, name, None)
    if function is None:
        return None
    if not callable(function):
        raise ModelDefinitionError(f"`{name}` on the model class is not a method")
    signature = inspect.signature(function)
    parameters = [p for p in signature.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(parameters) > 2:
        raise ModelDefinitionError(f"`{name}` takes {len(parameters)} arguments; at most two: the input, then the request")
    hints = _type_hints(function)
    annotations = [hints.get(p.name, p.annotation) for p in parameters]
    is_request = [_is_request_type(annotation) for annotation in annotations]
    if len(parameters) == 2 and (is_request[0] or not is_request[1]):
        raise ModelDefinitionError(
            f"`{name}` takes two arguments: the second must be annotated as a starlette/fastapi Request "
            "(the first is the input)"
        )
    takes_input = len(parameters) == 2 or (len(parameters) == 1 and not is_request[0])
    returns = hints.get("return", signature.return_annotation)
    return ModelMethod(
        name=name,
        function=function,
        is_async=inspect.iscoroutinefunction(function),
        is_generator=inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function),
        takes_input=takes_input,
        takes_request=any(is_request),
        input_type=_pydantic_class(annotations[0]) if takes_input else None,
        output_type=_pydantic_class(returns),
        output_may_be_none=type(None) in typing.get_args(returns),
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

