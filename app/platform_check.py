"""Whether Qt's X11 platform plugin (xcb) can load on this Linux machine, and the one
`apt-get install` line that makes it so.

A fresh Debian or Ubuntu lacks some of the xcb libraries PySide6's wheel expects from the
system; Qt then aborts with "could not load the Qt platform plugin xcb". `ldd` on the plugin
lists what its libraries need and cannot find; libxcb-cursor is opened by Qt at run time, so
it is looked for separately. Run as `python -m app.platform_check` (bootstrap.sh does): it prints
the line to run, or nothing when the window can open. Qt's platform plugin is not loaded here.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

# Debian/Ubuntu package of each library the xcb plugin and its Qt libraries need.
PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
}
# Opened by Qt with dlopen at start-up, so ldd does not list them.
OPENED_AT_RUN_TIME = ("libxcb-cursor.so.0",)


def xcb_plugin() -> Path | None:
    """PySide6's xcb platform plugin, found without importing Qt."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    plugin = Path(next(iter(spec.submodule_search_locations))) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def missing_libraries(plugin: Path | None = None) -> list[str]:
    """The shared libraries the xcb plugin needs and this machine lacks (sorted, unique)."""
    plugin = plugin or xcb_plugin()
    if plugin is None:
        return []
    try:
        out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []  # no ldd (not glibc Linux): nothing to say
    missing = {line.split("=>")[0].strip() for line in out.splitlines() if "not found" in line}
    for name in OPENED_AT_RUN_TIME:
        try:
            ctypes.CDLL(name)
        except OSError:
            missing.add(name)
    return sorted(missing)


def install_line(libraries: list[str]) -> str:
    """The apt-get line installing the packages of `libraries` (unknown ones named as they are)."""
    packages = sorted({PACKAGES.get(name, name) for name in libraries})
    return "sudo apt-get install -y " + " ".join(packages)


def window_problem() -> str | None:
    """Why the studio's window cannot open on X11 here, with the fix, or None."""
    libraries = missing_libraries()
    if not libraries:
        return None
    return (
        "The studio's window cannot open: Qt's X11 platform plugin (xcb) needs system libraries this "
        f"machine lacks ({', '.join(libraries)}). On Debian or Ubuntu install them with:\n\n"
        f"    {install_line(libraries)}\n\n"
        "then start the studio again. The commands (python main.py --help) work without them."
    )


def uses_xcb(environ=os.environ) -> bool:
    """Whether Qt will pick its X11 plugin: Linux, no other platform asked for, and an X display
    or no Wayland one (Qt falls back to xcb)."""
    if not sys.platform.startswith("linux"):
        return False
    platform = environ.get("QT_QPA_PLATFORM", "")
    if platform:
        return platform.split(":")[0].split(";")[0] == "xcb"
    return bool(environ.get("DISPLAY")) or not environ.get("WAYLAND_DISPLAY")


def main() -> int:
    problem = window_problem()
    if problem:
        print(
            problem.replace(
                "The studio's window cannot open", "bootstrap.sh: warning: the studio's window will not open"
            ),
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
