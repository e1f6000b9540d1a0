"""Population families on the mean-field-game core (:mod:`mfllm_env.core`): each is a
game (its dynamics), a text codec and a mean-field batch. ``macro``: households and a
government in an economy; ``rumour``: a population reacting to an event."""
