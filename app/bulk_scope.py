"""Which faces of a selection a bulk step changes, and the question the studio asks about it.

core.labeling leaves faces of val/test and faces that already have a label as they are unless
the step includes them. Above BULK_CONFIRM_OVER faces the studio asks first: the question says
how many faces are labeled and how many lie in val/test, and its default button (Enter) is the
safe step that changes only unlabeled train faces. Smaller selections take the safe step without
asking; the status message then says what was left out (the context menu includes them).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.labeling import SelectionSummary

BULK_CONFIRM_OVER = 50


@dataclass(frozen=True)
class BulkScope:
    """What a bulk step includes besides unlabeled train faces."""

    include_labeled: bool = False
    include_val_test: bool = False

    def flags(self) -> dict[str, bool]:
        """Keyword arguments for core.labeling's bulk functions."""
        return {"include_labeled": self.include_labeled, "include_val_test": self.include_val_test}


SAFE = BulkScope()
EVERYTHING = BulkScope(include_labeled=True, include_val_test=True)


@dataclass(frozen=True)
class BulkAction:
    """A bulk step in the words of the question and the status bar."""

    button: str  # the safe button, "{faces}" standing for e.g. "120 unlabeled train faces"
    done: str  # for the status bar: "{n} faces " + done, e.g. "labeled surprise"
    clears: bool = False  # clearing changes labeled faces: "already labeled" is its target

    @classmethod
    def label(cls, label: str) -> BulkAction:
        return cls(f"Label {{faces}} as {label}", f"labeled {label}")

    @classmethod
    def accept(cls) -> BulkAction:
        return cls("Accept the suggestion for {faces}", "given the run's suggestion")

    @classmethod
    def clear(cls) -> BulkAction:
        return cls("Clear {faces}", "made unlabeled", clears=True)


def scope_choices(action: BulkAction, summary: SelectionSummary) -> list[tuple[str, BulkScope]]:
    """The buttons of the question, the safe step first; each with the scope it stands for."""
    if action.clears:
        choices = [(action.button.format(faces=_faces(summary.labeled, "labeled train")), SAFE)]
        if summary.val_test:
            choices.append((f"Include the {summary.val_test:,} in val/test too", EVERYTHING))
        return choices
    choices = [(action.button.format(faces=_faces(summary.unlabeled_train, "unlabeled train")), SAFE)]
    if summary.labeled:
        choices.append((f"Include the {summary.labeled:,} labeled ones", BulkScope(include_labeled=True)))
    if summary.val_test:
        choices.append((f"Include val/test too (all {summary.faces:,})", EVERYTHING))
    return choices


def question(action: BulkAction, summary: SelectionSummary) -> str:
    protected = (
        "The labels of val/test faces (which measure the model) stay unless you include them."
        if action.clears
        else "Labeled faces and val/test faces (which measure the model) stay as they are unless you include them."
    )
    return f"{summary.describe()}.\n\n{protected}\n\nIt is one step: Ctrl+Z takes it back as a whole."


def ask_scope(dialogs, action: BulkAction, summary: SelectionSummary) -> BulkScope | None:
    """The scope of a bulk step on the selection: asked above BULK_CONFIRM_OVER faces, the safe
    one below. None: cancelled."""
    if summary.faces <= BULK_CONFIRM_OVER:
        return SAFE
    choices = scope_choices(action, summary)
    picked = dialogs.choose("Change many faces", question(action, summary), [text for text, _scope in choices])
    return None if picked is None else choices[picked][1]


def _faces(count: int, kind: str) -> str:
    return f"{count:,} {kind} face{'s' if count != 1 else ''}"
