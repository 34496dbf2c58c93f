"""A fresh Linux machine's start (app/platform_check.py): the xcb plugin's missing system
libraries become one apt-get line, and main.py says it instead of Qt's abort."""

from __future__ import annotations

import subprocess

import pytest

import main
from app import platform_check
from app.platform_check import install_line, missing_libraries, uses_xcb, window_problem

LDD = """\tlinux-vdso.so.1 (0x00007ffd)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxkbcommon-x11.so.0 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)
"""


@pytest.fixture
def fake_ldd(monkeypatch, tmp_path):
    plugin = tmp_path / "libqxcb.so"
    plugin.write_bytes(b"")

    def run(args, **_kwargs):
        assert args == ["ldd", str(plugin)]
        return subprocess.CompletedProcess(args, 0, stdout=LDD, stderr="")

    def cdll(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(platform_check, "xcb_plugin", lambda: plugin)
    monkeypatch.setattr(platform_check.subprocess, "run", run)
    monkeypatch.setattr(platform_check.ctypes, "CDLL", cdll)
    return plugin


def test_missing_libraries_become_one_apt_get_line(fake_ldd):
    missing = missing_libraries()
    assert missing == ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxkbcommon-x11.so.0"]
    assert install_line(missing) == (
        "sudo apt-get install -y libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0"
    )
    assert install_line(["libunknown.so.7"]) == "sudo apt-get install -y libunknown.so.7"


def test_the_studio_says_what_to_install_instead_of_aborting(fake_ldd, monkeypatch, capsys):
    monkeypatch.setattr(platform_check, "uses_xcb", lambda: True)
    assert main.main([]) == 1
    err = capsys.readouterr().err
    assert "cannot open" in err and "sudo apt-get install -y libxcb-cursor0 libxcb-icccm4" in err


def test_nothing_is_said_where_everything_is_present(monkeypatch, tmp_path):
    monkeypatch.setattr(platform_check, "xcb_plugin", lambda: tmp_path / "libqxcb.so")
    monkeypatch.setattr(
        platform_check.subprocess,
        "run",
        lambda args, **_k: subprocess.CompletedProcess(
            args, 0, stdout="\tlibxcb.so.1 => /usr/lib/libxcb.so.1 (0x1)\n", stderr=""
        ),
    )
    monkeypatch.setattr(platform_check.ctypes, "CDLL", lambda name: object())
    assert missing_libraries() == [] and window_problem() is None


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({"DISPLAY": ":0"}, True),
        ({"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"}, False),
        ({"QT_QPA_PLATFORM": "xcb"}, True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, False),
        ({}, True),
    ],
)
def test_which_starts_use_the_x11_plugin(environ, expected, monkeypatch):
    monkeypatch.setattr(platform_check.sys, "platform", "linux")
    assert uses_xcb(environ) is expected


def test_the_real_plugin_is_found_and_checked():
    plugin = platform_check.xcb_plugin()
    assert plugin is not None and plugin.name == "libqxcb.so"
    assert all(name.endswith(tuple(f".so.{n}" for n in range(10))) for name in missing_libraries(plugin))
