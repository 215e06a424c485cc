"""The control plane: an aiohttp app on a Unix socket, its OpenAPI document, and heliosctl."""
