"""Rails engine: typed policy files, input/output rails, streaming checks, profiles, shadow mode, NeMo interop."""
