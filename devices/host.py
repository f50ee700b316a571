"""Timing a .tflite model on this machine with the LiteRT interpreter.

The method matches LiteRT's own ``ai_edge_litert.tools.benchmark_litert_model``:
random inputs, ``warmup_runs`` untimed invokes, then ``runs`` invokes each timed with
``time.perf_counter``. It uses the ``Interpreter`` API (XNNPACK is its default CPU
delegate) so the thread count is exactly the profile's, and pins the process to as
many cores as threads while it measures, which removes most scheduler noise.
"""

from __future__ import annotations

import contextlib
import os
import time

import numpy as np

from devices.hardware import host_hardware
from devices.profile import DeviceProfile
from devices.timing import Timing, fastest_of, summarize
from factory.core.errors import FactoryError


@contextlib.contextmanager
def pinned(cores: int):
    """Restrict this process to ``cores`` CPUs for the duration (Linux only; else a no-op)."""
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(before)[-cores:])
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def random_inputs(interpreter, rng):
    """Random data of each input's dtype and shape, as the benchmark tools feed."""
    for detail in interpreter.get_input_details():
        dtype = np.dtype(detail["dtype"])
        shape = detail["shape"]
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            data = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
        else:
            data = rng.standard_normal(shape).astype(dtype)
        interpreter.set_tensor(detail["index"], data)


def constant_tensors(model) -> set[int]:
    """Indices of the main subgraph's tensors whose values the flatbuffer holds (weights, biases): they live
    outside the arena. ``model``: a ``schema_py_generated.Model``."""
    graph = model.Subgraphs(0)
    out = set()
    for t in range(graph.TensorsLength()):
        buffer = model.Buffers(graph.Tensors(t).Buffer())
        if buffer is not None and (buffer.DataLength() > 0 or buffer.Size() > 0):
            out.add(t)
    return out


def measure_memory(content: bytes) -> dict:
    """What LiteRT holds for a model with its built-in kernels: the span of its activation tensors' addresses
    once planned (the arena, the kernels' scratch tensors included) and its constant tensors' bytes. XNNPACK,
    which the timing runs use, plans its own workspace and packs its own copy of the weights: this is the
    TFLite arena the prediction models, read from the runtime rather than computed."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=content,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    constants = constant_tensors(schema.Model.GetRootAs(content, 0))
    arena, weights = [], 0
    for detail in interpreter.get_tensor_details():
        try:
            view = interpreter.tensor(detail["index"])()
        except ValueError:  # no data: a tensor of size 0
            continue
        if detail["index"] in constants:
            weights += view.nbytes
        elif view.nbytes:
            arena.append((view.__array_interface__["data"][0], view.nbytes))
    span = max(a + n for a, n in arena) - min(a for a, _ in arena)
    return {"arena_bytes": int(span), "weights_bytes": int(weights), "peak_bytes": int(span + weights),
            "by": "LiteRT built-in kernels on this machine: the arena its planner laid out (from the tensors' "
                  "addresses) plus the constant tensors"}


class HostRunner:
    """Runs a profile whose runner is ``host``."""

    def __init__(self, profile: DeviceProfile):
        self.profile = profile

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def hardware(self) -> dict:
        """This machine's CPU identity, which its latency tables record."""
        return host_hardware()

    def measure_memory(self, model: bytes) -> dict:
        """Peak memory, measured apart from the timing runs (:func:`measure_memory`)."""
        return measure_memory(model)

    def measure(self, model: bytes | str | os.PathLike, spread_s: float = 0.0) -> Timing:
        """The fastest of the profile's repeats (more while under ``spread_s`` seconds), one interpreter."""
        from ai_edge_litert.interpreter import Interpreter

        content = model if isinstance(model, bytes) else open(model, "rb").read()
        p = self.profile
        with pinned(p.threads):
            start = time.perf_counter()
            try:
                interpreter = Interpreter(model_content=content, num_threads=p.threads)
                interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as exc:
                raise FactoryError(f"LiteRT cannot load the model: {str(exc).splitlines()[0]}") from None
            init_ms = (time.perf_counter() - start) * 1e3
            random_inputs(interpreter, np.random.default_rng(0))

            def once() -> Timing:
                for _ in range(p.warmup_runs):
                    interpreter.invoke()
                samples = []
                for _ in range(p.runs):
                    start = time.perf_counter()
                    interpreter.invoke()
                    samples.append((time.perf_counter() - start) * 1e3)
                return summarize(samples, init_ms=init_ms)

            return fastest_of(once, p.repeats, spread_s)
