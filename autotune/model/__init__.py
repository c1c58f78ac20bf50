"""The model being tuned: where it comes from (``source``: path, format, content hash), what a Hugging Face
folder holds (``hf_folder``) and the models that install from the package registry (``bundled``)."""
