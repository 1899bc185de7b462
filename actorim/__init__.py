"""actorim: an instant-messaging server built from supervised Pykka actors on gevent."""
