"""Whether Qt can open a window here, decided before Qt is imported (Qt aborts otherwise)."""

from __future__ import annotations

import os
import sys

#: Platform plugins that need no display server.
HEADLESS_PLATFORMS = ("offscreen", "minimal", "vnc", "eglfs", "linuxfb", "vkkhrdisplay")


def display_problem(
    environ: dict[str, str] | None = None, platform: str | None = None
) -> str | None:
    """One line saying why no window can open, or None when one can."""
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    if not plat.startswith("linux"):
        return None
    qpa = env.get("QT_QPA_PLATFORM", "")
    if qpa.split(":")[0] in HEADLESS_PLATFORMS:
        return None
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return None
    return (
        "no display is available (neither DISPLAY nor WAYLAND_DISPLAY is set), so the window "
        "cannot open. Record headless with `costmeter record`, or run the app under a virtual "
        "display: `xvfb-run costmeter gui`."
    )
