"""Calling the model: preprocess -> predict -> postprocess, sync code off the event loop.

`predict` calls are bounded by `runtime.predict_concurrency` (a semaphore). A streaming
`predict` holds its slot until its generator is exhausted or the client goes away, so the
bound covers the work the generator does, not only the call that created it.
"""

from __future__ import annotations

import asyncio
import inspect
from concurrent.futures import Executor
from typing import Any, Callable, Optional

from truss_cli.server.contract import ModelContract, ModelDefinitionError, ModelMethod

_END = object()


class ChunkStream:
    """The chunks of a streaming `predict`, pulled one by one (sync generators in a thread)."""

    def __init__(self, generator: Any, executor: Executor, release: Callable[[], None]) -> None:
        self._generator = generator
        self._is_async = inspect.isasyncgen(generator)
        self._executor = executor
        self._release: Optional[Callable[[], None]] = release

    async def next(self) -> Any:
        """The next chunk, or `ChunkStream.END` when the generator is done."""
        if self._is_async:
            try:
                return await self._generator.__anext__()
            except StopAsyncIteration:
                return _END
        return await asyncio.get_running_loop().run_in_executor(self._executor, next, self._generator, _END)

    async def close(self) -> None:
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

    END = _END


class Pipeline:
    def __init__(self, contract: ModelContract, concurrency: int, executor: Executor) -> None:
        self.contract = contract
        self._executor = executor
        self._slots = asyncio.Semaphore(concurrency)

    async def call(self, method: ModelMethod, value: Any = None, request: Any = None) -> Any:
        """Call one model method with the arguments it declares; returns generators uncalled."""
        if method.takes_input:
            args: tuple = (value, request) if method.takes_request else (value,)
        else:
            args = (request,) if method.takes_request else ()
        if method.is_generator or method.is_async:
            result = method.function(*args)
            # A generator is consumed later, chunk by chunk; a coroutine is awaited here.
            return result if method.is_generator else await result
        return await asyncio.get_running_loop().run_in_executor(self._executor, method.function, *args)

    async def run(self, inputs: Any, request: Any) -> Any:
        """The whole prediction: a value to encode, or a ChunkStream for a generator."""
        contract = self.contract
        if contract.preprocess is not None:
            inputs = await self.call(contract.preprocess, inputs, request)
        await self._slots.acquire()
        try:
            result = await self.call(contract.predict, inputs, request)
        except BaseException:
            self._slots.release()
            raise
        if inspect.isgenerator(result) or inspect.isasyncgen(result):
            if contract.postprocess is not None:
                self._slots.release()
                raise ModelDefinitionError("`predict` streams (it is a generator), so `postprocess` cannot run")
            return ChunkStream(result, self._executor, self._slots.release)
        self._slots.release()
        if contract.postprocess is not None:
            result = await self.call(contract.postprocess, result, request)
        return result

    async def is_healthy(self) -> bool:
        if self.contract.is_healthy is None:
            return True
        return bool(await self.call(self.contract.is_healthy))
