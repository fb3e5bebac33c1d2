"""Sinks: services that copy Kafka topics into stores (today ClickHouse history)."""
