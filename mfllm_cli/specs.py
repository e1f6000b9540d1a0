"""Scenario specifications on the command line: the library's :mod:`mfllm_env.specs`."""

from mfllm_env.specs import SPLITS, iter_spec, path_and_selector

__all__ = ["SPLITS", "iter_spec", "path_and_selector"]
