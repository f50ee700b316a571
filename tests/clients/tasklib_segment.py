"""Segment images with the TFLite Task Library's ImageSegmenter, run in the tflite-support environment.

    python tasklib_segment.py MODEL.tflite IMAGES.npz OUT.npz

As mediapipe_segment.py: per array the category masks (N, H, W) and the confidence masks (N, H, W, C), and the
labels of the segmenter's coloured labels.
"""

import sys
from importlib.metadata import version

import numpy as np
from tflite_support.task import core, processor, vision

model, images, out = sys.argv[1:4]
results = {}
for kind, output in (("category", processor.SegmentationOptions.output_type.CATEGORY_MASK),
                     ("confidence", processor.SegmentationOptions.output_type.CONFIDENCE_MASK)):
    options = vision.ImageSegmenterOptions(base_options=core.BaseOptions(file_name=model),
                                           segmentation_options=processor.SegmentationOptions(output_type=output))
    segmenter = vision.ImageSegmenter.create_from_options(options)
    with np.load(images) as arrays:
        for name in arrays.files:
            masks = []
            for image in arrays[name]:
                [segmentation] = segmenter.segment(
                    vision.TensorImage.create_from_array(np.ascontiguousarray(image))).segmentations
                masks.append(segmentation.category_mask if kind == "category" else
                             np.stack([m.value for m in segmentation.confidence_masks], -1))
                results["labels"] = np.array([c.category_name for c in segmentation.colored_labels])
            results[f"{name}_{kind}"] = np.stack(masks)
results["client"] = np.array(f"tflite-support {version('tflite-support')}")
np.savez(out, **results)
