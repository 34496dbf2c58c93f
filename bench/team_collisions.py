"""Two or more annotators on one to-vote queue at once: how many of their votes are wasted on
faces a teammate had already settled, under the studio's rules against its old ones.

A simulation of the studio's policy with its own functions (core.team.assignment.team_order and
in_overlap), no GUI: RANKED faces ranked once (as one run's margin queue is for everyone), a
share of them in the overlap that wants K votes, the rest one vote. Each annotator labels a
face every PACE seconds (each face's time drawn within +-30%), and learns of the others' votes
only when their studio's poller looks (every 2.5 s, app/team_poller.py, each studio at its own
phase). A vote is wasted when the face already had all the votes it wants when it was cast.

Policies, measured on the same draws:
- same order, nothing passed by: every annotator's queue in the ranking's order and a
  teammate's vote never skipped (the studio before today);
- same order, settled faces passed by: the skip alone;
- own order per block of 8 (the first version) and of TEAM_BLOCK (32, the studio now), settled
  faces passed by.

    python -m bench.team_collisions [--votes 100] [--seeds 3] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

import numpy as np

from bench.report import machine_summary, write_section
from core.active.queue import TEAM_BLOCK
from core.team.assignment import in_overlap, team_order

POLL_S = 2.5  # app/team_poller.POLL_MS
RANKED = 2000
OVERLAP_SHARE = 0.1
OVERLAP_VOTES = 2
PACES_S = (0.5, 1.5, 3.0)
TEAMS = (2, 4)
FIRST_BLOCK = 8  # the first version's blocks, kept for comparison
# (name, block of the annotator's own order or None for the ranking's order, settled faces passed by)
POLICIES = (
    ("same order, nothing passed by", None, False),
    ("same order, settled faces passed by", None, True),
    (f"own order per block of {FIRST_BLOCK}, passed by", FIRST_BLOCK, True),
    (f"own order per block of {TEAM_BLOCK} (the studio), passed by", TEAM_BLOCK, True),
)


@dataclass
class Annotator:
    name: str
    order: np.ndarray  # face ids in the order this annotator's queue shows them
    phase: float  # when their poller first looks
    at: int = 0  # position in the order
    known: dict[int, int] = field(default_factory=dict)  # face -> votes known at the last look


def simulate(policy: tuple, annotators: int, pace_s: float, votes_each: int, seed: int) -> dict:
    _name, block, passed_by = policy
    rng = np.random.default_rng(seed)
    faces = np.arange(1, RANKED + 1, dtype=np.int64)
    wanted = np.where(in_overlap(faces, OVERLAP_SHARE), OVERLAP_VOTES, 1)
    wants = dict(zip(faces.tolist(), wanted.tolist(), strict=True))
    team = []
    for i in range(annotators):
        name = f"annotator{i}"
        order = faces[team_order(faces, name, block)] if block else faces
        team.append(Annotator(name, order, float(rng.uniform(0, POLL_S))))
    # Every vote: (time, annotator index, face); each annotator's next vote at its own times.
    log: list[tuple[float, int, int]] = []
    next_at = [float(rng.uniform(0.5, 1.5)) * pace_s for _ in team]
    cast = [0] * annotators
    mine: list[set[int]] = [set() for _ in team]
    while min(cast) < votes_each:
        who = int(np.argmin([t if c < votes_each else np.inf for t, c in zip(next_at, cast, strict=True)]))
        now, person = next_at[who], team[who]
        if passed_by:
            last_look = person.phase + POLL_S * np.floor((now - person.phase) / POLL_S) if now >= person.phase else None
            seen: dict[int, int] = {}
            for t, _by, face in log:
                if last_look is not None and t <= last_look:
                    seen[face] = seen.get(face, 0) + 1
            person.known = seen
        while True:  # the next face this annotator still has to vote on, as far as they know
            face = int(person.order[person.at])
            person.at += 1
            if face in mine[who]:
                continue
            if passed_by and person.known.get(face, 0) >= wants[face]:
                continue
            break
        log.append((now, who, face))
        mine[who].add(face)
        cast[who] += 1
        next_at[who] = now + float(rng.uniform(0.7, 1.3)) * pace_s
    counts: dict[int, int] = {}
    wasted = 0
    for _t, _who, face in sorted(log):
        counts[face] = counts.get(face, 0) + 1
        wasted += counts[face] > wants[face]
    return {"votes": len(log), "wasted": wasted, "faces": len(counts)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--votes", type=int, default=100, help="votes each annotator casts")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--note", default="", help="what else ran, for the report")
    args = parser.parse_args(argv)
    header = "| annotators | s per face | " + " | ".join(name for name, _block, _passed in POLICIES) + " |"
    rows = [header, "|---|---|" + "---|" * len(POLICIES)]
    for annotators in TEAMS:
        for pace in PACES_S:
            cells = []
            for policy in POLICIES:
                runs = [simulate(policy, annotators, pace, args.votes, seed) for seed in range(args.seeds)]
                share = 100 * sum(r["wasted"] for r in runs) / sum(r["votes"] for r in runs)
                cells.append(f"{share:.1f}%")
            rows.append(f"| {annotators} | {pace:g} | " + " | ".join(cells) + " |")
            print(rows[-1], flush=True)
    body = "\n".join(
        [
            "## A team on one queue: votes wasted on faces already settled",
            "",
            f"`python -m bench.team_collisions`: a simulation of the studio's to-vote queue with its own "
            f"functions (`team_order`, `in_overlap`): {RANKED:,} ranked faces, {OVERLAP_SHARE:.0%} of them in "
            f"the overlap wanting {OVERLAP_VOTES} votes, the rest one; each annotator casts {args.votes} votes, "
            f"a face every N s (each within +-30%), and learns of the others' votes when their studio's poller "
            f"looks (every {POLL_S} s, each at its own phase); {args.seeds} seeds. A vote is wasted when the "
            f"face already had the votes it wants. Share of all votes wasted:",
            "",
            *rows,
            "",
            "Before today every annotator's to-vote queue was the same ranking and nothing was passed by, so "
            "annotators who start together label the same faces. Seen first in two studio windows on one "
            "PostgreSQL project (Xvfb, keys sent with xdotool, each studio with its live refits): with the old "
            "queue, 3 of the 4 faces both labeled needed only one vote. With the first version of the new queue "
            "(blocks of 8), at 1.5 s a face each, 32 votes fell on 31 faces (one face labeled twice; the studios' "
            "live refits had also rebuilt both queues, which leaves out faces already voted on); at 0.5 s a face, "
            "7 of 16 one-vote faces got two votes, the poller's 2.5 s being five faces. The table's blocks of "
            f"{FIRST_BLOCK} column is that version; blocks are now {TEAM_BLOCK}: the price is that a block's "
            f"most uncertain face may come {TEAM_BLOCK}th.",
            "",
            f"Machine: {machine_summary()}. {args.note}",
        ]
    )
    print(body)
    if not args.no_write:
        print(f"written to {write_section('team-collisions', body)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
