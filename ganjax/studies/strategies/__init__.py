"""One module per strategy family; each has `make(name, context) -> ganjax.studies.engine.Strategy`.

The names and the module of each live in ganjax.names (STRATEGY_MODULES), so configs are
validated without importing these modules.
"""
