"""The search: ``sources`` (which backends, from which model), ``refusals`` (what a backend cannot run),
``study`` (the Optuna study and its trials), ``pipeline`` (one trial, configuration to record), ``confirm``
(interleaved rounds for the finalists) and ``assemble`` (the profile from the evidence)."""
