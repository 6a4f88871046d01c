"""HTTP API: FastAPI routers translating HTTP to the platform services."""
