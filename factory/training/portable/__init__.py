"""The TensorFlow-free part of training: image decoding and resizing, and the training recipe.

``bench.baselines`` trains hand-designed baselines with it under Keras 3 on other backends, and
a model card's snippet prepares images with the same PIL calls.
"""
