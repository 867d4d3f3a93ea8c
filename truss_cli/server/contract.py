"""What a model class offers, read once after `__init__`: the Truss Model contract.

`predict` (or, instead, an async `websocket(ws)`), `preprocess`, `postprocess`,
`is_healthy` and the extra endpoints (`chat_completions`, `completions`, `embeddings`,
`messages`, `responses`) may each be sync or async; `predict` and the endpoints may be sync or
async generators. A method takes nothing, the input, a Starlette/FastAPI `Request`, or the
input and then the request (as in Truss). Pydantic annotations (pydantic 1 or 2, `typed_io.py`) on the input of a route's first
step and on the return of its last step become its input/output types; the input and the
output are validated against them (predict's are published as the schema).
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable, Optional

import starlette.requests

from truss_cli.server import typed_io


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
    input_type: Optional[type]
    output_type: Optional[type]
    output_may_be_none: bool  # the return annotation is Optional[...]


# The routes besides predict (Truss's OpenAI- and Anthropic-style ones), by method name. Each
# is served when the model class defines the method; it is called alone (no preprocess or
# postprocess) and outside the predict_concurrency bound, as Truss does: such methods usually
# forward to an inference engine that batches on its own.
EXTRA_ENDPOINTS = ("chat_completions", "completions", "embeddings", "messages", "responses")


@dataclass(frozen=True)
class Endpoint:
    """One model route: [preprocess ->] method [-> postprocess], with what the server needs to
    know per request worked out once (the hot path reads fields, computes nothing)."""

    name: str
    preprocess: Optional[ModelMethod]
    method: ModelMethod
    postprocess: Optional[ModelMethod]
    # Holds a predict_concurrency slot while the method (or its stream) runs.
    bounded: bool
    # Pydantic classes from the first step's input and the last step's return annotation.
    input_type: Optional[type]
    output_type: Optional[type]
    output_may_be_none: bool
    # Some step takes the Request.
    wants_request: bool
    # The first step takes only the request: the server must not parse (or read) the body.
    reads_body_itself: bool

    @classmethod
    def chain(
        cls, method: ModelMethod, preprocess: Optional[ModelMethod] = None, postprocess: Optional[ModelMethod] = None
    ) -> "Endpoint":
        first, last = preprocess or method, postprocess or method
        steps = [m for m in (preprocess, method, postprocess) if m is not None]
        return cls(
            name=method.name,
            preprocess=preprocess,
            method=method,
            postprocess=postprocess,
            bounded=method.name == "predict",
            input_type=first.input_type,
            output_type=last.output_type,
            output_may_be_none=last.output_may_be_none,
            wants_request=any(m.takes_request for m in steps),
            reads_body_itself=first.takes_request and not first.takes_input,
        )


@dataclass(frozen=True)
class ModelContract:
    # "predict" and each of EXTRA_ENDPOINTS the model defines. No "predict" for a model that
    # serves a websocket instead.
    endpoints: dict[str, Endpoint]
    websocket: Optional[ModelMethod]
    is_healthy: Optional[ModelMethod]

    @property
    def predict(self) -> Optional[Endpoint]:
        return self.endpoints.get("predict")

    def schema(self) -> Optional[dict[str, Any]]:
        predict = self.predict
        if predict is None or (predict.input_type is None and predict.output_type is None):
            return None
        return {
            "input_schema": typed_io.json_schema(predict.input_type) if predict.input_type else None,
            "output_schema": typed_io.json_schema(predict.output_type) if predict.output_type else None,
            "supports_streaming": predict.method.is_generator,
        }


def read_contract(model: Any) -> ModelContract:
    predict = _describe(model, "predict")
    preprocess = _describe(model, "preprocess")
    postprocess = _describe(model, "postprocess")
    websocket = _describe(model, "websocket")
    is_healthy = _describe(model, "is_healthy")
    if is_healthy is not None and (is_healthy.takes_input or is_healthy.takes_request):
        raise ModelDefinitionError("`is_healthy` must take no arguments besides `self`")
    if websocket is not None:
        _check_websocket(websocket, has_predict_steps=any((predict, preprocess, postprocess)))
    elif predict is None:
        raise ModelDefinitionError("no `predict` method; the model class must define one")
    else:
        _check_predict_steps(predict, preprocess, postprocess)
    endpoints = {"predict": Endpoint.chain(predict, preprocess, postprocess)} if predict is not None else {}
    for name in EXTRA_ENDPOINTS:
        method = _describe(model, name)
        if method is not None:
            endpoints[name] = Endpoint.chain(method)
    return ModelContract(endpoints=endpoints, websocket=websocket, is_healthy=is_healthy)


def _check_websocket(websocket: ModelMethod, has_predict_steps: bool) -> None:
    # Truss's rules, so a model that runs here also runs there.
    if has_predict_steps:
        raise ModelDefinitionError(
            "the model class defines `websocket` and also `predict`, `preprocess` or `postprocess`; "
            "a model serves either a websocket or predict requests, not both"
        )
    if not websocket.is_async or websocket.is_generator:
        raise ModelDefinitionError("`websocket` must be an `async def` (it receives the connection and returns nothing)")
    if not websocket.takes_input or websocket.takes_request:
        raise ModelDefinitionError("`websocket` must take exactly one argument besides `self`: the WebSocket")


def _check_predict_steps(
    predict: ModelMethod, preprocess: Optional[ModelMethod], postprocess: Optional[ModelMethod]
) -> None:
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


def _pydantic_class(annotation: Any) -> Optional[type]:
    """The pydantic model class (either major) an annotation names, if exactly one."""
    if typed_io.is_model_class(annotation):
        return annotation
    # Optional[Out], Union[Out, Generator[...]]: the one pydantic member, if exactly one.
    members = [a for a in typing.get_args(annotation) if typed_io.is_model_class(a)]
    return members[0] if len(members) == 1 else None
