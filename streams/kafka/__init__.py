"""Kafka plumbing that is not Faust: the local broker, topic administration, plain producers."""
