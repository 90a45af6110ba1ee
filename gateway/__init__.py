"""The HTTP API: authentication, limits, the error envelope, routes, OpenAPI."""
