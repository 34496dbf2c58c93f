"""Inter-annotator agreement (core/team/agreement.py, reliability.py) on hand-made votes whose
alpha and kappa are known, and the `agreement` command on a project's votes."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import krippendorff
import numpy as np
import pytest

from core.classes import class_names
from core.labeling import adjudicate, clear_label, set_label
from core.store.models import Image
from core.team.agreement import compute_agreement, disagreeing_faces, vote_entropy
from core.team.reliability import (
    Undefined,
    alpha_band,
    cohen_kappa,
    entropy_bits,
    fleiss_kappa,
    kappa_band,
    nominal_alpha,
)
from main import main as entry

HAPPY, SAD, ANGER, FEAR, SURPRISE = "happiness", "sadness", "anger", "fear", "surprise"


@dataclass(frozen=True)
class V:
    face_id: int
    annotator: str
    label: str | None
    adjudicated: bool = False


def votes_from_counts(table, classes):
    """One vote per count: subject i gets table[i][j] votes for class j, from raters r0, r1, ..."""
    votes = []
    for face, row in enumerate(table):
        rater = 0
        for j, n in enumerate(row):
            for _ in range(n):
                votes.append(V(face, f"r{rater}", classes[j]))
                rater += 1
    return votes


# Wikipedia, "Fleiss' kappa", worked example: 10 subjects, 14 raters, 5 categories.
WIKIPEDIA = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_on_the_wikipedia_example():
    classes = ["c1", "c2", "c3", "c4", "c5"]
    report = compute_agreement(votes_from_counts(WIKIPEDIA, classes), {}, classes=classes)
    assert round(report.fleiss_kappa, 3) == 0.210
    # Fleiss (1971)'s per-category kappa_j = 1 - sum_i x_ij (n - x_ij) / (N n (n-1) p_j q_j); p_j
    # is Wikipedia's 0.143, 0.200, 0.279, 0.150, 0.229.
    assert [round(c.fleiss_kappa, 3) for c in report.per_class] == [0.201, 0.080, 0.172, 0.030, 0.508]
    assert [round(c.share, 3) for c in report.per_class] == [0.143, 0.200, 0.279, 0.150, 0.229]
    assert [c.votes for c in report.per_class] == [20, 28, 39, 21, 32]
    # Each kappa_j is the kappa of the table "class j against the rest" (an independent path).
    table = np.array(WIKIPEDIA)
    for j, c in enumerate(report.per_class):
        binary = np.stack([table[:, j], 14 - table[:, j]], axis=1)
        assert c.fleiss_kappa == pytest.approx(fleiss_kappa(binary).overall, abs=1e-12)
    assert report.faces_with_votes == report.faces_with_2plus_votes == 10 and report.votes == 140
    assert report.mean_votes_per_face == 14 and report.faces_disagreeing == 9


# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", the nominal example: 4
# observers, 12 units, missing values (NaN); alpha_nominal = 0.743.
KRIPPENDORFF = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def test_krippendorffs_alpha_on_krippendorffs_own_example():
    names = class_names()
    votes = [
        V(unit, f"observer{o}", names[value - 1])
        for o, row in enumerate(KRIPPENDORFF)
        for unit, value in enumerate(row)
        if value is not None
    ]
    report = compute_agreement(votes, {})
    assert round(report.krippendorff_alpha, 3) == 0.743
    # The package on the coders x units reliability matrix (NaN for missing) says the same.
    matrix = np.array([[np.nan if v is None else v for v in row] for row in KRIPPENDORFF], dtype=float)
    assert report.krippendorff_alpha == pytest.approx(krippendorff.alpha(matrix, level_of_measurement="nominal"))
    # Unit 12 has one value: it is in faces_with_votes but not among those agreement is measured on.
    assert report.faces_with_votes == 12 and report.faces_with_2plus_votes == 11
    assert report.annotator_count == 4 and report.votes == 41


def test_perfect_agreement_gives_one():
    votes = [V(f, a, HAPPY if f % 2 else SAD) for f in range(6) for a in ("ana", "ben", "cy")]
    report = compute_agreement(votes, {f: HAPPY if f % 2 else SAD for f in range(6)})
    assert report.krippendorff_alpha == pytest.approx(1.0) and report.fleiss_kappa == pytest.approx(1.0)
    assert report.faces_disagreeing == 0 and report.confused_pairs == [] and report.mean_vote_entropy_bits == 0
    assert all(a.accuracy == 1.0 and a.cohen_kappa == pytest.approx(1.0) for a in report.annotators)


# Three faces by hand: 1 = happy, happy; 2 = happy, sad; 3 = sad, sad, sad. 7 ratings, p = 3/7, 4/7.
# Fleiss: P_i = 1, 0, 1, P_bar = 2/3, P_e = 25/49, kappa = (2/3 - 25/49) / (24/49) = 23/72.
# Krippendorff: coincidences o_hh = 2, o_hs = o_sh = 1, o_ss = 3; D_o = 2/7, D_e = 2*3*4/(7*6) = 4/7,
# alpha = 1 - (2/7)/(4/7) = 0.5.
THREE_FACES = [V(1, "ana", HAPPY), V(1, "ben", HAPPY), V(2, "ana", HAPPY), V(2, "ben", SAD)] + [
    V(3, who, SAD) for who in ("ana", "ben", "cy")
]


def test_a_three_face_case_by_hand():
    report = compute_agreement(THREE_FACES, {1: HAPPY, 2: SAD, 3: SAD})
    assert report.fleiss_kappa == pytest.approx(23 / 72)
    assert report.krippendorff_alpha == pytest.approx(0.5)
    by_class = {c.name: c for c in report.per_class}
    # Two classes in use: each one's per-category kappa and class-vs-rest alpha equal the overall ones.
    assert by_class[HAPPY].fleiss_kappa == pytest.approx(23 / 72) == by_class[SAD].fleiss_kappa
    assert by_class[HAPPY].alpha_vs_rest == pytest.approx(0.5) == by_class[SAD].alpha_vs_rest
    assert (by_class[HAPPY].votes, by_class[HAPPY].share, by_class[HAPPY].consensus_faces) == (3, 3 / 7, 1)
    assert (by_class[SAD].votes, by_class[SAD].consensus_faces) == (4, 2)
    assert by_class[FEAR].fleiss_kappa is None and by_class[FEAR].note == "no vote for this class"
    assert report.faces_disagreeing == 1 and report.mean_vote_entropy_bits == pytest.approx(1 / 3)
    assert [(p.classes, p.count, p.share) for p in report.confused_pairs] == [((HAPPY, SAD), 1, 1.0)]


def test_each_annotator_against_the_consensus_by_hand():
    votes = [
        *THREE_FACES,
        V(4, "ana", HAPPY),  # ana's alone: her vote decided the label
        V(5, "cy", ANGER),  # cy's alone
        V(6, "ana", ANGER),
        V(6, "ben", None),  # ben says: no label (names no class, but ana's vote is not alone)
    ]
    consensus = {1: HAPPY, 2: SAD, 3: SAD, 4: HAPPY, 5: ANGER, 6: ANGER}
    people = {a.name: a for a in compute_agreement(votes, consensus).annotators}
    ana, ben, cy = people["ana"], people["ben"], people["cy"]
    # ana: faces 1, 2, 3, 6 compared (right, wrong, right, right), face 4 her sole vote.
    assert (ana.faces_voted, ana.faces_with_consensus, ana.faces_compared, ana.sole_votes) == (5, 5, 4, 1)
    assert (ana.agreed, ana.accuracy, ana.accuracy_with_sole_votes) == (3, 0.75, 0.8)
    names = class_names()
    expected = np.zeros((7, 7), dtype=int)
    for theirs, label in ((HAPPY, HAPPY), (HAPPY, SAD), (SAD, SAD), (ANGER, ANGER)):
        expected[names.index(theirs), names.index(label)] += 1
    assert ana.confusion == expected.tolist()
    # Cohen: p_o = 3/4; her marginals happy 2, sad 1, anger 1 against happy 1, sad 2, anger 1:
    # p_e = (2*1 + 1*2 + 1*1)/16 = 5/16, kappa = (3/4 - 5/16) / (11/16) = 7/11.
    assert ana.cohen_kappa == pytest.approx(7 / 11)
    assert (ben.faces_voted, ben.faces_compared, ben.accuracy, ben.no_label_votes) == (3, 3, 1.0, 1)
    assert ben.cohen_kappa == pytest.approx(1.0)
    # cy: one face compared, one sole; one face says nothing about chance: kappa undefined.
    assert (cy.faces_compared, cy.sole_votes, cy.accuracy, cy.accuracy_with_sole_votes) == (1, 1, 1.0, 1.0)
    assert cy.cohen_kappa is None


def test_a_face_without_consensus_is_voted_but_not_compared():
    report = compute_agreement([V(1, "ana", HAPPY), V(1, "ben", SAD)], {})
    ana = report.annotators[0]
    assert (ana.faces_voted, ana.faces_with_consensus, ana.faces_compared, ana.accuracy) == (1, 0, 0, None)


def test_adjudications_are_the_final_word_not_a_rating_unless_asked():
    votes = [V(1, "ana", HAPPY), V(1, "ben", SAD), V(1, "lead", SAD, adjudicated=True)]
    report = compute_agreement(votes, {1: SAD})
    assert report.votes == 2 and report.adjudicated_votes == 1
    assert report.annotator_count == 2, "the votes come from ana and ben; lead only adjudicated"
    assert any("adjudication" in note for note in report.notes)
    people = {a.name: a for a in report.annotators}
    assert (people["lead"].faces_voted, people["lead"].adjudicated) == (0, 1)
    assert people["ana"].faces_compared == 1 and people["ana"].accuracy == 0.0
    counted = compute_agreement(votes, {1: SAD}, count_adjudicated=True)
    lead = next(a for a in counted.annotators if a.name == "lead")
    assert counted.annotator_count == 3
    assert counted.votes == 3 and (lead.faces_voted, lead.faces_compared, lead.accuracy) == (1, 1, 1.0)
    assert [(p.classes, p.count) for p in counted.confused_pairs] == [((HAPPY, SAD), 2)]


def test_confused_pairs_count_every_differing_pair_of_votes_on_a_face():
    votes = votes_from_counts(
        [
            [2, 1, 0, 0],  # happy, happy, sad: happy/sad twice
            [0, 1, 0, 2],  # sad, fear, fear: sad/fear twice
            [1, 1, 1, 0],  # one each: happy/sad, happy/anger, sad/anger
        ],
        [HAPPY, SAD, ANGER, FEAR],
    )
    # Each pair is named in class order (surprise, fear, disgust, happiness, sadness, anger, neutral);
    # ties keep that order too.
    pairs = [(p.classes, p.count, p.share) for p in compute_agreement(votes, {}).confused_pairs]
    assert pairs == [
        ((HAPPY, SAD), 3, pytest.approx(3 / 7)),
        ((FEAR, SAD), 2, pytest.approx(2 / 7)),
        ((HAPPY, ANGER), 1, pytest.approx(1 / 7)),
        ((SAD, ANGER), 1, pytest.approx(1 / 7)),
    ]


def test_vote_entropy_in_bits_and_the_faces_that_disagree():
    votes = [
        V(1, "ana", HAPPY),
        V(1, "ben", HAPPY),
        V(2, "ana", HAPPY),
        V(2, "ben", SAD),
        V(3, "ana", HAPPY),
        V(3, "ben", SAD),
        V(3, "cy", FEAR),
        V(4, "ana", SAD),
        V(4, "ben", SAD),
        V(4, "cy", FEAR),
        V(5, "ana", SURPRISE),  # one vote: no entropy to speak of
        V(6, "ana", HAPPY),
        V(6, "ben", None),  # "no label" names no class: one rating left
    ]
    bits = vote_entropy(votes)
    assert set(bits) == {1, 2, 3, 4}
    assert bits[1] == 0.0 and bits[2] == pytest.approx(1.0) and bits[3] == pytest.approx(math.log2(3))
    assert bits[4] == pytest.approx(-(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3))  # 0.918
    assert disagreeing_faces(votes) == [2, 3, 4]
    assert entropy_bits(np.array([[0, 0], [3, 0]])).tolist() == [0.0, 0.0]


def test_undefined_statistics_are_none_with_a_reason_never_nan():
    empty = compute_agreement([], {})
    assert empty.faces_with_votes == 0 and empty.krippendorff_alpha is None and empty.fleiss_kappa is None
    assert empty.notes[0].startswith("no votes yet") and empty.mean_votes_per_face is None
    single = compute_agreement([V(1, "ana", HAPPY), V(2, "ben", SAD)], {1: HAPPY, 2: SAD})
    assert single.krippendorff_alpha is None and single.fleiss_kappa is None
    assert "no face has votes from two annotators" in single.notes
    assert all(a.accuracy is None and a.sole_votes == 1 for a in single.annotators)
    one_class = compute_agreement([V(f, a, HAPPY) for f in (1, 2) for a in ("ana", "ben")], {1: HAPPY, 2: HAPPY})
    assert one_class.krippendorff_alpha is None and one_class.fleiss_kappa is None
    assert any("one class" in note for note in one_class.notes)
    happy = next(c for c in one_class.per_class if c.name == HAPPY)
    assert happy.fleiss_kappa is None and happy.note and "every vote is for this class" in happy.note
    for report in (empty, single, one_class):
        json.dumps(report.to_dict(), allow_nan=False)  # raises on NaN or infinity
    assert isinstance(cohen_kappa(np.zeros((2, 2))), Undefined)
    assert isinstance(nominal_alpha(np.zeros((0, 3))), Undefined)


def test_a_vote_or_label_that_is_no_class_is_refused_by_name():
    with pytest.raises(ValueError, match="'smiling' is not a class"):
        compute_agreement([V(1, "ana", "smiling")], {})
    with pytest.raises(ValueError, match="label of face 1: 'grin'"):
        compute_agreement([V(1, "ana", HAPPY)], {1: "grin"})


def test_bands_in_words():
    assert [kappa_band(v) for v in (-0.1, 0.1, 0.21, 0.5, 0.7, 0.9, None)] == [
        "poor (below chance)",
        "slight",
        "fair",
        "moderate",
        "substantial",
        "almost perfect",
        "undefined",
    ]
    assert [alpha_band(v) for v in (0.9, 0.7, 0.5)] == ["reliable", "tentative conclusions only", "unreliable"]


# The command, on a project whose votes come through core.labeling as the studio records them.


@pytest.fixture
def voted(project):
    """Faces 1-5 in train, 6-7 in val; ana, ben and cy vote; lead adjudicates face 2."""
    with project.session() as s:
        for i in range(1, 8):
            s.add(Image(id=i, path=f"{i}.png", content_hash=f"{i:064x}", width=48, height=48))
        s.flush()
        for i in (6, 7):
            s.get(Image, i).split = "val"
    for face, label in ((1, HAPPY), (2, HAPPY), (3, SAD), (6, FEAR), (7, FEAR)):
        set_label(project, face, label, "ana")
    for face, label in ((1, HAPPY), (2, SAD), (3, SAD), (6, SURPRISE)):
        set_label(project, face, label, "ben")
    set_label(project, 3, SAD, "cy")
    set_label(project, 4, ANGER, "cy")
    set_label(project, 5, HAPPY, "cy")
    clear_label(project, 5, "ben")  # ben: no label
    adjudicate(project, 2, SAD, "lead")
    return project


def run_cli(capsys, *args):
    code = entry(["agreement", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_agreement_json_on_a_projects_votes(voted, capsys):
    code, out, _ = run_cli(capsys, voted.root, "--json")
    report = json.loads(out)
    assert code == 0
    for key in ("krippendorff_alpha", "fleiss_kappa", "per_class", "annotators", "faces_with_votes", "confused_pairs"):
        assert key in report
    # Ratings: 1 happy,happy; 2 happy,sad (lead's adjudication left out); 3 sad x3; 4 anger;
    # 5 happy (ben's "no label" left out); 6 fear,surprise; 7 fear.
    assert report["faces_with_votes"] == 7 and report["faces_with_2plus_votes"] == 4
    assert report["votes"] == 12 and report["adjudicated_votes"] == 1 and report["no_label_votes"] == 1
    people = {a["name"]: a for a in report["annotators"]}
    assert set(people) == {"ana", "ben", "cy", "lead"}
    # The consensus (labels): 1 happy, 2 sad (adjudicated), 3 sad, 6 surprise (tie: ben's newer).
    assert (people["ana"]["faces_compared"], people["ana"]["agreed"], people["ana"]["sole_votes"]) == (4, 2, 1)
    assert (people["ben"]["faces_compared"], people["ben"]["accuracy"]) == (4, 1.0)
    assert people["lead"]["adjudicated"] == 1 and people["lead"]["faces_voted"] == 0
    pairs = {tuple(p["classes"]): p["count"] for p in report["confused_pairs"]}
    assert pairs == {(HAPPY, SAD): 1, (SURPRISE, FEAR): 1}

    _, out, _ = run_cli(capsys, voted.root, "--json", "--split", "val")
    val = json.loads(out)
    assert val["faces_with_votes"] == 2 and val["faces_with_2plus_votes"] == 1
    _, out, _ = run_cli(capsys, voted.root, "--json", "--annotator", "cy")
    assert json.loads(out)["faces_with_votes"] == 3  # faces 3, 4, 5: everyone's votes on them
    _, out, _ = run_cli(capsys, voted.root, "--json", "--count-adjudicated")
    assert json.loads(out)["votes"] == 13


def test_agreement_text_summary(voted, capsys):
    code, out, _ = run_cli(capsys, voted.root)
    assert code == 0
    assert "Krippendorff's alpha (nominal):" in out and "Fleiss' kappa:" in out
    assert "agreement (Landis & Koch)" in out and "happiness / sadness: 1" in out
    assert "ana" in out and "adjudications: 1 (not counted as ratings)" in out
    code, out, _ = run_cli(capsys, voted.root, "--annotator", "ana")
    assert code == 0 and "ana's votes (rows) against the consensus (columns)" in out


def test_agreement_on_a_project_without_votes_and_an_unknown_annotator(project, capsys):
    code, out, _ = run_cli(capsys, project.root)
    assert code == 0 and "No votes yet" in out
    code, out, _ = run_cli(capsys, project.root, "--json")
    assert code == 0 and json.loads(out)["faces_with_votes"] == 0
    code, _, err = run_cli(capsys, project.root, "--annotator", "zed")
    assert code == 2 and "annotator 'zed' has no vote in this project" in err
