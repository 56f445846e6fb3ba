"""The streaming side: Kafka topics, the Faust app, its agents, tables and web views."""
