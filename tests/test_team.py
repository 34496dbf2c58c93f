"""Sharing faces among a team: the overlap setting, each annotator's to_vote queue, the `team`
command and adjudication from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.active import QueueError, QueueFilters, build_queue, queue
from core.cli import main as cli_main
from core.labeling import adjudicate, set_label
from core.store.project import Project
from core.team.assignment import (
    TeamSettings,
    TeamSettingsError,
    in_overlap,
    read_settings,
    still_to_vote,
    write_settings,
)
from core.team.votes import load_votes
from tests.studio_runs import make_demo, project_copy


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("team") / "demo", runs=("sitfer",))


@pytest.fixture
def demo(template, tmp_path):
    with Project.open(project_copy(template, tmp_path)) as project:
        yield project


def run_cli(*args: str, capsys) -> tuple[int, str, str]:
    """Exit code, standard output and standard error of one command."""
    code = cli_main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def queue_ids(project, annotator: str, limit: int = 500) -> set[int]:
    items = build_queue(project, limit=limit, filters=QueueFilters(labels="to_vote", annotator=annotator))
    return {item.face_id for item in items}


def test_the_overlap_is_a_stable_share_of_the_faces():
    ids = np.arange(1, 20_001)
    ten, twenty = in_overlap(ids, 0.1), in_overlap(ids, 0.2)
    assert 0.09 < ten.mean() < 0.11 and 0.19 < twenty.mean() < 0.21
    assert not (ten & ~twenty).any()  # raising the share only adds faces
    assert (in_overlap(ids, 0.1) == ten).all() and not in_overlap(ids, 0.0).any()


def test_settings_are_checked_and_kept_in_the_project(demo):
    with pytest.raises(TeamSettingsError, match="between 0 and 1"):
        TeamSettings(1.5)
    with pytest.raises(TeamSettingsError, match="between 2 and"):
        TeamSettings(0.1, 1)
    with demo.session() as s:
        assert read_settings(s) == TeamSettings()
        write_settings(s, TeamSettings(0.25, 2))
    with demo.session() as s:
        assert read_settings(s) == TeamSettings(0.25, 2)


def test_each_annotator_is_asked_for_faces_they_have_not_voted_on(demo):
    with demo.session() as s:
        write_settings(s, TeamSettings(0.5, 2))
    unlabeled = queue_ids(demo, "ana")
    assert unlabeled == {f.id for f in _train_faces(demo) if f.label is None}
    overlap = sorted(f for f in unlabeled if in_overlap(np.array([f]), 0.5)[0])
    single = sorted(f for f in unlabeled if f not in overlap)
    assert overlap and single
    set_label(demo, overlap[0], "fear", "ana")
    set_label(demo, single[0], "fear", "ana")
    assert overlap[0] not in queue_ids(demo, "ana") and single[0] not in queue_ids(demo, "ana")
    ben = queue_ids(demo, "ben")
    assert overlap[0] in ben  # an overlap face needs a second vote
    assert single[0] not in ben  # one vote is enough for the rest
    set_label(demo, overlap[0], "surprise", "ben")
    assert overlap[0] not in queue_ids(demo, "cy")  # two votes: done
    imported = [f.id for f in _train_faces(demo) if f.label_source == "imported"]
    assert not set(imported) & queue_ids(demo, "cy")  # imported labels are not sent round again
    with pytest.raises(QueueError, match="needs an annotator"):
        build_queue(demo, filters=QueueFilters(labels="to_vote"))


def test_teammates_take_each_block_of_the_ranking_in_their_own_order(demo):
    with demo.session() as s:
        write_settings(s, TeamSettings(0.2, 2))
    margin = [i.face_id for i in build_queue(demo, limit=40, filters=QueueFilters(labels="unlabeled"))]

    def to_vote(who: str):
        return build_queue(demo, limit=40, filters=QueueFilters(labels="to_vote", annotator=who))

    mine = {who: to_vote(who) for who in ("ana", "ben")}
    ana, ben = ([i.face_id for i in items] for items in mine.values())
    assert ana != ben and ana == [i.face_id for i in to_vote("ana")], "each annotator's order is their own, stable"
    block = queue.TEAM_BLOCK
    for start in range(0, 40, block):  # the same faces near the same rank: the ranking holds
        assert set(ana[start : start + block]) == set(ben[start : start + block]) == set(margin[start : start + block])
    first = [len({a, b}) for a, b in zip(ana[::block], ben[::block])]
    assert sum(first) > len(first), "the two do not open every block on the same face"
    assert all(i.reason.startswith("margin") for i in mine["ana"]), "each face keeps its own reason"


def test_still_to_vote_reads_the_votes_of_the_faces_asked_about(demo):
    with demo.session() as s:
        write_settings(s, TeamSettings(0.5, 2))
    unlabeled = sorted(f.id for f in _train_faces(demo) if f.label is None)
    overlap = next(f for f in unlabeled if in_overlap(np.array([f]), 0.5)[0])
    single = next(f for f in unlabeled if not in_overlap(np.array([f]), 0.5)[0])
    labeled = next(f.id for f in _train_faces(demo) if f.label_source == "imported")
    with demo.session() as s:
        assert still_to_vote(s, "ana", [overlap, single, labeled]) == {overlap, single}
    for face in (overlap, single):
        set_label(demo, face, "fear", "ben")
    with demo.session() as s:
        assert still_to_vote(s, "ana", [overlap, single, labeled]) == {overlap}
        assert still_to_vote(s, "ben", [overlap, single]) == set() and still_to_vote(s, "ana", []) == set()


def test_team_and_adjudicate_commands(demo, capsys):
    root = str(demo.root)
    faces = sorted(f.id for f in _train_faces(demo) if f.label is None)[:2]
    code, *_ = run_cli("team", root, "--overlap", "0.2", "--votes", "2", capsys=capsys)
    assert code == 0
    assert run_cli("team", root, "--overlap", "2", capsys=capsys)[0] == 2
    for who, label in (("ana", "fear"), ("ben", "surprise")):
        assert run_cli("label", root, str(faces[0]), label, "--annotator", who, capsys=capsys)[0] == 0
    code, out, _ = run_cli("team", root, "--json", capsys=capsys)
    status = json.loads(out)
    assert (status["overlap_share"], status["overlap_votes"]) == (0.2, 2)
    assert status["annotators"] == {"ana": 1, "ben": 1} and status["disputed_faces"] == 1
    code, out, _ = run_cli("label", root, str(faces[0]), "fear", "--annotator", "lead", "--adjudicate", capsys=capsys)
    assert code == 0
    status = json.loads(run_cli("team", root, "--json", capsys=capsys)[1])
    assert (status["disputed_faces"], status["adjudicated_faces"]) == (0, 1)
    code, _, err = run_cli("label", root, f"{faces[0]},{faces[1]}", "fear", "--adjudicate", capsys=capsys)
    assert code == 2 and "one face one class label" in err
    code, out, _ = run_cli("team", root, capsys=capsys)
    assert "20% of the faces go to 2 annotators each" in out and "adjudicated: 1" in out


def _train_faces(project):
    from core.store.queries import list_faces

    with project.session() as s:
        return list_faces(s, split="train")


def test_the_adjudication_queue_holds_the_disputed_faces_until_settled(demo, monkeypatch):
    a, b, c, d = sorted(f.id for f in _train_faces(demo) if f.label is None)[:4]
    votes = {
        a: {"ana": "fear", "ben": "fear", "cy": "surprise"},  # 0.92 bits
        b: {"ana": "sadness", "ben": "neutral"},  # 1 bit
        c: {"ana": "happiness", "ben": "happiness"},  # agreed: not disputed
        d: {"ana": "anger", "ben": "disgust", "cy": "fear"},  # 1.58 bits
    }
    for face, by in votes.items():
        for who, label in by.items():
            set_label(demo, face, label, who)
    reads = []
    monkeypatch.setattr(queue, "load_votes", lambda session: reads.append(1) or load_votes(session))
    items = build_queue(demo, strategy="adjudication", limit=10)
    assert [i.face_id for i in items] == [d, b, a]
    assert len(reads) == 1, "the candidate mask and the ranking share one read of the votes"
    assert items[0].score == pytest.approx(np.log2(3), abs=1e-5)
    assert items[2].reason.startswith("votes fear 2, surprise 1")
    adjudicate(demo, d, "disgust", "lead")
    assert [i.face_id for i in build_queue(demo, strategy="adjudication", limit=10)] == [b, a]
    with pytest.raises(QueueError, match="ranks all or labeled or unlabeled faces"):
        build_queue(demo, strategy="adjudication", filters=QueueFilters(labels="corrected"))
