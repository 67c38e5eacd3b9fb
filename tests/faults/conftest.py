"""Fault tests: the system under a store outage, a broker that is not up yet, a port already taken.
Each fault runs on a private server (a PostgreSQL cluster, a RabbitMQ node) or the test's own vhost:
the shared services are never stopped.

The session ends with one line, `faults: tried N, held M` (tests/conftest.py).
"""
