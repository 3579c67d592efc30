"""The app icon, drawn in code so it needs no image plugin: a gauge needle on a rounded square."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPen, QPixmap


def _draw(size: int) -> QPixmap:
    pix = QPixmap(size, size)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    s = float(size)
    p.setBrush(QColor("#1d4ed8"))
    p.setPen(Qt.PenStyle.NoPen)
    p.drawRoundedRect(QRectF(0, 0, s, s), s * 0.2, s * 0.2)
    arc = QRectF(s * 0.16, s * 0.22, s * 0.68, s * 0.68)
    pen = QPen(QColor("#93c5fd"), s * 0.09)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    p.setPen(pen)
    p.drawArc(arc, 200 * 16, -220 * 16)
    pen.setColor(QColor("#fbbf24"))
    p.setPen(pen)
    p.drawArc(arc, 20 * 16, -40 * 16 + 40 * 16 - 30 * 16)
    centre = QPointF(s * 0.5, s * 0.56)
    pen = QPen(QColor("#ffffff"), s * 0.07)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    p.setPen(pen)
    p.drawLine(centre, QPointF(s * 0.72, s * 0.36))
    p.setBrush(QColor("#ffffff"))
    p.drawEllipse(centre, s * 0.06, s * 0.06)
    p.end()
    return pix


def app_icon() -> QIcon:
    icon = QIcon()
    for size in (16, 32, 64, 128, 256):
        icon.addPixmap(_draw(size))
    return icon
