"""ipywidgets apps for the lessons, built from the model (``ptlab.mm``, ...) and the
pictures (``ptlab.viz``); the model knows nothing about them.

``common`` has the shared error line and figure view; ``walk`` the lesson-01 apps
(WalkExplorer, TouchLab, PtdescView, VmPteQuiz).  Every app exposes ``.widget`` and its
sub-widgets as attributes so tests can drive it with ``.value`` and ``.click()``.
"""
