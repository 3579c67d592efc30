"""Add or edit a remote host: name, URL, kind, token; "Test connection"; Save.

The dialog checks its fields as they are typed (a sentence under the form says what is wrong),
tests the connection and saves on a TaskRunner worker, and stays open until the save is done:
a refused save leaves every field as typed, with the reason shown. A saved token is never shown
again: the field then says "•••• (unchanged)".
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Callable, Collection

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from costmeter.config import HOST_KINDS, RemoteHostConfig
from costmeter.config_writer import host_name_problem
from costmeter.gui.tasks import TaskRunner
from costmeter.gui.widgets.connection_form import ERROR_STYLE, WARN_STYLE, ConnectionForm
from costmeter.service.host_edit import HostDraft, where_stored
from costmeter.service.remote.probe import probe
from costmeter.service.tokens import resolve_token

UNCHANGED = "•••• (unchanged)"


def is_loopback(url: str) -> bool:
    """Whether ``url`` names this machine (127.0.0.0/8, ::1 or localhost)."""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str, example: str = "") -> str | None:
    if not url:
        if example:
            return f"enter the server's URL, such as {example}."
        return "enter the host's URL, such as http://gpu-box-1:9464."
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "the URL must start with http:// or https://."
    try:
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        return "the port in the URL must be a number from 1 to 65535."
    if not parts.hostname:
        return "the URL needs a host name or address after http://."
    return None


class HostDialog(ConnectionForm, QDialog):
    def __init__(
        self,
        tasks: TaskRunner,
        save: Callable[[HostDraft], object],
        *,
        taken: Collection[str] = (),
        local_name: str | None = None,
        original: RemoteHostConfig | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.tasks = tasks
        self._save = save
        self.taken = {n for n in taken if original is None or n != original.name}
        self.local_name = local_name
        self.original = original
        self.has_token = original is not None and (
            original.token_file is not None or original.token_keyring
        )
        #: What the save returned (read by the page once the dialog is accepted).
        self.result_value: object = None
        self.setWindowTitle("Add a host" if original is None else f"Edit {original.name}")
        self.setMinimumWidth(520)

        self.name = QLineEdit(original.name if original else "")
        self.name.setPlaceholderText("gpu-box-1")
        self.url = QLineEdit(original.url if original else "")
        self.url.setPlaceholderText("http://gpu-box-1:9464")
        self.kind = QComboBox()
        self.kind.addItem("Costmeter agent", "agent")
        self.kind.addItem("Prometheus exporter (dcgm-exporter, node_exporter)", "prometheus")
        self.kind.setCurrentIndex(HOST_KINDS.index(original.kind) if original else 0)
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText(UNCHANGED if self.has_token else "none")
        self.forget = QCheckBox("Forget the saved token")
        self.forget.setVisible(self.has_token)
        if original is not None and self.has_token:
            self.forget.setToolTip(f"The token is stored {where_stored(original)}.")
        self.enabled = QCheckBox("Record this host")
        self.enabled.setChecked(original.enabled if original else True)

        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("URL", self.url)
        form.addRow("Kind", self.kind)
        form.addRow("Token", self.token)
        form.addRow("", self.forget)
        form.addRow("", self.enabled)
        test_row = self.build_actions()
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.hint)
        layout.addLayout(test_row)
        layout.addWidget(self.buttons)
        for edit in (self.name, self.url, self.token):
            edit.textChanged.connect(lambda _t: self.check())
        self.kind.currentIndexChanged.connect(lambda _i: self.check())
        self.forget.toggled.connect(lambda _b: self.check())
        self.check()

    # -- checking ----------------------------------------------------------------------------
    def problem(self) -> str | None:
        """Why the fields cannot be saved (a sentence), or None."""
        name = self.name.text().strip()
        problem = host_name_problem(name)
        if problem is None and name in self.taken:
            problem = f"there is already a host named {name}."
        if problem is None and self.local_name and name == self.local_name:
            problem = f"{name} is this machine's own name; it is recorded already."
        if problem is None:
            problem = url_problem(self.url.text().strip())
        token = self.token.text().strip()
        if problem is None and token and any(c.isspace() for c in token):
            problem = "a token is one word with no spaces."
        return problem

    def warning(self) -> str | None:
        """What is allowed but unwise (shown in amber)."""
        url = self.url.text().strip()
        will_have_token = bool(self.token.text().strip()) or (
            self.has_token and not self.forget.isChecked()
        )
        if self.kind.currentData() == "agent" and not will_have_token and not is_loopback(url):
            return (
                "An agent on another machine needs a token: without one it answers nobody "
                "(start it with --token-file and enter the same token here)."
            )
        if will_have_token and url.startswith("http://") and not is_loopback(url):
            return "Over http:// the token crosses the network unencrypted; prefer https://."
        return None

    def check(self) -> bool:
        problem = self.problem()
        warning = None if problem else self.warning()
        text = problem[:1].upper() + problem[1:] if problem else warning or ""
        self.hint.setText(text)
        self.hint.setStyleSheet(ERROR_STYLE if problem else WARN_STYLE)
        self.buttons.button(QDialogButtonBox.StandardButton.Save).setEnabled(problem is None)
        self.test_button.setEnabled(url_problem(self.url.text().strip()) is None)
        return problem is None

    def draft(self) -> HostDraft:
        token = self.token.text().strip()
        return HostDraft(
            name=self.name.text().strip(),
            url=self.url.text().strip(),
            kind=str(self.kind.currentData()),
            token=token or None,
            forget_token=self.forget.isChecked(),
            enabled=self.enabled.isChecked(),
            original=self.original,
        )

    # -- actions -----------------------------------------------------------------------------
    def test_connection(self) -> None:
        """GET /v1/info or /metrics on a worker; the answer shows beside the button."""
        draft = self.draft()
        original = self.original if self.has_token and not draft.forget_token else None

        def work() -> str:
            token = draft.token or (resolve_token(original) if original is not None else None)
            return probe(draft.url, draft.kind, token)

        self.start_test("host-test", work)

    def save(self) -> None:
        if self.check():
            draft = self.draft()
            self.start_save("host-save", lambda: self._save(draft))
