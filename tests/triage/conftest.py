"""Triage tests use the session fixtures `triage_model_dir` / `triage_model` of the root conftest."""
