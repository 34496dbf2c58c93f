"""Each algorithm's facts live in its spec (core/ssl/spec.py): the switches name real settings,
the command line offers exactly the specs, and no other module of core/ or app/ keeps its own
table of algorithms (the trainer's registry is checked in tests/test_ssl.py, the form in
tests/test_app_training.py)."""

from __future__ import annotations

import argparse
import ast
from dataclasses import fields
from pathlib import Path

from core.cli import build_parser
from core.ssl.config import MethodConfig
from core.ssl.spec import ALGORITHM_NAMES, ALGORITHM_SPECS, DEFAULT_ALGORITHM, algorithm_spec
from core.training.settings import TrainSettings

ROOT = Path(__file__).resolve().parent.parent
SPEC_FILE = ROOT / "core" / "ssl" / "spec.py"


def test_every_switch_is_a_boolean_method_setting_and_a_shared_one_reads_the_same():
    types = {f.name: str(f.type) for f in fields(MethodConfig)}
    seen = {}
    for spec in ALGORITHM_SPECS.values():
        for switch in spec.switches:
            assert types.get(switch.field) in ("bool", "bool | None"), f"{spec.name}: {switch.field}"
            assert switch.label, f"{spec.name}: {switch.field} has no label"
            # The form has one box per field: two algorithms sharing a field must agree on it.
            assert seen.setdefault(switch.field, switch) == switch, f"{switch.field} differs between algorithms"
        assert len({s.field for s in spec.switches}) == len(spec.switches), f"{spec.name} lists a switch twice"


def test_every_spec_has_its_name_a_title_and_a_one_line_description():
    assert DEFAULT_ALGORITHM in ALGORITHM_SPECS and TrainSettings().algorithm == DEFAULT_ALGORITHM
    assert len({spec.title for spec in ALGORITHM_SPECS.values()}) == len(ALGORITHM_SPECS)
    for name, spec in ALGORITHM_SPECS.items():
        assert spec.name == name and algorithm_spec(name) is spec
        assert spec.title and spec.description and "\n" not in spec.description


def _train_option(dest: str) -> argparse.Action:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return next(a for a in sub.choices["train"]._actions if a.dest == dest)


def test_the_command_line_offers_the_specs_and_describes_each():
    option = _train_option("algorithm")
    assert option.choices is not None and set(option.choices) == set(ALGORITHM_NAMES)
    assert option.default == DEFAULT_ALGORITHM
    assert option.help is not None
    for spec in ALGORITHM_SPECS.values():
        assert f"{spec.name}: {spec.description}" in option.help


def _literal_tables_naming_algorithms(path: Path) -> list[str]:
    """'line: names' for each dict, tuple, list or set literal of `path` whose keys or items name two
    or more algorithms (by name or title)."""
    names = set(ALGORITHM_NAMES) | {spec.title for spec in ALGORITHM_SPECS.values()}
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Dict):
            items = [key for key in node.keys if key is not None]
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = node.elts
        else:
            continue
        named = sorted({item.value for item in items if isinstance(item, ast.Constant) and item.value in names})
        if len(named) >= 2:
            found.append(f"{node.lineno}: {', '.join(named)}")
    return found


def test_no_module_but_the_spec_keeps_a_table_of_algorithms():
    """The benchmarks' suites (bench/) pick algorithms on purpose; core/ and app/ read the spec."""
    sources = [p for folder in ("core", "app") for p in (ROOT / folder).rglob("*.py") if p != SPEC_FILE]
    offenders = [
        f"{path.relative_to(ROOT)}:{hit}" for path in sources for hit in _literal_tables_naming_algorithms(path)
    ]
    assert not offenders, offenders


def test_the_table_scan_sees_a_hand_kept_copy(tmp_path):
    copy = tmp_path / "copy.py"
    copy.write_text(
        'TITLES = {"sitfer": "SIT-FER", "leaf": "LEAF"}\nBOTH = ("SIT-FER", "dta-snl")\nONE = ("sitfer",)\n'
    )
    assert _literal_tables_naming_algorithms(copy) == ["1: leaf, sitfer", "2: SIT-FER, dta-snl"]
