"""The ``mfllm`` command line: the top layer, above ``training``, ``agents`` and ``mfllm_env``."""
