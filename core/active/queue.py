"""The review queue: which faces an annotator should look at next, and why.

A strategy ranks the candidate faces of a run (the train faces its label filter takes: unlabeled
ones unless the strategy says otherwise, as label_errors does) and is one function in
`STRATEGIES`; `build_queue` loads the run, filters, ranks, and gives every face a short reason
composed from the facts about it (margin and the two classes it hesitates between, levels that
disagree with the fused prediction, its distance to the class threshold), whatever the strategy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
from sqlalchemy.orm import Session

from core.active import label_errors, scores
from core.active.data import QueueError, RunPredictions, load_embeddings, load_run_predictions, resolve_run
from core.classes import class_names
from core.labeling import LabelingError, resolve_label
from core.store.models import SOURCE_ANNOTATOR, SPLITS
from core.store.project import Project
from core.team.assignment import team_order, to_vote_mask
from core.team.votes import disputed_faces, load_votes

# corrected: labeled by an annotator; to_vote: what the filter's annotator is asked to vote on
# (unlabeled faces and the team's overlap faces they have not voted on, core/team/assignment.py)
LABEL_FILTERS = ("unlabeled", "labeled", "corrected", "to_vote", "all")
# A to-vote queue is taken in blocks of this many ranked faces, each in the annotator's own order,
# so that teammates starting together meet on few faces. The cost: the most uncertain face of a
# block may come 32nd. Simulated (bench/team_collisions.py), two annotators at 1.5 s a face wasted
# 15.8% of their votes on settled faces with blocks of 8, 6.3% with 32, 45.5% with one shared order.
TEAM_BLOCK = 32
DIVERSITY_POOL = 10  # diversity spreads its batch over the (this x limit) least sure faces by margin
TYPICAL_POOL = 5  # typical_margin clusters the (this x limit) least sure faces by margin
TYPICAL_NEIGHBOURS = 20  # typicality: mean distance to this many nearest candidates (TypiClust's k)
# Above this, faces just under their threshold are ones the model is nearly sure of: measured
# behind random with sitfer's fixed 0.95 (docs/benchmarks.md, active learning).
HIGH_THRESHOLD = 0.9


@dataclass(frozen=True)
class QueueFilters:
    labels: str | None = None  # one of LABEL_FILTERS; None: the strategy's own (Strategy.labels)
    pseudo_label: str | None = None  # a class name or alias
    pair: tuple[str, str] | None = None  # faces whose top two fused classes are these, in either order
    face_ids: frozenset[int] | None = None  # only these faces (e.g. a selection on the studio's map)
    annotator: str | None = None  # whose queue: the to_vote filter leaves out faces they voted on


@dataclass(frozen=True)
class QueueItem:
    face_id: int
    rank: int  # 1 = review first
    score: float  # the strategy's own measure (see Strategy.description)
    reason: str
    pseudo_label: str
    confidence: float
    runner_up: str  # the second most probable class
    margin: float
    threshold: float | None  # the pseudo-label's class threshold, if the run logged it
    passed_threshold: bool
    levels: dict[str, str]  # each level's own top class
    label: str | None  # the face's current label
    run_id: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class QueueContext:
    """The candidates of one queue with the facts every strategy and reason uses."""

    preds: RunPredictions
    session: Session | None  # open while strategies rank, for those that load more (embeddings)
    top: np.ndarray  # the two most probable fused classes and their margin
    second: np.ndarray
    margin: np.ndarray
    embeddings: np.ndarray | None = None  # (n, dim) in row order when already in memory (benchmarks)
    project: Project | None = None  # for strategies that read the project's caches (label_errors)
    split: str | None = "train"  # the split the queue was asked for (None: every split), before filters
    # What a strategy read once per queue build (the disputed faces), shared with `take`'s
    # contexts so that its candidate mask and its ranking read the store once.
    memo: dict = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        preds: RunPredictions,
        session: Session | None,
        embeddings: np.ndarray | None = None,
        project: Project | None = None,
        split: str | None = "train",
    ) -> QueueContext:
        top, second, p1, p2 = scores.top_two(preds.fused)
        return cls(preds, session, top, second, p1 - p2, embeddings, project, split)

    def take(self, rows: np.ndarray) -> QueueContext:
        return QueueContext(
            self.preds.take(rows),
            self.session,
            self.top[rows],
            self.second[rows],
            self.margin[rows],
            None if self.embeddings is None else self.embeddings[rows],
            self.project,
            self.split,
            self.memo,
        )

    def embeddings_of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask over rows, their vectors): from memory, or the run's stored embeddings."""
        if self.embeddings is not None:
            return np.ones(len(rows), dtype=bool), self.embeddings[rows].astype(np.float32)
        if self.session is None:
            raise ValueError("the run's embeddings are read through a session: open one, or give them in memory")
        return load_embeddings(self.session, self.preds.run_id, self.preds.face_ids[rows])

    def under_threshold(self, row: int) -> bool:
        preds = self.preds
        if preds.thresholds is None:
            return not preds.passed[row]
        return bool(preds.confidence[row] < preds.thresholds[preds.predicted[row]])


@dataclass(frozen=True)
class Ranking:
    rows: np.ndarray  # candidate rows, review order, at most `limit`
    scores: np.ndarray  # one per row
    notes: list[str] | None = None  # a leading phrase per row, where the strategy has more to say


@dataclass(frozen=True)
class QueueAdvice:
    """A warning that a strategy is known to rank badly for a run: a few words for a status line,
    and the reason in full."""

    headline: str
    detail: str


@dataclass(frozen=True)
class Strategy:
    name: str
    description: str
    rank: Callable[[QueueContext, int, int], Ranking]  # (context, limit, seed)
    lead: str | None = None  # how the score opens a reason, e.g. "entropy {score:.2f}"
    lead_fact: str | None = None  # the fact this strategy is about, put first in a reason
    advise: Callable[[list[QueueItem]], QueueAdvice | None] | None = None  # see queue_advice
    labels: str = "unlabeled"  # the label filter it works on unless the queue names one
    label_filters: tuple[str, ...] = LABEL_FILTERS  # the label filters it can rank; others are refused
    candidates: Callable[[QueueContext], np.ndarray] | None = None  # its own mask over the filtered faces


STRATEGIES: dict[str, Strategy] = {}


def register_strategy(
    name: str,
    description: str,
    *,
    lead: str | None = None,
    lead_fact: str | None = None,
    advise: Callable[[list[QueueItem]], QueueAdvice | None] | None = None,
    labels: str = "unlabeled",
    label_filters: tuple[str, ...] = LABEL_FILTERS,
    candidates: Callable[[QueueContext], np.ndarray] | None = None,
):
    """Register a ranking function as a queue strategy under `name`; `advise` looks at a built
    queue and warns where the strategy is known to rank badly for its run. `labels` is the label
    filter the strategy works on by default (the CLI's --labels and the studio's Faces choice
    start there), `label_filters` those it accepts, and `candidates` (context -> bool per row)
    narrows the filtered faces to those it can rank (e.g. faces whose annotators disagree)."""
    if labels not in label_filters or not set(label_filters) <= set(LABEL_FILTERS):
        raise ValueError(f"strategy {name!r}: its label filter {labels!r} must be one of {label_filters}")

    def register(rank: Callable[[QueueContext, int, int], Ranking]):
        STRATEGIES[name] = Strategy(name, description, rank, lead, lead_fact, advise, labels, label_filters, candidates)
        return rank

    return register


def _by_score(ctx: QueueContext, values: np.ndarray, limit: int, *, ascending: bool) -> Ranking:
    """The `limit` best rows by one score (NaN rows left out); equal scores in face id order."""
    valid = np.flatnonzero(~np.isnan(values))
    key = values[valid] if ascending else -values[valid]
    rows = valid[np.lexsort((ctx.preds.face_ids[valid], key))][:limit]
    return Ranking(rows, values[rows])


@register_strategy("least_confidence", "1 - max fused probability; highest first", lead="confidence {confidence:.2f}")
def _least_confidence(ctx: QueueContext, limit: int, seed: int) -> Ranking:
    return _by_score(ctx, scores.least_confidence(ctx.preds.fused), limit, ascending=False)


@register_strategy("margin", "top-1 minus top-2 fused probability; smallest first", lead_fact="margin")
def _margin(ctx: QueueContext, limit: int, seed: int) -> Ranking:
    return _by_score(ctx, ctx.margin, limit, ascending=True)


@register_strategy("entropy", "entropy of the fused probabilities (bits); highest first", lead="entropy {score:.2f}")
def _entropy(ctx: QueueContext, limit: int, seed: int) -> Ranking:
    return _by_score(ctx, scores.entropy(ctx.preds.fused), limit, ascending=False)


@register_strategy(
    "disagreement",
    "Jensen-Shannon divergence between the semantic, text and instance levels (bits); highest first",
    lead="levels disagree (JS {score:.2f})",
)
def _disagreement(ctx: QueueContext, limit: int, seed: int) -> Ranking:
    levels = ctx.preds.levels
    if len(levels) < 2:
        have = f"only the {next(iter(levels))} level" if levels else "no per-level probabilities"
        raise QueueError(
            f"disagreement needs at least two of the semantic, text and instance levels; "
            f"run {ctx.preds.run_id} stored {have} (train with --algorithm sitfer)"
        )
    return _by_score(ctx, scores.js_divergence(list(levels.values())), limit, ascending=False)


def _high_thresholds_advice(items: list[QueueItem]) -> QueueAdvice | None:
    """near_threshold against thresholds of HIGH_THRESHOLD or more ranks nearly sure faces first."""
    thresholds = [item.threshold for item in items if item.threshold is not None]
    median = float(np.median(thresholds)) if thresholds else 0.0
    if median < HIGH_THRESHOLD:
        return None
    return QueueAdvice(
        "high thresholds: try margin",
        f"this run's thresholds are high ({median:.2f}), so near threshold ranks faces the model "
        f"is nearly sure of, which teach little (behind random in the benchmark); margin is the "
        f"better queue for this run",
    )


@register_strategy(
    "near_threshold",
    "how far the confidence is under the predicted class's threshold "
    "(score: threshold - confidence, or the confidence where the run "
    "logged no thresholds); faces under it first, smallest gap first, "
    "then those over it. Best in the benchmark where thresholds are "
    "near 0.5 (DTA's floor); under a high fixed threshold (sitfer's "
    "0.95) it picks nearly sure faces and falls behind random",
    lead_fact="threshold",
    advise=_high_thresholds_advice,
)
def _near_threshold(ctx: QueueContext, limit: int, seed: int) -> Ranking:
    preds = ctx.preds
    if preds.thresholds is not None:
        gap = scores.threshold_gap(preds.confidence, preds.predicted, preds.thresholds)
        rows = scores.near_threshold_order(gap, preds.face_ids)[:limit]
        return Ranking(rows, gap[rows])
    # No thresholds logged: the passed flags still split the faces; among those that did not
    # pass, the most confident are nearest the threshold, and among those that passed, the least.
    gap_proxy = np.where(preds.passed, preds.confidence - 1.0, 1.0 - preds.confidence)
    rows = scores.near_threshold_order(gap_proxy, preds.face_ids)[:limit]
    return Ranking(rows, preds.confidence[rows])


def _with_embeddings(ctx: QueueContext, rows: np.ndarray, strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """The rows whose run embedding is known, and those embeddings; an error if none is."""
    found, vectors = ctx.embeddings_of(rows)
    if not found.any():
        raise QueueError(
            f"run {ctx.preds.run_id} stored no embeddings for these faces; the {strategy} strategy needs them"
        )
    return rows[found], vectors


@register_strategy(
    "diversity",
    f"greedy k-center over the run's embeddings of the {DIVERSITY_POOL} x limit "
    f"faces with the smallest margin, so a batch is not near-duplicates; "
    f"score: margin",
)
def _diversity(ctx: QueueContext, limit: int, seed: int) -> Ranking:
    pool, vectors = _with_embeddings(
        ctx, _by_score(ctx, ctx.margin, DIVERSITY_POOL * limit, ascending=True).rows, "diversity"
    )
    chosen, distances = scores.k_center_greedy(vectors, limit)
    notes = [
        "spread pick: the least sure of the pool" if i == 0 else f"spread pick, {d:.2f} from the nearest earlier pick"
        for i, d in enumerate(distances)
    ]
    rows = pool[chosen]
    return Ranking(rows, ctx.margin[rows], notes)


@register_strategy(
    "typical_margin",
    f"the {TYPICAL_POOL} x limit faces with the smallest margin, cut into limit "
    f"k-means clusters over the run's embeddings; from each cluster its most "
    f"typical face (many candidates look like it: TypiClust's typicality over "
    f"the {TYPICAL_NEIGHBOURS} nearest), so a batch is unsure, spread, and free of "
    f"outliers; score: margin",
)
def _typical_margin(ctx: QueueContext, limit: int, seed: int) -> Ranking:
    usable, vectors = _with_embeddings(ctx, np.arange(len(ctx.preds)), "typical_margin")  # vectors[i]: usable[i]
    margins = ctx.margin[usable]
    pool = np.lexsort((ctx.preds.face_ids[usable], margins))[: TYPICAL_POOL * limit]  # indices into usable
    typical = scores.typicality(vectors, pool, TYPICAL_NEIGHBOURS)
    chosen, sizes = scores.typical_per_cluster(vectors[pool], typical, limit, seed)
    picked = list(pool[chosen])
    notes = [f"typical pick: the most typical of {size} unsure look-alike{'s' if size > 1 else ''}" for size in sizes]
    if len(picked) < limit:  # fewer clusters than asked (duplicate embeddings): the least sure of the rest
        taken = set(picked)
        rest = [i for i in pool if i not in taken][: limit - len(picked)]
        picked += rest
        notes += ["unsure pick (the clusters ran out)"] * len(rest)
    rows = usable[np.array(picked, dtype=np.int64)]
    return Ranking(rows, ctx.margin[rows], notes)


@register_strategy(
    "badge",
    "uncertainty and spread at once (BADGE): k-means++ seeding over each face's "
    "last-layer gradient embedding, (fused p - one-hot of the prediction) x the run's "
    "embedding, so long (unsure) and far-apart faces come first; score: the gradient "
    "embedding's length",
)
def _badge(ctx: QueueContext, limit: int, seed: int) -> Ranking:
    rows, vectors = _with_embeddings(ctx, np.arange(len(ctx.preds)), "badge")
    probs = ctx.preds.fused[rows]
    chosen, distances = scores.badge_select(probs, vectors, limit, seed)
    picked = rows[chosen]
    notes = [
        "gradient pick: the longest gradient embedding"
        if i == 0
        else f"gradient pick, {d:.2f} from the nearest earlier pick"
        for i, d in enumerate(distances)
    ]
    return Ranking(picked, scores.gradient_embedding_norms(probs[chosen], vectors[chosen]), notes)


UNCHECKED_NOTE = "label not checked: its features are not cached"


def _unchecked_advice(items: list[QueueItem]) -> QueueAdvice | None:
    unchecked = sum(item.reason.startswith(UNCHECKED_NOTE) for item in items)
    if not unchecked:
        return None
    return QueueAdvice(
        f"{unchecked} not checked",
        f"{unchecked} labeled face(s) in this queue have no cached features for the run, so their labels "
        f"were not checked (they come last); `python main.py features PROJECT` computes them",
    )


@register_strategy(
    "label_errors",
    f"suspected label errors among the labeled faces: out-of-fold class probabilities from "
    f"{label_errors.FOLDS} stratified folds of a logistic regression on the run's cached features, "
    f"judged by cleanlab; score: the label's quality (cleanlab's self-confidence: the out-of-fold "
    f"probability of the given label), lowest first; the reason says whether cleanlab's "
    f"find_label_issues flags the label; labeled faces whose features are not cached come last (score 1, "
    f"'not checked'); the check is cached until a label changes",
    advise=_unchecked_advice,
    labels="labeled",
    label_filters=("labeled", "corrected", "all"),
    candidates=lambda ctx: ctx.preds.labels != None,  # noqa: E711 (element-wise over an object array)
)
def _label_errors(ctx: QueueContext, limit: int, seed: int) -> Ranking:
    if ctx.project is None or ctx.session is None:
        raise ValueError("label_errors reads the project's feature cache: give the context its project and session")
    found = label_errors.suspected_label_errors(ctx.project, ctx.session, ctx.preds.run_id, ctx.split)
    at = found.rows_of(ctx.preds.face_ids)
    checked = np.flatnonzero(at >= 0)
    order = found.check.order()
    rank_of = np.empty(len(order), dtype=np.int64)
    rank_of[order] = np.arange(len(order))
    rows = checked[np.argsort(rank_of[at[checked]], kind="stable")]
    unchecked = np.flatnonzero(at < 0)
    rows = np.concatenate([rows, unchecked])[:limit]
    notes = [
        label_errors.label_note(found.check, int(at[row]))
        if at[row] >= 0
        else f"{UNCHECKED_NOTE} (python main.py features)"
        for row in rows
    ]
    values = np.array([found.check.quality[at[row]] if at[row] >= 0 else 1.0 for row in rows], dtype=np.float64)
    return Ranking(rows, values, notes)


def _disputes(ctx: QueueContext) -> dict[int, Counter[str | None]]:
    """The faces of this queue whose annotators' votes disagree, unsettled, with their counts."""
    if "disputes" not in ctx.memo:
        if ctx.session is None:
            raise QueueError("the adjudication queue reads the votes through a session")
        ctx.memo["disputes"] = disputed_faces(load_votes(ctx.session))
    return ctx.memo["disputes"]


def _disputed_mask(ctx: QueueContext) -> np.ndarray:
    disputed = _disputes(ctx)
    return np.fromiter((int(f) in disputed for f in ctx.preds.face_ids), dtype=bool, count=len(ctx.preds))


def _votes_note(counts: Counter[str | None]) -> str:
    """e.g. 'votes fear 2, surprise 1'."""
    shown = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] or ""))
    return "votes " + ", ".join(f"{label or 'no label'} {n}" for label, n in shown)


@register_strategy(
    "adjudication",
    "faces whose annotators' votes disagree and that no adjudicator has settled; score: the "
    "entropy of the votes (bits), highest first, more votes first among equals. A label given in "
    "this queue is the adjudicator's final word (label --adjudicate)",
    labels="all",
    label_filters=("all", "labeled", "unlabeled"),
    candidates=_disputed_mask,
)
def _adjudication(ctx: QueueContext, limit: int, seed: int) -> Ranking:
    disputed = _disputes(ctx)
    counts = [disputed[int(f)] for f in ctx.preds.face_ids]
    entropy = np.array([_entropy_bits(c) for c in counts])
    votes = np.array([sum(c.values()) for c in counts])
    rows = np.lexsort((ctx.preds.face_ids, -votes, -entropy))[:limit]
    return Ranking(rows, entropy[rows], [_votes_note(counts[row]) for row in rows])


def _entropy_bits(counts: Counter[str | None]) -> float:
    shares = np.array(list(counts.values()), dtype=np.float64)
    shares /= shares.sum()
    return float(-(shares * np.log2(shares)).sum())


@register_strategy(
    "random", "a seeded random order (the baseline); score: the random draw", lead="random pick (seed {seed})"
)
def _random(ctx: QueueContext, limit: int, seed: int) -> Ranking:
    draws = np.random.default_rng(seed).random(len(ctx.preds))
    return _by_score(ctx, draws, limit, ascending=True)


def build_queue(
    project: Project,
    run_id: int | None = None,
    strategy: str = "margin",
    limit: int = 50,
    split: str | None = "train",
    filters: QueueFilters | None = None,
    seed: int = 0,
) -> list[QueueItem]:
    """The next `limit` faces to review from a run's predictions (default: the latest finished run).

    `split` None takes every split; `filters` narrow the candidates (default: the faces of the
    strategy's own label filter, unlabeled ones for most)."""
    if strategy not in STRATEGIES:
        raise QueueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if limit < 1:
        raise QueueError("the queue limit must be at least 1")
    if split is not None and split not in SPLITS:
        raise QueueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    filters = filters or QueueFilters()
    with project.session() as session:
        run_id = resolve_run(session, run_id)
        preds = load_run_predictions(session, run_id, split)
        if not len(preds):
            where = f"the {split} split" if split else "this project"
            raise QueueError(f"run {run_id} has no predictions for active faces of {where}")
        ctx = QueueContext.of(preds, session, project=project, split=split)
        ctx = ctx.take(_candidates(ctx, filters, STRATEGIES[strategy]))
        if not len(ctx.preds):
            return []
        ranking = STRATEGIES[strategy].rank(ctx, limit, seed)
    if filters.labels == "to_vote" and filters.annotator:
        ranking = _in_team_order(ranking, ctx.preds.face_ids[ranking.rows], filters.annotator)
    return [
        _item(
            ctx,
            STRATEGIES[strategy],
            rank,
            int(row),
            float(score),
            seed,
            ranking.notes[rank - 1] if ranking.notes else None,
        )
        for rank, (row, score) in enumerate(zip(ranking.rows, ranking.scores), start=1)
    ]


def _in_team_order(ranking: Ranking, face_ids: np.ndarray, annotator: str) -> Ranking:
    """A to-vote queue in the annotator's own order within blocks of TEAM_BLOCK ranked faces
    (core.team.assignment.team_order): teammates starting at once rarely label the same faces."""
    order = team_order(face_ids, annotator, TEAM_BLOCK)
    notes = [ranking.notes[i] for i in order] if ranking.notes else None
    return Ranking(ranking.rows[order], ranking.scores[order], notes)


def queue_advice(strategy: str, items: list[QueueItem]) -> QueueAdvice | None:
    """The strategy's warning about a queue it built (see register_strategy), or None."""
    known = STRATEGIES.get(strategy)
    return known.advise(items) if known is not None and known.advise is not None else None


def _candidates(ctx: QueueContext, filters: QueueFilters, strategy: Strategy) -> np.ndarray:
    preds = ctx.preds
    labels = filters.labels or strategy.labels
    if labels not in LABEL_FILTERS:
        raise QueueError(f"unknown label filter {labels!r}; choose one of {', '.join(LABEL_FILTERS)}")
    if labels not in strategy.label_filters:
        raise QueueError(
            f"the {strategy.name} strategy ranks {' or '.join(strategy.label_filters)} faces, not {labels} ones"
        )
    labeled = preds.labels != None  # noqa: E711 (element-wise over an object array)
    if labels == "to_vote":
        mask = _to_vote(ctx, filters.annotator)
    else:
        mask = {
            "unlabeled": ~labeled,
            "labeled": labeled,
            "corrected": preds.label_sources == SOURCE_ANNOTATOR,
            "all": np.ones(len(preds), dtype=bool),
        }[labels]
    if strategy.candidates is not None:
        mask = mask & strategy.candidates(ctx)
    index = {name: i for i, name in enumerate(class_names())}
    try:
        if filters.pseudo_label:
            mask = mask & (preds.predicted == index[resolve_label(filters.pseudo_label)])
        if filters.pair:
            a, b = (index[resolve_label(name)] for name in filters.pair)
            if a == b:
                raise QueueError(f"a confusion pair needs two different classes, not {filters.pair[0]} twice")
            mask = mask & (((ctx.top == a) & (ctx.second == b)) | ((ctx.top == b) & (ctx.second == a)))
    except LabelingError as exc:
        raise QueueError(str(exc)) from None
    if filters.face_ids is not None:
        mask = mask & np.isin(preds.face_ids, np.fromiter(filters.face_ids, np.int64, len(filters.face_ids)))
    return np.flatnonzero(mask)


def _to_vote(ctx: QueueContext, annotator: str | None) -> np.ndarray:
    if not annotator:
        raise QueueError("the to_vote filter needs an annotator: whose votes to leave out")
    if ctx.session is None:
        raise QueueError("the to_vote filter reads the votes through a session")
    preds = ctx.preds
    return to_vote_mask(ctx.session, annotator, preds.face_ids, preds.labels, preds.label_sources)


def _facts(ctx: QueueContext, row: int) -> dict[str, str]:
    """What is known about one face, each as a short phrase."""
    names = class_names()
    preds = ctx.preds
    top = names[ctx.top[row]]
    facts = {"margin": f"margin {ctx.margin[row]:.2f} {top}/{names[ctx.second[row]]}"}
    dissent: dict[str, list[str]] = {}
    for level, probs in preds.levels.items():
        if not np.isnan(probs[row]).any() and names[int(np.argmax(probs[row]))] != top:
            dissent.setdefault(names[int(np.argmax(probs[row]))], []).append(level)
    for label, levels in dissent.items():
        facts[f"level:{label}"] = (
            f"{' and '.join(levels)} level{'s' if len(levels) > 1 else ''} say{'' if len(levels) > 1 else 's'} {label}"
        )
    predicted = names[preds.predicted[row]]
    if preds.thresholds is not None:
        gap = preds.thresholds[preds.predicted[row]] - preds.confidence[row]
        where = "under" if gap > 0 else "over"
        facts["threshold"] = f"{abs(gap):.2f} {where} the {predicted} threshold"
    else:
        state = "passes" if preds.passed[row] else "below"
        facts["threshold"] = f"{state} the {predicted} threshold (confidence {preds.confidence[row]:.2f})"
    return facts


def _reason(ctx: QueueContext, strategy: Strategy, row: int, score: float, seed: int, note: str | None) -> str:
    facts = _facts(ctx, row)
    parts = []
    if note:
        parts.append(note)
    elif strategy.lead:
        parts.append(strategy.lead.format(score=score, seed=seed, confidence=ctx.preds.confidence[row]))
    if strategy.lead_fact:
        parts.append(facts.pop(strategy.lead_fact))
    if not ctx.under_threshold(row):
        facts.pop("threshold", None)  # a passed threshold is no reason to look, unless it leads
    parts.extend(facts.values())
    return "; ".join(parts)


def _item(
    ctx: QueueContext, strategy: Strategy, rank: int, row: int, score: float, seed: int, note: str | None
) -> QueueItem:
    names = class_names()
    preds = ctx.preds
    threshold = float(preds.thresholds[preds.predicted[row]]) if preds.thresholds is not None else None
    levels = {
        level: names[int(np.argmax(probs[row]))]
        for level, probs in preds.levels.items()
        if not np.isnan(probs[row]).any()
    }
    return QueueItem(
        face_id=int(preds.face_ids[row]),
        rank=rank,
        score=round(score, 6),
        reason=_reason(ctx, strategy, row, score, seed, note),
        pseudo_label=names[preds.predicted[row]],
        confidence=round(float(preds.confidence[row]), 6),
        runner_up=names[ctx.second[row]],
        margin=round(float(ctx.margin[row]), 6),
        threshold=threshold,
        passed_threshold=bool(preds.passed[row]),
        levels=levels,
        label=preds.labels[row],
        run_id=preds.run_id,
    )
