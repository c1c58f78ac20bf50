"""The plugin machinery and the contracts plugins implement.

``manager`` finds, loads and calls plugins with each one's failure isolated; ``backend`` is the contract an
inference runtime fulfils (search space, prediction, artifacts, measurement); ``protocol`` is the measurement
protocol written once (``DecodeSession``, ``measure_session``); ``physics`` holds the memory and latency figures
every runtime shares; ``exporter`` and ``conversion`` are the other two things a plugin contributes. The hooks
themselves are in ``autotune.hookspecs``.
"""
