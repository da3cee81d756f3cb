"""The autopilot: the coordinator turns the wheel by itself (DESIGN.md §11).

:mod:`.state` folds the log, :mod:`.decide` decides (pure), :mod:`.runner` writes intents
and outcomes around the I/O of a :class:`.federation.Federation`.
"""
