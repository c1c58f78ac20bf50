"""The machine: hardware facts from probe plugins folded into one ``Hardware``.

``machine`` collects the facts (cached, volatile limits read fresh); ``cpu``, ``memory``, ``bandwidth``,
``nvidia`` and ``apple`` are the built-in probes, each an ordinary plugin of the ``autotune_hardware_facts``
hook (registered as ``builtin-cpu``, ``builtin-memory``, ...).
"""
