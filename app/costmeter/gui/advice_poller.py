"""Works out the advice every few minutes off the GUI thread; the Advice page and the Overview's
"Savings available" tile both listen to it.

One poller per ``AppContext`` (``AdvicePoller.of(ctx)`` makes it on first use, as a child of the
context's signals), so the two views show the same figures and the rules run once for both.
Each result goes out as an ``AdviceSnapshot`` on ``ctx.signals.advice_ready``; the snapshot
and the work itself are Qt-free, in ``costmeter.service.advice_snapshot``.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

from costmeter.gui.context import AppContext
from costmeter.service.advice_snapshot import DEFAULT_WINDOW, WINDOWS, AdviceSnapshot, compute
from costmeter.service.reading import Store

__all__ = ["DEFAULT_WINDOW", "WINDOWS", "AdvicePoller", "AdviceSnapshot", "compute", "window_label"]

#: The rules look at stored history, which changes slowly: work them out again this often.
REFRESH_MS = 3 * 60_000
#: Where the chosen window is remembered.
WINDOW_SETTING = "advice/window"


def window_label(ctx: AppContext) -> str:
    """The window remembered in the settings (a key of ``WINDOWS``)."""
    label = str(ctx.settings.value(WINDOW_SETTING, DEFAULT_WINDOW))
    return label if label in WINDOWS else DEFAULT_WINDOW


class AdvicePoller(QObject):
    #: The advice could not be worked out (a sentence for the user).
    failed = Signal(str)
    #: A request went to the reader (for a "checking…" hint).
    started = Signal()

    def __init__(self, ctx: AppContext, refresh_ms: int = REFRESH_MS) -> None:
        super().__init__(ctx.signals)
        self.ctx = ctx
        #: The latest snapshot (None until the first one arrives).
        self.latest: AdviceSnapshot | None = None
        #: The latest failure's sentence (cleared by a success).
        self.error: str | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(refresh_ms)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        ctx.signals.config_changed.connect(lambda _config: self.refresh())
        # Sampling can move to another database (simulated GPUs): the cost poller's next
        # result, seconds later, is the cue to work the advice out there too.
        ctx.signals.summary_ready.connect(self._check_database)
        QTimer.singleShot(0, self.refresh)

    @classmethod
    def of(cls, ctx: AppContext) -> AdvicePoller:
        """The context's poller, made now if there is none yet."""
        found = ctx.signals.findChild(AdvicePoller)
        return found if isinstance(found, AdvicePoller) else cls(ctx)

    @property
    def window(self) -> str:
        return window_label(self.ctx)

    def set_window(self, label: str) -> None:
        """Remember another window (a key of ``WINDOWS``) and work the advice out over it."""
        if label not in WINDOWS:
            raise ValueError(f"unknown advice window {label!r}; one of {', '.join(WINDOWS)}")
        self.ctx.settings.setValue(WINDOW_SETTING, label)
        self.refresh()

    def refresh(self) -> None:
        config = self.ctx.config
        window = self.window

        def job(store: Store) -> AdviceSnapshot:
            return compute(store, config, window)

        self.started.emit()
        self.ctx.reader.submit("advice", job, self._done, self._failed)

    def _check_database(self, _summary: object = None) -> None:
        latest = self.latest
        if latest is not None and latest.db_path != self.ctx.db_path:
            self.latest = None  # asked once
            self.refresh()

    def _done(self, snapshot: AdviceSnapshot) -> None:
        self.latest = snapshot
        self.error = None
        self.ctx.signals.advice_ready.emit(snapshot)

    def _failed(self, message: str) -> None:
        self.error = message
        self.failed.emit(message)
