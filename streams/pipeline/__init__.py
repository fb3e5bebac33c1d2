"""The streaming shell around ``streams.engine.tally``: Faust consumes, the engine counts.

Read top-down: ``topology`` (topics and the one agent), ``stage`` (what a batch does),
``partitions`` (owned tallies: restore, persist), ``publishing`` (progress, alerts, gauges),
``lifecycle`` (rebalances). See the README section "Why the numbers are exact".
"""
