# The gevent WSGI server both Python peers run (setup_peers.sh copies it beside them).
import os
import socket

from gevent.pywsgi import WSGIServer
from geventwebsocket.handler import WebSocketHandler


class NoDelayServer(WSGIServer):
    """Sets TCP_NODELAY on accepted sockets, as Go's net and Node's ws do by
    default; NODELAY=0 keeps Nagle (then small frames to clients that never
    answer wait for delayed ACKs: ~40 ms tails)."""
    def handle(self, sock, address):
        if os.environ.get('NODELAY', '1') != '0':
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle(sock, address)


def serve(app):
    """Serve ``app`` on 127.0.0.1:$PORT until killed."""
    port = int(os.environ.get('PORT', '8080'))
    NoDelayServer(('127.0.0.1', port), app, handler_class=WebSocketHandler,
                  log=None, backlog=1024).serve_forever()
