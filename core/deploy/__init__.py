"""The trained model out of the studio: `predict` on new photos, `export-model` (ONNX or
TorchScript with its model card), and `evaluate --source` on a labeled set outside the project.

rows.py is torch-free (the studio reads and saves prediction tables with it); the rest loads torch.
"""
