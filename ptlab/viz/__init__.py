"""Pictures of the model: pure functions from model data to a ``matplotlib.figure.Figure``.

No pyplot (no global figure registry), Agg only, deterministic: the same model state
gives the same artists.  ``style`` holds the shared palette (levels, union groups,
CPUs) and the figure factory; ``layout`` draws struct byte maps; ``paging`` draws
addresses, walks and page-table trees.  Only ``ptlab.viz`` and ``ptlab.widgets``
import matplotlib.
"""
