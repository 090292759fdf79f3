"""costserve's catalog: GPU specs, cloud offerings (prices, availability) and model architectures.

Shipped as CSV under `catalog/data/`; `costserve catalog refresh` writes the user's copy of
the offerings to `$COSTSERVE_HOME/catalog/offerings.csv`, which then takes precedence.
"""
