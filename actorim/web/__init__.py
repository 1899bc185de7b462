"""HTTP and WebSocket serving on gevent's WSGI server."""
