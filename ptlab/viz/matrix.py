"""The safety matrix as a heat map: configurations × scenarios, computed by the explorer.

Each cell is an :class:`ptlab.sim.explore.Exploration`.  Its colour says how bad the
worst outcome is (safe; a bad kind that happens in *some* schedules; one that happens
in *every* schedule; or "safe?" when the state limit stopped the search), and its text
names each bad kind with its verdict and how many complete schedules show it.

>>> cell_category(0, 0, True), cell_category(3, 10, True), cell_category(10, 10, True)
('safe', 'sometimes', 'always')
"""

from __future__ import annotations

from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ptlab.sim.explore import Exploration
from ptlab.sim.matrix import Matrix
from ptlab.viz import style

CATEGORY_COLORS: dict[str, str] = {
    "safe": "#8cd17d",
    "bounded": "#d9d9d9",
    "sometimes": "#ffbe7d",
    "always": "#e15759",
}
CATEGORY_TEXT: dict[str, str] = {
    "safe": "safe in every schedule",
    "bounded": "nothing bad found (search stopped at the state limit)",
    "sometimes": "bad in some schedules",
    "always": "bad in every schedule",
}
KIND_ABBREV: dict[str, str] = {
    "use-after-free": "UAF",
    "union-clobber": "clobber",
    "list-corruption": "list corrupt",
    "double-free": "double free",
}


def cell_category(bad_schedules: int, schedules: int, exhaustive: bool) -> str:
    """``safe``, ``sometimes``, ``always`` or ``bounded`` for one bad kind's counts."""
    if bad_schedules < 0 or schedules < 0 or bad_schedules > schedules:
        raise ValueError(
            f"bad schedule count {bad_schedules} must be between 0 and the total {schedules}"
        )
    if bad_schedules == 0:
        return "safe" if exhaustive else "bounded"
    return "always" if bad_schedules == schedules else "sometimes"


def exploration_category(r: Exploration) -> str:
    """The worst category over the exploration's bad kinds."""
    cats = [cell_category(n, r.schedules, r.exhaustive) for n in r.kinds.values()]
    for c in ("always", "sometimes"):
        if c in cats:
            return c
    return "safe" if r.exhaustive else "bounded"


def compact_count(n: int) -> str:
    """``2736864`` → ``'2.7M'``; small numbers unchanged.

    >>> [compact_count(n) for n in (7, 1234, 2736864, 2088466524)]
    ['7', '1.2k', '2.7M', '2.1G']
    """
    for div, suffix in ((10**9, "G"), (10**6, "M"), (10**3, "k")):
        if n >= div:
            return f"{n / div:.1f}{suffix}"
    return str(n)


def cell_text(r: Exploration) -> str:
    """The text of a cell: ``safe`` or one line per bad kind, with counts."""
    if not r.kinds:
        runs = "run" if r.schedules == 1 else "runs"
        return f"safe\n{compact_count(r.schedules)} {runs}" if r.exhaustive else "safe?"
    lines = []
    for kind in sorted(r.kinds):
        n = r.kinds[kind]
        lines.append(f"{KIND_ABBREV.get(kind, kind)} {r.verdict(kind)}")
        lines.append(f"{compact_count(n)}/{compact_count(r.schedules)}")
    return "\n".join(lines)


def draw_safety_matrix(mat: Matrix) -> Figure:
    """The heat map of ``mat`` (rows: configs, columns: scenarios).

    Artists: one ``PolyCollection`` with gid ``"cells"`` (one square per cell, coloured
    by :func:`exploration_category`), one text per cell with gid
    ``"cell:<config label>|<scenario>"``, a legend of the categories.
    """
    if not mat.configs or not mat.scenarios:
        raise ValueError("the matrix has no configs or no scenarios to draw")
    missing = [(c.label(), s) for c in mat.configs for s in mat.scenarios
               if (c, s) not in mat.cells]
    if missing:
        raise ValueError(f"the matrix has no exploration for {missing[0][0]} × {missing[0][1]}")
    nrows, ncols = len(mat.configs), len(mat.scenarios)
    max_lines = max(cell_text(r).count("\n") + 1 for r in mat.cells.values())
    row_h = max(0.32, 0.12 * max_lines + 0.05)
    height = 1.45 + row_h * nrows
    width = min(3.2 + 1.45 * ncols, 16.0)
    fig = style.new_figure(min(height, 40.0), width=width)
    left = 2.9 / width
    ax = fig.add_axes((left, 0.5 / height, 1 - left - 0.1 / width, (height - 1.45) / height))
    verts = []
    colors = []
    for i, c in enumerate(mat.configs):
        for j, s in enumerate(mat.scenarios):
            r = mat.cells[(c, s)]
            verts.append([(j, i), (j + 1, i), (j + 1, i + 1), (j, i + 1)])
            colors.append(CATEGORY_COLORS[exploration_category(r)])
            ax.text(j + 0.5, i + 0.5, cell_text(r), ha="center", va="center",
                    fontsize=style.FONT_TINY, gid=f"cell:{c.label()}|{s}",
                    color=style.TEXT_COLOR)
    coll = PolyCollection(verts, facecolors=colors, edgecolors="white", linewidths=1.5)
    coll.set_gid("cells")
    ax.add_collection(coll, autolim=False)
    ax.set_xlim(0, ncols)
    ax.set_ylim(nrows, 0)
    ax.set_xticks([j + 0.5 for j in range(ncols)])
    ax.set_xticklabels([s.replace("reclaim-vs-", "reclaim vs\n").replace("-", " ")
                        for s in mat.scenarios], fontsize=style.FONT_TINY)
    ax.xaxis.tick_top()
    ax.set_yticks([i + 0.5 for i in range(nrows)])
    ax.set_yticklabels([c.label() for c in mat.configs], fontsize=style.FONT_TINY,
                       family=style.FONT_FAMILY_MONO)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    used = [k for k in CATEGORY_COLORS if k in set(
        exploration_category(r) for r in mat.cells.values())]
    fig.legend(handles=[Patch(facecolor=CATEGORY_COLORS[k], label=CATEGORY_TEXT[k])
                        for k in used], loc="lower center", ncol=len(used),
               fontsize=style.FONT_SMALL, frameon=False)
    fig.suptitle(f"safety matrix: {nrows} configs × {ncols} scenarios, every interleaving "
                 f"explored ({mat.seconds:.1f} s); counts are complete schedules",
                 fontsize=style.FONT_LABEL, y=1 - 0.08 / height, va="top")
    return fig
