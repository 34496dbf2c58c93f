"""Qt-free library of the FER studio: store, ingest, encoders, training, active learning.

Nothing under this package may import Qt or pyqtgraph (tests/test_layering.py enforces it).
"""
