"""A bundle as shipped in the clients app teams use: MediaPipe Tasks and the TFLite Task Library.

    python -m bench.clients runs/quickstart/bundles/host-cpu-1t__1ms [--data digits]

Each client runs from its own environment (``tests/clients/setup`` builds ``.venvs/``) on
the data's test split, fed raw (the client resizes) and at the model's input size (the
factory's resize); its top-1 is printed beside the card's, with whether every category is
named from the model's packed labels and how far the scores are from summing to 1.
Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from bench.common import header, provenance, run, save, parse
from export.parity import tflite_labels
from factory.core.errors import FactoryError
from factory.core.files import read_json
from factory.training.data import load_data
from factory.training.portable.images import resize_images

TITLE = "The bundle in the clients"

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = {"mediapipe": "mediapipe_classify.py", "tflite-support": "tasklib_classify.py"}


def measure(bundle: Path, data_name: str) -> dict:
    card = read_json(bundle / "model_card.json")
    data = load_data(data_name)
    r = card["input"]["resolution"]
    shipped = card["accuracy"][card["accuracy"]["shipped"]]
    arrays = {"raw": data.x_test, "at_input": resize_images(data.x_test, r)}
    litert = float(np.mean(tflite_labels((bundle / "model.tflite").read_bytes(), arrays["at_input"]) == data.y_test))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "images.npz", **arrays)
        for name, script in CLIENTS.items():
            python = ROOT / ".venvs" / name / "bin" / "python"
            if not python.exists():
                raise FactoryError(f"no {name} environment in {python.parent.parent}: run tests/clients/setup")
            out = Path(tmp) / f"{name}.json"
            done = subprocess.run([python, ROOT / "tests" / "clients" / script, bundle / "model.tflite",
                                   Path(tmp) / "images.npz", out], capture_output=True, text=True)
            if done.returncode:
                raise FactoryError(f"{name} refused {bundle / 'model.tflite'}: {done.stderr.strip()[-300:]}")
            doc = read_json(out)
            for fed, results in doc["results"].items():
                top = np.array([max(categories, key=lambda c: c[1])[0] for categories in results])
                rows.append({"client": doc["client"], "fed": fed, "size": list(arrays[fed].shape[1:3]),
                             "top1": float(np.mean(top == data.y_test)),
                             "named_from_labels": all(c[2] == card["classes"][c[0]] for cs in results for c in cs),
                             "max_score_sum_error": max(abs(sum(c[1] for c in cs) - 1) for cs in results)})
    return {**provenance(), "bundle": str(bundle), "data": data_name,
            "images": len(data.y_test), "card_top1": shipped, "litert_top1": litert, "rows": rows}


def markdown(doc: dict) -> str:
    lines = [f"{header(doc)}, {doc['data']} test split ({doc['images']} images); card {100 * doc['card_top1']:.2f}%, "
             f"LiteRT with the card's preprocessing {100 * doc['litert_top1']:.2f}%:", "",
             "| client | fed | top-1 | card | categories named from the model's labels | max \\|sum(scores) - 1\\| |",
             "|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        fed = "raw (the client resizes)" if r["fed"] == "raw" else "at the input size"
        lines.append(f"| {r['client']} | {fed}, {r['size'][1]}x{r['size'][0]} | {100 * r['top1']:.2f}% | "
                     f"{100 * doc['card_top1']:.2f}% | {'yes' if r['named_from_labels'] else 'no'} | "
                     f"{r['max_score_sum_error']:.3f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", nargs="?", default="runs/quickstart/bundles/host-cpu-1t__1ms")
    parser.add_argument("--data", default="digits", help="the data the bundle was made from (its test split)")
    parser.add_argument("--out", default="bench/results/clients.json")
    args = parse(parser, markdown, "card_top1")
    if args is None:
        return
    save(args.out, measure(Path(args.bundle), args.data), markdown)


if __name__ == "__main__":
    run(main)
