"""Deciding from figures: ``judgment`` (every within-budget decision), ``selection`` (the Pareto front and the
objective) and ``stats`` (intervals and paired comparisons that respect the noise)."""
