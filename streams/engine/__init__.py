"""The quota engine: the pure rules every shell (agents, backfills, API, tests) shares.

No Kafka, Faust or ClickHouse imports here, so the same figures come out of the live
pipeline, a from-scratch recomputation and the unit tests. One concept per module:
``events`` (contract v1), ``catalog`` (metrics), ``money``, ``periods``, ``ledger`` (deals),
``roster`` + ``rollup`` (teams), ``contributions`` (incremental aggregates), ``quotas``,
``pace`` (derived figures), ``imports`` (CSV), ``engine`` (composition) and ``recompute``
(independent reference). See README.md in this directory.
"""
