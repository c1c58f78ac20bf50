"""Built-in hardware probes, each an ordinary plugin of the ``autotune_hardware_facts`` hook."""
