"""Review-queue strategies over a run's predictions: which faces to label next, and why.

`build_queue` is the entry point; a strategy is one ranking function registered in
`core/active/queue.py` with `@register_strategy(name, description)`; pure scores live in `scores.py`.
"""

from core.active.data import QueueError, load_run_predictions
from core.active.queue import LABEL_FILTERS, STRATEGIES, QueueAdvice, QueueFilters, QueueItem, build_queue, queue_advice

__all__ = [
    "LABEL_FILTERS",
    "STRATEGIES",
    "QueueAdvice",
    "QueueError",
    "QueueFilters",
    "QueueItem",
    "build_queue",
    "load_run_predictions",
    "queue_advice",
]
