"""Data, the training recipe and supernet training into a work directory.

``portable`` imports no TensorFlow, so the images the factory scores and the recipe it trains
with can be rebuilt where TensorFlow is not installed (Keras 3 on JAX, an app developer's script).
"""
