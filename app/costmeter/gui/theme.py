"""Light and dark palettes for Qt widgets and pyqtgraph plots."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

#: One colour per GPU index, readable on both backgrounds.
SERIES_COLOURS = (
    "#3b82f6",
    "#f97316",
    "#10b981",
    "#e11d48",
    "#8b5cf6",
    "#eab308",
    "#06b6d4",
    "#64748b",
)

_DARK = {
    QPalette.ColorRole.Window: "#1f2329",
    QPalette.ColorRole.WindowText: "#e6e6e6",
    QPalette.ColorRole.Base: "#16191d",
    QPalette.ColorRole.AlternateBase: "#23272e",
    QPalette.ColorRole.Text: "#e6e6e6",
    QPalette.ColorRole.Button: "#2a2f36",
    QPalette.ColorRole.ButtonText: "#e6e6e6",
    QPalette.ColorRole.Highlight: "#3b82f6",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.ToolTipBase: "#2a2f36",
    QPalette.ColorRole.ToolTipText: "#e6e6e6",
    QPalette.ColorRole.PlaceholderText: "#8a8f98",
    QPalette.ColorRole.Mid: "#3a3f47",
}
_LIGHT = {
    QPalette.ColorRole.Window: "#f4f5f7",
    QPalette.ColorRole.WindowText: "#1b1f24",
    QPalette.ColorRole.Base: "#ffffff",
    QPalette.ColorRole.AlternateBase: "#f0f2f5",
    QPalette.ColorRole.Text: "#1b1f24",
    QPalette.ColorRole.Button: "#ffffff",
    QPalette.ColorRole.ButtonText: "#1b1f24",
    QPalette.ColorRole.Highlight: "#2563eb",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.ToolTipBase: "#ffffff",
    QPalette.ColorRole.ToolTipText: "#1b1f24",
    QPalette.ColorRole.PlaceholderText: "#6b7280",
    QPalette.ColorRole.Mid: "#d0d4da",
}

CARD_STYLE = {
    "dark": "QFrame#card { background: #2a2f36; border-radius: 8px; }",
    "light": "QFrame#card { background: #ffffff; border: 1px solid #e1e4e8; border-radius: 8px; }",
}


def apply_theme(app: QApplication, theme: str) -> None:
    """Set the palette and pyqtgraph's colours; ``theme`` is "light" or "dark"."""
    app.setStyle("Fusion")
    roles = _DARK if theme == "dark" else _LIGHT
    palette = QPalette()
    for role, colour in roles.items():
        palette.setColor(role, QColor(colour))
    app.setPalette(palette)
    # Fusion outlines check boxes and radio buttons in the Window colour darkened, which on the
    # dark Window is the Base colour they are filled with: unticked boxes vanish. Those classes get
    # a lighter Window (they paint no background with it), so the outline shows.
    indicators = QPalette(palette)
    if theme == "dark":
        indicators.setColor(QPalette.ColorRole.Window, QColor("#9ca3af"))
    for class_name in ("QCheckBox", "QRadioButton"):
        # The stubs ask for bytes; PySide6 6.11 takes only str here.
        QApplication.setPalette(indicators, class_name)  # type: ignore[arg-type]
    app.setStyleSheet(CARD_STYLE["dark" if theme == "dark" else "light"])
    pg.setConfigOptions(
        antialias=False,
        background=roles[QPalette.ColorRole.Base],
        foreground=roles[QPalette.ColorRole.WindowText],
    )


def colour_for(index: int) -> str:
    return SERIES_COLOURS[index % len(SERIES_COLOURS)]
