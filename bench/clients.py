"""A bundle as shipped in the clients app teams use: MediaPipe Tasks and the TFLite Task Library.

    python bench/clients.py runs/quickstart/bundles/host-cpu-1t__1ms [--data digits]

Each client runs from its own environment (``tests/clients/setup`` builds ``.venvs/``) on
the data's test split, fed raw (the client resizes) and at the model's input size (the
factory's resize); its top-1 is printed beside the card's, with whether every category is
named from the model's packed labels and how far the scores are from summing to 1.
Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from devices.hardware import describe, host_hardware  # noqa: E402
from export.parity import tflite_labels  # noqa: E402
from factory.data import load_data  # noqa: E402
from factory.errors import FactoryError  # noqa: E402
from factory.files import read_json, write_json  # noqa: E402
from factory.images import resize_images  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = {"mediapipe": "mediapipe_classify.py", "tflite-support": "tasklib_classify.py"}


def run(bundle: Path, data_name: str) -> dict:
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
    return {"date": datetime.date.today().isoformat(), "command": "python " + " ".join(sys.argv),
            "machine": describe(host_hardware()), "bundle": str(bundle), "data": data_name,
            "images": len(data.y_test), "card_top1": shipped, "litert_top1": litert, "rows": rows}


def show(doc: dict):
    print(f"`{doc['command']}`, {doc['date']}, {doc['machine']}, {doc['data']} test split ({doc['images']} images); "
          f"card {100 * doc['card_top1']:.2f}%, LiteRT with the card's preprocessing {100 * doc['litert_top1']:.2f}%:\n")
    print("| client | fed | top-1 | card | categories named from the model's labels | max \\|sum(scores) - 1\\| |")
    print("|---|---|---|---|---|---|")
    for r in doc["rows"]:
        fed = "raw (the client resizes)" if r["fed"] == "raw" else "at the input size"
        print(f"| {r['client']} | {fed}, {r['size'][1]}x{r['size'][0]} | {100 * r['top1']:.2f}% | "
              f"{100 * doc['card_top1']:.2f}% | {'yes' if r['named_from_labels'] else 'no'} | "
              f"{r['max_score_sum_error']:.3f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", nargs="?", default="runs/quickstart/bundles/host-cpu-1t__1ms")
    parser.add_argument("--data", default="digits", help="the data the bundle was made from (its test split)")
    parser.add_argument("--out", default="bench/results/clients.json")
    parser.add_argument("--show", metavar="RESULTS", help="print a results file's table and stop")
    args = parser.parse_args()
    if args.show:
        show(read_json(args.show))
        return
    try:
        doc = run(Path(args.bundle), args.data)
    except FactoryError as exc:
        sys.exit(f"error: {exc}")
    write_json(args.out, doc)
    show(doc)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
