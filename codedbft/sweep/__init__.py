"""``codedbft sweep``: grids of training runs (see :mod:`codedbft.sweep.cli`)."""
