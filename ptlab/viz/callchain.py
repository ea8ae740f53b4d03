"""The call chain of a page-table free, drawn as a tree (like the one in the v6.14 commit).

The tree is *computed*: :func:`call_tree` runs :func:`ptlab.sim.paths.free_path` for the
chosen configuration and for its alternatives (every paravirt environment × batch page
available or not × PT_RECLAIM on/off, same kernel), and merges the recorded kernel call
stacks into one tree.  Nodes on the chosen configuration's stacks are *taken*; the rest
are what other configurations do.  Each leaf is the step the model executed there
(``call_rcu(...)``, ``send IPI ...``, a free), with the table's frame written ``T``.

Where the configurations reaching a node are a strict subset of those reaching its
parent, the node is labelled with that subset ("paravirt ∈ {xen-pv, hyperv, kvm-pv-flush}
· batch=fails"), so the picture also says *why* the path branches.

>>> from ptlab.config import Config
>>> t = call_tree(Config(kernel="v6.14", paravirt="native", batch="fails"))
>>> [(n.name, n.taken) for n in t.roots]  # the slow path flushes inside tlb_remove_table
[('free_pte', True), ('rcu_gp_kthread', True), ('rcu_do_batch', True), ('tlb_finish_mmu', False)]
>>> t.find("free_pte", "pte_free_tlb").taken
True
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from ptlab.config import PARAVIRT_ENVS, Config
from ptlab.sim.paths import LEVELS, FreePath, free_path
from ptlab.viz import style

TAKEN_COLOR = "#c0392b"
OTHER_COLOR = "#a6a6a6"
_HEX = re.compile(r"0x[0-9a-f]+")


@dataclass
class CallNode:
    """A function (or, at a leaf, the step executed) in the merged call tree."""

    name: str
    path: tuple[str, ...]
    leaf: bool = False
    lane: str = ""
    taken: bool = False
    configs: set[int] = field(default_factory=set)  # indices into CallTree.configs
    children: dict[str, CallNode] = field(default_factory=dict)


@dataclass
class CallTree:
    """The merged tree: ``configs[0]`` is the chosen configuration."""

    config: Config
    level: str
    configs: list[Config]
    paths: list[FreePath]
    roots: list[CallNode]

    def find(self, *path: str) -> CallNode:
        """The node at ``path`` (function names from a root); ValueError if absent."""
        level = {n.name: n for n in self.roots}
        node: CallNode | None = None
        for name in path:
            node = level.get(name)
            if node is None:
                raise ValueError(
                    f"no node {name!r} under {' → '.join(path[: path.index(name)]) or 'the roots'}"
                    f"; there are: {', '.join(level) or 'none'}"
                )
            level = node.children
        if node is None:
            raise ValueError("give at least one function name")
        return node

    def walk(self) -> list[tuple[int, CallNode]]:
        """Every node with its depth, parents before children, in drawing order."""
        out: list[tuple[int, CallNode]] = []

        def rec(n: CallNode, d: int) -> None:
            out.append((d, n))
            for c in n.children.values():
                rec(c, d + 1)

        for r in self.roots:
            rec(r, 0)
        return out


def alternatives(config: Config) -> list[Config]:
    """The configurations compared with ``config``: same kernel, CPUs and RCU flavour,
    every paravirt environment × batch ok/fails × PT_RECLAIM on/off (``config`` first)."""
    out = [config]
    for reclaim in (config.pt_reclaim, not config.pt_reclaim):
        for env in PARAVIRT_ENVS:
            for batch in ("ok", "fails"):
                try:
                    c = config.replace(paravirt=env, batch=batch, pt_reclaim=reclaim)
                except ValueError:  # e.g. kvm-pv-flush with one CPU cannot exist
                    continue
                if c not in out:
                    out.append(c)
    return out


def leaf_text(text: str, table: int) -> str:
    """A recorded op text made comparable across runs: the freed table becomes ``T``,
    other frame numbers and values ``…``, grace-period numbers are dropped.

    >>> leaf_text("call_rcu(batch 0x105, tlb_remove_table_rcu)", 0x104)
    'call_rcu(batch …, tlb_remove_table_rcu)'
    >>> leaf_text("grace period 1 starts for 1 callback(s); must wait for no CPU", 0x104)
    'grace period starts'
    """
    if text.startswith("grace period"):
        return "grace period starts" if "starts" in text else "grace period ends"
    out = text.replace(f"{table:#x}", "T")
    out = _HEX.sub("…", out)
    return re.sub(r"\(\d+/509\)", "", out).strip()


@functools.lru_cache(maxsize=64)
def _cached_path(config: Config, level: str) -> FreePath:
    return free_path(config, level)


def call_tree(
    config: Config, level: str = "pte", configs: Sequence[Config] | None = None
) -> CallTree:
    """Merge the free paths of ``config`` and its alternatives (see :func:`alternatives`,
    or give ``configs``) into one tree; ``config``'s nodes are marked taken."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; allowed: {', '.join(LEVELS)}")
    cfgs = [config, *[c for c in (configs or alternatives(config)) if c != config]]
    paths = [_cached_path(c, level) for c in cfgs]
    roots: dict[str, CallNode] = {}
    for i, fp in enumerate(paths):
        for step in fp.steps:
            names = [*step.stack, leaf_text(step.text, fp.table)]
            children = roots
            prefix: tuple[str, ...] = ()
            for j, name in enumerate(names):
                prefix = (*prefix, name)
                node = children.get(name)
                if node is None:
                    node = CallNode(name, prefix, leaf=j == len(names) - 1, lane=step.lane)
                    children[name] = node
                node.configs.add(i)
                if i == 0:
                    node.taken = True
                children = node.children
    # taken branches first, then the others, each in order of first appearance
    def order(nodes: dict[str, CallNode]) -> dict[str, CallNode]:
        items = sorted(nodes.values(), key=lambda n: not n.taken)
        for n in items:
            n.children = order(n.children)
        return {n.name: n for n in items}

    ordered = order(roots)
    return CallTree(config, level, cfgs, paths, list(ordered.values()))


_FIELDS: tuple[tuple[str, str], ...] = (
    ("kernel", "kernel"), ("paravirt", "paravirt"), ("batch", "batch"),
    ("pt_reclaim", "PT_RECLAIM"),
)


def _value_text(v: object) -> str:
    return ("on" if v else "off") if isinstance(v, bool) else str(v)


def _cube(chosen: Sequence[Config], configs: Sequence[Config]) -> str | None:
    """``chosen`` as "field=value · field ∈ {…}" if it is a cross product, else None."""
    parts: list[str] = []
    product = 1
    for name, show in _FIELDS:
        every = list(dict.fromkeys(getattr(c, name) for c in configs))
        have = {getattr(c, name) for c in chosen}
        product *= len(have)
        if len(have) == len(every):
            continue
        vals = [_value_text(v) for v in every if v in have]
        parts.append(f"{show}={vals[0]}" if len(vals) == 1 else f"{show} ∈ {{{', '.join(vals)}}}")
    distinct = {tuple(getattr(c, n) for n, _ in _FIELDS) for c in chosen}
    universe = {tuple(getattr(c, n) for n, _ in _FIELDS) for c in configs}
    if distinct == universe:
        return "all configs"
    if product != len(distinct):
        return None
    return " · ".join(parts)


def describe_configs(
    subset: set[int], configs: Sequence[Config], max_chars: int = 110
) -> str:
    """Say which configurations ``subset`` (indices into ``configs``) are.

    Fields that take all their values in the subset are not named.  A subset that is not
    a cross product is split by its paravirt environments into a few cross products
    joined with "or"; failing that (or past ``max_chars``), the count is given.

    >>> cs = [Config(paravirt=e, batch=b) for e in ("native", "xen-pv") for b in ("ok", "fails")]
    >>> describe_configs({1, 3}, cs)
    'batch=fails'
    >>> describe_configs({0, 1, 3}, cs)
    'paravirt=native · batch=ok or batch=fails'
    """
    chosen = [configs[i] for i in sorted(subset)]
    whole = _cube(chosen, configs)
    if whole is not None:
        return whole
    best: str | None = None
    for text in (_by_envs(chosen, configs, env_first=True),
                 _by_envs(chosen, configs, env_first=False)):
        if text is not None and (best is None or len(text) < len(best)):
            best = text
    if best is None or len(best) > max_chars:
        return f"{len(subset)} of {len(configs)} configs"
    return best



def _by_envs(chosen: Sequence[Config], configs: Sequence[Config], *, env_first: bool) -> str | None:
    """Split ``chosen`` into cross products: either environments sharing the same other
    fields (``env_first``) or other-field combinations sharing the same environments."""
    def rest(c: Config) -> tuple[object, ...]:
        return (c.kernel, c.batch, c.pt_reclaim)

    groups: dict[object, list[Config]] = {}
    if env_first:
        by_rest: dict[tuple[object, ...], set[str]] = {}
        for c in chosen:
            by_rest.setdefault(rest(c), set()).add(c.paravirt)
        for c in chosen:
            groups.setdefault(frozenset(by_rest[rest(c)]), []).append(c)
    else:
        by_env: dict[str, set[tuple[object, ...]]] = {}
        for c in chosen:
            by_env.setdefault(c.paravirt, set()).add(rest(c))
        for c in chosen:
            groups.setdefault(frozenset(by_env[c.paravirt]), []).append(c)
    clauses: list[str] = []
    for group in groups.values():
        text = _cube(group, configs)
        if text is None:
            return None
        clauses.append(text)
    return " or ".join(clauses) if len(clauses) <= 3 else None


_MAX_ROW_CHARS = 64


def _rows(tree: CallTree) -> list[tuple[int, list[CallNode]]]:
    """Chains of single-child nodes with the same status are drawn on one row."""
    rows: list[tuple[int, list[CallNode]]] = []

    def rec(n: CallNode, depth: int) -> None:
        chain = [n]
        while (
            len(chain[-1].children) == 1
            and not chain[-1].leaf
            and sum(len(c.name) + 3 for c in chain) < _MAX_ROW_CHARS
        ):
            (child,) = chain[-1].children.values()
            if child.taken != n.taken or child.leaf or child.configs != n.configs:
                break
            chain.append(child)
        rows.append((depth, chain))
        for c in chain[-1].children.values():
            rec(c, depth + 1)

    for r in tree.roots:
        rec(r, 0)
    return rows


def draw_call_tree(tree: CallTree) -> Figure:
    """Draw a :class:`CallTree`: one row per chain of calls, taken rows in red and bold.

    Artists: texts with gid ``"taken"`` or ``"other"`` (the row's function names joined
    by ``" → "``; leaves are the executed step, prefixed ``"⇒ "``), ``"cond"`` texts for
    the configurations that take a branch, line collections ``"edges:taken"`` and
    ``"edges:other"``.
    """
    rows = _rows(tree)
    row_h = 0.165
    head_h = 0.95
    height = head_h + row_h * len(rows) + 0.2
    fig = style.new_figure(min(height, 40.0))
    ax = fig.add_axes((0.01, 0.1 / height, 0.98, (height - head_h - 0.1) / height))
    indent = 1.2
    xmax = 34.0
    # width of one monospace character in data units (DejaVu Sans Mono: 0.6 em)
    char_w = 0.602 * style.FONT_SMALL / 72 / (0.98 * fig.get_figwidth() / (xmax + 0.2))
    pos: dict[tuple[str, ...], tuple[float, float]] = {}
    edges: dict[bool, list[list[tuple[float, float]]]] = {True: [], False: []}
    parent_configs: dict[tuple[str, ...], set[int]] = {}
    for i, (depth, chain) in enumerate(rows):
        y = -i
        x = depth * indent
        first, last = chain[0], chain[-1]
        parent = first.path[:-1]
        if parent in pos:
            px, py = pos[parent]
            edges[first.taken].append([(px + 0.3, py - 0.35), (px + 0.3, y), (x - 0.1, y)])
        names = " → ".join(n.name for n in chain)
        if last.leaf:
            names = ("⇒ " if len(chain) == 1 else "") + names
        if first.lane and first.lane != "CPU0" and depth == 0:
            names = f"[{first.lane}] {names}"
        ax.text(x, y, names, fontsize=style.FONT_SMALL, family=style.FONT_FAMILY_MONO,
                va="center", ha="left", gid="taken" if first.taken else "other",
                color=TAKEN_COLOR if first.taken else OTHER_COLOR,
                fontweight="bold" if first.taken else "normal",
                fontstyle="italic" if last.leaf else "normal")
        for n in chain:
            pos[n.path] = (x, y)
            parent_configs[n.path] = n.configs
        above = parent_configs.get(parent, set(range(len(tree.configs))))
        if first.configs != above or depth == 0:
            cx = x + (len(names) + 1) * char_w
            room = int((xmax - cx) / (char_w * style.FONT_TINY / style.FONT_SMALL * 0.98)) - 2
            ax.text(cx, y, f"[{describe_configs(first.configs, tree.configs, room)}]",
                    fontsize=style.FONT_TINY, va="center", ha="left", color="#6b6b6b",
                    gid="cond", clip_on=False)
    for taken, segs in edges.items():
        if segs:
            coll = LineCollection(segs, colors=TAKEN_COLOR if taken else OTHER_COLOR,
                                  linewidths=1.4 if taken else 0.7)
            coll.set_gid(f"edges:{'taken' if taken else 'other'}")
            ax.add_collection(coll, autolim=False)
    ax.set_xlim(-0.2, xmax)
    ax.set_ylim(-len(rows) + 0.5, 0.6)
    ax.axis("off")
    fp = tree.paths[0]
    fig.text(0.01, 1 - 0.12 / height,
             f"{tree.level.upper()} table free — {tree.config.label()}",
             fontsize=style.FONT_TITLE, va="top", gid="title")
    fig.text(0.01, 1 - 0.42 / height,
             f"hook: {fp.hook}\nfreed: {fp.freed_by}\nwaited for: {fp.waited_for}",
             fontsize=style.FONT_SMALL, va="top", color=TAKEN_COLOR, gid="summary",
             linespacing=1.25)
    fig.text(0.99, 1 - 0.12 / height,
             f"red: this config · grey: the other {len(tree.configs) - 1} configs of "
             f"{tree.config.kernel}", fontsize=style.FONT_TINY, va="top", ha="right",
             color="#6b6b6b")
    return fig


def draw_free_path(config: Config, level: str = "pte") -> Figure:
    """The call tree of a ``level`` table free, ``config``'s path highlighted.

    >>> fig = draw_free_path(Config(kernel="v6.13", paravirt="xen-pv", batch="fails"))
    >>> any("tlb_remove_table_sync_one" in t.get_text()
    ...     for t in fig.axes[0].texts if t.get_gid() == "taken")
    True
    """
    return draw_call_tree(call_tree(config, level))
