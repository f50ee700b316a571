"""Classify images with MediaPipe Tasks' ImageClassifier, run in the mediapipe client environment.

    python mediapipe_classify.py MODEL.tflite IMAGES.npz OUT.json

IMAGES.npz holds arrays of uint8 RGB images (any size: MediaPipe resizes them to the
model's input). OUT.json gets, per array and image, every category MediaPipe returns:
[index, score, category_name].
"""

import json
import sys

import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions, vision

model, images, out = sys.argv[1:4]
options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model), max_results=-1)
results = {}
with vision.ImageClassifier.create_from_options(options) as classifier, np.load(images) as arrays:
    for name in arrays.files:
        rows = []
        for image in arrays[name]:
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
            rows.append([[c.index, c.score, c.category_name] for c in result.classifications[0].categories])
        results[name] = rows
with open(out, "w") as f:
    json.dump({"client": f"mediapipe {mp.__version__}", "results": results}, f)
