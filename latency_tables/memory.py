"""Peak memory of a subnet: its weights plus the activation arena a runtime must hold, predicted from the
tensors' sizes and lifetimes in the converted graph.

TFLite plans one arena for every activation tensor ahead of the first invoke (``ArenaPlanner``): a tensor
lives from the operator that writes it to the last one that reads it (graph inputs and outputs for the whole
invoke), and tensors are placed largest first, each in the tightest gap among the tensors whose lifetimes
overlap it, on 64-byte boundaries. :func:`plan_arena` runs that same plan. A subnet's graph is the chain of
its layers' graphs (:class:`LayerGraph`, read from the one-layer models a latency table is built from), so a
search predicts memory without converting a whole subnet. ``devices.host.measure_memory`` reads the arena
LiteRT really planned, from its tensors' addresses, to check the prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devices.host import constant_tensors
from factory.core.files import read_json, user_dir, write_json
from factory.nas.space import SearchSpace, SubnetConfig
from latency_tables.blocks import all_layers, subnet_layers

GRAPH_FORMAT = 2  # of the cached layer graphs: 2 counts a scalar constant as one element
ALIGNMENT = 64  # TFLite's kDefaultTensorAlignment
LIVES_ON = 1 << 30  # a last node past every graph: outputs (and inputs) are never overwritten
IN_PLACE = {"ADD", "MUL"}  # builtin kernels that may write their output over an input (seen in LiteRT's plans)
_TYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 16: 1}  # schema TensorType -> bytes


@dataclass(frozen=True)
class LayerGraph:
    """The activation tensors and operators of one converted layer (or model), by position.

    ``sizes[0]`` is the graph's input (``sizes[:len(inputs)]`` its inputs, when it has several: a head that reads
    two stages), ``sizes[-1]`` its output; ``ops`` lists each operator's (name, inputs, outputs), inputs and
    outputs as positions in ``sizes``, in execution order; ``weights`` counts the bytes of its constant tensors;
    ``inputs`` holds a multi-input graph's input shapes, by which a chain wires them."""

    sizes: tuple[int, ...]
    ops: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]
    weights: int
    inputs: tuple[tuple[int, ...], ...] = ()

    def to_dict(self) -> dict:
        return {"sizes": list(self.sizes), "ops": [[n, list(i), list(o)] for n, i, o in self.ops],
                "weights": self.weights, **({"inputs": [list(i) for i in self.inputs]} if self.inputs else {})}

    @classmethod
    def from_dict(cls, d: dict) -> "LayerGraph":
        return cls(tuple(d["sizes"]), tuple((n, tuple(i), tuple(o)) for n, i, o in d["ops"]), int(d["weights"]),
                   tuple(tuple(i) for i in d.get("inputs", ())))


def read_graph(content: bytes) -> LayerGraph:
    """The graph of a single-output .tflite's main subgraph."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    graph = model.Subgraphs(0)
    constants = constant_tensors(model)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}

    def nbytes(t) -> int:
        tensor = graph.Tensors(t)
        shape = tensor.ShapeAsNumpy() if tensor.ShapeLength() else []  # a scalar: one element
        return int(np.prod(shape, dtype=np.int64)) * _TYPE_BYTES[tensor.Type()]

    firsts, (last,) = graph.InputsAsNumpy().tolist(), graph.OutputsAsNumpy().tolist()
    position, ops = {t: i for i, t in enumerate(firsts)}, []
    weights = sum(nbytes(t) for t in constants)
    for o in range(graph.OperatorsLength()):
        op = graph.Operators(o)
        code = model.OperatorCodes(op.OpcodeIndex())
        inputs = [t for t in op.InputsAsNumpy().tolist() if t >= 0 and t not in constants]
        outputs = op.OutputsAsNumpy().tolist()
        for t in outputs:
            position.setdefault(t, len(position))
        ops.append((names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())],
                    tuple(position[t] for t in inputs), tuple(position[t] for t in outputs)))
    order = sorted(position, key=position.get)
    if position[last] != len(order) - 1:  # the output last, as the chain expects
        raise ValueError("the graph's output is not its last tensor")
    shapes = tuple(tuple(int(d) for d in graph.Tensors(t).ShapeAsNumpy()) for t in firsts) if len(firsts) > 1 else ()
    return LayerGraph(tuple(nbytes(t) for t in order), tuple(ops), weights, shapes)


def chain(graphs: list[LayerGraph], wiring: dict[int, list[int]] | None = None) -> LayerGraph:
    """One graph of layers run in sequence: each layer reads the tensor the one before it wrote, or, for a layer
    ``i`` in ``wiring``, the outputs of the layers ``wiring[i]`` (one per input of its graph)."""
    sizes, ops, weights, outputs = [graphs[0].sizes[0]], [], 0, []
    for i, g in enumerate(graphs):
        sources = [outputs[w] for w in wiring[i]] if wiring and i in wiring else [len(sizes) - 1]
        place = dict(enumerate(sources))
        for t in range(len(sources), len(g.sizes)):
            place[t] = len(sizes)
            sizes.append(g.sizes[t])
        ops.extend((name, tuple(place[t] for t in ins), tuple(place[t] for t in outs)) for name, ins, outs in g.ops)
        weights += g.weights
        outputs.append(len(sizes) - 1)
    return LayerGraph(tuple(sizes), tuple(ops), weights)


def _align(offset: int) -> int:
    return -(-offset // ALIGNMENT) * ALIGNMENT


def _in_place(graph: LayerGraph, readers: list[int]) -> dict[int, int]:
    """Outputs that LiteRT writes over an input (``ArenaPlanner::IdentifyInPlaceTensors``): an in-place operator's
    first input of the output's size, larger than a scalar, read by nothing else and not a graph input or output;
    maps each such output to the tensor whose buffer it takes."""
    n, shared = len(graph.sizes), {}
    for name, inputs, outputs in graph.ops:
        out = outputs[0]
        if name not in IN_PLACE or out == n - 1:
            continue
        for t in inputs[:2]:
            if t != 0 and readers[t] == 1 and graph.sizes[t] == graph.sizes[out] > 4:
                root = shared.get(t, t)
                if readers[root] <= 1:
                    shared[out] = root
                break
    return shared


def plan_arena(graph: LayerGraph) -> int:
    """Bytes of the activation arena TFLite's planner lays out for ``graph`` (its high-water mark)."""
    n = len(graph.sizes)
    readers = [0] * n
    for _, inputs, _ in graph.ops:
        for t in inputs:
            readers[t] += 1
    shared = _in_place(graph, readers)
    root = lambda t: shared.get(t, t)  # noqa: E731
    first, last = [LIVES_ON] * n, [0] * n
    first[0], last[0], last[n - 1] = 0, LIVES_ON, LIVES_ON  # input and output are never overwritten
    for node, (_, inputs, outputs) in enumerate(graph.ops):
        for t in outputs:
            first[root(t)] = min(first[root(t)], node)
        for t in inputs:
            last[root(t)] = max(last[root(t)], node) if last[root(t)] != LIVES_ON else LIVES_ON
    for t in range(n):
        last[t] = max(last[t], first[t])  # written, never read: lives at its own node
    whole = lambda t: first[t] == 0 and last[t] == LIVES_ON  # noqa: E731 - placed first, by index
    order = sorted((t for t in range(n) if t not in shared),
                   key=lambda t: (not whole(t), t if whole(t) else -graph.sizes[t], first[t]))
    placed, high = [], 0  # (offset, size, first, last), kept sorted by offset
    for t in order:
        size = graph.sizes[t]
        if size == 0:
            continue
        best, best_fit, current = None, None, 0
        for offset, other, lo, hi in placed:
            if hi < first[t] or lo > last[t]:
                continue
            aligned = _align(current)
            if aligned + size <= offset and (best_fit is None or offset - aligned < best_fit):
                best, best_fit = aligned, offset - current
            current = max(current, offset + other)
            if best_fit == 0:
                break
        offset = _align(current) if best is None else best
        high = max(high, offset + size)
        placed.append((offset, size, first[t], last[t]))
        placed.sort(key=lambda a: a[0])
    return high


def io_graph(graph: LayerGraph, io: str) -> LayerGraph:
    """``graph`` with the interface a shipped model has: ``uint8`` adds the converter's QUANTIZE of the uint8
    pixels, the SOFTMAX export appends and the DEQUANTIZE of the int8 probabilities (per image or per pixel) to
    float32; ``int8`` (and a float model) is the graph as it is."""
    if io != "uint8":
        return graph
    out = graph.sizes[-1]  # int8 logits: a byte each
    quantize = LayerGraph((graph.sizes[0], graph.sizes[0]), (("QUANTIZE", (0,), (1,)),), 0)
    softmax = LayerGraph((out, out), (("SOFTMAX", (0,), (1,)),), 0)
    dequantize = LayerGraph((out, 4 * out), (("DEQUANTIZE", (0,), (1,)),), 0)
    return chain([quantize, graph, softmax, dequantize])


class MemoryModel:
    """The graph of every distinct layer of a space in one precision: predicts any subnet's peak memory.

    A layer's graph is read from its one-layer model, converted the first time a subnet needs it (0.1-0.2 s each;
    :meth:`complete` reads them all, for a search) and kept in the user's cache; the graphs do not depend on the
    device, only on the space, the precision and the head (its task and number of classes)."""

    def __init__(self, space: SearchSpace, precision: str, head, path: str | Path | None = None):
        self.space, self.precision, self.head = space, precision, head
        task = "" if head.task == "classification" else f"{head.task}__"
        self.path = Path(path or user_dir("memory") / f"{space.name}__{space.fingerprint}__{precision}__"
                                                      f"{task}{head.num_classes}.json")
        doc = read_json(self.path) if self.path.exists() else {}
        same = (doc.get("format"), doc.get("space_fingerprint"), doc.get("precision"), doc.get("num_classes"),
                doc.get("task", "classification")) == \
            (GRAPH_FORMAT, space.fingerprint, precision, head.num_classes, head.task)
        self.graphs = {k: LayerGraph.from_dict(g) for k, g in doc.get("graphs", {}).items()} if same else {}
        self._cache: dict[tuple, dict] = {}

    def _save(self):
        write_json(self.path, {"format": GRAPH_FORMAT, "space": self.space.name, "space_fingerprint": self.space.fingerprint,
                               "precision": self.precision, **self.head.to_dict(),
                               "graphs": {k: g.to_dict() for k, g in self.graphs.items()}})

    def _read(self, keys, verbose: int = 0):
        """Convert the layers of ``keys`` not read yet and keep their graphs."""
        todo = [k for k in dict.fromkeys(keys) if k.id not in self.graphs]
        if not todo:
            return
        from factory.core.backend import keras
        from factory.core.convert import convert_for_timing
        from latency_tables.builder import layer_model

        if verbose:
            print(f"reading the {self.precision} graphs of {len(todo)} layers of space {self.space.name} into "
                  f"{self.path}", flush=True)
        progress = keras.utils.Progbar(len(todo), verbose=verbose, unit_name="layer")
        for i, key in enumerate(todo):
            content = convert_for_timing(layer_model(self.space, self.head, key), self.precision)
            self.graphs[key.id] = read_graph(content)
            if (i + 1) % 25 == 0 or i + 1 == len(todo):  # resumable without rewriting the file every layer
                self._save()
            progress.add(1)

    def complete(self, verbose: int = 1) -> "MemoryModel":
        """Read every layer of the space, so that a search predicts without converting."""
        self._read(all_layers(self.space, self.head), verbose)
        return self

    def graph(self, subnet: SubnetConfig, io: str = "int8") -> LayerGraph:
        """The subnet's whole graph, its layers chained (``io``: see :func:`io_graph`)."""
        layers = subnet_layers(self.space, subnet, self.head)
        self._read(layers)
        graphs = [self.graphs[k.id] for k in layers]
        return io_graph(chain(graphs, self._head_wiring(subnet, graphs[-1])), io)

    def _head_wiring(self, subnet: SubnetConfig, head_graph: LayerGraph) -> dict[int, list[int]]:
        """Which layers' outputs a head that reads several stages takes, in its graph's input order (by shape):
        each stage's last block (layer 0 is the stem)."""
        if not head_graph.inputs:
            return {}
        backbone = self.head.backbone(self.space)
        blocks = list(subnet.blocks(backbone))
        stage_end = {block.stage: i for i, (block, _, _) in enumerate(blocks, start=1)}
        _, size = self.head.table_entry(backbone, subnet.resolution)
        by_shape = {(s, s, c): stage_end[stage] for stage, s, c in self.head.table_inputs(backbone, size)}
        return {len(blocks) + 1: [by_shape[tuple(shape[1:])] for shape in head_graph.inputs]}

    def predict(self, subnet: SubnetConfig, io: str = "int8") -> dict:
        """Predicted bytes: the activation arena, the weights, and their sum (``peak_bytes``)."""
        key = (self.space.encode(subnet).tobytes(), io)
        if key not in self._cache:
            graph = self.graph(subnet, io)
            arena = plan_arena(graph)
            self._cache[key] = {"arena_bytes": arena, "weights_bytes": graph.weights,
                                "peak_bytes": arena + graph.weights}
        return self._cache[key]

    def predict_encoded(self, encoded: np.ndarray) -> np.ndarray:
        """Predicted peak bytes of a batch of ``SearchSpace.encode`` vectors."""
        return np.array([self.predict(self.space.decode(e))["peak_bytes"] for e in np.atleast_2d(encoded)])
