"""The semi-supervised method: the three levels, fusion, thresholds, losses, and algorithms.

Everything here is plain torch over batches: it does not know whether its inputs are cached
features (head mode) or images through a trainable encoder (fine-tune mode).
"""
