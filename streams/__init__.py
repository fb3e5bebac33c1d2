"""SPM streams: live sales quota attainment from activity events on Kafka."""

__version__ = "0.1.0"
