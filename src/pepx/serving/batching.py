"""Dynamic batching for the server: single-image requests stacked into one forward pass.

As TorchServe's and Triton's dynamic batchers do, an inference thread takes the first waiting image, then
everything else already queued, then waits at most `max_wait_ms` for more, up to `max_batch` images, and runs
them as one `predict_tensor` call. One client sees at most `max_wait_ms` of extra latency; many clients share
forward passes, which is where the throughput comes from on a CPU (one batched convolution uses the cores
better than several small ones fighting over them).

The queue is bounded: `submit` raises `QueueFullError` (the server's 503 + Retry-After) instead of letting
waiting work and memory grow without limit. Should an inference thread die (a bug outside the forward pass,
which fails only its own requests), the batcher says so instead of letting requests wait for ever: every
waiting request fails with `BatcherDown`, `submit` raises it, and `alive` is False (the server's health
check and 503). `max_batch=1` turns batching off (one image per forward pass,
same queue and limits), which is what `benchmarks/serve.py` compares against.

Written here rather than taken from a library: TorchServe and Triton are whole servers, and the small
async-batching packages on PyPI are unmaintained; this is one queue and one loop.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pepx.errors import ConfigError

_STOP = object()
#: Longest wait for a batch to fill (ms): beyond it one image would wait seconds for company.
MAX_WAIT_MS = 10_000.0


class QueueFullError(RuntimeError):
    """The batcher's queue is full; `retry_after` is a suggested wait in whole seconds (>= 1)."""

    def __init__(self, depth: int, retry_after: int) -> None:
        self.depth, self.retry_after = depth, retry_after
        super().__init__(f"inference queue full ({depth} images waiting): retry in {retry_after} s")


class BatcherDown(RuntimeError):
    """An inference thread has stopped: the batcher answers nothing more (the server's 503)."""


@dataclass(frozen=True)
class BatchResult:
    """One image's output: its probabilities row, the time it waited in the queue and the forward pass it
    shared (milliseconds), how many images that pass held, and `extra`: its item of the second sequence when
    `predict` returns `(probabilities, extras)` (e.g. `Predictor.score_tensor`'s gate verdicts), else None."""

    probabilities: np.ndarray
    queue_ms: float
    inference_ms: float
    batch_size: int
    extra: Any = None


@dataclass
class _Item:
    x: torch.Tensor
    future: Future
    queued_at: float


class DynamicBatcher:
    """Collect single preprocessed images [C, S, S] into batches for `predict` ([N, C, S, S] -> [N, K]).

    Args:
        predict: the batched model call, e.g. `Predictor.predict_tensor` (must be thread-safe when
            `inference_threads > 1`); it returns probabilities [N, K], or `(probabilities, extras)` with one
            extra per image (`Predictor.score_tensor`: the gate's verdicts).
        max_batch: most images in one forward pass; 1 turns batching off.
        max_wait_ms: longest wait for more images once one is waiting.
        max_queue: most images waiting; beyond it `submit` raises `QueueFullError`.
        inference_threads: threads pulling batches from the queue and running `predict`.
    """

    def __init__(self, predict: Callable[[torch.Tensor], Any], max_batch: int = 16,
                 max_wait_ms: float = 5.0, max_queue: int = 64, inference_threads: int = 1) -> None:
        if max_batch < 1 or max_queue < 1 or inference_threads < 1 or not 0 <= max_wait_ms <= MAX_WAIT_MS:
            raise ConfigError(f"max_batch, max_queue and inference_threads must be >= 1 and max_wait_ms in "
                              f"[0, {MAX_WAIT_MS}], got {max_batch}, {max_queue}, {inference_threads} and "
                              f"{max_wait_ms}")
        self.predict = predict
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000.0, max_queue
        self.inference_threads = inference_threads
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._item_seconds = 0.05  # running estimate of one image's share of a forward pass (Retry-After)
        self.images = self.batches = self.rejected = self.largest_batch = 0
        self.error: BaseException | None = None  # why an inference thread stopped

    # ------------------------------------------------------------------ life cycle
    def start(self) -> DynamicBatcher:
        if not self._threads:
            self._threads = [threading.Thread(target=self._run, name=f"pepx-batcher-{i}", daemon=True)
                             for i in range(self.inference_threads)]
            for t in self._threads:
                t.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Answer what is already queued, then end the threads; whatever is still queued after `timeout`
        seconds fails with "server shutting down"."""
        threads, self._threads = self._threads, []
        for _ in threads:
            try:  # waits only while the queue is full and the inference threads drain it
                self._queue.put(_STOP, timeout=timeout)
            except queue.Full:
                break
        for t in threads:
            t.join(timeout)
        self._fail_queued(RuntimeError("server shutting down"))

    @property
    def running(self) -> bool:
        return bool(self._threads)

    @property
    def alive(self) -> bool:
        """True while started and every inference thread runs."""
        return bool(self._threads) and self.error is None and all(t.is_alive() for t in self._threads)

    # ------------------------------------------------------------------ use
    def submit(self, x: torch.Tensor) -> Future:
        """Queue one image [C, S, S]; the future's result is a `BatchResult`. Raises `QueueFullError`."""
        if not self._threads:
            raise RuntimeError("DynamicBatcher.submit before start()")
        if not self.alive:
            raise BatcherDown(f"the inference thread has stopped ({self.error!r}): restart the server")
        future: Future = Future()
        try:
            self._queue.put_nowait(_Item(x, future, time.perf_counter()))
        except queue.Full:
            with self._lock:
                self.rejected += 1
            depth = self._queue.qsize()
            retry = max(1, math.ceil(depth * self._item_seconds / self.inference_threads))
            raise QueueFullError(depth, retry) from None
        return future

    @property
    def depth(self) -> int:
        """Images waiting (not counting the forward pass under way)."""
        return self._queue.qsize()

    def stats(self) -> dict[str, float | int]:
        with self._lock:
            return {"images": self.images, "forward_passes": self.batches,
                    "largest_batch": self.largest_batch, "rejected": self.rejected, "queue_depth": self.depth,
                    "max_queue": self.max_queue, "max_batch": self.max_batch, "alive": self.alive,
                    "max_wait_ms": self.max_wait * 1000.0,
                    "mean_batch": round(self.images / self.batches, 3) if self.batches else 0.0}

    # ------------------------------------------------------------------ the loop
    def _run(self) -> None:
        batch: list[_Item] = []
        try:
            self._loop(batch)
        except BaseException as err:  # a bug: say so, and fail what waits rather than leave it hanging
            self.error = err
            down = BatcherDown(f"the inference thread stopped ({err!r}): restart the server")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(down)
            self._fail_queued(down)

    def _fail_queued(self, error: BaseException) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP and item.future.set_running_or_notify_cancel():
                item.future.set_exception(error)

    def _loop(self, batch: list[_Item]) -> None:
        """Serve batches until `_STOP`; `batch` is the one in hand (failed by `_run` if this raises)."""
        while True:
            batch.clear()
            first = self._queue.get()
            if first is _STOP:
                return
            batch.append(first)
            stop = False
            deadline = time.perf_counter() + self.max_wait
            while len(batch) < self.max_batch:
                left = deadline - time.perf_counter()
                try:  # past the deadline, still take what is already queued
                    item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._forward(batch)
            if stop:
                return

    def _forward(self, batch: list[_Item]) -> None:
        live = [item for item in batch if item.future.set_running_or_notify_cancel()]  # drop cancelled
        if not live:
            return
        start = time.perf_counter()
        try:
            output = self.predict(torch.stack([item.x for item in live]))
        except BaseException as err:  # a failed pass fails its requests, never the thread
            for item in live:
                item.future.set_exception(err)
            return
        end = time.perf_counter()
        seconds = end - start
        with self._lock:
            self.images += len(live)
            self.batches += 1
            self.largest_batch = max(self.largest_batch, len(live))
            self._item_seconds = 0.8 * self._item_seconds + 0.2 * seconds / len(live)
        probs, extras = output if isinstance(output, tuple) else (output, [None] * len(live))
        for item, row, extra in zip(live, probs, extras, strict=True):
            item.future.set_result(BatchResult(np.asarray(row), (start - item.queued_at) * 1000.0,
                                               seconds * 1000.0, len(live), extra))


__all__ = ["BatchResult", "BatcherDown", "DynamicBatcher", "QueueFullError"]
