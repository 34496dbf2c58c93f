"""The FER studio desktop app (PySide6). Everything Qt lives here; core/ stays Qt-free."""

from app.qt_compat import keep_none_alive

keep_none_alive()  # before any Qt call: see app/qt_compat.py
