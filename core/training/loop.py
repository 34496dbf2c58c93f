"""The one training loop every algorithm shares, with prioritised hooks (after USB's design):
progress, metrics, evaluation, checkpoints and cancellation are hooks, not loop code."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from contextlib import nullcontext

import torch

from core.ssl.algorithms import Algorithm, StepResult
from core.training.settings import LoopConfig


class ModelEMA:
    """An exponential moving average of the model's weights: the teacher used for evaluation
    and predictions (steadier than the student at any one step)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(_unwrap(model)).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        # Multi-tensor kernels: a few launches a step on a GPU instead of two per tensor (an
        # EfficientNet has some 300), with the same arithmetic as value.mul_(d).add_(x, 1 - d).
        source = _unwrap(model).state_dict()
        ema_float, source_float, ema_other, source_other = [], [], [], []
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                ema_float.append(value)
                source_float.append(source[name].detach())
            else:
                ema_other.append(value)
                source_other.append(source[name])
        if ema_float:
            torch._foreach_mul_(ema_float, self.decay)
            torch._foreach_add_(ema_float, source_float, alpha=1 - self.decay)
        if ema_other:
            torch._foreach_copy_(ema_other, source_other)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, torch.nn.Module) else model


class Hook:
    """Override what you need. Lower priority runs first."""

    priority = 50

    def before_run(self, trainer: Trainer) -> None: ...

    def after_step(self, trainer: Trainer, result: StepResult) -> None: ...

    def after_run(self, trainer: Trainer, status: str) -> None: ...


class Trainer:
    def __init__(
        self,
        model: torch.nn.Module,
        algorithm: Algorithm,
        source,
        config: LoopConfig,
        device: torch.device,
        hooks: Sequence[Hook] = (),
    ):
        config.validate()
        config = config.with_schedule()  # cadences left to "auto" follow the steps
        self.model = model
        self.algorithm = algorithm
        self.source = source
        self.config = config
        self.cadence = config.cadence()  # the same numbers, typed as never "auto"
        self.device = device
        self.hooks = sorted(hooks, key=lambda h: h.priority)
        # A model may ask for its own parameter groups (fine-tune mode: a gentler encoder lr).
        groups = getattr(_unwrap(model), "param_groups", None)
        params = groups(config.lr) if callable(groups) else model.parameters()
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        total = self.cadence.steps
        # Cosine decay to 10% of the learning rate, the FixMatch schedule.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
        )
        self.ema = ModelEMA(model, config.ema_decay)
        algorithm.teacher = self.ema.module
        self.step = 0
        self.stop_reason: str | None = None
        self._nonfinite: torch.Tensor | None = None
        self._checked_step = 0

    def add_hook(self, hook: Hook) -> None:
        self.hooks.append(hook)
        self.hooks.sort(key=lambda h: h.priority)

    def request_stop(self, reason: str = "cancelled") -> None:
        self.stop_reason = reason

    def _autocast(self):
        if self.device.type == "cuda" and self.config.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def run(self) -> str:
        for hook in self.hooks:
            hook.before_run(self)
        # Whether a loss since the last check was not finite, kept on the device: reading it every
        # step would make each GPU step wait for the last one's kernels. It is read before any hook
        # can log, evaluate or save that step, and before the run ends, so nothing non-finite is kept.
        self._nonfinite, self._checked_step = None, self.step
        while self.step < self.cadence.steps and self.stop_reason is None:
            batch = self.source.next_batch(self.step)
            self.model.train()
            with self._autocast():
                result = self.algorithm.train_step(self.model, batch, self.step)
            bad = ~torch.isfinite(result.loss.detach())
            self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
            self.optimizer.zero_grad(set_to_none=True)
            result.loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            self.ema.update(self.model)
            self.step += 1
            result.logs["lr"] = self.scheduler.get_last_lr()[0]
            if self._hooks_read_this_step():
                self._raise_if_nonfinite()
            for hook in self.hooks:
                hook.after_step(self, result)
        self._raise_if_nonfinite()
        status = "finished" if self.stop_reason is None else "cancelled"
        for hook in self.hooks:
            hook.after_run(self, status)
        return status

    def _hooks_read_this_step(self) -> bool:
        c = self.cadence
        return (
            self.step % c.log_every == 0
            or self.step % c.eval_every == 0
            or self.step % c.checkpoint_every == 0
            or self.step >= c.steps
        )

    def _raise_if_nonfinite(self) -> None:
        if self._nonfinite is not None and bool(self._nonfinite):
            raise FloatingPointError(
                f"the loss became infinite or NaN between steps {self._checked_step + 1} and "
                f"{self.step}; try a lower learning rate"
            )
        self._nonfinite, self._checked_step = None, self.step

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "model": _unwrap(self.model).state_dict(),
            "ema": self.ema.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "algorithm": self.algorithm.state_dict(),
            "source": self.source.state_dict(),
            "rng": self._rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        _unwrap(self.model).load_state_dict(state["model"])
        self.ema.module.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.algorithm.load_state_dict(state["algorithm"])
        self.source.load_state_dict(state["source"])
        self.step = int(state["step"])
        if "rng" in state:
            self._set_rng_state(state["rng"])

    def _rng_state(self) -> dict:
        """The global generators (dropout draws from them), so a resumed run continues exactly."""
        state = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _set_rng_state(self, state: dict) -> None:
        torch.set_rng_state(state["torch"].cpu())  # a checkpoint loaded onto the GPU moved it there
        if self.device.type == "cuda" and "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"].cpu(), self.device)
