"""The FER studio desktop app (PySide6). Everything Qt lives here; core/ stays Qt-free."""
