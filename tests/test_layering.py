"""core/ is a Qt-free library: no module under it imports Qt or pyqtgraph."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "core"
FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "qtpy", "pyqtgraph", "pytestqt", "app")


def test_no_qt_import_in_core_source():
    offenders = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(CORE.parent)}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not offenders, offenders


def test_importing_all_of_core_loads_no_qt():
    modules = sorted(
        ".".join(p.relative_to(CORE.parent).with_suffix("").parts).removesuffix(".__init__") for p in CORE.rglob("*.py")
    )
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'PyQt5', 'PyQt6')]\n"
        + "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=CORE.parent, check=True)


def test_the_store_is_the_bottom_layer():
    """core/store imports nothing of core but itself and the class list: the layers above
    (active, training, ssl, encoders, cli) read and write through it, never the other way."""
    allowed = ("core.store", "core.classes")
    offenders = []
    for path in (CORE / "store").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                module = node.module
            elif isinstance(node, ast.Import):
                module = node.names[0].name
            else:
                continue
            if module.startswith("core.") and not module.startswith(allowed):
                offenders.append(f"{path.relative_to(CORE.parent)}: {module}")
    assert not offenders, offenders


def test_the_studio_and_the_command_line_start_without_torch():
    """Importing torch costs seconds: the studio's window and the command-line parser (label,
    undo, queue ...) must not pay it; only training, re-scoring and encoding load it."""
    code = (
        "import sys\n"
        "import app.main, app.main_window, app.training_panel, app.worker_process, app.description_editor\n"
        "import core.cli\n"
        "core.cli.build_parser()\n"
        "from core.training.settings import TrainSettings\n"
        "TrainSettings(algorithm='dta-snl', mode='finetune').validate()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    subprocess.run([sys.executable, "-c", code], cwd=CORE.parent, check=True, env=env)


def test_the_studio_opens_no_database_session():
    """app/ reads and changes a project through core.studio_api (and core functions that take a
    project): a widget that opens a session itself has SQL-shaped code in the GUI."""
    app = CORE.parent / "app"
    offenders = []
    for path in app.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("session", "write_session")
            ):
                offenders.append(f"{path.relative_to(CORE.parent)}:{node.lineno}: .{node.func.attr}()")
    assert not offenders, offenders
