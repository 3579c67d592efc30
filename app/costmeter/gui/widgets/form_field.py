"""One input of a settings form: the editor, its unit, a hint, and room for a refusal in words.

Numbers are typed into plain line edits, not spin boxes, so that a value the configuration would
refuse can still be typed, and is then refused beside the field with a sentence; a spin box would
clamp it silently.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

ERROR_STYLE = "color: #dc2626;"
HINT_STYLE = "color: palette(placeholder-text);"


class FormField(QWidget):
    """``editor`` with an optional unit after it and a hint or error line under it."""

    def __init__(
        self,
        editor: QWidget,
        *,
        unit: str = "",
        hint: str = "",
        extra: QWidget | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.editor = editor
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(editor, 3)  # a flexible editor grows before the stretch after it
        self.unit = QLabel(unit)
        row.addWidget(self.unit)
        self.unit.setVisible(bool(unit))
        if extra is not None:
            row.addWidget(extra)
        row.addStretch(1)
        column.addLayout(row)
        self.hint = QLabel(hint)
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet(HINT_STYLE)
        self.hint.setVisible(bool(hint))
        self.hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        column.addWidget(self.hint)
        self.error = QLabel()
        self.error.setObjectName("field-error")
        self.error.setWordWrap(True)
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.hide()
        column.addWidget(self.error)

    def set_hint(self, text: str) -> None:
        self.hint.setText(text)
        self.hint.setVisible(bool(text))

    def set_error(self, message: str | None) -> None:
        self.error.setText(message or "")
        self.error.setVisible(bool(message))

    def error_text(self) -> str:
        return self.error.text() if self.error.isVisibleTo(self) else ""


def line_edit(width: int = 120, *, flexible: bool = False) -> QLineEdit:
    """A fixed-width edit for a number; a ``flexible`` one (a path, a long placeholder) is at most
    ``width`` wide and gives way down to 140 px in a narrow window."""
    edit = QLineEdit()
    if flexible:
        edit.setMinimumWidth(min(width, 140))
        edit.setMaximumWidth(width)
    else:
        edit.setFixedWidth(width)
    return edit


def section(title: str, intro: str = "") -> tuple[QGroupBox, QFormLayout]:
    """A titled group with an optional word-wrapped hint and a form for its fields."""
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    if intro:
        label = QLabel(intro)
        label.setWordWrap(True)
        label.setStyleSheet(HINT_STYLE)
        layout.addWidget(label)
    form = QFormLayout()
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
    form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
    layout.addLayout(form)
    return box, form
