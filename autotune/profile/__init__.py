"""The deployment profile: ``schema`` (the versioned, validated JSON answer) and ``json_export`` (the built-in
exporter that writes it)."""
