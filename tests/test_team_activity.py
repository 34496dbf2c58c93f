"""What the other annotators changed since a studio last looked (core/team/activity.py): new
votes, adjudications, undo and redo, the studio's own rows left out; on SQLite and PostgreSQL,
and on PostgreSQL a correction that commits after a newer one."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select

from core.labeling import adjudicate, bulk_label, redo, set_label, undo
from core.store.models import Correction, Image
from core.store.project import Project
from core.studio_api import StudioApi
from core.team.activity import GAP_SECONDS, TeamWatch, team_activity


def add_faces(project: Project, count: int) -> None:
    with project.session() as s:
        for i in range(1, count + 1):
            s.add(Image(id=i, path=f"{i}.png", content_hash=f"{i:064x}", width=48, height=48))


@pytest.fixture
def team(store_project):
    add_faces(store_project, 8)
    return store_project


def look(project: Project, watch: TeamWatch | None, annotator: str = "ana"):
    with project.session() as s:
        return team_activity(s, watch, annotator)


def test_the_first_look_takes_stock_and_later_ones_report_only_the_others(team):
    set_label(team, 1, "fear", "ben")  # before the studio looked: not news
    first = look(team, None)
    assert not first and first.face_ids == () and first.describe() == ""
    set_label(team, 2, "fear", "ana")  # the studio's own
    set_label(team, 3, "surprise", "ben")
    bulk_label(team, [4, 5], "sadness", "cy")
    adjudicate(team, 1, "anger", "lead")
    seen = look(team, first.watch)
    assert set(seen.face_ids) == {3, 4, 5, 1}
    assert seen.labels == Counter({"ben": 1, "cy": 2}) and seen.adjudications == Counter({"lead": 1})
    assert seen.describe() == "ben: 1 label · cy: 2 labels · lead: 1 adjudication"
    with team.session() as s:
        assert seen.watch.last_id == s.scalar(select(func.max(Correction.id)))
    again = look(team, seen.watch)
    assert not again and again.watch.last_id == seen.watch.last_id


def test_undo_and_redo_by_others_are_seen_though_they_log_no_row(team):
    set_label(team, 1, "fear", "ben")
    bulk_label(team, [2, 3], "happiness", "ben")
    set_label(team, 4, "fear", "ana")
    watch = look(team, None).watch
    undo(team, "ben")  # the bulk step on 2 and 3
    undone = look(team, watch)
    assert set(undone.face_ids) == {2, 3} and undone.undone == Counter({"ben": 2})
    assert undone.describe() == "ben: 2 undone or redone"
    redo(team, "ben")
    redone = look(team, undone.watch)
    assert set(redone.face_ids) == {2, 3} and redone.undone == Counter({"ben": 2})
    undo(team, "ana")  # the studio's own undo: not news
    assert not look(team, redone.watch)


def test_the_api_hands_the_watch_back_and_forth(team):
    api = StudioApi(team)
    watch = api.team.activity(None, "ana").watch
    set_label(team, 6, "disgust", "ben")
    activity = api.team.activity(watch, "ana")
    assert activity.face_ids == (6,) and activity.describe() == "ben: 1 label"
    assert api.team.activity(activity.watch, "ben").face_ids == ()  # seen from ben's window: his own


def test_a_correction_that_commits_after_a_newer_one_is_still_seen(postgres_url, tmp_path):
    """PostgreSQL hands out ids as rows are written, not as they commit: ben's id is below cy's,
    cy commits first and is seen, then ben commits."""
    project = Project.create(tmp_path / "pg", database_url=postgres_url)
    try:
        add_faces(project, 3)
        watch = look(project, None).watch
        with project.session() as slow:
            slow.add(Correction(image_id=1, annotator="ben", new_label="fear"))
            slow.flush()  # ben's row has its id; his transaction is still open
            set_label(project, 2, "surprise", "cy")
            first = look(project, watch)
            assert first.face_ids == (2,) and len(first.watch.gaps) == 1
        second = look(project, first.watch)  # ben's transaction has committed
        assert second.face_ids == (1,) and second.labels == Counter({"ben": 1}) and second.watch.gaps == ()
        with project.session() as s:
            late = team_activity(s, first.watch, "ana", now=first.watch.gaps[0].noticed_at + GAP_SECONDS + 1)
        assert late.face_ids == ()  # a gap is given up after GAP_SECONDS (a rolled-back step leaves one)
    finally:
        project.close()
