"""Population families on the mean-field-game core (:mod:`mfllm_env.core`): each is a
game (its dynamics), a text codec and a mean-field batch. ``macro``: households and a
government in an economy. The rumour family (``mfllm_env.population_env``,
``mfllm_env.planner``) has not moved here yet."""
