"""The HTTP server: Flask app factory, routes, one JSON error shape, request log, metrics."""
