"""Registry: tenants, assets, products (thing models), devices, series."""
