"""Segment images with MediaPipe Tasks' ImageSegmenter, run in the mediapipe client environment.

    python mediapipe_segment.py MODEL.tflite IMAGES.npz OUT.npz

IMAGES.npz holds arrays of uint8 RGB images. OUT.npz gets, per array, the category masks (N, H, W) and the
confidence masks (N, H, W, C) MediaPipe returns (at each image's size), and ``labels``: the segmenter's labels.
"""

import sys

import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions, vision

model, images, out = sys.argv[1:4]
options = vision.ImageSegmenterOptions(base_options=BaseOptions(model_asset_path=model),
                                       output_category_mask=True, output_confidence_masks=True)
results = {}
with vision.ImageSegmenter.create_from_options(options) as segmenter, np.load(images) as arrays:
    results["labels"] = np.array(segmenter.labels)
    for name in arrays.files:
        categories, confidences = [], []
        for image in arrays[name]:
            result = segmenter.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
            categories.append(result.category_mask.numpy_view().copy().reshape(image.shape[:2]))
            confidences.append(np.stack([m.numpy_view().reshape(image.shape[:2]) for m in result.confidence_masks], -1))
        results[f"{name}_category"], results[f"{name}_confidence"] = np.stack(categories), np.stack(confidences)
results["client"] = np.array(f"mediapipe {mp.__version__}")
np.savez(out, **results)
