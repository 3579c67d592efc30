"""Add or edit a Prometheus source: name, URL, token file, match selector, backfill; Test; Save.

As the host dialog: fields are checked as they are typed (a sentence under the form says what
is wrong), "Test connection" and Save run on a TaskRunner worker (the token file is checked
there: it must be readable by its owner only), and a refused save leaves every field as typed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from costmeter.config import SourceConfig, check_selector
from costmeter.config_writer import duration_value, host_name_problem
from costmeter.gui.tasks import TaskRunner
from costmeter.gui.widgets.connection_form import ERROR_STYLE, WARN_STYLE, ConnectionForm
from costmeter.gui.widgets.host_dialog import is_loopback, url_problem
from costmeter.service.source_edit import (
    DEFAULT_BACKFILL,
    SourceDraft,
    backfill_problem,
    match_problem,
    probe_source,
    token_path_problem,
)


class SourceDialog(ConnectionForm, QDialog):
    def __init__(
        self,
        tasks: TaskRunner,
        save: Callable[[SourceDraft], object],
        *,
        taken: Collection[str] = (),
        hosts: Collection[str] = (),
        original: SourceConfig | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.tasks = tasks
        self._save = save
        self.taken = {n for n in taken if original is None or n != original.name}
        self.hosts = set(hosts)
        self.original = original
        #: What the save returned (read by the page once the dialog is accepted).
        self.result_value: object = None
        self.setWindowTitle(
            "Add a Prometheus source" if original is None else f"Edit {original.name}"
        )
        self.setMinimumWidth(560)

        self.name = QLineEdit(original.name if original else "")
        self.name.setPlaceholderText("cluster-prometheus")
        self.url = QLineEdit(original.url if original else "")
        self.url.setPlaceholderText("http://prometheus:9090")
        self.token_file = QLineEdit(
            str(original.token_file) if original and original.token_file else ""
        )
        self.token_file.setPlaceholderText(
            "kept in the OS keyring" if original and original.token_keyring else "none"
        )
        self.browse = QPushButton("Choose…")
        self.browse.clicked.connect(self._choose_token_file)
        token_row = QHBoxLayout()
        token_row.addWidget(self.token_file, 1)
        token_row.addWidget(self.browse)
        self.match = QLineEdit(original.match or "" if original else "")
        self.match.setPlaceholderText('all series; or a selector such as {cluster="a"}')
        self.backfill = QLineEdit(
            str(duration_value(original.backfill_s)) if original else DEFAULT_BACKFILL
        )
        self.backfill.setPlaceholderText("7d; 0 to follow from now only")
        self.enabled = QCheckBox("Read this source")
        self.enabled.setChecked(original.enabled if original else True)

        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("URL", self.url)
        form.addRow("Token file", token_row)
        form.addRow("Match", self.match)
        form.addRow("Backfill", self.backfill)
        form.addRow("", self.enabled)
        about = QLabel(
            "A Prometheus server (or VictoriaMetrics, Thanos, Mimir) that scrapes "
            "dcgm-exporter and node_exporter: Costmeter reads its stored history back "
            "to the backfill, then follows it. Each host it finds is recorded under its own name."
        )
        about.setWordWrap(True)
        about.setStyleSheet("color: palette(placeholder-text);")
        test_row = self.build_actions()
        layout = QVBoxLayout(self)
        layout.addWidget(about)
        layout.addLayout(form)
        layout.addWidget(self.hint)
        layout.addLayout(test_row)
        layout.addWidget(self.buttons)
        for edit in (self.name, self.url, self.token_file, self.match, self.backfill):
            edit.textChanged.connect(lambda _t: self.check())
        self.check()

    # -- checking ----------------------------------------------------------------------------
    def problem(self) -> str | None:
        """Why the fields cannot be saved (a sentence), or None."""
        name = self.name.text().strip()
        problem = host_name_problem(name)
        if problem is not None:
            problem = problem.replace("host name", "source name").replace("a host", "a source")
        elif name in self.taken:
            problem = f"there is already a source named {name}."
        elif name in self.hosts:
            problem = f"there is a host named {name}; give the source another name."
        return (
            problem
            or url_problem(self.url.text().strip(), "http://prometheus:9090")
            or token_path_problem(self.token_file.text())
            or match_problem(self.match.text())
            or backfill_problem(self.backfill.text())
        )

    def warning(self) -> str | None:
        """What is allowed but unwise (shown in amber)."""
        url = self.url.text().strip()
        has_token = bool(self.token_file.text().strip()) or (
            self.original is not None and self.original.token_keyring
        )
        if has_token and url.startswith("http://") and not is_loopback(url):
            return "Over http:// the token crosses the network unencrypted; prefer https://."
        if not self.match.text().strip():
            return (
                "Without a match selector every dcgm-exporter and node_exporter series of the "
                'server is read; a selector such as {cluster="a"} reads one cluster.'
            )
        return None

    def check(self) -> bool:
        problem = self.problem()
        warning = None if problem else self.warning()
        text = problem[:1].upper() + problem[1:] if problem else warning or ""
        self.hint.setText(text)
        self.hint.setStyleSheet(ERROR_STYLE if problem else WARN_STYLE)
        self.buttons.button(QDialogButtonBox.StandardButton.Save).setEnabled(problem is None)
        self.test_button.setEnabled(
            url_problem(self.url.text().strip()) is None
            and token_path_problem(self.token_file.text()) is None
            and match_problem(self.match.text()) is None
        )
        return problem is None

    def draft(self) -> SourceDraft:
        return SourceDraft(
            name=self.name.text().strip(),
            url=self.url.text().strip(),
            token_file=self.token_file.text().strip(),
            match=self.match.text().strip(),
            backfill=self.backfill.text().strip(),
            enabled=self.enabled.isChecked(),
            original=self.original,
        )

    def _choose_token_file(self) -> None:
        start = self.token_file.text().strip() or str(Path.home())
        path, _filter = QFileDialog.getOpenFileName(self, "Token file", start)
        if path:
            self.token_file.setText(path)

    # -- actions -----------------------------------------------------------------------------
    def test_connection(self) -> None:
        """Ask the server for its dcgm-exporter and node_exporter series, on a worker."""
        draft = self.draft()
        token = Path(draft.token_file).expanduser() if draft.token_file else None
        match = check_selector(draft.match) if draft.match else None

        def work() -> str:
            return probe_source(draft.url, token, match)

        self.start_test("source-test", work)

    def save(self) -> None:
        if self.check():
            draft = self.draft()
            self.start_save("source-save", lambda: self._save(draft))
