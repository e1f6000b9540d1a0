"""Trainers (SFT, IB-Tune, intervention planners). Depends on :mod:`agents` and :mod:`mfllm_env`."""
