"""Policies and mean-field models that act in :mod:`mfllm_env` environments.

Depends on :mod:`mfllm_env`, never the other way round.
"""
