"""What a bundle holds for each task: the gate's records, the TFLite metadata its clients read, the card's words
and the app code. ``task_export`` picks the one of a head's task (``factory.nas.heads``)."""

from __future__ import annotations

from export.tasks.classification import ClassificationExport
from export.tasks.segmentation import SegmentationExport

EXPORTS = {"classification": ClassificationExport(), "segmentation": SegmentationExport()}


def task_export(task: str):
    return EXPORTS[task]
