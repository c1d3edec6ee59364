"""Assertions with messages for the MicroPython tests, and the shared vectors."""

import json

from run import ROOT


def eq(actual, expected, what=""):
    if actual != expected:
        raise AssertionError("{}: expected {!r}, got {!r}".format(what, expected, actual))


def raises(exc_type, fn, *args):
    """Call ``fn(*args)``, expect ``exc_type``; return the exception."""
    try:
        fn(*args)
    except exc_type as exc:
        return exc
    raise AssertionError("{} did not raise {}".format(fn, exc_type.__name__))


def vectors(name):
    with open(ROOT + "/tests/vectors/" + name) as f:
        return json.load(f)
