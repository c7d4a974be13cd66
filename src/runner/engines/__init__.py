"""Engines carry out the stage plan: Dagger (the module) and Docker/BuildKit (the CLI)."""
