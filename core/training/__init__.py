"""Training: data from the store, feature caches, augmentation, the loop and its hooks,
metrics, and the worker process that runs it all and writes the results back."""
