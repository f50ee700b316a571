"""Building a latency table: every distinct layer as a one-layer .tflite, timed on the device.

Each layer is built from the same Keras code as extracted subnets (random weights),
converted in the profile's precision (``factory.core.convert.convert_for_timing``: the shipped
conversion's graph, int8 with random calibration and int8 input and output, in a tenth of its time), and timed with the profile's runner. The table is
rewritten atomically after every entry, so an interrupted build resumes where it
stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

from devices.hardware import check_same_hardware
from devices.profile import DeviceProfile
from devices.runners import get_runner
from factory.core.backend import keras
from factory.core.convert import convert_for_timing
from factory.nas.extract import mbconv, stem, top
from factory.core.files import read_json, write_json
from factory.nas.heads import head_from_dict
from factory.nas.space import BlockSpec, SearchSpace
from latency_tables.blocks import LayerKey, all_layers
from latency_tables.table import FORMAT, check_compatible, new_table


ESTIMATE_AFTER = 5  # layers timed before the build says how long it will take


def layer_model(space: SearchSpace, head, key: LayerKey) -> keras.Model:
    """A one-layer Keras model of ``key``, built like the extracted subnets with ``head``."""
    backbone = head.backbone(space)
    inputs = keras.Input((key.size, key.size, key.in_channels))
    if key.kind == "stem":
        outputs = stem(inputs, backbone)
    elif key.kind == "mbconv":
        block = BlockSpec(0, 0, key.in_channels, key.out_channels, key.stride, key.activation, key.se)
        outputs = mbconv(inputs, block, key.kernel, key.expand,
                         backbone.se_channels(key.in_channels * key.expand), "block")
    else:  # the head's entry: the stage outputs it reads, then the last block and the head
        features = [None] * len(backbone.stages)
        for stage, size, channels in head.table_inputs(backbone, key.size):
            features[stage] = keras.Input((size, size, channels))
        inputs = [f for f in features if f is not None]
        outputs = top(features, backbone, head, key.size)
    return keras.Model(inputs, outputs)


def overhead_model(key: LayerKey) -> keras.Model:
    """The cheapest model with the same input: what a runner costs per invoke by itself."""
    inputs = keras.Input((key.size, key.size, key.in_channels))
    return keras.Model(inputs, keras.layers.ReLU()(inputs))


def _entry(timing) -> dict:
    return {"median_ms": timing.median_ms, "p10_ms": timing.p10_ms, "p90_ms": timing.p90_ms,
            "runs": timing.runs, "cv": timing.cv}


def build_table(space: SearchSpace, profile: DeviceProfile, path: str | Path, head,
                passes: int = 2, verbose: int = 1) -> dict:
    """Measure every layer of ``space`` with ``head`` on ``profile`` into the table at ``path`` (resumable).

    After every layer is measured, ``passes - 1`` more passes measure them all again and
    keep each layer's lower median: a burst of other work that slowed one layer's
    measurement has passed by the time the next pass reaches it. Measuring a layer again
    at once when its runs spread widely (as builds did until 2026-12) cost the lite0
    space's 368 layers 480 extra measurements of 1,223 in a 420 s build, for what the second pass does.
    """
    path = Path(path)
    keys = all_layers(space, head)
    with get_runner(profile) as runner:
        hardware = runner.hardware()
        doc = new_table(space, profile, head, hardware)
        if path.exists():
            old = read_json(path)
            if old.get("format") == FORMAT:
                check_compatible(old, space, profile, str(path))
                check_same_hardware(old.get("hardware"), hardware, str(path),
                                    "pass another --table path to measure this hardware")
                if head_from_dict(old) == head:
                    doc = old
        todo = [k for k in keys if k.id not in doc["entries"]]
        if verbose and len(todo) < len(keys):
            print(f"resuming {path}: {len(keys) - len(todo)} of {len(keys)} layers already measured")
        progress = keras.utils.Progbar(len(keys), verbose=verbose, unit_name="layer")
        progress.update(len(keys) - len(todo))
        if doc.get("overhead") is None:
            timing = runner.measure(convert_for_timing(overhead_model(keys[0]), profile.precision))
            doc["overhead"] = _entry(timing)
            write_json(path, doc)
        models, start = {}, time.perf_counter()
        for done, key in enumerate(todo, start=1):
            models[key.id] = convert_for_timing(layer_model(space, head, key), profile.precision)
            doc["entries"][key.id] = {**_entry(runner.measure(models[key.id])), "passes": 1}
            write_json(path, doc)
            progress.add(1)
            if verbose and done == ESTIMATE_AFTER and len(todo) > 2 * ESTIMATE_AFTER:
                each = (time.perf_counter() - start) / done
                left = each * (len(todo) - done) + each * 0.3 * len(keys) * (passes - 1)  # later passes only measure
                print(f"\nabout {each:.1f} s a layer on this device: about {left / 60:.0f} min left for this table",
                      flush=True)
        for done in range(1, passes):
            again = [k for k in keys if doc["entries"][k.id].get("passes", 1) <= done]
            if verbose and again:
                print(f"pass {done + 1} of {passes}: measuring {len(again)} layers again", flush=True)
            for key in again:
                content = models.get(key.id) or convert_for_timing(layer_model(space, head, key), profile.precision)
                timing = runner.measure(content)
                entry = doc["entries"][key.id]
                best = _entry(timing) if timing.median_ms < entry["median_ms"] else {}
                doc["entries"][key.id] = {**entry, **best, "passes": done + 1}
                write_json(path, doc)
    doc["complete"] = True
    write_json(path, doc)
    return doc
