"""Industrial microservice components: mechanism models and analytics over NumPy arrays,
discovered through the ``yugong.components`` entry points, served by the platform's API and
each on its own as a microservice."""

from yugong.platform.components.catalog import Catalog
from yugong.platform.components.contract import (
    Category,
    Component,
    ComponentInputError,
    Port,
    bad_input,
    component,
)

__all__ = [
    "Catalog",
    "Category",
    "Component",
    "ComponentInputError",
    "Port",
    "bad_input",
    "component",
]
