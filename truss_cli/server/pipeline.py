"""Calling the model for one route: [preprocess ->] method [-> postprocess], sync code off
the event loop.

`predict` calls are bounded by `runtime.predict_concurrency` (a semaphore); the other routes
are not (see contract.EXTRA_ENDPOINTS). A streaming `predict` holds its slot until its
generator is exhausted or closed, so the bound covers the work the generator does, not only
the call that created it. A pydantic return annotation on the last step is enforced: an
output that does not match is an error, not a silent success. An exception from model code
comes out as ModelError naming the step, so the server can say where it happened.
"""

from __future__ import annotations

import asyncio
import inspect
from concurrent.futures import Executor
from typing import Any, Callable, Optional

import starlette.exceptions
import starlette.responses

from truss_cli.server import typed_io
from truss_cli.server.contract import Endpoint, ModelContract, ModelMethod
from truss_cli.server.request_body import HTTPError

_END = object()
# Closings that wait for a stuck generator step; referenced so the tasks are not collected.
_pending_closes: set = set()


class ChunkTimeout(Exception):
    """The generator produced no chunk within `runtime.streaming_read_timeout` seconds."""


class ModelError(Exception):
    """Model code raised `error` in the method named `step`."""

    def __init__(self, step: str, error: BaseException) -> None:
        super().__init__(f"`{step}` raised {type(error).__name__}: {error}")
        self.step = step
        self.error = error


# Raised by model code on purpose to answer with a status (FastAPI's HTTPException), or by the
# server from inside a model's `await request.body()` (over the size limit): not model errors.
_PASSED_THROUGH = (starlette.exceptions.HTTPException, HTTPError)


class OutputError(Exception):
    """The model's output breaks the contract (e.g. it does not match its pydantic return
    annotation); the message says how, naming the fields."""


class ChunkStream:
    """The chunks of a streaming `predict`, pulled one by one (sync generators in a thread)."""

    END = _END

    def __init__(
        self,
        step: str,
        generator: Any,
        executor: Executor,
        release: Optional[Callable[[], None]],
        read_timeout: float,
    ) -> None:
        self.step = step
        self.chunks_sent = 0  # counted by whoever sends them, to say where a stream broke
        self._generator = generator
        self._is_async = inspect.isasyncgen(generator)
        self._executor = executor
        self._release: Optional[Callable[[], None]] = release
        self.read_timeout = read_timeout
        self._step: Optional[asyncio.Future] = None  # a step still running after a timeout

    async def next(self) -> Any:
        """The next chunk, or `ChunkStream.END`; raises ChunkTimeout if it takes too long."""
        if self._is_async:
            step = asyncio.ensure_future(self._anext())
        else:
            step = asyncio.get_running_loop().run_in_executor(self._executor, next, self._generator, _END)
        # asyncio.wait, not wait_for: a TimeoutError raised by the model itself must stay a
        # model error, not pass for the server's timeout.
        done, _ = await asyncio.wait((step,), timeout=self.read_timeout)
        if not done:
            if self._is_async:
                step.cancel()  # an async generator can be interrupted at its `await`
            self._step = step
            raise ChunkTimeout()
        try:
            return step.result()
        except _PASSED_THROUGH:
            raise
        except Exception as exc:
            raise ModelError(self.step, exc) from None

    async def _anext(self) -> Any:
        try:
            return await self._generator.__anext__()
        except StopAsyncIteration:
            return _END

    async def close(self) -> None:
        """Stop the generator and free its predict slot; never waits for a stuck step."""
        step = self._step
        if step is not None and not step.done():
            # A running generator cannot be closed: a sync step goes on in its thread until it
            # returns. Close it then, and keep its predict slot taken until then, because the
            # work is still going on; the response does not wait for it.
            task = asyncio.ensure_future(self._close_after(step))
            _pending_closes.add(task)
            task.add_done_callback(_pending_closes.discard)
            return
        await self._close_now()

    async def _close_after(self, step: asyncio.Future) -> None:
        await asyncio.wait((step,))
        if not step.cancelled():
            step.exception()  # already reported as a timeout; mark it retrieved
        await self._close_now()

    async def _close_now(self) -> None:
        try:
            if self._is_async:
                await self._generator.aclose()
            else:
                # close() runs the generator's `finally` blocks: user code, so off the loop.
                await asyncio.get_running_loop().run_in_executor(self._executor, self._generator.close)
        finally:
            if self._release is not None:
                self._release()
                self._release = None


class Pipeline:
    def __init__(self, contract: ModelContract, concurrency: int, executor: Executor, streaming_read_timeout: float) -> None:
        self.contract = contract
        self._executor = executor
        self._slots = asyncio.Semaphore(concurrency)
        self._streaming_read_timeout = streaming_read_timeout

    async def call(self, method: ModelMethod, value: Any = None, request: Any = None) -> Any:
        """Call one model method with the arguments it declares; returns generators uncalled."""
        if method.takes_input:
            args: tuple = (value, request) if method.takes_request else (value,)
        else:
            args = (request,) if method.takes_request else ()
        try:
            if method.is_generator or method.is_async:
                result = method.function(*args)
                # A generator is consumed later, chunk by chunk; a coroutine is awaited here.
                return result if method.is_generator else await result
            return await asyncio.get_running_loop().run_in_executor(self._executor, method.function, *args)
        except _PASSED_THROUGH:
            raise
        except Exception as exc:
            raise ModelError(method.name, exc) from None

    async def run(self, endpoint: Endpoint, inputs: Any, request: Any) -> Any:
        """One request's calls: a value to encode, or a ChunkStream for a generator."""
        if endpoint.preprocess is not None:
            inputs = await self.call(endpoint.preprocess, inputs, request)
        release = None
        if endpoint.bounded:
            await self._slots.acquire()
            release = self._slots.release
        try:
            result = await self.call(endpoint.method, inputs, request)
        except BaseException:
            if release is not None:
                release()
            raise
        if inspect.isgenerator(result) or inspect.isasyncgen(result):
            if endpoint.postprocess is not None:
                # A generator function with postprocess is refused at load time; this is a
                # plain `predict` that returned a generator, only visible now.
                if release is not None:
                    release()
                raise OutputError(f"`{endpoint.name}` returned a generator (a stream), so `postprocess` cannot run")
            return ChunkStream(endpoint.name, result, self._executor, release, self._streaming_read_timeout)
        if release is not None:
            release()
        if endpoint.postprocess is not None:
            result = await self.call(endpoint.postprocess, result, request)
        return self._checked_output(endpoint, result)

    def _checked_output(self, endpoint: Endpoint, result: Any) -> Any:
        output_type = endpoint.output_type
        if output_type is None or isinstance(result, output_type):
            return result
        if result is None and endpoint.output_may_be_none:
            return result
        if isinstance(result, starlette.responses.Response):  # the model answers the request itself
            return result
        try:
            return typed_io.validate_python(output_type, result)
        except typed_io.InvalidInput as exc:
            step = "postprocess" if endpoint.postprocess is not None else endpoint.name
            raise OutputError(
                f"`{step}` returned a {type(result).__name__} that does not match its return annotation "
                f"{output_type.__name__}: {exc.fields('(output)')}"
            ) from None

    async def is_healthy(self) -> bool:
        if self.contract.is_healthy is None:
            return True
        try:
            return bool(await self.call(self.contract.is_healthy))
        except ModelError as failure:
            raise failure.error from None  # the readiness route logs the model's own exception

