"""Installed as ``streams.schemas``: the event contract and the ClickHouse migrations.

Data only; read them through ``streams.resources``, never by path.
"""
