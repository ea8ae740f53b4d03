"""Pieces every ptlab widget shares: an error box and a figure view that does not leak.

* :class:`ErrorBox` shows any ``ValueError``/``PermissionError`` raised by the model as
  one red line (``with box.guard(): ...``), never a traceback, and clears itself when the
  next action succeeds.
* :class:`FigureView` shows a ``matplotlib.figure.Figure`` as a PNG inside an
  ``ipywidgets.Image``; when a new figure arrives the previous one is cleared, so
  dragging a slider for a minute does not pile up figures in memory.
* :func:`show` displays a figure once in a notebook cell, as PNG (no SVG: nbval).

The model (``ptlab.mm``, ``ptlab.arch``, ...) knows nothing of these widgets.
"""

from __future__ import annotations

import html
import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ipywidgets as widgets
from matplotlib.figure import Figure

from ptlab.viz import style

__all__ = ["ErrorBox", "FigureView", "box", "figure_png", "show"]


def figure_png(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes (Agg; no pyplot).

    Figures from ``ptlab.viz`` carry no timestamps, so the same figure gives the same bytes.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, metadata={"Software": None})
    return buf.getvalue()


def show(fig: Figure) -> None:
    """Display ``fig`` in the current notebook cell as a PNG image, then release it."""
    import IPython.display

    ipd: Any = IPython.display  # untyped module
    ipd.display(ipd.Image(data=figure_png(fig), format="png"))
    fig.clear()


class ErrorBox:
    """A red HTML line for bad input; empty while all is well.

    >>> box = ErrorBox()
    >>> with box.guard():
    ...     raise ValueError("address 'zz' is not a number")
    >>> "zz" in box.widget.value, box.message
    (True, "address 'zz' is not a number")
    >>> with box.guard():
    ...     pass
    >>> box.message
    ''
    """

    def __init__(self) -> None:
        self.widget = widgets.HTML(value="")
        self.message = ""
        self.failed = False

    def show_error(self, exc: BaseException) -> None:
        """Show ``exc``'s message (first line only) in red."""
        self.message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        self.failed = True
        self.widget.value = (
            f'<span style="color:{style.ERROR_COLOR};font-weight:bold">Error:</span> '
            f'<span style="color:{style.ERROR_COLOR}">{html.escape(self.message)}</span>'
        )

    def clear(self) -> None:
        self.message = ""
        self.failed = False
        self.widget.value = ""

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Run the body; a ``ValueError``/``PermissionError`` is shown, not raised.

        On success the box is cleared.  Other exceptions are real bugs and propagate.
        """
        try:
            yield
        except (ValueError, PermissionError) as exc:
            self.show_error(exc)
        else:
            self.clear()


class FigureView:
    """Shows one figure at a time as a PNG in an ``ipywidgets.Image``.

    ``figure`` is the figure currently shown (kept for inspection and tests); the one
    before it is cleared (all artists dropped) when a new one arrives, and nothing else
    holds figures, so memory stays flat however often the picture is redrawn.
    """

    def __init__(self, width: str = "100%") -> None:
        self.widget = widgets.Image(format="png", layout=widgets.Layout(width=width))
        self.figure: Figure | None = None
        self.updates = 0

    def show(self, fig: Figure) -> None:
        old, self.figure = self.figure, fig
        self.widget.value = figure_png(fig)
        self.updates += 1
        if old is not None and old is not fig:
            old.clear()


def box(*children: Any, vertical: bool = True) -> widgets.Box:
    """A VBox (or HBox) of widgets; shorthand used by the apps."""
    items = [c for c in children if c is not None]
    return widgets.VBox(items) if vertical else widgets.HBox(items)
