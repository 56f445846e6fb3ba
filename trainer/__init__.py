"""The offline DPO job: read preference pairs, train a round (TRL + PEFT), gate it, publish a version.

Kafka is touched only in :mod:`trainer.kafka_io`; everything else works on files and the model registry.
"""
