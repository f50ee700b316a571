"""The ground floor: errors, atomic files, the Keras 2 switch and the one TFLite conversion.

Imports nothing of the factory above it; ``devices`` imports only this floor.
"""
