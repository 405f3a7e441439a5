"""The VM domain's queries (moved into a package; the modules follow)."""
