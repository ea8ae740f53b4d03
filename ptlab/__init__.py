"""ptlab: a teaching lab for how Linux frees x86-64 page-table pages.

The package mirrors the kernel tree (``arch/x86``, ``mm``, ``kernel``); ``sim`` runs
kernel code on several CPUs, ``viz`` and ``widgets`` draw it. Only ``viz`` and
``widgets`` import matplotlib or ipywidgets.
"""

__version__ = "0.1.0"
