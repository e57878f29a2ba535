"""guardtune's inference proxy: triage, rails and recording around any chat model."""

__version__ = "0.1.0"
