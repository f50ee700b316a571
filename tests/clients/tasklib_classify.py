"""Classify images with the TFLite Task Library's ImageClassifier, run in the tflite-support environment.

    python tasklib_classify.py MODEL.tflite IMAGES.npz OUT.json

As mediapipe_classify.py: per array and image, every category [index, score, category_name].
"""

import json
import sys
from importlib.metadata import version

import numpy as np
from tflite_support.task import core, processor, vision

model, images, out = sys.argv[1:4]
options = vision.ImageClassifierOptions(base_options=core.BaseOptions(file_name=model),
                                        classification_options=processor.ClassificationOptions(max_results=-1))
classifier = vision.ImageClassifier.create_from_options(options)
results = {}
with np.load(images) as arrays:
    for name in arrays.files:
        rows = []
        for image in arrays[name]:
            result = classifier.classify(vision.TensorImage.create_from_array(np.ascontiguousarray(image)))
            rows.append([[c.index, c.score, c.category_name] for c in result.classifications[0].categories])
        results[name] = rows
with open(out, "w") as f:
    json.dump({"client": f"tflite-support {version('tflite-support')}", "results": results}, f)
