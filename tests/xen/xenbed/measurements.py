"""Figures the test bed measures during a run, per flavour, printed at the end of the run."""
TIMINGS = {}


def record(flavour, **figures):
    TIMINGS.setdefault(flavour, {}).update(figures)
