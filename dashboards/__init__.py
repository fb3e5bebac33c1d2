"""Grafana dashboards as code: ``build.py`` generates the committed ``*.json`` boards, and
``queries.py`` lists and fills in their queries so tests can run them without a Grafana."""
