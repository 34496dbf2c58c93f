"""Earlier schemas, frozen, for migration tests: a database made by today's code is turned back
into what an earlier version of the studio wrote."""

from __future__ import annotations

import sqlite3
from pathlib import Path

# The runs table as schemas 1 and 2 created it (schema 3 added kind, parent_run_id and
# predictions_pruned_at).
RUNS_BEFORE_SCHEMA_3 = """CREATE TABLE runs (
    id INTEGER NOT NULL, algorithm VARCHAR(32) NOT NULL, encoder VARCHAR(128) NOT NULL,
    mode VARCHAR(16) NOT NULL, config JSON NOT NULL, status VARCHAR(16) NOT NULL, device VARCHAR(32),
    pid INTEGER, host VARCHAR(128), created_at DATETIME NOT NULL, started_at DATETIME,
    finished_at DATETIME, checkpoint TEXT, error TEXT, PRIMARY KEY (id))"""
RUNS_COLUMNS_BEFORE_SCHEMA_3 = (
    "id, algorithm, encoder, mode, config, status, device, pid, host, created_at, "
    "started_at, finished_at, checkpoint, error"
)


# The columns schema 4 added to images (the detector's findings).
IMAGE_COLUMNS_OF_SCHEMA_4 = ("face_angle", "face_keypoints", "face_detector", "face_score")


def votes_before_schema_6(database: Path) -> None:
    """Drop schema 6's votes table and the adjudicated column of `corrections`, keeping the log's
    rows, and say the schema is 5."""
    conn = sqlite3.connect(database)
    try:
        with conn:
            conn.execute("DROP TABLE votes")
            conn.execute("ALTER TABLE corrections DROP COLUMN adjudicated")
            conn.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    finally:
        conn.close()


def corrections_before_schema_5(database: Path) -> None:
    """Drop schema 5's column of `corrections` (undone_after_id), keeping its rows, and say the
    schema is 4; schema 6's changes go first."""
    votes_before_schema_6(database)
    conn = sqlite3.connect(database)
    try:
        with conn:
            conn.execute("ALTER TABLE corrections DROP COLUMN undone_after_id")
            conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    finally:
        conn.close()


def images_before_schema_4(database: Path) -> None:
    """Drop schema 4's columns of `images`, keeping its rows, and say the schema is 3; schema 5's
    column goes first."""
    corrections_before_schema_5(database)
    conn = sqlite3.connect(database)
    try:
        with conn:
            for column in IMAGE_COLUMNS_OF_SCHEMA_4:
                conn.execute(f"ALTER TABLE images DROP COLUMN {column}")
            conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    finally:
        conn.close()


def runs_table_before_schema_3(database: Path) -> None:
    """Rebuild `runs` without schema 3's columns (SQLite cannot drop a column that a foreign
    key names), keeping its rows; schema 4's columns go first."""
    images_before_schema_4(database)
    conn = sqlite3.connect(database)
    try:
        conn.execute("PRAGMA foreign_keys=OFF")  # other tables keep pointing at runs by name
        with conn:
            conn.execute(RUNS_BEFORE_SCHEMA_3.replace("CREATE TABLE runs", "CREATE TABLE runs_old"))
            conn.execute(f"INSERT INTO runs_old SELECT {RUNS_COLUMNS_BEFORE_SCHEMA_3} FROM runs")
            conn.execute("DROP TABLE runs")
            conn.execute("ALTER TABLE runs_old RENAME TO runs")
            conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    finally:
        conn.close()
