"""The one error type for a setting that cannot run (raised at load time or before any work)."""


class ConfigError(ValueError):
    """A configuration that cannot run, with the field that is wrong and how to fix it."""
