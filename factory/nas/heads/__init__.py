"""Task heads: what a task puts on the elastic backbone, and everything that follows from it.

A head is a frozen dataclass passed down like a ``DeviceProfile``. It owns the backbone it reads (the space as
is, or with its last downsampling removed), the stage outputs it reads besides the last, its layers (elastic
in the supernet, standard in an extracted subnet), their latency-table entry, the training loss and the
evaluation metric. Everything else (elastic blocks, tables, search, QAT, budgets) is the same for every task.
"""

from __future__ import annotations

from factory.core.errors import FactoryError
from factory.nas.heads.classification import ClassificationHead
from factory.nas.heads.segmentation import SegmentationHead

TASKS = {"classification": ClassificationHead, "segmentation": SegmentationHead}


def head_from_dict(doc: dict):
    """The head a work directory, table or bundle recorded (``{"task": ..., "num_classes": ...}``)."""
    task = doc.get("task", "classification")
    if task not in TASKS:
        raise FactoryError(f"unknown task {task!r}: use one of {sorted(TASKS)}")
    return TASKS[task](int(doc["num_classes"]))


def make_head(task: str, num_classes: int):
    """The head of ``task`` (a name a user typed) for ``num_classes`` classes."""
    return head_from_dict({"task": task, "num_classes": num_classes})
