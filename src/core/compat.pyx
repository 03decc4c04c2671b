# Flink- and Kafka-compatible key hashing.
